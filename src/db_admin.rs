//! The database key from the settings, the store opened with it, and the commands that
//! maintain the database file: `leadgate backup` and `leadgate db rekey`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::config::{Overrides, Settings, read_key_file};
use crate::store::{self, DbKey, Store};

/// Returns the overrides of the database settings from the environment. The key's
/// settings have no flags, so that nothing about a key is typed on a command line, where
/// `ps` and the shell history would show it.
pub fn database_overrides() -> anyhow::Result<Overrides> {
    let busy_timeout_ms = match std::env::var("LEADGATE_DB_BUSY_TIMEOUT_MS") {
        Ok(value) => Some(value.parse().map_err(|_| {
            anyhow::anyhow!("invalid LEADGATE_DB_BUSY_TIMEOUT_MS: expected milliseconds")
        })?),
        Err(_) => None,
    };
    Ok(Overrides {
        db_key_file: std::env::var_os("LEADGATE_DB_KEY_FILE").map(PathBuf::from),
        db_unencrypted: env_flag("LEADGATE_DB_UNENCRYPTED")?,
        busy_timeout_ms,
        ..Overrides::default()
    })
}

/// Reads a yes-or-no environment variable: 1, true or yes, and 0, false or no.
fn env_flag(name: &str) -> anyhow::Result<Option<bool>> {
    let Some(value) = std::env::var_os(name) else {
        return Ok(None);
    };
    match value.to_str().map(str::to_ascii_lowercase).as_deref() {
        Some("1" | "true" | "yes") => Ok(Some(true)),
        Some("0" | "false" | "no" | "") => Ok(Some(false)),
        _ => bail!("invalid {name}: expected 1 or 0"),
    }
}

/// Returns the configured database key, and warns when the database is unencrypted.
pub fn database_key(settings: &Settings) -> anyhow::Result<DbKey> {
    let key = settings.database_key()?;
    if key == DbKey::Unencrypted {
        tracing::warn!(
            database = %settings.db.display(),
            "the database is NOT encrypted (database.unencrypted is set); use this for \
             development only"
        );
    }
    if let Some(path) = &settings.database.key_file {
        warn_if_others_can_read(path);
    }
    Ok(key)
}

/// Warns when a key file is readable by its group or by other users.
fn warn_if_others_can_read(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                key_file = %path.display(),
                mode = format!("{:o}", metadata.permissions().mode() & 0o777),
                "the database key file is readable by other users; run chmod 600 on it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Opens the store at `db` with `key`.
pub fn open_store(settings: &Settings, db: &Path, key: &DbKey) -> anyhow::Result<Store> {
    Store::open(db, key, settings.busy_timeout())
        .with_context(|| format!("cannot open database {}", db.display()))
}

/// The configuration file and database options shared with `serve`.
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
    fn load(&self) -> anyhow::Result<Settings> {
        let overrides = Overrides {
            db: self.db.clone(),
            ..database_overrides()?
        };
        Settings::load(self.config.as_deref(), &overrides)
    }

    /// Reads the settings and opens (or creates) the database they name.
    pub fn open(&self) -> anyhow::Result<(Settings, Store)> {
        let settings = self.load()?;
        let key = database_key(&settings)?;
        let store = open_store(&settings, &settings.db, &key)?;
        Ok((settings, store))
    }

    /// Opens the database like [`DbArgs::open`], but fails when the file does not exist.
    /// Commands that report or erase use it, so that a misspelt `--db` is an error rather
    /// than a new, empty database that reports no data.
    pub fn open_existing(&self) -> anyhow::Result<(Settings, Store)> {
        let settings = self.load()?;
        if !settings.db.exists() {
            anyhow::bail!(
                "database {} does not exist; check --db, LEADGATE_DB or `db` in the \
                 configuration",
                settings.db.display()
            );
        }
        let key = database_key(&settings)?;
        let store = open_store(&settings, &settings.db, &key)?;
        Ok((settings, store))
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
