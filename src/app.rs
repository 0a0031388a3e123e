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
use crate::db_admin::{self, database_key, open_store};
use crate::engine::{self, Engine, LoadedModel};
use crate::models;
use crate::pipeline::{ConsentGate, Contact, Pipeline, Progress, ValidLead};
use crate::store::{DbKey, Inserted};

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
    /// Reads the settings with these flags and the database variables applied.
    pub fn load(&self) -> anyhow::Result<Settings> {
        self.load_with(Overrides::default())
    }

    /// Reads the settings with `overrides` and these flags applied; a flag wins.
    fn load_with(&self, overrides: Overrides) -> anyhow::Result<Settings> {
        let database = db_admin::database_overrides()?;
        let overrides = Overrides {
            db: self.db.clone(),
            model: self.model.clone(),
            threads: self.threads,
            queue_capacity: self.queue_capacity,
            wait_ms: self.wait_ms,
            max_tokens: self.max_tokens,
            db_key_file: database.db_key_file,
            db_unencrypted: database.db_unencrypted,
            busy_timeout_ms: database.busy_timeout_ms,
            ..overrides
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

    /// A PEM file with the TLS certificate chain; HTTPS needs it and --tls-key.
    #[arg(long, env = "LEADGATE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// A PEM file with the TLS private key.
    #[arg(long, env = "LEADGATE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// The largest request body, in bytes.
    #[arg(long, env = "LEADGATE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,

    /// The largest total size of the request line and headers, in bytes.
    #[arg(long, env = "LEADGATE_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,

    /// Milliseconds a client has to send its request headers, and again its body.
    #[arg(long, env = "LEADGATE_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,

    /// Leads per minute one API key may send; 0 turns the limit off.
    #[arg(long, env = "LEADGATE_RATE_PER_MINUTE")]
    pub rate_per_minute: Option<u32>,

    /// Leads one API key may send at once after a quiet period.
    #[arg(long, env = "LEADGATE_RATE_BURST")]
    pub rate_burst: Option<u32>,
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
fn start_pipeline(settings: Settings, db: &Path, key: &DbKey) -> anyhow::Result<Pipeline> {
    // A wrong key fails here, before the model takes seconds to load.
    let store = open_store(&settings, db, key)?;
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
    let settings = args.config.load_with(Overrides {
        listen: args.listen,
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        max_body_bytes: args.max_body_bytes,
        max_header_bytes: args.max_header_bytes,
        request_timeout_ms: args.request_timeout_ms,
        rate_per_minute: args.rate_per_minute,
        rate_burst: args.rate_burst,
        ..Overrides::default()
    })?;
    let webhook_token = webhook_token(&settings)?;
    let listen = settings.listen;
    let db = settings.db.clone();
    let tls = match (&settings.tls.cert, &settings.tls.key) {
        (Some(cert), Some(key)) => Some(crate::http::tls::acceptor(cert, key)?),
        _ => None,
    };
    if tls.is_none() && !listen.ip().is_loopback() {
        tracing::warn!(
            address = %listen,
            "plain HTTP beyond the loopback address: API keys and personal data cross \
             the network unencrypted; set tls.cert and tls.key"
        );
    }
    if tracing::enabled!(target: "leadgate::prompt", tracing::Level::TRACE) {
        tracing::warn!(
            "the log includes the redacted text of every lead (target leadgate::prompt at \
             trace level), which may still hold health details or a missed identifier; use \
             it only for debugging"
        );
    }
    let key = database_key(&settings)?;
    let pipeline = start_pipeline(settings, &db, &key)?;
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
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(address = %bound, scheme, database = %db.display(), "listening");
        // A plain line that scripts and tests can read to learn a port picked by the OS.
        eprintln!("leadgate listening on {scheme}://{bound}");
        tokio::spawn(crate::compliance::retention::run_periodically(
            pipeline.store.clone(),
            pipeline.settings.clone(),
        ));
        crate::http::serve(listener, pipeline, Some(metrics), tls, webhook_token).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Reads the webhook's bearer token from `LEADGATE_WEBHOOK_TOKEN` when a webhook is
/// configured.
fn webhook_token(settings: &Settings) -> anyhow::Result<Option<String>> {
    if settings.webhook.is_none() {
        return Ok(None);
    }
    match std::env::var("LEADGATE_WEBHOOK_TOKEN") {
        Ok(token) if !token.trim().is_empty() => Ok(Some(token.trim().to_string())),
        _ => bail!(
            "a webhook url is configured but LEADGATE_WEBHOOK_TOKEN is not set; set it to the \
             token the bot expects in `Authorization: Bearer`"
        ),
    }
}

/// A database that a one-off command uses.
struct OneOffDb {
    path: PathBuf,
    key: DbKey,
    /// The temporary folder of a database that is removed afterwards.
    _folder: Option<tempfile::TempDir>,
}

/// Returns the database a one-off command uses: the given one with the configured key,
/// else a file in a temporary folder, encrypted with a random key.
fn one_off_db(args: &ConfigArgs, settings: &Settings) -> anyhow::Result<OneOffDb> {
    match &args.db {
        Some(path) => Ok(OneOffDb {
            path: path.clone(),
            key: database_key(settings)?,
            _folder: None,
        }),
        None => {
            let folder = tempfile::tempdir().context("cannot create a temporary folder")?;
            Ok(OneOffDb {
                path: folder.path().join("leadgate.db"),
                key: DbKey::random(),
                _folder: Some(folder),
            })
        }
    }
}

/// Stores a lead, processes it and returns the processing time in seconds and the lead id.
async fn run_lead(pipeline: &Pipeline, lead: ValidLead) -> anyhow::Result<(i64, f64)> {
    let started = Instant::now();
    let id = match pipeline.accept(lead).await? {
        Inserted::Created(id) | Inserted::Reopened(id) => id,
        Inserted::Existing(id) | Inserted::ConsentRequired(id) => return Ok((id, 0.0)),
        Inserted::OtherKey => bail!("the lead's external id belongs to an API key's lead"),
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
    let settings = args.config.load()?;
    let db = one_off_db(&args.config, &settings)?;
    let pipeline = start_pipeline(settings, &db.path, &db.key)?;
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
        consent: ConsentGate::NotChecked,
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
    let settings = args.config.load()?;
    let db = one_off_db(&args.config, &settings)?;
    let pipeline = start_pipeline(settings, &db.path, &db.key)?;
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
            consent: ConsentGate::NotChecked,
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
