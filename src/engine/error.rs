//! Errors of the inference engine.
//!
//! Messages name the file, key or limit that failed and never quote prompt or output text,
//! because prompts may hold a lead's words.

use std::path::PathBuf;

/// An error raised while loading a model or generating with it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read model file {path}: {source}")]
    ModelIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid GGUF file {path}: {message}")]
    InvalidGguf { path: PathBuf, message: String },

    #[error(
        "unsupported model architecture `{architecture}` (supported: {})",
        super::model::SUPPORTED_ARCHITECTURES.join(", ")
    )]
    UnsupportedArchitecture { architecture: String },

    #[error("cannot build the tokenizer: {message}")]
    Tokenizer { message: String },

    #[error("cannot render the chat template: {message}")]
    ChatTemplate { message: String },

    #[error("invalid JSON schema: {message}")]
    InvalidSchema { message: String },

    #[error(
        "the prompt has {prompt} tokens and up to {requested} more were requested, but the \
         model's context holds {limit} tokens; shorten the prompt or request fewer tokens"
    )]
    PromptTooLong {
        prompt: usize,
        requested: usize,
        limit: usize,
    },

    #[error("invalid generation parameter `{name}`: {message}")]
    InvalidParameter { name: &'static str, message: String },

    #[error("the engine queue is full ({capacity} requests waiting); retry later")]
    Overloaded { capacity: usize },

    #[error("the engine has stopped")]
    Stopped,

    #[error("the request was cancelled by its caller")]
    Cancelled,

    #[error("constrained decoding failed: {message}")]
    Constraint { message: String },

    #[error("model computation failed: {0}")]
    Compute(#[from] candle_core::Error),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
