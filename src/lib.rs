//! leadgate: an on-premise server that qualifies incoming chat leads with a local language
//! model, keeping personal data on the host.

pub mod cli;
pub mod engine;
pub mod models;
pub mod redact;
