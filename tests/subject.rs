//! Subject requests against the real binary. The export returns every planted item of one
//! subject and nothing of another. Erase leaves no trace of the planted values in the
//! database file after VACUUM, and a second erase finds nothing. Reads of personal data are
//! journaled.

mod common;

use std::path::Path;

use common::server::{Keyed, call, leadgate, open_db};
use serde_json::{Value, json};

/// Values of the subject who requests export and erasure.
const ANNA_PHONE: &str = "+7 917 482-16-39";
/// The same phone as the client wrote it in a message without contact fields.
const ANNA_PHONE_IN_TEXT: &str = "8 917 482 16 39";
const ANNA_NAME: &str = "Гульнара Сафина";
const ANNA_EMAIL: &str = "gulnara.safina@mail.ru";
/// Values of another client, who must be left alone.
const BORIS_PHONE: &str = "+7 916 555-12-34";
const BORIS_NAME: &str = "Всеволод Ершов";

/// The first subject's phone as the consent log stores it. Erase keeps the consent events,
/// which prove the consent and its withdrawal, so this form stays in the log.
const ANNA_SUBJECT: &str = "+79174821639";
/// Every other form of the first subject's data, none of which may survive an erase.
const ANNA_TRACES: [&str; 6] = [
    "482-16-39",
    "482 16 39",
    "Гульнара",
    "Сафина",
    "gulnara.safina",
    "GULNARA.SAFINA",
];

/// Sends a lead with its client's consent, so that it is stored with its personal data.
fn post_lead(keyed: &Keyed, external_id: &str, text: &str, contact: Value) -> i64 {
    let body = json!({
        "channel": "telegram", "external_id": external_id, "text": text, "contact": contact,
        "consent": {"granted": true},
    });
    let (status, body, _) = call(
        &keyed.server,
        "POST",
        "/v1/leads",
        Some(&keyed.bot),
        Some(&body),
    );
    assert_eq!(status, 201, "{body}");
    body["lead_id"].as_i64().expect("lead_id")
}

fn lead_ids(export: &Value) -> Vec<i64> {
    let mut ids: Vec<i64> = export["leads"]
        .as_array()
        .expect("leads")
        .iter()
        .map(|lead| lead["lead_id"].as_i64().expect("lead_id"))
        .collect();
    ids.sort_unstable();
    ids
}

