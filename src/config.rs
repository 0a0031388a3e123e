//! Settings of the server and the commands that share its database: read from
//! `leadgate.toml`, then overridden by `LEADGATE_…` variables and command-line flags.
//!
//! The built-in defaults are the example file shipped in the repository root, so the two
//! cannot drift apart. Environment variables and flags are applied by clap (`env = …` on
//! each flag, see `cli.rs`), which gives the order file < variable < flag.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::store::DbKey;

mod retention;

pub use retention::{LeadMethod, RetentionSettings};

/// The commented example configuration; its values are the built-in defaults.
pub const EXAMPLE_TOML: &str = include_str!("../leadgate.example.toml");

/// The service ids that the API and the labelled corpus use.
pub const SERVICE_IDS: [&str; 10] = [
    "dentistry",
    "cosmetology",
    "hair",
    "nails",
    "massage",
    "gynecology",
    "therapy",
    "lab_tests",
    "auto_service",
    "other",
];

/// All settings, with file values already merged over the defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    pub db: PathBuf,
    pub model: String,
    /// Compute threads; 0 means one per core.
    pub threads: usize,
    pub queue_capacity: usize,
    /// Milliseconds `POST /v1/leads` waits for the model before it answers 202.
    pub wait_ms: u64,
    pub max_tokens: usize,
    pub database: DatabaseSettings,
    #[serde(default)]
    pub tls: TlsSettings,
    pub limits: Limits,
    pub operator: Operator,
    pub retention: RetentionSettings,
    pub services: Vec<Service>,
    /// Where approved replies are sent; `None` leaves the bot to poll `GET /v1/replies`.
    #[serde(default)]
    pub webhook: Option<Webhook>,
}

/// The bot's reply webhook. Its bearer token comes from the environment variable
/// `LEADGATE_WEBHOOK_TOKEN`, never from this file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// An http:// or https:// URL that receives each approved reply as a JSON POST.
    pub url: String,
    /// Attempts per reply before its delivery is marked failed.
    #[serde(default = "default_webhook_attempts")]
    pub max_attempts: u32,
    /// Milliseconds before the first retry; each later retry waits twice as long, up to
    /// ten minutes.
    #[serde(default = "default_webhook_first_retry_ms")]
    pub first_retry_ms: u64,
    /// Milliseconds one attempt may take, connecting included.
    #[serde(default = "default_webhook_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_webhook_attempts() -> u32 {
    8
}

fn default_webhook_first_retry_ms() -> u64 {
    2000
}

fn default_webhook_timeout_ms() -> u64 {
    10_000
}

/// Database settings: where the key comes from, the unencrypted mode and the lock wait.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// A file that contains the SQLCipher passphrase; `LEADGATE_DB_KEY` wins over it.
    pub key_file: Option<PathBuf>,
    /// True to keep the database as a plain SQLite file, for development only.
    pub unencrypted: bool,
    /// Milliseconds a statement waits for another connection's lock before it fails.
    pub busy_timeout_ms: u64,
}

/// The PEM certificate chain and private key of HTTPS; plain HTTP when both are absent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Limits on what one client may send and how long each step may take.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The largest total size of a request's headers, in bytes.
    pub max_header_bytes: usize,
    /// Milliseconds a client has to send the request headers, and again the body.
    pub request_timeout_ms: u64,
    /// Requests per minute one API key may make to `POST /v1/leads`; 0 turns the
    /// limit off.
    pub rate_per_minute: u32,
    /// Requests one API key may make at once after a quiet period.
    pub rate_burst: u32,
}

/// The operator of personal data, named in the consent text.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// The full legal name.
    pub name: String,
    /// INN and OGRN (or OGRNIP).
    pub registration: String,
    pub address: String,
    /// The e-mail or postal address for a client's withdrawal of consent or request about
    /// their data.
    pub contact: String,
    /// The public page with the personal data processing policy.
    pub policy_url: String,
    /// True while the values are the shipped examples.
    #[serde(default)]
    pub is_example: bool,
}

