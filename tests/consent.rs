//! Consent against the real binary and SQLite file: leads without consent never reach the
//! model, withdrawal stops a subject's leads, consent texts are versioned, and the consent
//! log's hash chain finds rows changed, removed or reordered with plain SQL.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::server::{Keyed, Server, call, leadgate, metric, open_db};
use serde_json::{Value, json};

const PHONE: &str = "+7 917 000-00-01";
const PHONE_E164: &str = "+79170000001";
const ENGINE_REQUESTS: &str = "leadgate_engine_requests_total";

fn post(keyed: &Keyed, key: &str, path: &str, body: &Value) -> (u16, Value) {
    let (status, body, _) = call(&keyed.server, "POST", path, Some(key), Some(body));
    (status, body)
}

fn get(keyed: &Keyed, key: &str, path: &str) -> (u16, Value) {
    let (status, body, _) = call(&keyed.server, "GET", path, Some(key), None);
    (status, body)
}

fn consent_event(event: &str, phone: &str, evidence: &str) -> Value {
    json!({"subject": {"phone": phone}, "event": event, "purpose": "lead_processing",
        "channel": "telegram", "evidence": evidence})
}

fn lead(external_id: &str, phone: Option<&str>, consent: Option<Value>) -> Value {
    let mut body = json!({"channel": "telegram", "external_id": external_id,
        "text": "Здравствуйте, хочу записаться на маникюр в субботу"});
    if let Some(phone) = phone {
        body["contact"] = json!({"phone": phone});
    }
    if let Some(consent) = consent {
        body["consent"] = consent;
    }
    body
}

