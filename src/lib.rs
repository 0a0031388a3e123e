//! leadgate: an on-premise server that qualifies incoming chat leads with a local language
//! model, keeping personal data on the host.

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod compliance;
pub mod config;
pub mod consent;
pub mod db_admin;
pub mod draft;
pub mod engine;
pub mod http;
pub mod models;
pub mod pipeline;
pub mod qualify;
pub mod redact;
pub mod review;
pub mod store;
pub mod template_commands;
pub mod webhook;
