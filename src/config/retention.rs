//! The `[retention]` table: retention terms of personal data and the retention job.

use anyhow::bail;
use serde::Deserialize;

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
}