/// Waits until the start-up warm-up has reached the engine, so that later changes of the
/// request counter come from leads alone.
fn engine_requests_after_warm_up(server: &Server) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let count = metric(server, ENGINE_REQUESTS);
        if count >= 1.0 {
            return count;
        }
        assert!(
            Instant::now() < deadline,
            "the warm-up never reached the engine"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_until_settled(keyed: &Keyed, id: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (status, body) = get(keyed, &keyed.staff, &format!("/v1/leads/{id}"));
        assert_eq!(status, 200, "{body}");
        if body["status"] != "processing" {
            return body;
        }
        assert!(Instant::now() < deadline, "lead {id} still processing");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn verify_cli(db: &Path) -> (bool, Value) {
    let output = leadgate()
        .args(["consent", "verify", "--db"])
        .arg(db)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.success(), report)
}

#[test]
fn lead_without_consent_skips_model() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("consent.db");
    let keyed = Keyed::start(&db, &["--wait-ms", "600000"]);
    let baseline = engine_requests_after_warm_up(&keyed.server);

    let (status, body) = post(
        &keyed,
        &keyed.bot,
        "/v1/leads",
        &lead("m-1", Some(PHONE), None),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "consent_required");
    assert_eq!(body["consent_text"]["version"], 1);
    assert_eq!(body["consent_text"]["purpose"], "lead_processing");
    let consent_body = body["consent_text"]["body"]
        .as_str()
        .expect("consent text body");
    assert!(consent_body.contains("ООО «Пример»"), "{consent_body}");
    assert!(body.get("qualification").is_none(), "{body}");
    assert!(body.get("draft").is_none(), "{body}");
    let first = body["lead_id"].as_i64().unwrap();
    let (status, fetched) = get(&keyed, &keyed.bot, &format!("/v1/leads/{first}"));
    assert_eq!(status, 200);
    assert_eq!(fetched["status"], "consent_required");
    assert_eq!(fetched["consent_text"]["version"], 1);
    assert_eq!(
        metric(&keyed.server, ENGINE_REQUESTS),
        baseline,
        "the model ran"
    );

    // A lead without a phone, e-mail or handle needs the consent in the same call.
    let (status, body) = post(&keyed, &keyed.bot, "/v1/leads", &lead("m-2", None, None));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "consent_required");
    assert_eq!(
        metric(&keyed.server, ENGINE_REQUESTS),
        baseline,
        "the model ran"
    );

    let conn = open_db(&db);
    let mapped: i64 = conn
        .query_row("SELECT count(*) FROM redaction_mappings", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(mapped, 0, "a lead without consent kept its original values");
    let text: String = conn
        .query_row(
            "SELECT redacted_text FROM leads WHERE id = ?1",
            [first],
            |row| row.get(0),
        )
        .unwrap();
    assert!(
        !text.contains("000-00-01"),
        "the stored lead is not redacted"
    );

    // Consent through the API, then a lead with the phone written another way.
    let (status, body) = post(
        &keyed,
        &keyed.bot,
        "/v1/consents",
        &consent_event("granted", PHONE, "m-3"),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["text_version"], 1);
    assert!(
        body.get("subject").is_none(),
        "the subject is echoed: {body}"
    );
    let (status, body) = post(
        &keyed,
        &keyed.bot,
        "/v1/leads",
        &lead("m-4", Some("8 917 000 00 01"), None),
    );
    assert_eq!(status, 201, "{body}");
    assert!(body["qualification"].is_object(), "not qualified: {body}");
    assert_eq!(metric(&keyed.server, ENGINE_REQUESTS), baseline + 1.0);

    // The first lead, sent again, is processed now that its subject consented.
    let (status, body) = post(
        &keyed,
        &keyed.bot,
        "/v1/leads",
        &lead("m-1", Some(PHONE), None),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["lead_id"], first);
    assert!(body["qualification"].is_object(), "not qualified: {body}");
    assert_eq!(metric(&keyed.server, ENGINE_REQUESTS), baseline + 2.0);

    // A consent in the lead's own call covers a lead without contact details.
    let granted = json!({"granted": true, "evidence": "m-5"});
    let (status, body) = post(
        &keyed,
        &keyed.bot,
        "/v1/leads",
        &lead("m-5", None, Some(granted)),
    );
    assert_eq!(status, 201, "{body}");
    assert!(body["qualification"].is_object(), "not qualified: {body}");
    assert_eq!(metric(&keyed.server, ENGINE_REQUESTS), baseline + 3.0);

    // After a withdrawal the subject's next lead is rejected without the model.
    let (status, body) = post(
        &keyed,
        &keyed.bot,
        "/v1/consents",
        &consent_event("withdrawn", "89170000001", "m-6"),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = post(
        &keyed,
        &keyed.bot,
        "/v1/leads",
        &lead("m-7", Some(PHONE), None),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "consent_required");
    assert_eq!(
        metric(&keyed.server, ENGINE_REQUESTS),
        baseline + 3.0,
        "the model ran"
    );

    // A withdrawal in a lead's call counts at once, for that lead too.
    let (status, body) = post(
        &keyed,
        &keyed.bot,
        "/v1/consents",
        &consent_event("granted", PHONE, "m-8"),
    );
    assert_eq!(status, 201, "{body}");
    let withdrawn = json!({"granted": false});
    let (status, body) = post(
        &keyed,
        &keyed.bot,
        "/v1/leads",
        &lead("m-9", Some(PHONE), Some(withdrawn)),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "consent_required");
    assert_eq!(
        metric(&keyed.server, ENGINE_REQUESTS),
        baseline + 3.0,
        "the model ran"
    );

    let subjects: Vec<(String, String, String)> = conn
        .prepare("SELECT subject_kind, subject, event FROM consent_log ORDER BY id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected = [
        ("phone", PHONE_E164, "granted"),
        ("lead", "telegram/m-5", "granted"),
        ("phone", PHONE_E164, "withdrawn"),
        ("phone", PHONE_E164, "granted"),
        ("phone", PHONE_E164, "withdrawn"),
    ];
    assert_eq!(subjects.len(), expected.len(), "{subjects:?}");
    for (row, (kind, subject, event)) in subjects.iter().zip(expected) {
        assert_eq!(
            (row.0.as_str(), row.1.as_str(), row.2.as_str()),
            (kind, subject, event)
        );
    }
    let log = keyed.server.stop();
    assert!(!log.contains("000-00-01"), "the phone is in the server log");
    assert!(!log.contains(PHONE_E164), "the phone is in the server log");
}

#[test]
fn reading_draft_is_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("consent.db");
    let keyed = Keyed::start(&db, &["--wait-ms", "600000"]);
    let granted = json!({"granted": true});
    let (status, body) = post(
        &keyed,
        &keyed.bot,
        "/v1/leads",
        &lead("j-1", Some(PHONE), Some(granted)),
    );
    assert_eq!(status, 201, "{body}");
    let id = body["lead_id"].as_i64().unwrap();
    let (status, body) = get(&keyed, &keyed.staff, &format!("/v1/leads/{id}"));
    assert_eq!(status, 200, "{body}");

    let conn = open_db(&db);
    let journal: Vec<(String, Option<i64>)> = conn
        .prepare("SELECT action, key_id FROM journal WHERE lead_id = ?1 ORDER BY id")
        .unwrap()
        .query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let actions: Vec<&str> = journal.iter().map(|(action, _)| action.as_str()).collect();
    assert!(actions.contains(&"lead_received"), "{actions:?}");
    if body.get("draft").is_some() {
        // The bot read the draft in the response to its POST, and staff read it here.
        let readers: Vec<Option<i64>> = journal
            .iter()
            .filter(|(action, _)| action == "lead_read")
            .map(|(_, key)| *key)
            .collect();
        let key_of = |role: &str| -> i64 {
            conn.query_row("SELECT id FROM api_keys WHERE role = ?1", [role], |row| {
                row.get(0)
            })
            .unwrap()
        };
        assert_eq!(
            readers,
            vec![Some(key_of("bot")), Some(key_of("staff"))],
            "{journal:?}"
        );
    } else {
        // A spam lead has no draft, so nothing personal was read.
        assert!(!actions.contains(&"lead_read"), "{actions:?}");
    }
    let granted_by: Option<i64> = conn
        .query_row(
            "SELECT key_id FROM journal WHERE action = 'consent_granted'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(
        granted_by.is_some(),
        "the consent's journal entry lacks the key"
    );
}