/// One entry of the service catalog.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub id: String,
    /// The Russian name shown to clients.
    pub name: String,
    /// Word beginnings (Russian, transliterated, English) that point to this service.
    #[serde(default)]
    pub stems: Vec<String>,
    /// Price range in roubles; `None` when the service has no price to quote.
    pub price_from: Option<u32>,
    pub price_to: Option<u32>,
    /// True while the prices are the shipped examples rather than the operator's own.
    #[serde(default)]
    pub price_is_example: bool,
    /// What staff need to know from the client before booking, in Russian.
    pub ask_for: String,
}

/// Overrides from environment variables and flags; `None` keeps the file's value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub db: Option<PathBuf>,
    pub model: Option<String>,
    pub threads: Option<usize>,
    pub queue_capacity: Option<usize>,
    pub wait_ms: Option<u64>,
    pub max_tokens: Option<usize>,
    pub db_key_file: Option<PathBuf>,
    pub db_unencrypted: Option<bool>,
    pub busy_timeout_ms: Option<u64>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub max_body_bytes: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub request_timeout_ms: Option<u64>,
    pub rate_per_minute: Option<u32>,
    pub rate_burst: Option<u32>,
}

impl Settings {
    /// Returns the built-in defaults (the example file).
    pub fn defaults() -> Settings {
        toml::from_str(EXAMPLE_TOML).expect("leadgate.example.toml is a valid configuration")
    }

    /// Reads the settings: the defaults, then `file` (or `leadgate.toml` in the current
    /// folder when it exists), then `overrides`. A table in the file, such as
    /// `[database]`, changes only the keys it names; `services` replaces the catalog.
    ///
    /// # Errors
    /// When the given file cannot be read, is not valid TOML, has an unknown key, or the
    /// merged settings are invalid (see [`Settings::validate`]).
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Settings> {
        let mut merged: toml::Table =
            toml::from_str(EXAMPLE_TOML).expect("leadgate.example.toml is valid TOML");
        let implicit = Path::new("leadgate.toml");
        let path = match file {
            Some(path) => Some(path),
            None if implicit.is_file() => Some(implicit),
            None => None,
        };
        if let Some(path) = path {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read configuration file {}", path.display()))?;
            let table: toml::Table = toml::from_str(&text)
                .with_context(|| format!("invalid configuration file {}", path.display()))?;
            merge_tables(&mut merged, table);
        }
        let mut settings: Settings = merged.try_into().with_context(|| match path {
            Some(path) => format!("invalid configuration file {}", path.display()),
            None => "invalid built-in configuration".to_string(),
        })?;
        settings.apply(overrides);
        settings
            .retention
            .apply_env(|name| std::env::var(name).ok())?;
        settings.validate()?;
        Ok(settings)
    }

    fn apply(&mut self, overrides: &Overrides) {
        let o = overrides.clone();
        self.listen = o.listen.unwrap_or(self.listen);
        self.db = o.db.unwrap_or_else(|| self.db.clone());
        self.model = o.model.unwrap_or_else(|| self.model.clone());
        self.threads = o.threads.unwrap_or(self.threads);
        self.queue_capacity = o.queue_capacity.unwrap_or(self.queue_capacity);
        self.wait_ms = o.wait_ms.unwrap_or(self.wait_ms);
        self.max_tokens = o.max_tokens.unwrap_or(self.max_tokens);
        if o.db_key_file.is_some() {
            self.database.key_file = o.db_key_file;
        }
        self.database.unencrypted = o.db_unencrypted.unwrap_or(self.database.unencrypted);
        self.database.busy_timeout_ms = o.busy_timeout_ms.unwrap_or(self.database.busy_timeout_ms);
        if o.tls_cert.is_some() {
            self.tls.cert = o.tls_cert;
        }
        if o.tls_key.is_some() {
            self.tls.key = o.tls_key;
        }
        let limits = &mut self.limits;
        limits.max_body_bytes = o.max_body_bytes.unwrap_or(limits.max_body_bytes);
        limits.max_header_bytes = o.max_header_bytes.unwrap_or(limits.max_header_bytes);
        limits.request_timeout_ms = o.request_timeout_ms.unwrap_or(limits.request_timeout_ms);
        limits.rate_per_minute = o.rate_per_minute.unwrap_or(limits.rate_per_minute);
        limits.rate_burst = o.rate_burst.unwrap_or(limits.rate_burst);
    }

