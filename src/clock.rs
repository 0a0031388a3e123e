//! The current time, with an override for tests of time-based rules such as retention.
//!
//! `LEADGATE_NOW` (an RFC 3339 time) or the hidden `--now` flag of the retention commands
//! fixes the clock for the whole process. Every stored timestamp and every retention
//! cutoff comes from [`now`], so a test can age the data without waiting.

use std::sync::OnceLock;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The environment variable that fixes the clock.
pub const NOW_VAR: &str = "LEADGATE_NOW";

static FIXED: OnceLock<Option<OffsetDateTime>> = OnceLock::new();

/// Fixes the clock at `at` for the rest of the process.
///
/// # Errors
/// When the clock was already read or fixed, so that earlier timestamps would disagree.
pub fn fix(at: OffsetDateTime) -> Result<(), ClockError> {
    FIXED.set(Some(at)).map_err(|_| ClockError::AlreadySet)
}

/// Parses an RFC 3339 time such as `2027-01-01T00:00:00Z`.
///
/// # Errors
/// When `value` is not an RFC 3339 time.
pub fn parse(value: &str) -> Result<OffsetDateTime, ClockError> {
    OffsetDateTime::parse(value.trim(), &Rfc3339).map_err(|_| ClockError::Invalid)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error("invalid time: expected RFC 3339, such as 2027-01-01T00:00:00Z")]
    Invalid,
    #[error("the clock was read before it could be fixed")]
    AlreadySet,
}

/// Returns the current UTC time, or the fixed time when `LEADGATE_NOW` or `--now` set one.
///
/// An invalid `LEADGATE_NOW` is ignored with a warning, because this function cannot fail;
/// the commands that take `--now` check the value themselves first.
pub fn now() -> OffsetDateTime {
    let fixed = FIXED.get_or_init(|| {
        let value = std::env::var(NOW_VAR).ok()?;
        match parse(&value) {
            Ok(at) => {
                tracing::warn!(now = %value, "the clock is fixed by {NOW_VAR}; use this for tests only");
                Some(at)
            }
            Err(_) => {
                tracing::warn!("{NOW_VAR} is not an RFC 3339 time; using the system clock");
                None
            }
        }
    });
    fixed.unwrap_or_else(OffsetDateTime::now_utc)
}

/// Formats a time as RFC 3339 in UTC, the format of every stored time.
pub fn format(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .expect("a UTC time formats as RFC 3339")
}