/// Runs VACUUM on the encrypted database and returns the bytes of a decrypted copy of it.
/// The encrypted file's own bytes show no text at all, so the search runs on the copy.
///
/// NOTE: the copy contains the live pages that VACUUM wrote, so the check covers what the
/// file keeps after VACUUM, not free pages before it.
fn vacuumed_plain_bytes(db: &Path) -> Vec<u8> {
    let plain = db.with_file_name("plain-copy.db");
    let conn = open_db(db);
    conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    conn.execute(
        "ATTACH DATABASE ?1 AS plain KEY ''",
        [plain.to_str().unwrap()],
    )
    .unwrap();
    conn.query_row("SELECT sqlcipher_export('plain')", [], |_| Ok(()))
        .unwrap();
    conn.execute_batch("DETACH DATABASE plain").unwrap();
    drop(conn);
    std::fs::read(&plain).unwrap()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn export_then_erase_subject() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("subject.db");
    let keyed = Keyed::start(&db, &["--wait-ms", "600000"]);
    let server = &keyed.server;

    let anna_contact = json!({"name": ANNA_NAME, "phone": ANNA_PHONE, "email": ANNA_EMAIL});
    let first = post_lead(
        &keyed,
        "a-1",
        "Хочу записаться на маникюр в субботу",
        anna_contact,
    );
    let second = post_lead(
        &keyed,
        "a-2",
        &format!("Сколько стоит стрижка? Перезвоните на {ANNA_PHONE_IN_TEXT}"),
        json!({}),
    );
    let boris = post_lead(
        &keyed,
        "b-1",
        "Нужна запись на массаж",
        json!({"name": BORIS_NAME, "phone": BORIS_PHONE}),
    );

    // A read of a lead with restored values is journaled with the reader's key.
    let (status, view, _) = call(
        server,
        "GET",
        &format!("/v1/leads/{first}"),
        Some(&keyed.staff),
        None,
    );
    assert_eq!(status, 200, "{view}");
    assert!(view["draft"].is_object(), "the lead has no draft: {view}");
    let query = format!("/v1/journal?action=lead_read&lead_id={first}");
    let (status, page, _) = call(server, "GET", &query, Some(&keyed.admin), None);
    assert_eq!(status, 200, "{page}");
    let reads = page["rows"].as_array().expect("rows");
    assert!(
        reads.iter().any(|row| row["role"] == "staff"),
        "the staff read is not journaled: {page}"
    );
    assert!(
        reads
            .iter()
            .all(|row| row["personal_fields"] == json!(["draft.text"])),
        "{page}"
    );

    // The export has both leads of the subject, found by contact field and by text, and
    // nothing of the other client.
    let path = "/v1/subjects/export?phone=%2B7%20917%20482-16-39";
    let (status, export, _) = call(server, "GET", path, Some(&keyed.admin), None);
    assert_eq!(status, 200, "{export}");
    assert_eq!(lead_ids(&export), vec![first, second]);
    let exported = export.to_string();
    for value in [ANNA_NAME, ANNA_EMAIL, ANNA_PHONE, ANNA_PHONE_IN_TEXT] {
        assert!(exported.contains(value), "the export lacks a planted value");
    }
    for value in [BORIS_NAME, BORIS_PHONE] {
        assert!(
            !exported.contains(value),
            "the export holds another client's data"
        );
    }
    assert!(!lead_ids(&export).contains(&boris));
    let journal = export["journal"].as_array().expect("journal rows");
    assert!(
        journal
            .iter()
            .any(|row| row["action"] == "lead_read" && row["lead_id"] == first),
        "the export lacks the journal rows about the subject"
    );
    let subject_id = export["subject"]["subject_id"]
        .as_i64()
        .expect("subject id");
    let (_, by_email, _) = call(
        server,
        "GET",
        "/v1/subjects/export?email=Gulnara.Safina%40Mail.ru",
        Some(&keyed.admin),
        None,
    );
    assert_eq!(lead_ids(&by_email), vec![first], "{by_email}");

    // Bad requests are 4xx and never quote the value.
    let (status, body, _) = call(
        server,
        "GET",
        "/v1/subjects/export?phone=12345",
        Some(&keyed.admin),
        None,
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_subject");
    assert!(!body.to_string().contains("12345"));
    let both = "/v1/subjects/export?phone=%2B79174821639&email=a%40b.ru";
    let (status, body, _) = call(server, "GET", both, Some(&keyed.admin), None);
    assert_eq!(status, 400, "{body}");
    let (status, body, _) = call(
        server,
        "POST",
        "/v1/subjects/erase",
        Some(&keyed.admin),
        Some(&json!({"phone": ANNA_PHONE, "name": "x"})),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "unknown_field");

    // Erase removes both leads and writes an act naming ids only.
    let erase = json!({"phone": ANNA_PHONE_IN_TEXT});
    let (status, report, _) = call(
        server,
        "POST",
        "/v1/subjects/erase",
        Some(&keyed.admin),
        Some(&erase),
    );
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["found"], true);
    assert_eq!(report["lead_ids"], json!([first, second]));
    assert_eq!(report["subject_id"], subject_id);
    // The erase empties the write-ahead log, so the old pages do not stay in the -wal file.
    let wal = dir.path().join("subject.db-wal");
    let wal_bytes = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(
        wal_bytes, 0,
        "the write-ahead log still holds pages after the erase"
    );
    let act_id = report["act_id"].as_i64().expect("an act");
    let (status, act, _) = call(
        server,
        "GET",
        &format!("/v1/acts/{act_id}"),
        Some(&keyed.admin),
        None,
    );
    assert_eq!(status, 200, "{act}");
    assert_eq!(act["kind"], "subject_erase");
    // The phone's subject and the e-mail's, which the export by e-mail created.
    let act_subjects = act["items"][0]["subject_ids"]
        .as_array()
        .expect("subject ids");
    assert_eq!(act_subjects.len(), 2, "{act}");
    assert!(act_subjects.contains(&json!(subject_id)), "{act}");
    assert!(act["completed_at"].is_string(), "{act}");
    for trace in ANNA_TRACES.iter().chain(&["79174821639"]) {
        assert!(
            !act.to_string().contains(trace),
            "the act holds a destroyed value"
        );
    }
    let text_path = format!("/v1/acts/{act_id}?format=text");
    let response = common::server::agent()
        .get(&server.url(&text_path))
        .set("Authorization", &format!("Bearer {}", keyed.admin))
        .call()
        .unwrap();
    let text = response.into_string().unwrap();
    assert!(
        text.starts_with(&format!("DESTRUCTION ACT No. {act_id}")),
        "{text}"
    );

    // A second erase finds nothing and writes no act; the export is empty.
    let (status, again, _) = call(
        server,
        "POST",
        "/v1/subjects/erase",
        Some(&keyed.admin),
        Some(&erase),
    );
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["found"], false);
    assert_eq!(again["act_id"], Value::Null);
    let (_, after, _) = call(server, "GET", path, Some(&keyed.admin), None);
    assert_eq!(lead_ids(&after), Vec::<i64>::new());
    let (status, _, _) = call(
        server,
        "GET",
        &format!("/v1/leads/{first}"),
        Some(&keyed.staff),
        None,
    );
    assert_eq!(status, 404, "an erased lead is still readable");
    let (status, _, _) = call(
        server,
        "GET",
        &format!("/v1/leads/{boris}"),
        Some(&keyed.staff),
        None,
    );
    assert_eq!(status, 200, "the other client's lead was erased");

    let log = keyed.server.stop();
    for trace in ANNA_TRACES.iter().chain(&["79174821639"]) {
        assert!(!log.contains(trace), "the server log holds personal data");
    }

    // The journal export has the rows and no personal data of either client.
    let output = leadgate()
        .args(["journal", "export", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let csv = String::from_utf8(output.stdout).unwrap();
    for action in [
        "lead_received",
        "lead_read",
        "subject_exported",
        "subject_erased",
    ] {
        assert!(
            csv.contains(&format!(",{action},")),
            "the CSV lacks {action}"
        );
    }
    for value in ANNA_TRACES
        .iter()
        .chain(&["79174821639", "Всеволод", "555-12-34", "79165551234"])
    {
        assert!(
            !csv.contains(value),
            "the journal export holds personal data"
        );
    }

    // After VACUUM the file contains none of the erased values but still the other client's,
    // and the subject's phone only in the consent log.
    let bytes = vacuumed_plain_bytes(&db);
    for trace in ANNA_TRACES {
        assert!(
            !contains(&bytes, trace),
            "the database file holds an erased value"
        );
    }
    assert!(
        contains(&bytes, "555-12-34"),
        "the other client's phone is missing, so the byte search proves nothing"
    );
    let conn = open_db(&db);
    let kept: i64 = conn
        .query_row(
            "SELECT count(*) FROM consent_log WHERE subject = ?1",
            [ANNA_SUBJECT],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(
        kept,
        report["consent_events_kept"].as_i64().unwrap(),
        "the consent events that prove the consent are gone"
    );
    assert!(kept > 0, "the subject's consent was never logged");
}

#[test]
fn subject_cli_erase_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    let run = |args: &[&str]| {
        let output = leadgate().args(args).arg("--db").arg(&db).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    // A misspelt --db is an error, not a new empty database that reports no data.
    let missing = leadgate()
        .args(["subject", "export", "--handle", "@Nobody_Here", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!missing.status.success(), "a missing database was accepted");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(!db.exists(), "the missing database was created");
    let created = leadgate()
        .args([
            "keys", "create", "--role", "admin", "--name", "setup", "--db",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert!(created.status.success(), "keys create failed");

    let report = run(&["subject", "erase", "--handle", "@Nobody_Here"]);
    assert_eq!(report["found"], false);
    let export = run(&["subject", "export", "--handle", "nobody_here"]);
    assert_eq!(export["leads"], json!([]));
    assert_eq!(export["subject"]["subject_id"], Value::Null);
    let output = leadgate()
        .args(["subject", "export", "--phone", "123", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!output.status.success(), "an invalid phone was accepted");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not a valid phone number"), "{stderr}");
    assert!(
        !stderr.contains("123"),
        "the error quotes the value: {stderr}"
    );
}
