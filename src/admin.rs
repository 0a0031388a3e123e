//! Commands that manage the database without the model: `leadgate keys …` and
//! `leadgate consent …`.
//!
//! Each opens the same database as `serve` (`--config`, `--db`) and works while the server
//! runs on the file: SQLite in WAL mode lets both write, and the server reads keys from the
//! database on every request.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::auth::{self, Role};
use crate::config::Settings;
use crate::consent;
use crate::db_admin::DbArgs;
use crate::store::Store;
use crate::store::consent as stored_consent;
use crate::store::keys::{self as stored_keys, Revoked};

/// The maximum length of a key name, in characters.
const MAX_KEY_NAME_CHARS: usize = 100;

/// Opens the database like [`DbArgs::open`], and loads the shipped consent text as the
/// server does on its first start, so that the consent commands see the same version 1.
fn open_with_consent_text(db: &DbArgs) -> anyhow::Result<(Settings, Store)> {
    let (settings, store) = db.open()?;
    let shipped = consent::shipped_text(&settings.operator)?;
    store.call_blocking(|conn| stored_consent::seed_text(conn, &shipped))?;
    Ok((settings, store))
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Creates an API key and prints it once, on the last line of standard output.
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// The key's role: bot, staff or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// A label for the key's user, such as "telegram bot", shown by `keys list`.
        #[arg(long)]
        name: String,
    },
    /// Prints every key as JSON: id, name, role, prefix, creation and revocation time.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revokes a key by its id; requests with it get 401 from then on.
    Revoke {
        #[command(flatten)]
        db: DbArgs,
        /// The key id, as `keys list` prints it.
        id: i64,
    },
}

fn parse_role(value: &str) -> Result<Role, String> {
    Role::parse(value)
        .ok_or_else(|| format!("invalid role `{value}`: expected bot, staff or admin"))
}

/// Runs `leadgate keys …`.
pub fn keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Create { db, role, name } => {
            let name = name.trim().to_string();
            if name.is_empty() || name.chars().count() > MAX_KEY_NAME_CHARS {
                bail!("--name must have 1 to {MAX_KEY_NAME_CHARS} characters");
            }
            let (_, store) = db.open()?;
            let key = auth::generate_key().context("the system random source failed")?;
            let id = store.call_blocking(|conn| {
                stored_keys::insert_key(conn, &name, role, &key.prefix, &key.sha256)
            })?;
            let info = serde_json::json!({
                "id": id, "name": name, "role": role, "prefix": key.prefix,
            });
            eprintln!("the key is printed once, on the last line of standard output; store it now");
            println!("{info}");
            println!("{}", key.secret);
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::List { db } => {
            let (_, store) = db.open_existing()?;
            let keys = store.call_blocking(|conn| stored_keys::list_keys(conn))?;
            println!("{}", serde_json::to_string_pretty(&keys)?);
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Revoke { db, id } => {
            let (_, store) = db.open_existing()?;
            match store.call_blocking(|conn| stored_keys::revoke_key(conn, id))? {
                Revoked::Now => eprintln!("key {id} revoked"),
                Revoked::Already => eprintln!("key {id} was already revoked"),
                Revoked::NotFound => {
                    bail!("key {id} does not exist; `leadgate keys list` shows the ids")
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Lists, shows, adds and activates consent text versions.
    #[command(subcommand)]
    Texts(TextsCommand),
    /// Prints the consent log as JSON Lines, oldest first. The output contains the
    /// subjects' phones, e-mails and handles.
    Log {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Recomputes the consent log's hash chain and prints the result as JSON; exits with
    /// status 1 when a row was changed, removed or reordered.
    Verify {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TextsCommand {
    /// Prints every version of every purpose as JSON.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Prints one version as JSON.
    Show {
        #[command(flatten)]
        db: DbArgs,
        /// The purpose, such as lead_processing.
        purpose: String,
        version: i64,
    },
    /// Adds the next, inactive version of a purpose from a TOML file in the format of
    /// prompts/consent.ru.toml, and prints it as JSON.
    Add {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        file: PathBuf,
    },
    /// Makes a version the one new consents refer to by default.
    Activate {
        #[command(flatten)]
        db: DbArgs,
        /// The purpose, such as lead_processing.
        purpose: String,
        version: i64,
    },
}

/// Runs `leadgate consent …`.
pub fn consent(command: ConsentCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConsentCommand::Texts(command) => texts(command),
        ConsentCommand::Log { db } => {
            let (_, store) = db.open_existing()?;
            let mut stdout = std::io::stdout().lock();
            store.call_blocking(|conn| {
                stored_consent::read_log(conn, |record| {
                    let line = serde_json::to_string(&record).map_err(|e| {
                        crate::store::StoreError::Corrupt {
                            column: "consent_log",
                            message: e.to_string(),
                        }
                    })?;
                    // A closed pipe (`| head`) ends the output early; that is not an error.
                    let _ = writeln!(stdout, "{line}");
                    Ok(())
                })
            })?;
            Ok(ExitCode::SUCCESS)
        }
        ConsentCommand::Verify { db } => {
            let (_, store) = db.open_existing()?;
            let report = store.call_blocking(|conn| stored_consent::verify_chain(conn))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if let Some(error) = &report.error {
                eprintln!("error: {}", error.message);
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn texts(command: TextsCommand) -> anyhow::Result<ExitCode> {
    let text = match command {
        TextsCommand::List { db } => {
            let (_, store) = open_with_consent_text(&db)?;
            let texts = store.call_blocking(|conn| stored_consent::list_texts(conn))?;
            println!("{}", serde_json::to_string_pretty(&texts)?);
            return Ok(ExitCode::SUCCESS);
        }
        TextsCommand::Show {
            db,
            purpose,
            version,
        } => {
            let (_, store) = open_with_consent_text(&db)?;
            store
                .call_blocking(|conn| stored_consent::get_text(conn, &purpose, version))?
                .with_context(|| {
                    format!(
                        "consent text {purpose} version {version} does not exist; \
                         `leadgate consent texts list` shows the versions"
                    )
                })?
        }
        TextsCommand::Add { db, file } => {
            let source = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let input = consent::parse_text_file(&source)
                .with_context(|| format!("invalid consent text file {}", file.display()))?;
            let (settings, store) = open_with_consent_text(&db)?;
            let new_text = consent::prepare_text(input, &settings.operator)
                .with_context(|| format!("invalid consent text in {}", file.display()))?;
            store.call_blocking(|conn| stored_consent::add_text(conn, &new_text, None))?
        }
        TextsCommand::Activate {
            db,
            purpose,
            version,
        } => {
            let (_, store) = open_with_consent_text(&db)?;
            store.call_blocking(|conn| {
                stored_consent::activate_text(conn, &purpose, version, None)
            })?
        }
    };
    println!("{}", serde_json::to_string_pretty(&text)?);
    Ok(ExitCode::SUCCESS)
}
