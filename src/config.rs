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
    pub retention: RetentionSettings,
    pub services: Vec<Service>,
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

/// A partial settings file: every key optional, merged over the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<SocketAddr>,
    db: Option<PathBuf>,
    model: Option<String>,
    threads: Option<usize>,
    queue_capacity: Option<usize>,
    wait_ms: Option<u64>,
    max_tokens: Option<usize>,
    retention: Option<RetentionSettings>,
    services: Option<Vec<Service>>,
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
}

impl Settings {
    /// Returns the built-in defaults (the example file).
    pub fn defaults() -> Settings {
        toml::from_str(EXAMPLE_TOML).expect("leadgate.example.toml is a valid configuration")
    }

    /// Reads the settings: the defaults, then `file` (or `leadgate.toml` in the current
    /// folder when it exists), then `overrides`.
    ///
    /// # Errors
    /// When the given file cannot be read, is not valid TOML, has an unknown key, or the
    /// merged catalog is invalid (see [`Settings::validate`]).
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Settings> {
        let mut settings = Settings::defaults();
        let implicit = Path::new("leadgate.toml");
        let path = match file {
            Some(path) => Some(path),
            None if implicit.is_file() => Some(implicit),
            None => None,
        };
        if let Some(path) = path {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read configuration file {}", path.display()))?;
            let parsed: FileSettings = toml::from_str(&text)
                .with_context(|| format!("invalid configuration file {}", path.display()))?;
            settings.merge(parsed);
        }
        settings.apply(overrides);
        settings
            .retention
            .apply_env(|name| std::env::var(name).ok())?;
        settings.validate()?;
        Ok(settings)
    }

    fn merge(&mut self, file: FileSettings) {
        let FileSettings {
            listen,
            db,
            model,
            threads,
            queue_capacity,
            wait_ms,
            max_tokens,
            retention,
            services,
        } = file;
        self.apply(&Overrides {
            listen,
            db,
            model,
            threads,
            queue_capacity,
            wait_ms,
            max_tokens,
        });
        if let Some(services) = services {
            self.services = services;
        }
        if let Some(retention) = retention {
            self.retention = retention;
        }
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
        self.retention.validate()?;
        if self.max_tokens < 32 {
            bail!(
                "max_tokens is {}; a qualification needs at least 32",
                self.max_tokens
            );
        }
        Ok(())
    }

    pub fn wait(&self) -> Duration {
        Duration::from_millis(self.wait_ms)
    }

    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.id == id)
    }
}

/// The removal method for a lead past its term or of a subject who requested erasure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadMethod {
    /// The lead row goes with everything that refers to it.
    Delete,
    /// Text, contact data, draft and summary go; the lead's service, intent, score and
    /// times stay for statistics.
    Anonymise,
}

/// Retention terms and the retention job, the `[retention]` table. A key missing from the
/// file keeps its default, the values below; `LEADGATE_RETENTION_<KEY>` overrides a key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// The operator of personal data named in destruction acts.
    pub operator: String,
    /// Days a lead is kept after it was stored.
    pub lead_days: u32,
    /// Days a draft reply is kept after it was written.
    pub draft_days: u32,
    /// Days a lead with health data (a special category under 152-FZ) is kept.
    pub special_category_days: u32,
    /// Days the consent events of a subject are kept after the consent was withdrawn.
    pub consent_log_days: u32,
    /// Days a journal row is kept.
    pub journal_days: u32,
    /// Days after a withdrawal of consent within which the subject's data is erased.
    pub withdrawal_erase_days: u32,
    pub method: LeadMethod,
    /// Records removed per transaction; a crash loses at most the batch in progress.
    pub batch_size: usize,
    /// Minutes between runs of the retention job inside `serve`; 0 turns it off.
    pub run_every_minutes: u64,
}

impl Default for RetentionSettings {
    fn default() -> RetentionSettings {
        RetentionSettings {
            operator: String::new(),
            lead_days: 365,
            draft_days: 365,
            special_category_days: 183,
            consent_log_days: 1095,
            journal_days: 1095,
            withdrawal_erase_days: 30,
            method: LeadMethod::Delete,
            batch_size: 500,
            run_every_minutes: 1440,
        }
    }
}

impl RetentionSettings {
    /// Applies `LEADGATE_RETENTION_<KEY>` variables, read through `lookup`.
    ///
    /// # Errors
    /// When a variable's value does not parse, naming the variable.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        fn number<T: std::str::FromStr>(
            lookup: &impl Fn(&str) -> Option<String>,
            key: &str,
            target: &mut T,
        ) -> anyhow::Result<()> {
            let name = format!("LEADGATE_RETENTION_{}", key.to_uppercase());
            if let Some(value) = lookup(&name) {
                *target = value
                    .trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{name} must be a whole number, not `{value}`"))?;
            }
            Ok(())
        }
        if let Some(operator) = lookup("LEADGATE_RETENTION_OPERATOR") {
            self.operator = operator;
        }
        number(&lookup, "lead_days", &mut self.lead_days)?;
        number(&lookup, "draft_days", &mut self.draft_days)?;
        number(
            &lookup,
            "special_category_days",
            &mut self.special_category_days,
        )?;
        number(&lookup, "consent_log_days", &mut self.consent_log_days)?;
        number(&lookup, "journal_days", &mut self.journal_days)?;
        number(
            &lookup,
            "withdrawal_erase_days",
            &mut self.withdrawal_erase_days,
        )?;
        number(&lookup, "batch_size", &mut self.batch_size)?;
        number(&lookup, "run_every_minutes", &mut self.run_every_minutes)?;
        if let Some(value) = lookup("LEADGATE_RETENTION_METHOD") {
            self.method = match value.trim() {
                "delete" => LeadMethod::Delete,
                "anonymise" => LeadMethod::Anonymise,
                _ => bail!("LEADGATE_RETENTION_METHOD must be `delete` or `anonymise`"),
            };
        }
        Ok(())
    }

    /// Checks that every term is at least a day and the batch size is 1 to 100000.
    pub fn validate(&self) -> anyhow::Result<()> {
        let terms = [
            ("lead_days", self.lead_days),
            ("draft_days", self.draft_days),
            ("special_category_days", self.special_category_days),
            ("consent_log_days", self.consent_log_days),
            ("journal_days", self.journal_days),
        ];
        for (key, days) in terms {
            if days == 0 {
                bail!("retention.{key} is 0; a term must be at least 1 day");
            }
        }
        if !(1..=100_000).contains(&self.batch_size) {
            bail!(
                "retention.batch_size is {}; expected 1 to 100000",
                self.batch_size
            );
        }
        Ok(())
    }

    /// Returns the operator for destruction acts, or a note that it is not configured.
    pub fn operator_or_note(&self) -> String {
        let operator = self.operator.trim();
        if operator.is_empty() {
            "not configured (set retention.operator)".to_string()
        } else {
            operator.to_string()
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
}
