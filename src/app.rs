//! The commands that run the lead pipeline: `serve`, `qualify` and `eval`.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

use crate::config::{Overrides, Settings};
use crate::engine::{self, Engine, LoadedModel};
use crate::models;
use crate::pipeline::{Contact, Pipeline, Progress, ValidLead};
use crate::store::{Inserted, Store};

/// Options shared by every command that reads the configuration.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The configuration file; by default leadgate.toml in the current folder, if present.
    #[arg(long, env = "LEADGATE_CONFIG")]
    pub config: Option<PathBuf>,

    /// The SQLite database file; `qualify` and `eval` use a temporary one when it is absent.
    #[arg(long, env = "LEADGATE_DB")]
    pub db: Option<PathBuf>,

    /// A GGUF path, a model name from `leadgate model list`, or hf:OWNER/REPO/FILE.gguf.
    #[arg(long, env = "LEADGATE_MODEL")]
    pub model: Option<String>,

    /// Compute threads of the model; 0 means one per core.
    #[arg(long, env = "LEADGATE_THREADS")]
    pub threads: Option<usize>,

    /// Leads that may wait for the model besides the running one.
    #[arg(long, env = "LEADGATE_QUEUE_CAPACITY")]
    pub queue_capacity: Option<usize>,

    /// Milliseconds POST /v1/leads waits for the result before it responds with 202.
    #[arg(long, env = "LEADGATE_WAIT_MS")]
    pub wait_ms: Option<u64>,

    /// The maximum number of tokens the model generates per lead.
    #[arg(long, env = "LEADGATE_MAX_TOKENS")]
    pub max_tokens: Option<usize>,
}

impl ConfigArgs {
    fn load(&self, listen: Option<SocketAddr>) -> anyhow::Result<Settings> {
        let overrides = Overrides {
            listen,
            db: self.db.clone(),
            model: self.model.clone(),
            threads: self.threads,
            queue_capacity: self.queue_capacity,
            wait_ms: self.wait_ms,
            max_tokens: self.max_tokens,
        };
        Settings::load(self.config.as_deref(), &overrides)
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,

    /// The address and port to listen on; port 0 picks a free one.
    #[arg(long, env = "LEADGATE_LISTEN")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct QualifyArgs {
    #[command(flatten)]
    pub config: ConfigArgs,

    /// The lead's text; read from standard input when absent.
    #[arg(long)]
    pub text: Option<String>,

    /// The channel the lead came from: telegram, whatsapp, instagram or web.
    #[arg(long, default_value = "web")]
    pub channel: String,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub config: ConfigArgs,

    /// A JSON Lines file with `id`, `channel`, `text` and the labels `service`, `intent`,
    /// `urgency`, `temperature`.
    pub file: PathBuf,

    /// Also list each disagreement (lead id, field, expected, got) on standard error.
    #[arg(long)]
    pub misses: bool,
}

/// Loads the model, starts the engine, opens the database and builds the pipeline.
fn start_pipeline(settings: Settings, db: &Path) -> anyhow::Result<Pipeline> {
    if settings.threads > 0 {
        // SAFETY: called on the main thread before the runtime or any other thread starts.
        unsafe { engine::set_threads(settings.threads) };
    }
    let path = models::resolve(&settings.model, &models::models_dir())?;
    let sha256 = models::sha256_file(&path)?;
    let model =
        LoadedModel::load(&path).with_context(|| format!("cannot load {}", path.display()))?;
    tracing::info!(
        model = %path.display(),
        architecture = %model.info().architecture,
        load_ms = model.info().load_ms,
        "model loaded"
    );
    let engine = Engine::start(model, settings.queue_capacity);
    let store =
        Store::open(db).with_context(|| format!("cannot open database {}", db.display()))?;
    Pipeline::new(Arc::new(settings), engine, store, sha256)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs `leadgate serve`.
pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let settings = args.config.load(args.listen)?;
    let listen = settings.listen;
    let db = settings.db.clone();
    let retention = settings.retention.clone();
    let pipeline = start_pipeline(settings, &db)?;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 60.0,
        ])
        .context("invalid metrics buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let bound = listener.local_addr()?;
        tracing::info!(address = %bound, database = %db.display(), "listening");
        // A plain line that scripts and tests can read to learn a port picked by the OS.
        eprintln!("leadgate listening on http://{bound}");
        tokio::spawn(crate::compliance::retention::run_periodically(
            pipeline.store.clone(),
            retention,
        ));
        crate::http::serve(listener, pipeline, Some(metrics)).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Returns the database path a one-off command uses: the given one, else a file in a
/// temporary folder that is removed afterwards.
fn one_off_db(args: &ConfigArgs) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    match &args.db {
        Some(path) => Ok((path.clone(), None)),
        None => {
            let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
            Ok((dir.path().join("leadgate.db"), Some(dir)))
        }
    }
}