    /// Checks the catalog: every id known and present once, `other` included, and price
    /// ranges in order.
    pub fn validate(&self) -> anyhow::Result<()> {
        for service in &self.services {
            if !SERVICE_IDS.contains(&service.id.as_str()) {
                bail!(
                    "unknown service id `{}` in the catalog; known ids: {}",
                    service.id,
                    SERVICE_IDS.join(", ")
                );
            }
            if self.services.iter().filter(|s| s.id == service.id).count() > 1 {
                bail!("service id `{}` appears twice in the catalog", service.id);
            }
            if let (Some(from), Some(to)) = (service.price_from, service.price_to)
                && from > to
            {
                bail!(
                    "service `{}`: price_from ({from}) is above price_to ({to})",
                    service.id
                );
            }
        }
        if !self.services.iter().any(|s| s.id == "other") {
            bail!("the catalog needs a service with id `other` for leads that fit no service");
        }
        if let Some(webhook) = &self.webhook {
            if !(webhook.url.starts_with("http://") || webhook.url.starts_with("https://")) {
                bail!("webhook.url must start with http:// or https://");
            }
            if webhook.max_attempts == 0 {
                bail!("webhook.max_attempts is 0; at least one attempt is needed");
            }
        }
        let operator = &self.operator;
        let fields = [
            ("name", &operator.name),
            ("registration", &operator.registration),
            ("address", &operator.address),
            ("contact", &operator.contact),
            ("policy_url", &operator.policy_url),
        ];
        for (field, value) in fields {
            if value.trim().is_empty() {
                bail!("operator.{field} is empty; the consent text needs it");
            }
        }
        if !operator.policy_url.starts_with("https://")
            && !operator.policy_url.starts_with("http://")
        {
            bail!("operator.policy_url must be an http:// or https:// address");
        }
        self.retention.validate()?;
        if self.max_tokens < 32 {
            bail!(
                "max_tokens is {}; a qualification needs at least 32",
                self.max_tokens
            );
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            bail!(
                "tls.cert and tls.key must be set together \
                 (LEADGATE_TLS_CERT and LEADGATE_TLS_KEY)"
            );
        }
        let limits = &self.limits;
        if limits.max_body_bytes < 1024 {
            bail!(
                "limits.max_body_bytes is {}; the minimum is 1024",
                limits.max_body_bytes
            );
        }
        if limits.max_header_bytes < 8192 {
            bail!(
                "limits.max_header_bytes is {}; the minimum is 8192",
                limits.max_header_bytes
            );
        }
        if limits.request_timeout_ms == 0 {
            bail!("limits.request_timeout_ms must be above 0");
        }
        if limits.rate_per_minute > 0 && limits.rate_burst == 0 {
            bail!("limits.rate_burst must be at least 1 while limits.rate_per_minute is above 0");
        }
        Ok(())
    }

    /// Returns the database key: `LEADGATE_DB_KEY`, else the content of
    /// `database.key_file`, else [`DbKey::Unencrypted`] when `database.unencrypted` is set.
    ///
    /// # Errors
    /// [`KeyError`] when no key is configured, a key and the unencrypted mode are both
    /// set, or the key file cannot be read or is empty.
    pub fn database_key(&self) -> Result<DbKey, KeyError> {
        key_from_sources(std::env::var_os(DB_KEY_VAR), &self.database)
    }

