//! `leadgate retention …`, `leadgate subject …` and `leadgate journal …`.
//!
//! Each opens the same database as `serve` (`--config`, `--db`) and works while the server
//! runs on the file. Results go to standard output as JSON (CSV for the journal export);
//! progress goes to standard error.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::requests;
use super::retention;
use crate::consent::{Subject, SubjectKind};
use crate::db_admin::DbArgs;
use crate::store::acts;
use crate::store::journal::{self, Actor, Filter};

/// Rows of the journal read per query while exporting.
const EXPORT_PAGE_ROWS: usize = 1000;

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Deletes or anonymises what is past its retention term, writes a destruction act and
    /// prints a JSON report of what each rule removed.
    Run {
        #[command(flatten)]
        db: DbArgs,
        /// Report what would be removed, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Measure the terms from this RFC 3339 time instead of the clock (for tests).
        #[arg(long, hide = true)]
        now: Option<String>,
    },
    /// Prints destruction acts as JSON: all of them, or the one with --id.
    Acts {
        #[command(flatten)]
        db: DbArgs,
        /// The act id, as `retention run` or `subject erase` prints it.
        #[arg(long)]
        id: Option<i64>,
        /// Print plain text for signing instead of JSON.
        #[arg(long)]
        text: bool,
    },
}

/// The subject of a request: exactly one of its phone, e-mail or handle.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SubjectArgs {
    /// A phone number, in any form the redactor reads, such as +7 917 000-00-01.
    #[arg(long)]
    phone: Option<String>,
    /// An e-mail address; case is ignored.
    #[arg(long)]
    email: Option<String>,
    /// A messenger handle, with or without @; case is ignored.
    #[arg(long)]
    handle: Option<String>,
}

impl SubjectArgs {
    fn subject(&self) -> anyhow::Result<Subject> {
        let (kind, raw, flag) = match (&self.phone, &self.email, &self.handle) {
            (Some(phone), _, _) => (SubjectKind::Phone, phone, "--phone"),
            (_, Some(email), _) => (SubjectKind::Email, email, "--email"),
            (_, _, Some(handle)) => (SubjectKind::Handle, handle, "--handle"),
            _ => bail!("give one of --phone, --email or --handle"),
        };
        Ok(Subject::new(kind, raw, flag)?)
    }
}

