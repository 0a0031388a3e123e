//! Commands that manage the database without the model: `leadgate keys …`.
//!
//! Each opens the same database as `serve` (`--config`, `--db`) and works while the server
//! runs on the file: SQLite in WAL mode lets both write, and the server reads keys from the
//! database on every request.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::auth::{self, Role};
use crate::config::{Overrides, Settings};
use crate::store::Store;
use crate::store::keys::{self as stored_keys, Revoked};

/// The maximum length of a key name, in characters.
const MAX_KEY_NAME_CHARS: usize = 100;

/// Options of every command that opens the database.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// The configuration file; by default leadgate.toml in the current folder, if present.
    #[arg(long, env = "LEADGATE_CONFIG")]
    pub config: Option<PathBuf>,

    /// The SQLite database file; by default `db` from the configuration.
    #[arg(long, env = "LEADGATE_DB")]
    pub db: Option<PathBuf>,
}

impl DbArgs {
    /// Reads the settings and opens (or creates) the database they name.
    pub fn open(&self) -> anyhow::Result<(Settings, Store)> {
        let overrides = Overrides {
            db: self.db.clone(),
            ..Overrides::default()
        };
        let settings = Settings::load(self.config.as_deref(), &overrides)?;
        let store = Store::open(&settings.db)
            .with_context(|| format!("cannot open database {}", settings.db.display()))?;
        Ok((settings, store))
    }
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
            let (_, store) = db.open()?;
            let keys = store.call_blocking(|conn| stored_keys::list_keys(conn))?;
            println!("{}", serde_json::to_string_pretty(&keys)?);
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Revoke { db, id } => {
            let (_, store) = db.open()?;
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
