//! Command-line interface: argument parsing and the commands that need no server.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::engine::{
    self, ChatMessage, FinishReason, GenerateRequest, LoadedModel, Prompt, Sampling,
};
use crate::models::{self, FileState};

#[derive(Debug, Parser)]
#[command(
    name = "leadgate",
    version,
    about = "Qualifies chat leads with a local language model"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the HTTP server: the /v1 API (every endpoint needs an API key), /healthz,
    /// /readyz, /metrics and /openapi.json.
    Serve(crate::app::ServeArgs),
    /// Qualifies one lead (from --text or standard input) through the server's path and
    /// prints the result as JSON.
    Qualify(crate::app::QualifyArgs),
    /// Runs a labelled JSON Lines file through the server's path and prints the accuracy
    /// per field and the seconds per lead.
    Eval(crate::app::EvalArgs),
    /// Writes an encrypted, consistent copy of the database to PATH, also while `serve`
    /// runs, and prints its size as JSON.
    Backup(crate::db_admin::BackupArgs),
    /// Maintains the database file.
    #[command(subcommand)]
    Db(crate::db_admin::DbCommand),
    /// Runs the model on one prompt and prints its output; speeds go to standard error.
    Generate(GenerateArgs),
    /// Fetches, lists and verifies model files.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Creates, lists and revokes API keys.
    #[command(subcommand)]
    Keys(crate::admin::KeysCommand),
    /// Manages consent texts, prints the consent log and verifies its hash chain.
    #[command(subcommand)]
    Consent(crate::admin::ConsentCommand),
    /// Lists, shows, saves, activates, rolls back and compares response template versions.
    Templates(crate::template_commands::TemplatesArgs),
    /// Runs the retention job and prints destruction acts.
    #[command(subcommand)]
    Retention(crate::compliance::cli::RetentionCommand),
    /// Exports or erases everything held on one data subject.
    #[command(subcommand)]
    Subject(crate::compliance::cli::SubjectCommand),
    /// Exports the processing journal.
    #[command(subcommand)]
    Journal(crate::compliance::cli::JournalCommand),
    /// Prints the token ids of a text as JSON, control-token text parsed as control tokens.
    Tokenize(TokenizeArgs),
    /// Reads one text from standard input and prints it redacted, with the spans found and
    /// the health-data flag, as JSON.
    Redact {
        /// Also print the original values: the mapping from placeholders back to them,
        /// and each span's normalized value (a phone number in E.164 form, for example).
        #[arg(long)]
        mapping: bool,
    },
    /// Scores the redactor on a labelled JSON Lines file (fields `text`, `pii`,
    /// `special_category`) and prints precision and recall per type as JSON.
    EvalRedaction {
        /// The labelled file, such as leads-dev.jsonl.
        file: PathBuf,
        /// Also list every disagreement with its text (personal data from the file).
        #[arg(long)]
        misses: bool,
    },
}

#[derive(Debug, Args)]
pub struct TokenizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// The text to tokenize.
    #[arg(long)]
    pub text: String,
}

#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A GGUF path, a model name from `leadgate model list`, or hf:OWNER/REPO/FILE.gguf.
    #[arg(long, env = "LEADGATE_MODEL", default_value = models::DEFAULT_MODEL)]
    pub model: String,

    /// Threads for the model's computations; by default one per core.
    #[arg(long, env = "LEADGATE_THREADS")]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// The user message.
    #[arg(long)]
    pub prompt: String,

    /// A system message placed before the user message.
    #[arg(long)]
    pub system: Option<String>,

    /// Use the prompt as it is, without the chat template.
    #[arg(long, conflicts_with = "system")]
    pub raw: bool,

    /// A JSON Schema file the output must match.
    #[arg(long)]
    pub schema: Option<PathBuf>,

    /// Maximum number of tokens to generate.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,

    /// Sampling temperature; 0 picks the most likely token every time.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,

    /// Nucleus sampling: keep the most likely tokens whose probabilities add up to this.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,

    /// Seed of the sampler, for repeatable sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Downloads a known model with `models/fetch` and verifies its SHA-256.
    Fetch {
        /// Model names, as `leadgate model list` shows them.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Lists the known models and whether each is present.
    List,
    /// Verifies the size and SHA-256 of present model files (all, or the named ones).
    Check {
        /// Model names, as `leadgate model list` shows them; all present models when empty.
        names: Vec<String>,
    },
}