#[derive(Debug, Subcommand)]
pub enum SubjectCommand {
    /// Prints everything held on one subject as JSON: leads with their original values,
    /// drafts, consent events and journal rows about them.
    Export {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        subject: SubjectArgs,
    },
    /// Removes or anonymises everything held on one subject, writes a destruction act and
    /// prints a JSON report; a repeated erase finds nothing and reports `found: false`.
    Erase {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        subject: SubjectArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Writes journal rows as CSV to standard output, oldest first.
    Export {
        #[command(flatten)]
        db: DbArgs,
        /// The first time to include, RFC 3339 (inclusive).
        #[arg(long)]
        from: Option<String>,
        /// The time to stop at, RFC 3339 (exclusive).
        #[arg(long)]
        to: Option<String>,
        /// Only rows of this action, such as lead_read.
        #[arg(long)]
        action: Option<String>,
    },
}

fn check_time(flag: &str, value: &Option<String>) -> anyhow::Result<()> {
    if let Some(value) = value {
        crate::clock::parse(value).with_context(|| format!("invalid {flag} `{value}`"))?;
    }
    Ok(())
}

/// Runs `leadgate retention …`.
pub fn retention(command: RetentionCommand) -> anyhow::Result<ExitCode> {
    match command {
        RetentionCommand::Run { db, dry_run, now } => {
            if let Some(now) = &now {
                let at =
                    crate::clock::parse(now).with_context(|| format!("invalid --now `{now}`"))?;
                crate::clock::fix(at)?;
            }
            let (settings, store) = db.open_existing()?;
            let now = crate::clock::now();
            // The spinner draws only when standard error is a terminal.
            let bar = indicatif::ProgressBar::new_spinner();
            let mut progress = |rule: &str, count: usize| {
                bar.set_message(format!("{rule}: {count} records"));
                bar.tick();
            };
            let report =
                retention::run(&store, &settings, now, Actor::Cli, dry_run, &mut progress)?;
            bar.finish_and_clear();
            let verb = if dry_run { "would remove" } else { "removed" };
            eprintln!("retention {verb} {} records", report.total());
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        RetentionCommand::Acts { db, id, text } => {
            let (_, store) = db.open_existing()?;
            let list = match id {
                Some(id) => {
                    let act = store.call_blocking(|conn| acts::load(conn, id))?;
                    let Some(act) = act else {
                        bail!("act {id} does not exist; `leadgate retention acts` lists them");
                    };
                    vec![act]
                }
                None => store.call_blocking(|conn| acts::list(conn, 0, usize::MAX))?,
            };
            if text {
                for act in &list {
                    println!("{}", super::acts::to_text(act));
                }
            } else if id.is_some() {
                println!("{}", serde_json::to_string_pretty(&list[0])?);
            } else {
                println!("{}", serde_json::to_string_pretty(&list)?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs `leadgate subject …`.
pub fn subject(command: SubjectCommand) -> anyhow::Result<ExitCode> {
    match command {
        SubjectCommand::Export { db, subject } => {
            let subject = subject.subject()?;
            let (_, store) = db.open_existing()?;
            let export =
                super::with_store(&store, |conn| requests::export(conn, &subject, Actor::Cli))?;
            println!("{}", serde_json::to_string_pretty(&export)?);
            Ok(ExitCode::SUCCESS)
        }
        SubjectCommand::Erase { db, subject } => {
            let subject = subject.subject()?;
            let (settings, store) = db.open_existing()?;
            let report = super::with_store(&store, |conn| {
                requests::erase(conn, &subject, Actor::Cli, &settings)
            })?;
            if report.found {
                eprintln!(
                    "erased {} leads; destruction act {}",
                    report.lead_ids.len(),
                    report.act_id.unwrap_or_default()
                );
            } else {
                eprintln!("nothing is held on this subject; nothing was erased");
            }
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The CSV columns of `journal export`.
const CSV_HEADER: [&str; 9] = [
    "id",
    "at",
    "action",
    "key_id",
    "role",
    "lead_id",
    "subject_id",
    "personal_fields",
    "details",
];

/// Runs `leadgate journal …`.
pub fn journal_command(command: JournalCommand) -> anyhow::Result<ExitCode> {
    let JournalCommand::Export {
        db,
        from,
        to,
        action,
    } = command;
    check_time("--from", &from)?;
    check_time("--to", &to)?;
    let (_, store) = db.open_existing()?;
    let stdout = std::io::stdout().lock();
    let mut writer = csv::Writer::from_writer(stdout);
    writer.write_record(CSV_HEADER)?;
    let mut filter = Filter {
        from,
        to,
        action,
        limit: EXPORT_PAGE_ROWS,
        ..Filter::default()
    };
    let mut rows = 0usize;
    loop {
        let page = store.call_blocking(|conn| journal::query(conn, &filter))?;
        let Some(last) = page.last() else { break };
        filter.after_id = Some(last.id);
        for row in &page {
            let optional = |value: Option<i64>| value.map(|v| v.to_string()).unwrap_or_default();
            writer.write_record([
                row.id.to_string(),
                row.at.clone(),
                row.action.clone(),
                optional(row.key_id),
                row.role.clone().unwrap_or_default(),
                optional(row.lead_id),
                optional(row.subject_id),
                serde_json::to_string(&row.personal_fields)?,
                row.details.to_string(),
            ])?;
        }
        rows += page.len();
    }
    writer.flush()?;
    drop(writer);
    std::io::stderr().flush().ok();
    eprintln!("exported {rows} journal rows");
    Ok(ExitCode::SUCCESS)
}
