//! Compliance steps under 152-FZ: retention with destruction acts, and the export and
//! erasure of everything held on one data subject.
//!
//! These steps use the store and the configuration and know nothing of HTTP; the command
//! line and the admin API both call them.

pub mod acts;
pub mod cli;
pub mod requests;
pub mod retention;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ComplianceError {
    #[error(transparent)]
    Store(#[from] StoreError),

    #[error(transparent)]
    InvalidSubject(#[from] crate::consent::InvalidSubject),
}

impl From<rusqlite::Error> for ComplianceError {
    fn from(error: rusqlite::Error) -> ComplianceError {
        ComplianceError::Store(StoreError::from(error))
    }
}

/// Runs `work` with the store's connection on the calling thread, keeping this layer's
/// error type.
pub fn with_store<R>(
    store: &crate::store::Store,
    work: impl FnOnce(&mut rusqlite::Connection) -> Result<R, ComplianceError>,
) -> Result<R, ComplianceError> {
    let mut result = None;
    store.call_blocking(|conn| {
        result = Some(work(conn));
        Ok(())
    })?;
    result.expect("call_blocking runs the work before it returns Ok")
}
