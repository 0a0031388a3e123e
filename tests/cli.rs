//! The `leadgate` binary: generate, tokenize, model list and check, and hf: references
//! resolved from a Hugging Face cache laid out in a temporary folder.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn leadgate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leadgate"));
    command
        .env("LEADGATE_MODELS_DIR", common::models_dir())
        .env("LEADGATE_THREADS", "2")
        .env_remove("LEADGATE_MODEL")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_HOME")
        // Nothing here may reach the network: a download attempt goes to a closed port.
        .env("HF_ENDPOINT", "http://127.0.0.1:9");
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[test]
fn generate_prints_output_and_speeds() {
    let output = leadgate()
        .args([
            "generate",
            "--model",
            common::SMOLLM,
            "--raw",
            "--max-tokens",
            "8",
        ])
        .args(["--prompt", "The capital of France is"])
        .output()
        .unwrap();
    assert_ok(&output);
    assert!(
        text(&output.stdout).contains("Paris"),
        "{}",
        text(&output.stdout)
    );
    let stderr = text(&output.stderr);
    assert!(stderr.contains("tokens/s"), "{stderr}");
    assert!(stderr.contains("llama"), "{stderr}");
}

#[test]
fn generate_under_a_schema_prints_json_and_flags_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","properties":{"answer":{"enum":["да","нет"]}},"required":["answer"]}"#,
    )
    .unwrap();
    let run = |max_tokens: &str| {
        leadgate()
            .args([
                "generate",
                "--model",
                common::SMOLLM,
                "--max-tokens",
                max_tokens,
            ])
            .args(["--prompt", "Москва — столица России?", "--schema"])
            .arg(&schema)
            .output()
            .unwrap()
    };
    let complete = run("40");
    assert_ok(&complete);
    let value: serde_json::Value = serde_json::from_str(text(&complete.stdout).trim()).unwrap();
    assert!(
        value["answer"] == "да" || value["answer"] == "нет",
        "{value}"
    );

    let truncated = run("2");
    assert_eq!(
        truncated.status.code(),
        Some(2),
        "{}",
        text(&truncated.stderr)
    );
    assert!(text(&truncated.stderr).contains("truncated"));
}

#[test]
fn bad_arguments_get_clear_errors() {
    let missing = leadgate()
        .args([
            "generate",
            "--model",
            "/nonexistent/model.gguf",
            "--prompt",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("/nonexistent/model.gguf"));

    let unknown = leadgate()
        .args(["generate", "--model", "no-such-model", "--prompt", "x"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown.stderr).contains(common::SMOLLM),
        "known names are listed"
    );

    for threads in ["0", "100000"] {
        let invalid = leadgate()
            .args(["generate", "--model", common::SMOLLM, "--prompt", "x"])
            .args(["--threads", threads])
            .output()
            .unwrap();
        assert_eq!(invalid.status.code(), Some(1));
        assert!(text(&invalid.stderr).contains("invalid --threads"));
    }

    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("bad.json");
    std::fs::write(&schema, r#"{"type": "strin"}"#).unwrap();
    let invalid = leadgate()
        .args([
            "generate",
            "--model",
            common::SMOLLM,
            "--prompt",
            "x",
            "--schema",
        ])
        .arg(&schema)
        .output()
        .unwrap();
    assert_eq!(invalid.status.code(), Some(1));
    assert!(
        text(&invalid.stderr).contains("invalid JSON schema"),
        "{}",
        text(&invalid.stderr)
    );
}

#[test]
fn tokenize_prints_ids() {
    let output = leadgate()
        .args([
            "tokenize",
            "--model",
            common::SMOLLM,
            "--text",
            "<|im_start|>Привет",
        ])
        .output()
        .unwrap();
    assert_ok(&output);
    let ids: Vec<u32> = serde_json::from_str(text(&output.stdout).trim()).unwrap();
    assert_eq!(ids[0], 1, "<|im_start|> is id 1 in SmolLM2");
    assert!(ids.len() > 1);
}

#[test]
fn model_list_and_check() {
    let list = leadgate().args(["model", "list"]).output().unwrap();
    assert_ok(&list);
    let listing = text(&list.stdout);
    let row = listing
        .lines()
        .find(|l| l.starts_with(common::SMOLLM))
        .expect("the test model is listed");
    assert!(row.contains("yes"), "{row}");

    let check = leadgate()
        .args(["model", "check", common::SMOLLM])
        .output()
        .unwrap();
    assert_ok(&check);
    assert!(text(&check.stdout).contains(&format!("{}: ok", common::SMOLLM)));

    // A file of the wrong size where the test model belongs fails the check.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("SmolLM2-135M-Instruct.Q4_1.gguf"), b"short").unwrap();
    let bad = leadgate()
        .env("LEADGATE_MODELS_DIR", dir.path())
        .args(["model", "check", common::SMOLLM])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stdout).contains("wrong size"),
        "{}",
        text(&bad.stdout)
    );
}

