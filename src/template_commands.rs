//! `leadgate templates …`: the response template versions in the database, from the
//! command line. Works while `leadgate serve` runs on the same file.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::db_admin::DbArgs;
use crate::draft::{self, templates as checks};
use crate::store::journal::Actor;
use crate::store::templates::{self as versions, Activation};
use crate::store::{Author, queries};

#[derive(Debug, Args)]
pub struct TemplatesArgs {
    #[command(subcommand)]
    pub command: TemplatesCommand,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// The template kind, such as booking_reply or reminder_24h.
    pub kind: String,

    /// The service id for a template that applies to one service only.
    #[arg(long)]
    pub service: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Prints every template key with its active and newest version as JSON; with KIND,
    /// prints that key's versions with who saved each and when.
    List {
        #[command(flatten)]
        db: DbArgs,
        kind: Option<String>,
        #[arg(long)]
        service: Option<String>,
    },
    /// Prints the body of the active version, or of --version N.
    Show {
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long)]
        version: Option<i64>,
    },
    /// Saves a new version from --file or standard input and prints it as JSON.
    Save {
        #[command(flatten)]
        key: KeyArgs,
        /// The file with the template body; standard input when absent.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Also make the new version the active one.
        #[arg(long)]
        activate: bool,
        /// The name recorded as the author.
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// Makes VERSION the active version of the key.
    Activate {
        #[command(flatten)]
        key: KeyArgs,
        version: i64,
        /// The name recorded as the author.
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// Makes the newest version older than the active one active again.
    Rollback {
        #[command(flatten)]
        key: KeyArgs,
        /// The name recorded as the author.
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// Prints the unified line difference from version FROM to version TO.
    Diff {
        #[command(flatten)]
        key: KeyArgs,
        from: i64,
        to: i64,
    },
}

impl TemplatesCommand {
    fn db(&self) -> &DbArgs {
        match self {
            TemplatesCommand::List { db, .. } => db,
            TemplatesCommand::Show { key, .. }
            | TemplatesCommand::Save { key, .. }
            | TemplatesCommand::Activate { key, .. }
            | TemplatesCommand::Rollback { key, .. }
            | TemplatesCommand::Diff { key, .. } => &key.db,
        }
    }
}

fn cli_actor(name: &str) -> Author {
    Author {
        actor: Actor::Cli,
        name: name.to_string(),
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn read_body(file: Option<&PathBuf>) -> anyhow::Result<String> {
    match file {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
        }
        None => {
            let mut body = String::new();
            std::io::stdin()
                .read_to_string(&mut body)
                .context("cannot read the template from standard input (UTF-8 expected)")?;
            Ok(body)
        }
    }
}

fn print_activation(key: &KeyArgs, activation: Activation, missing: &str) -> anyhow::Result<()> {
    match activation {
        Activation::Done { version, previous } => print_json(&serde_json::json!({
            "active": version,
            "previous_version": previous,
        })),
        Activation::NoSuchVersion => bail!("template `{}`: {missing}", key.kind),
    }
}

/// Runs `leadgate templates …`.
pub fn run(args: TemplatesArgs) -> anyhow::Result<ExitCode> {
    let (settings, store) = args.command.db().open()?;
    let shipped = draft::shipped_templates();
    store.call_blocking(|conn| queries::seed_templates(conn, &shipped))?;
    let check = |kind: &str, service: Option<&str>| checks::check_key(kind, service, &settings);
    match args.command {
        TemplatesCommand::List { kind: None, .. } => {
            print_json(&store.call_blocking(|conn| versions::list_keys(conn))?)?;
        }
        TemplatesCommand::List {
            kind: Some(kind),
            service,
            ..
        } => {
            check(&kind, service.as_deref())?;
            let list = store
                .call_blocking(|conn| versions::list_versions(conn, &kind, service.as_deref()))?;
            print_json(&list)?;
        }
        TemplatesCommand::Show { key, version } => {
            check(&key.kind, key.service.as_deref())?;
            let service = key.service.as_deref();
            let found = store.call_blocking(|conn| match version {
                Some(version) => versions::get_version(conn, &key.kind, service, version),
                None => versions::active_version(conn, &key.kind, service),
            })?;
            let Some(found) = found else {
                bail!(
                    "template `{}` has no such version for this service",
                    key.kind
                );
            };
            eprintln!(
                "{} version {}{}, saved by {} at {}",
                found.kind,
                found.version,
                if found.active { " (active)" } else { "" },
                found.saved_by,
                found.created_at
            );
            println!("{}", found.body);
        }
        TemplatesCommand::Save {
            key,
            file,
            activate,
            by,
        } => {
            check(&key.kind, key.service.as_deref())?;
            let body = read_body(file.as_ref())?;
            checks::check_body(&body)?;
            let saved = store.call_blocking(|conn| {
                versions::save_version(
                    conn,
                    &key.kind,
                    key.service.as_deref(),
                    &body,
                    activate,
                    &cli_actor(&by),
                )
            })?;
            print_json(&saved)?;
        }
        TemplatesCommand::Activate { key, version, by } => {
            check(&key.kind, key.service.as_deref())?;
            let activation = store.call_blocking(|conn| {
                versions::activate(
                    conn,
                    &key.kind,
                    key.service.as_deref(),
                    version,
                    &cli_actor(&by),
                )
            })?;
            print_activation(&key, activation, &format!("no version {version}"))?;
        }
        TemplatesCommand::Rollback { key, by } => {
            check(&key.kind, key.service.as_deref())?;
            let activation = store.call_blocking(|conn| {
                versions::rollback(conn, &key.kind, key.service.as_deref(), &cli_actor(&by))
            })?;
            print_activation(&key, activation, "no version older than the active one")?;
        }
        TemplatesCommand::Diff { key, from, to } => {
            check(&key.kind, key.service.as_deref())?;
            let service = key.service.as_deref();
            let (old, new) = store.call_blocking(|conn| {
                Ok((
                    versions::get_version(conn, &key.kind, service, from)?,
                    versions::get_version(conn, &key.kind, service, to)?,
                ))
            })?;
            let (Some(old), Some(new)) = (old, new) else {
                bail!("template `{}` lacks version {from} or {to}", key.kind);
            };
            let label = |v: i64| format!("{} v{v}", key.kind);
            print!(
                "{}",
                checks::diff(&old.body, &new.body, &label(from), &label(to))
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