/// Stores a lead, processes it and returns the processing time in seconds and the lead id.
async fn run_lead(pipeline: &Pipeline, lead: ValidLead) -> anyhow::Result<(i64, f64)> {
    let started = Instant::now();
    let id = match pipeline.accept(lead).await? {
        Inserted::Created(id) => id,
        Inserted::Existing(id) => return Ok((id, 0.0)),
    };
    match pipeline.spawn_process(id).await {
        Ok(Progress::Finished(Ok(()))) => {}
        Ok(Progress::Finished(Err(message))) => bail!("lead {id} failed: {message}"),
        // The queue was full and the task keeps trying, so wait until it is done.
        Ok(Progress::Queued) | Err(_) => pipeline.wait_idle().await,
    }
    Ok((id, started.elapsed().as_secs_f64()))
}

/// Runs `leadgate qualify`: one lead through the same path as the server, JSON out.
pub fn qualify(args: QualifyArgs) -> anyhow::Result<ExitCode> {
    let text = match args.text {
        Some(text) => text,
        None => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("cannot read the lead from standard input (UTF-8 expected)")?;
            input
        }
    };
    let text = text.trim().to_string();
    if text.is_empty() {
        bail!("the lead text is empty; pass --text or write it to standard input");
    }
    let settings = args.config.load(None)?;
    let (db, _temporary) = one_off_db(&args.config)?;
    let pipeline = start_pipeline(settings, &db)?;
    let external_id = format!(
        "cli-{}",
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    );
    let lead = ValidLead {
        channel: args.channel,
        external_id,
        text,
        contact: Contact::default(),
        received_at: None,
        key_id: None,
    };
    let view = runtime()?.block_on(async {
        let (id, _) = run_lead(&pipeline, lead).await?;
        pipeline
            .view(id)
            .await?
            .with_context(|| format!("lead {id} is missing after processing"))
    })?;
    println!("{}", serde_json::to_string_pretty(&view)?);
    Ok(ExitCode::SUCCESS)
}

#[derive(Deserialize)]
struct LabelledLead {
    id: String,
    #[serde(default = "default_channel")]
    channel: String,
    text: String,
    service: String,
    intent: String,
    urgency: String,
    temperature: String,
}

fn default_channel() -> String {
    "web".to_string()
}

/// Runs `leadgate eval`: accuracy per field and seconds per lead over a labelled file.
pub fn eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let input = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let mut leads = Vec::new();
    for (number, line) in input.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let lead: LabelledLead = serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {}: not a labelled lead",
                args.file.display(),
                number + 1
            )
        })?;
        leads.push(lead);
    }
    if leads.is_empty() {
        bail!("{} has no labelled leads", args.file.display());
    }
    let settings = args.config.load(None)?;
    let (db, _temporary) = one_off_db(&args.config)?;
    let pipeline = start_pipeline(settings, &db)?;
    let fields = ["service", "intent", "urgency", "temperature"];
    let mut correct = [0usize; 4];
    let mut seconds = Vec::with_capacity(leads.len());
    let runtime = runtime()?;
    for lead in &leads {
        let valid = ValidLead {
            channel: lead.channel.clone(),
            external_id: lead.id.clone(),
            text: lead.text.clone(),
            contact: Contact::default(),
            received_at: None,
            key_id: None,
        };
        let view = runtime.block_on(async {
            let (id, elapsed) = run_lead(&pipeline, valid).await?;
            seconds.push(elapsed);
            pipeline.view(id).await.map_err(anyhow::Error::from)
        })?;
        let Some(q) = view.and_then(|v| v.qualification) else {
            bail!("lead {} has no qualification after processing", lead.id);
        };
        let pairs = [
            (&lead.service, &q.service),
            (&lead.intent, &q.intent),
            (&lead.urgency, &q.urgency),
            (&lead.temperature, &q.temperature),
        ];
        for (index, (expected, got)) in pairs.iter().enumerate() {
            if expected == got {
                correct[index] += 1;
            } else if args.misses {
                eprintln!(
                    "{} {}: expected {expected}, got {got}",
                    lead.id, fields[index]
                );
            }
        }
    }
    seconds.sort_by(f64::total_cmp);
    let quantile = |q: f64| seconds[((seconds.len() - 1) as f64 * q).round() as usize];
    let total = leads.len() as f64;
    let mut accuracy = serde_json::Map::new();
    for (index, field) in fields.iter().enumerate() {
        accuracy.insert(field.to_string(), (correct[index] as f64 / total).into());
    }
    let report = serde_json::json!({
        "leads": leads.len(),
        "accuracy": accuracy,
        "seconds_per_lead": { "median": quantile(0.5), "p90": quantile(0.9) },
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}