    pub fn busy_timeout(&self) -> Duration {
        Duration::from_millis(self.database.busy_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.request_timeout_ms)
    }

    pub fn wait(&self) -> Duration {
        Duration::from_millis(self.wait_ms)
    }

    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.id == id)
    }
}

/// The environment variable with the database passphrase.
pub const DB_KEY_VAR: &str = "LEADGATE_DB_KEY";

/// Why no database key could be read; no variant holds any part of a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the database key is missing: set LEADGATE_DB_KEY, or database.key_file \
         (LEADGATE_DB_KEY_FILE) to a file that contains the key; for development only, \
         database.unencrypted = true (LEADGATE_DB_UNENCRYPTED=1) keeps the file unencrypted"
    )]
    Missing,

    #[error(
        "database.unencrypted (LEADGATE_DB_UNENCRYPTED) is set together with a database key \
         (LEADGATE_DB_KEY or database.key_file); remove one of them"
    )]
    Conflict,

    #[error("cannot read the database key file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("the database key in {place} is empty or not UTF-8 text")]
    Invalid { place: String },
}

/// Picks the key from the variable's value and the database settings.
fn key_from_sources(
    from_env: Option<std::ffi::OsString>,
    database: &DatabaseSettings,
) -> Result<DbKey, KeyError> {
    let passphrase = match (from_env, &database.key_file) {
        (Some(value), _) => Some(passphrase_text(value.into_string().ok(), DB_KEY_VAR)?),
        (None, Some(path)) => Some(read_key_file(path)?),
        (None, None) => None,
    };
    match (passphrase, database.unencrypted) {
        (Some(_), true) => Err(KeyError::Conflict),
        (Some(passphrase), false) => Ok(DbKey::Passphrase(passphrase)),
        (None, true) => Ok(DbKey::Unencrypted),
        (None, false) => Err(KeyError::Missing),
    }
}

/// Reads a passphrase from a file, without the line break an editor or `echo` adds.
pub fn read_key_file(path: &Path) -> Result<String, KeyError> {
    let bytes = std::fs::read(path).map_err(|source| KeyError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes)
        .ok()
        .map(|text| text.trim_end_matches(['\n', '\r']).to_string());
    passphrase_text(text, &path.display().to_string())
}

fn passphrase_text(text: Option<String>, place: &str) -> Result<String, KeyError> {
    match text {
        Some(text) if !text.is_empty() => Ok(text),
        _ => Err(KeyError::Invalid {
            place: place.to_string(),
        }),
    }
}

