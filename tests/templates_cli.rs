//! `leadgate templates …` on a temporary database: save, list, show, activate, diff and
//! roll back, and the errors a person meets.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use common::server::leadgate;

fn templates(db: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = leadgate()
        .arg("templates")
        .args(args)
        .arg("--db")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run leadgate templates");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    assert!(!output.status.success(), "the command succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn templates_saved_activated_and_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leads.db");

    let keys: serde_json::Value =
        serde_json::from_str(&stdout(&templates(&db, &["list"], None))).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 10, "{keys}");
    let shipped = stdout(&templates(&db, &["show", "greeting"], None));
    assert!(shipped.contains("Чем можем помочь?"), "{shipped}");

    let body = "Добрый день{% if name %}, {{ name }}{% endif %}! Чем помочь?";
    let saved: serde_json::Value = serde_json::from_str(&stdout(&templates(
        &db,
        &["save", "greeting", "--by", "owner"],
        Some(body),
    )))
    .unwrap();
    assert_eq!(saved["version"], 2);
    assert_eq!(saved["active"], false);
    assert_eq!(saved["saved_by"], "owner");

    let active = stdout(&templates(&db, &["activate", "greeting", "2"], None));
    assert!(active.contains("\"previous_version\": 1"), "{active}");
    assert_eq!(
        stdout(&templates(&db, &["show", "greeting"], None)).trim(),
        body
    );
    let diff = stdout(&templates(&db, &["diff", "greeting", "1", "2"], None));
    assert!(diff.contains("+Добрый день"), "{diff}");
    assert!(diff.contains("-Здравствуйте"), "{diff}");

    let versions: serde_json::Value =
        serde_json::from_str(&stdout(&templates(&db, &["list", "greeting"], None))).unwrap();
    assert_eq!(versions.as_array().unwrap().len(), 2);
    assert_eq!(versions[0]["saved_by"], "shipped");

    stdout(&templates(&db, &["rollback", "greeting"], None));
    assert_eq!(
        stdout(&templates(&db, &["show", "greeting"], None)),
        shipped
    );
    let old = stdout(&templates(
        &db,
        &["show", "greeting", "--version", "2"],
        None,
    ));
    assert_eq!(old.trim(), body);
    let error = stderr(&templates(&db, &["rollback", "greeting"], None));
    assert!(error.contains("no version older"), "{error}");
}

#[test]
fn templates_command_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leads.db");
    let unknown = templates(
        &db,
        &["save", "greeting"],
        Some("Ждём вас {{ visit_time }}"),
    );
    let error = stderr(&unknown);
    assert!(error.contains("visit_time"), "{error}");
    let error = stderr(&templates(&db, &["show", "farewell"], None));
    assert!(
        error.contains("unknown template kind `farewell`"),
        "{error}"
    );
    let error = stderr(&templates(
        &db,
        &["list", "fallback", "--service", "yoga"],
        None,
    ));
    assert!(error.contains("unknown service `yoga`"), "{error}");
    let error = stderr(&templates(&db, &["activate", "greeting", "5"], None));
    assert!(error.contains("no version 5"), "{error}");
    let error = stderr(&templates(&db, &["save", "greeting"], Some("  \n")));
    assert!(error.contains("empty"), "{error}");
}
