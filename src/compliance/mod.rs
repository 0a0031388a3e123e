//! Compliance steps under 152-FZ: retention with destruction acts, and the export and
//! erasure of everything held on one data subject.
//!
//! These steps use the store and the configuration and know nothing of HTTP; the command
//! line and the admin API both call them.

pub mod acts;
pub mod cli;
pub mod requests;
pub mod retention;
pub mod subject;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ComplianceError {
    #[error(transparent)]
    Store(#[from] StoreError),

    #[error(transparent)]
    InvalidSubject(#[from] subject::InvalidSubject),
}

impl From<rusqlite::Error> for ComplianceError {
    fn from(error: rusqlite::Error) -> ComplianceError {
        ComplianceError::Store(StoreError::from(error))
    }
}