#[test]
fn withdrawal_stops_queued_leads() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("consent.db");
    let keyed = Keyed::start(&db, &["--wait-ms", "0", "--queue-capacity", "16"]);
    let baseline = engine_requests_after_warm_up(&keyed.server);
    let (status, body) = post(
        &keyed,
        &keyed.bot,
        "/v1/consents",
        &consent_event("granted", PHONE, "w-0"),
    );
    assert_eq!(status, 201, "{body}");

    let leads = 6;
    let mut ids = Vec::new();
    for n in 0..leads {
        let (status, body) = post(
            &keyed,
            &keyed.bot,
            "/v1/leads",
            &lead(&format!("w-{}", n + 1), Some(PHONE), None),
        );
        assert_eq!(status, 202, "{body}");
        ids.push(body["lead_id"].as_i64().unwrap());
    }
    let (status, body) = post(
        &keyed,
        &keyed.bot,
        "/v1/consents",
        &consent_event("withdrawn", PHONE, "w-9"),
    );
    assert_eq!(status, 201, "{body}");

    let mut stopped = 0;
    for id in &ids {
        let lead = wait_until_settled(&keyed, *id);
        if lead["status"] == "consent_required" {
            stopped += 1;
            assert!(
                lead.get("qualification").is_none(),
                "a stopped lead was qualified: {lead}"
            );
        }
    }
    assert!(stopped >= 1, "no queued lead was stopped by the withdrawal");
    let ran = metric(&keyed.server, ENGINE_REQUESTS) - baseline;
    assert!(
        ran <= (leads - stopped) as f64,
        "{ran} model runs for {} processed leads",
        leads - stopped
    );

    let conn = open_db(&db);
    let pending: i64 = conn
        .query_row(
            "SELECT count(*) FROM drafts d JOIN leads l ON l.id = d.lead_id \
             WHERE l.subject = ?1 AND d.status = 'pending_review'",
            [PHONE_E164],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(
        pending, 0,
        "a draft of the withdrawn subject still waits for review"
    );
    let mapped: i64 = conn
        .query_row(
            "SELECT count(*) FROM redaction_mappings m JOIN leads l ON l.id = m.lead_id \
             WHERE l.status = 'consent_required'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(mapped, 0, "a stopped lead kept its original values");
}

fn text_input(body: &str) -> Value {
    json!({"purpose": "lead_processing", "categories": ["имя", "телефон"],
        "operations": ["хранение"], "term": "один год",
        "withdrawal": "напишите на {{ contact }}", "body": body})
}

#[test]
fn consent_texts_versioned_and_immutable() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("consent.db");
    let keyed = Keyed::start(&db, &[]);
    let admin = &keyed.admin;

    let (status, body) = post(
        &keyed,
        admin,
        "/v1/consent-texts",
        &text_input("Согласие v2: {{ withdrawal }}"),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"], 2);
    assert_eq!(body["active"], false);
    assert_eq!(body["withdrawal"], "напишите на privacy@example.ru");
    assert_eq!(body["body"], "Согласие v2: напишите на privacy@example.ru");

    let (status, body) = post(
        &keyed,
        admin,
        "/v1/consent-texts",
        &text_input("{{ unknown }}"),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_consent_text");

    // An unused version may change; a used one may not.
    let (status, body, _) = call(
        &keyed.server,
        "PUT",
        "/v1/consent-texts/lead_processing/2",
        Some(admin),
        Some(&text_input("Согласие v2, исправлено")),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["body"], "Согласие v2, исправлено");
    let (status, body) = post(
        &keyed,
        &keyed.bot,
        "/v1/consents",
        &consent_event("granted", PHONE, "t-1"),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["text_version"], 1);
    let (status, body, _) = call(
        &keyed.server,
        "PUT",
        "/v1/consent-texts/lead_processing/1",
        Some(admin),
        Some(&text_input("подмена")),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "consent_text_in_use");
    let (status, body) = get(&keyed, &keyed.bot, "/v1/consent-texts/lead_processing/1");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["used"], true);
    assert_ne!(body["body"], "подмена");
    let (status, body) = get(&keyed, &keyed.bot, "/v1/consent-texts/lead_processing/9");
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "consent_text_not_found");

    // Activating version 2 makes new consent requests show it.
    let (status, body) = post(
        &keyed,
        admin,
        "/v1/consent-texts/lead_processing/2/activate",
        &json!({}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &keyed,
        &keyed.bot,
        "/v1/leads",
        &lead("t-2", Some("+7 917 000-00-02"), None),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["consent_text"]["version"], 2);

    // The command line works on the file while the server runs.
    let file = dir.path().join("consent.toml");
    std::fs::write(
        &file,
        "purpose = \"lead_processing\"\ncategories = [\"имя\"]\noperations = [\"хранение\"]\n\
         term = \"год\"\nwithdrawal = \"{{ contact }}\"\nbody = \"Согласие v3\"\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let output = leadgate().args(args).arg("--db").arg(&db).output().unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let added: Value = serde_json::from_str(&run(&[
        "consent",
        "texts",
        "add",
        "--file",
        file.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(added["version"], 3);
    run(&["consent", "texts", "activate", "lead_processing", "3"]);
    let shown: Value =
        serde_json::from_str(&run(&["consent", "texts", "show", "lead_processing", "3"])).unwrap();
    assert_eq!(shown["active"], true);
    let listed: Value = serde_json::from_str(&run(&["consent", "texts", "list"])).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(3));
    let (status, body) = post(
        &keyed,
        &keyed.bot,
        "/v1/leads",
        &lead("t-3", Some("+7 917 000-00-03"), None),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["consent_text"]["version"], 3);
    assert_eq!(body["consent_text"]["body"], "Согласие v3");

    let bad_events = [
        (
            json!({"subject": {"phone": PHONE, "email": "a@b.ru"}, "event": "granted", "purpose": "lead_processing", "channel": "web", "evidence": "x"}),
            "invalid_subject",
        ),
        (consent_event("granted", "12345", "x"), "invalid_subject"),
        (consent_event("maybe", PHONE, "x"), "invalid_event"),
        (
            json!({"subject": {"email": "a@b.ru"}, "event": "granted", "purpose": "marketing", "channel": "web", "evidence": "x"}),
            "unknown_consent_text",
        ),
        (
            json!({"subject": {"handle": "@anna"}, "event": "granted", "purpose": "lead_processing", "text_version": 7, "channel": "web", "evidence": "x"}),
            "unknown_consent_text",
        ),
        (
            json!({"subject": {"handle": "@anna"}, "event": "granted", "purpose": "lead_processing", "channel": "fax", "evidence": "x"}),
            "invalid_channel",
        ),
    ];
    for (body, code) in bad_events {
        let (status, response) = post(&keyed, &keyed.bot, "/v1/consents", &body);
        assert_eq!(status, 422, "{code}: {response}");
        assert_eq!(response["error"]["code"], code, "{response}");
        let message = response["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !message.contains("12345"),
            "the message quotes the value: {message}"
        );
    }
}

#[test]
fn consent_chain_detects_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("consent.db");
    let keyed = Keyed::start(&db, &[]);
    for n in 1..=4 {
        let phone = format!("+7 917 000-00-1{n}");
        let (status, body) = post(
            &keyed,
            &keyed.bot,
            "/v1/consents",
            &consent_event("granted", &phone, &format!("c-{n}")),
        );
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = post(
        &keyed,
        &keyed.bot,
        "/v1/consents",
        &consent_event("granted", "+7 917 000-00-11", "c-1"),
    );
    assert_eq!(status, 200, "a repeated event was logged again: {body}");

    let (status, report) = get(&keyed, &keyed.admin, "/v1/consents/verify");
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["rows"], 4);
    let (ok, cli_report) = verify_cli(&db);
    assert!(ok, "{cli_report}");
    assert_eq!(cli_report["last_sha256"], report["last_sha256"]);
    let output = leadgate()
        .args(["consent", "log", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["subject"], "+79170000011");
    assert_eq!(lines[1]["prev_sha256"], lines[0]["sha256"]);

    // The triggers reject plain UPDATE and DELETE.
    let conn = open_db(&db);
    assert!(
        conn.execute(
            "UPDATE consent_log SET event = 'withdrawn' WHERE id = 2",
            []
        )
        .is_err()
    );
    assert!(
        conn.execute("DELETE FROM consent_log WHERE id = 2", [])
            .is_err()
    );

    // Copies for the removal and reordering cases, taken before any change.
    let copy = |name: &str| {
        let path = dir.path().join(name);
        conn.execute("VACUUM INTO ?1", [path.to_str().unwrap()])
            .unwrap();
        let copy = open_db(&path);
        copy.execute_batch(
            "DROP TRIGGER consent_log_no_update; DROP TRIGGER consent_log_no_delete;",
        )
        .unwrap();
        (path, copy)
    };
    let (removed_middle, middle) = copy("removed-middle.db");
    let (removed_last, last) = copy("removed-last.db");
    let (reordered, swap) = copy("reordered.db");

    // Someone with the file drops the triggers and edits a row.
    conn.execute_batch("DROP TRIGGER consent_log_no_update; DROP TRIGGER consent_log_no_delete;")
        .unwrap();
    conn.execute(
        "UPDATE consent_log SET event = 'withdrawn' WHERE id = 2",
        [],
    )
    .unwrap();
    let (status, report) = get(&keyed, &keyed.admin, "/v1/consents/verify");
    assert_eq!(status, 200);
    assert_eq!(report["valid"], false, "an edited row passed: {report}");
    assert_eq!(report["error"]["id"], 2);
    assert_eq!(report["error"]["kind"], "content_changed");
    let (ok, cli_report) = verify_cli(&db);
    assert!(!ok, "consent verify exited 0 after an edit: {cli_report}");
    assert_eq!(cli_report["error"]["id"], 2);

    middle
        .execute("DELETE FROM consent_log WHERE id = 2", [])
        .unwrap();
    let (ok, report) = verify_cli(&removed_middle);
    assert!(!ok, "a removed row passed: {report}");
    assert_eq!(report["error"]["id"], 3);
    assert_eq!(report["error"]["kind"], "chain_broken");

    last.execute("DELETE FROM consent_log WHERE id = 4", [])
        .unwrap();
    let (ok, report) = verify_cli(&removed_last);
    assert!(!ok, "removing the last row passed: {report}");
    assert_eq!(report["error"]["kind"], "head_mismatch");

    swap.execute_batch(
        "UPDATE consent_log SET id = -1 WHERE id = 2; UPDATE consent_log SET id = 2 WHERE id = 3; \
         UPDATE consent_log SET id = 3 WHERE id = -1;",
    )
    .unwrap();
    let (ok, report) = verify_cli(&reordered);
    assert!(!ok, "reordered rows passed: {report}");
    assert_eq!(report["error"]["id"], 2);
}