/// Merges `overlay` into `base`: tables key by key, any other value replaced whole.
fn merge_tables(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(overlay_table)) => {
                merge_tables(base_table, overlay_table);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn defaults_hold_every_service_id() {
        let settings = Settings::defaults();
        settings.validate().unwrap();
        for id in SERVICE_IDS {
            assert!(settings.service(id).is_some(), "missing {id}");
        }
    }

    #[test]
    fn overrides_win_over_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("leadgate.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\nwait_ms = 5\n")?;
        let overrides = Overrides {
            wait_ms: Some(7),
            ..Overrides::default()
        };
        let settings = Settings::load(Some(&path), &overrides)?;
        assert_eq!(settings.listen.port(), 9000);
        assert_eq!(settings.wait_ms, 7);
        Ok(())
    }

    #[test]
    fn retention_defaults_match_example() {
        assert_eq!(Settings::defaults().retention, RetentionSettings::default());
    }

    #[test]
    fn retention_file_and_env_override() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("leadgate.toml");
        std::fs::write(
            &path,
            "[retention]\nlead_days = 30\nmethod = \"anonymise\"\n",
        )?;
        let mut settings = Settings::load(Some(&path), &Overrides::default())?;
        assert_eq!(settings.retention.lead_days, 30);
        assert_eq!(settings.retention.method, LeadMethod::Anonymise);
        assert_eq!(
            settings.retention.journal_days, 1095,
            "a missing key lost its default"
        );
        let env = |name: &str| (name == "LEADGATE_RETENTION_LEAD_DAYS").then(|| "7".to_string());
        settings.retention.apply_env(env)?;
        assert_eq!(settings.retention.lead_days, 7);
        let bad = |name: &str| (name == "LEADGATE_RETENTION_BATCH_SIZE").then(|| "x".to_string());
        let error = settings.retention.apply_env(bad).unwrap_err();
        assert!(
            error.to_string().contains("LEADGATE_RETENTION_BATCH_SIZE"),
            "{error}"
        );
        Ok(())
    }

    #[test]
    fn unknown_key_is_rejected() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("leadgate.toml");
        std::fs::write(&path, "listne = \"127.0.0.1:9000\"\n")?;
        let error = Settings::load(Some(&path), &Overrides::default()).unwrap_err();
        assert!(format!("{error:#}").contains("listne"), "{error:#}");
        Ok(())
    }

    fn database(key_file: Option<PathBuf>, unencrypted: bool) -> DatabaseSettings {
        DatabaseSettings {
            key_file,
            unencrypted,
            busy_timeout_ms: 5000,
        }
    }

    #[test]
    fn key_comes_from_env_then_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("db.key");
        std::fs::write(&file, "from the file\r\n")?;
        let settings = database(Some(file.clone()), false);
        let key = key_from_sources(Some("from env".into()), &settings)?;
        assert_eq!(key, DbKey::Passphrase("from env".into()));
        let key = key_from_sources(None, &settings)?;
        assert_eq!(key, DbKey::Passphrase("from the file".into()));
        Ok(())
    }

    #[test]
    fn key_problems_are_named() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let missing = key_from_sources(None, &database(None, false)).unwrap_err();
        assert!(matches!(missing, KeyError::Missing), "{missing}");
        let unencrypted = key_from_sources(None, &database(None, true))?;
        assert_eq!(unencrypted, DbKey::Unencrypted);
        let both = key_from_sources(Some("key".into()), &database(None, true)).unwrap_err();
        assert!(matches!(both, KeyError::Conflict), "{both}");
        let empty_env = key_from_sources(Some("".into()), &database(None, false)).unwrap_err();
        assert!(matches!(empty_env, KeyError::Invalid { .. }), "{empty_env}");
        let empty = dir.path().join("empty.key");
        std::fs::write(&empty, "\n")?;
        let error = key_from_sources(None, &database(Some(empty), false)).unwrap_err();
        assert!(matches!(error, KeyError::Invalid { .. }), "{error}");
        let absent = dir.path().join("absent.key");
        let error = key_from_sources(None, &database(Some(absent), false)).unwrap_err();
        assert!(matches!(error, KeyError::Unreadable { .. }), "{error}");
        Ok(())
    }

    #[test]
    fn file_table_changes_only_its_keys() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("leadgate.toml");
        std::fs::write(
            &path,
            "[limits]\nrate_burst = 5\n[database]\nunencrypted = true\n",
        )?;
        let settings = Settings::load(Some(&path), &Overrides::default())?;
        let defaults = Settings::defaults();
        assert_eq!(settings.limits.rate_burst, 5);
        assert_eq!(
            settings.limits.rate_per_minute,
            defaults.limits.rate_per_minute
        );
        assert_eq!(
            settings.limits.max_body_bytes,
            defaults.limits.max_body_bytes
        );
        assert!(settings.database.unencrypted);
        assert_eq!(settings.services.len(), defaults.services.len());
        std::fs::write(&path, "[limits]\nrate_brust = 5\n")?;
        let error = Settings::load(Some(&path), &Overrides::default()).unwrap_err();
        assert!(format!("{error:#}").contains("rate_brust"), "{error:#}");
        Ok(())
    }
}