/// Lays out `file` in a Hugging Face cache the way hf-hub leaves a finished download.
fn hub_cache_with(cache: &Path, repo: &str, file: &str, source: &Path) {
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs/main"), commit).unwrap();
    let snapshot = repo_dir.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::os::unix::fs::symlink(source, snapshot.join(file)).unwrap();
}

#[test]
fn hf_reference_resolves_from_the_cache_offline() {
    let cache = tempfile::tempdir().unwrap();
    let source = common::model_path(common::SMOLLM);
    hub_cache_with(cache.path(), "someone/smollm-gguf", "smol.gguf", &source);

    let resolved = leadgate::models::resolve_hub(
        "someone/smollm-gguf/smol.gguf",
        &hf_hub::Cache::new(cache.path().to_path_buf()),
    )
    .unwrap();
    assert_eq!(
        std::fs::canonicalize(resolved).unwrap(),
        std::fs::canonicalize(&source).unwrap()
    );

    let output = leadgate()
        .env("HF_HUB_CACHE", cache.path())
        .env("HF_HUB_OFFLINE", "1")
        .args([
            "generate",
            "--model",
            "hf:someone/smollm-gguf/smol.gguf",
            "--raw",
        ])
        .args(["--max-tokens", "6", "--prompt", "The capital of France is"])
        .output()
        .unwrap();
    assert_ok(&output);
    assert!(text(&output.stdout).contains("Paris"));

    // A file the cache lacks: offline it is an error naming the cache, not a download.
    let missing = leadgate()
        .env("HF_HUB_CACHE", cache.path())
        .env("HF_HUB_OFFLINE", "1")
        .args([
            "generate",
            "--model",
            "hf:someone/smollm-gguf/other.gguf",
            "--prompt",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let stderr = text(&missing.stderr);
    assert!(
        stderr.contains("HF_HUB_OFFLINE") && stderr.contains("other.gguf"),
        "{stderr}"
    );

    // Online but with no hub reachable (a closed loopback port): a clear error as well.
    let unreachable = leadgate()
        .env("HF_HUB_CACHE", cache.path())
        .args([
            "generate",
            "--model",
            "hf:someone/smollm-gguf/other.gguf",
            "--prompt",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(text(&unreachable.stderr).contains("downloading it failed"));

    let malformed = leadgate()
        .args(["generate", "--model", "hf:only-owner", "--prompt", "x"])
        .output()
        .unwrap();
    assert_eq!(malformed.status.code(), Some(1));
    assert!(text(&malformed.stderr).contains("hf:OWNER/REPO/FILE.gguf"));
}

#[test]
fn redact_reads_stdin_and_prints_json() {
    use std::io::Write;
    let message = "Здравствуйте, я Гульнара Ахметова, тел. +7 917 482-16-39, \
                   почта gulnara@пример.рф. Болит зуб второй день.";
    let mut child = leadgate()
        .arg("redact")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_ok(&output);
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let redacted = value["text"].as_str().unwrap();
    for planted in ["Гульнара", "Ахметова", "482-16-39", "gulnara@"] {
        assert!(!redacted.contains(planted), "{planted} left in {redacted}");
        assert!(
            !text(&output.stderr).contains(planted),
            "{planted} in stderr"
        );
    }
    assert!(redacted.contains("[PHONE_1]"), "{redacted}");
    assert!(redacted.contains("[EMAIL_1]"), "{redacted}");
    assert_eq!(value["special_category"], true);
    assert_eq!(
        value["spans"].as_array().unwrap().len(),
        3,
        "one name, one phone, one email"
    );
    assert!(value.get("mapping").is_none());
}

#[test]
fn eval_redaction_prints_scores() {
    let output = leadgate()
        .arg("eval-redaction")
        .arg(common::corpus_path())
        .output()
        .unwrap();
    assert_ok(&output);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["messages"], 100);
    assert!(report["per_type"]["PHONE"]["recall"].as_f64().unwrap() >= 0.99);
    assert!(report["misses"].as_array().unwrap().is_empty());

    let empty = tempfile::NamedTempFile::new().unwrap();
    let failed = leadgate()
        .arg("eval-redaction")
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    assert!(text(&failed.stderr).contains("no labelled messages"));
}

#[test]
fn redact_hides_normalized_values_without_mapping() {
    use std::io::Write;
    let run = |with_mapping: bool| {
        let mut command = leadgate();
        command.arg("redact");
        if with_mapping {
            command.arg("--mapping");
        }
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all("звоните 8 917 482-16-39".as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert_ok(&output);
        text(&output.stdout)
    };
    assert!(!run(false).contains("+79174821639"));
    assert!(run(true).contains("+79174821639"));
}
