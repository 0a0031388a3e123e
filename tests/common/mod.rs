//! Shared helpers of the integration tests: where the models are, and one loaded copy of
//! each model per test binary.

#![allow(dead_code)]

pub mod server;
pub mod ui;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

use leadgate::engine::LoadedModel;

pub const SMOLLM: &str = "smollm2-135m-instruct";
pub const QWEN: &str = "qwen2.5-coder-0.5b-instruct";

/// Returns the repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Returns the folder with the fetched models: `LEADGATE_MODELS_DIR`, else `models/`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("LEADGATE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models"))
}

/// Returns the path of a fetched model, or fails the test with the command to fetch it.
pub fn model_path(name: &str) -> PathBuf {
    leadgate::models::resolve(name, &models_dir())
        .unwrap_or_else(|e| panic!("{e} (the tests need `models/fetch {name}` first)"))
}

fn shared(
    cell: &'static OnceLock<Mutex<LoadedModel>>,
    name: &str,
) -> MutexGuard<'static, LoadedModel> {
    cell.get_or_init(|| {
        let path = model_path(name);
        Mutex::new(LoadedModel::load(&path).unwrap_or_else(|e| panic!("cannot load {name}: {e}")))
    })
    .lock()
    .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Locks the test model, loaded once per test binary, so tests that use it run one at a time.
pub fn smollm() -> MutexGuard<'static, LoadedModel> {
    static CELL: OnceLock<Mutex<LoadedModel>> = OnceLock::new();
    shared(&CELL, SMOLLM)
}

/// Locks the default model, loaded once per test binary.
pub fn qwen() -> MutexGuard<'static, LoadedModel> {
    static CELL: OnceLock<Mutex<LoadedModel>> = OnceLock::new();
    shared(&CELL, QWEN)
}

/// Returns the path of the labelled lead corpus (`LEADGATE_CORPUS`, else the shared copy).
pub fn corpus_path() -> PathBuf {
    std::env::var_os("LEADGATE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/corpus/leads-dev.jsonl"))
}