/// Applies `--threads` and loads the model named by `--model`.
pub fn load_model(args: &ModelArgs) -> anyhow::Result<LoadedModel> {
    if let Some(threads) = args.threads {
        // candle's workers spin while they wait, so threads beyond the cores only slow it.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if threads == 0 || threads > cores {
            bail!("invalid --threads {threads}: expected 1 to {cores}, the number of CPU cores");
        }
        // SAFETY: the command line is parsed on the main thread before any thread starts.
        unsafe { engine::set_threads(threads) };
    }
    let path = models::resolve(&args.model, &models::models_dir())?;
    let model =
        LoadedModel::load(&path).with_context(|| format!("cannot load {}", path.display()))?;
    let info = model.info();
    eprintln!(
        "loaded {} ({}, {:.0} MB) in {:.2} s",
        path.display(),
        info.architecture,
        info.file_bytes as f64 / 1e6,
        info.load_ms / 1000.0
    );
    Ok(model)
}

pub fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let schema = match &args.schema {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read schema file {}", path.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("schema file {} is not valid JSON", path.display()))?;
            Some(value)
        }
        None => None,
    };
    let prompt = if args.raw {
        Prompt::Text(args.prompt.clone())
    } else {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage::system(system.clone()));
        }
        messages.push(ChatMessage::user(args.prompt.clone()));
        Prompt::Chat(messages)
    };
    if args.prompt.trim().is_empty() {
        bail!("--prompt is empty: give the text for the model to continue");
    }
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        bail!(
            "invalid --temperature {}: expected 0 (greedy) or a positive number up to 10",
            args.temperature
        );
    }
    let sampling = if args.temperature > 0.0 {
        Sampling::TopP {
            temperature: args.temperature,
            top_p: args.top_p,
            seed: args.seed,
        }
    } else {
        Sampling::Greedy
    };
    let mut model = load_model(&args.model)?;
    let request = GenerateRequest {
        prompt,
        schema,
        max_tokens: args.max_tokens,
        sampling,
    };
    let prepared = model.prepare(&request)?;
    let generation = model.generate(prepared, &|| false)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", generation.text)?;
    let t = &generation.timings;
    eprintln!(
        "prompt: {} tokens in {:.0} ms ({:.1} tokens/s); generated: {} tokens ({} forced) \
         in {:.0} ms ({:.1} tokens/s)",
        t.prompt_tokens,
        t.prompt_ms,
        t.prompt_tokens as f64 / (t.prompt_ms / 1000.0).max(1e-9),
        t.generated_tokens,
        t.forced_tokens,
        t.generate_ms,
        t.generated_tokens as f64 / (t.generate_ms / 1000.0).max(1e-9),
    );
    if generation.finish_reason == FinishReason::Length && request.schema.is_some() {
        eprintln!(
            "error: the output was truncated at {} tokens and is not valid JSON; \
             raise --max-tokens",
            request.max_tokens
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn tokenize(args: TokenizeArgs) -> anyhow::Result<ExitCode> {
    let model = load_model(&args.model)?;
    let ids = model.tokenizer().encode_special(&args.text)?;
    println!("{}", serde_json::to_string(&ids)?);
    Ok(ExitCode::SUCCESS)
}

pub fn redact(with_mapping: bool) -> anyhow::Result<ExitCode> {
    let mut input = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut input)
        .context("cannot read standard input")?;
    let text = String::from_utf8(input).map_err(|e| {
        anyhow::anyhow!(
            "standard input is not valid UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    let redaction = crate::redact::redact(&text);
    let mut spans = serde_json::to_value(&redaction.spans)?;
    if !with_mapping {
        // A normalized value is the original personal data in another form.
        for span in spans.as_array_mut().into_iter().flatten() {
            if let Some(span) = span.as_object_mut() {
                span.remove("normalized");
            }
        }
    }
    let mut output = serde_json::json!({
        "text": redaction.text,
        "spans": spans,
        "special_category": redaction.special_category,
        "health_terms": redaction.health_terms,
    });
    if with_mapping {
        output["mapping"] = serde_json::to_value(&redaction.mapping)?;
    }
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(ExitCode::SUCCESS)
}

pub fn eval_redaction(file: &std::path::Path, with_misses: bool) -> anyhow::Result<ExitCode> {
    let input =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut report = crate::redact::evaluate(&input);
    if report.messages == 0 {
        bail!(
            "{} contains no labelled messages (one JSON object with `text` per line)",
            file.display()
        );
    }
    if !with_misses {
        report.misses.clear();
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

pub fn model_command(command: ModelCommand) -> anyhow::Result<ExitCode> {
    let dir = models::models_dir();
    match command {
        ModelCommand::Fetch { names } => {
            for name in &names {
                models::find(name)?;
            }
            let script = dir.join("fetch");
            if !script.is_file() {
                bail!(
                    "the fetch script {} does not exist; run leadgate from the repository \
                     folder or set LEADGATE_MODELS_DIR",
                    script.display()
                );
            }
            let status = std::process::Command::new(&script)
                .args(&names)
                .status()
                .with_context(|| format!("cannot run {}", script.display()))?;
            Ok(if status.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        ModelCommand::List => {
            println!(
                "{:<30} {:<9} {:>8}  {:<8} file",
                "name", "role", "MB", "present"
            );
            for entry in models::catalog() {
                let present = dir.join(&entry.file).is_file();
                println!(
                    "{:<30} {:<9} {:>8.0}  {:<8} {}",
                    entry.name,
                    entry.role,
                    entry.bytes as f64 / 1e6,
                    if present { "yes" } else { "no" },
                    dir.join(&entry.file).display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Check { names } => {
            for name in &names {
                models::find(name)?;
            }
            let mut failed = false;
            for entry in models::catalog() {
                if !names.is_empty() && !names.contains(&entry.name) {
                    continue;
                }
                let state = models::check(&entry, &dir)?;
                let verdict = match &state {
                    FileState::Verified => "ok".to_string(),
                    FileState::Missing if names.is_empty() => continue,
                    FileState::Missing => "missing".to_string(),
                    FileState::WrongSize { actual } => {
                        format!("wrong size: {actual} bytes, expected {}", entry.bytes)
                    }
                    FileState::WrongHash { actual } => {
                        format!("wrong SHA-256: {actual}, expected {}", entry.sha256)
                    }
                };
                failed |= state != FileState::Verified;
                println!("{}: {verdict}", entry.name);
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => crate::app::serve(args),
        Command::Qualify(args) => crate::app::qualify(args),
        Command::Eval(args) => crate::app::eval(args),
        Command::Backup(args) => crate::db_admin::backup(args),
        Command::Db(command) => crate::db_admin::db_command(command),
        Command::Generate(args) => generate(args),
        Command::Model(command) => model_command(command),
        Command::Keys(command) => crate::admin::keys(command),
        Command::Consent(command) => crate::admin::consent(command),
        Command::Templates(args) => crate::template_commands::run(args),
        Command::Retention(command) => crate::compliance::cli::retention(command),
        Command::Subject(command) => crate::compliance::cli::subject(command),
        Command::Journal(command) => crate::compliance::cli::journal_command(command),
        Command::Tokenize(args) => tokenize(args),
        Command::Redact { mapping } => redact(mapping),
        Command::EvalRedaction { file, misses } => eval_redaction(&file, misses),
    }
}
