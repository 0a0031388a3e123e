//! The inference engine: GGUF models run with candle on the CPU, output optionally held to
//! a JSON schema.
//!
//! The engine takes text and returns text; it does not depend on leads, HTTP or storage.
//! Callers must hand it text that is already redacted.

mod attention;
pub mod chat;
pub mod constraint;
pub mod error;
pub mod generate;
mod kernels;
pub mod model;
pub mod sampling;
pub mod tokenizer;
pub mod worker;

pub use chat::{ChatMessage, Role};
pub use error::EngineError;
pub use generate::{
    FinishReason, GenerateRequest, Generation, LoadedModel, ModelInfo, Prompt, Timings,
};
pub use sampling::Sampling;
pub use worker::{Engine, EngineStats};

/// Sets the number of threads candle computes with. It takes effect only before the first
/// tensor operation, because candle builds its thread pool once.
///
/// # Safety
/// It writes the process environment, so no other thread may read or write the environment
/// while it runs. Call it at start, before other threads exist.
pub unsafe fn set_threads(threads: usize) {
    let threads = threads.max(1).to_string();
    // SAFETY: the caller guarantees that no other thread uses the environment now.
    unsafe {
        std::env::set_var("CANDLE_NUM_THREADS", &threads);
        std::env::set_var("RAYON_NUM_THREADS", &threads);
    }
}
