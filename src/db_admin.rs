//! The commands that maintain the database file: `leadgate backup` and `leadgate db rekey`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::app::database_key;
use crate::config::{Overrides, Settings, read_key_file};
use crate::store::{self, DbKey};

/// The configuration file and database options shared with `serve`.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// The configuration file; by default leadgate.toml in the current folder, if present.
    #[arg(long, env = "LEADGATE_CONFIG")]
    pub config: Option<PathBuf>,

    /// The SQLite database file.
    #[arg(long, env = "LEADGATE_DB")]
    pub db: Option<PathBuf>,
}

impl DbArgs {
    fn load(&self) -> anyhow::Result<Settings> {
        let overrides = Overrides {
            db: self.db.clone(),
            ..crate::app::database_overrides()?
        };
        Settings::load(self.config.as_deref(), &overrides)
    }
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub database: DbArgs,

    /// The backup file to write.
    pub path: PathBuf,

    /// A file with the backup's own passphrase; by default the backup uses the database
    /// key. LEADGATE_BACKUP_KEY sets the passphrase itself.
    #[arg(long, env = "LEADGATE_BACKUP_KEY_FILE")]
    pub key_file: Option<PathBuf>,

    /// Replace the file at PATH when it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Re-encrypts the database with a new key, from LEADGATE_NEW_DB_KEY or
    /// --new-key-file. Stop `leadgate serve` first.
    Rekey(RekeyArgs),
}

#[derive(Debug, Args)]
pub struct RekeyArgs {
    #[command(flatten)]
    pub database: DbArgs,

    /// A file with the new passphrase; LEADGATE_NEW_DB_KEY sets the passphrase itself.
    #[arg(long, env = "LEADGATE_NEW_DB_KEY_FILE")]
    pub new_key_file: Option<PathBuf>,
}

/// Reads a passphrase from the variable `variable`, else from `file`.
fn passphrase_from(variable: &str, file: Option<&Path>) -> anyhow::Result<Option<DbKey>> {
    if let Some(value) = std::env::var_os(variable) {
        match value.into_string() {
            Ok(text) if !text.is_empty() => return Ok(Some(DbKey::Passphrase(text))),
            _ => bail!("{variable} is empty or not UTF-8 text"),
        }
    }
    match file {
        Some(path) => Ok(Some(DbKey::Passphrase(read_key_file(path)?))),
        None => Ok(None),
    }
}

fn existing_db(settings: &Settings) -> anyhow::Result<&Path> {
    if !settings.db.is_file() {
        bail!(
            "the database {} does not exist; set --db or LEADGATE_DB",
            settings.db.display()
        );
    }
    Ok(&settings.db)
}

/// Runs `leadgate backup PATH`.
pub fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let settings = args.database.load()?;
    let db = existing_db(&settings)?;
    let key = database_key(&settings)?;
    if args.path.exists()
        && std::fs::canonicalize(&args.path).ok() == std::fs::canonicalize(db).ok()
    {
        bail!(
            "the backup path {} is the database itself; choose another file",
            args.path.display()
        );
    }
    let backup_key = passphrase_from("LEADGATE_BACKUP_KEY", args.key_file.as_deref())?
        .unwrap_or_else(|| key.clone());
    if backup_key == DbKey::Unencrypted {
        tracing::warn!("the backup is NOT encrypted, because the database is not");
    }
    let started = Instant::now();
    let conn = store::open_connection(db, &key, settings.busy_timeout())
        .with_context(|| format!("cannot open database {}", db.display()))?;
    let bytes = store::backup::backup(&conn, &args.path, &backup_key, args.force)
        .with_context(|| format!("backup to {} failed", args.path.display()))?;
    let report = serde_json::json!({
        "backup": args.path.display().to_string(),
        "bytes": bytes,
        "encrypted": backup_key != DbKey::Unencrypted,
        "elapsed_ms": started.elapsed().as_millis() as u64,
    });
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// Runs `leadgate db …`.
pub fn db_command(command: DbCommand) -> anyhow::Result<ExitCode> {
    match command {
        DbCommand::Rekey(args) => rekey(args),
    }
}

fn rekey(args: RekeyArgs) -> anyhow::Result<ExitCode> {
    let settings = args.database.load()?;
    let db = existing_db(&settings)?;
    let old_key = database_key(&settings)?;
    let Some(new_key) = passphrase_from("LEADGATE_NEW_DB_KEY", args.new_key_file.as_deref())?
    else {
        bail!("the new key is missing: set LEADGATE_NEW_DB_KEY or --new-key-file");
    };
    let started = Instant::now();
    store::backup::rekey(db, &old_key, &new_key, settings.busy_timeout())
        .with_context(|| format!("rekey of {} failed", db.display()))?;
    eprintln!(
        "the database is encrypted with the new key now; set LEADGATE_DB_KEY or \
         database.key_file to it before the next start"
    );
    let report = serde_json::json!({
        "rekeyed": db.display().to_string(),
        "elapsed_ms": started.elapsed().as_millis() as u64,
    });
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}
