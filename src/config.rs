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
    pub operator: Operator,
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
    operator: Option<Operator>,
    services: Option<Vec<Service>>,
    webhook: Option<Webhook>,
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
            operator,
            services,
            webhook,
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
        if webhook.is_some() {
            self.webhook = webhook;
        }
        if let Some(operator) = operator {
            self.operator = operator;
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
    fn unknown_key_is_rejected() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("leadgate.toml");
        std::fs::write(&path, "listne = \"127.0.0.1:9000\"\n")?;
        let error = Settings::load(Some(&path), &Overrides::default()).unwrap_err();
        assert!(format!("{error:#}").contains("listne"), "{error:#}");
        Ok(())
    }
}
