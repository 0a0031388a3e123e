//! Retention against the real binary with a fixed clock: each run removes exactly what is
//! past its term and writes a destruction act, a dry run changes nothing, and the job inside
//! `serve` runs at start.

mod common;

use std::path::Path;

use common::server::{Keyed, Server, call, leadgate, open_db};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const PLAIN_PHONE: &str = "+7 917 300-40-50";
const HEALTH_PHONE: &str = "+7 917 600-70-80";

/// Sends a lead with its client's consent, so that it is stored with its personal data.
fn post_lead(keyed: &Keyed, external_id: &str, text: &str) -> i64 {
    let body = json!({"channel": "whatsapp", "external_id": external_id, "text": text,
        "consent": {"granted": true}});
    post_lead_body(keyed, &body)["lead_id"]
        .as_i64()
        .expect("lead_id")
}

/// Sends a lead body with the bot's key and returns the response body, which must come
/// with status 201.
fn post_lead_body(keyed: &Keyed, body: &Value) -> Value {
    let (status, body, _) = call(
        &keyed.server,
        "POST",
        "/v1/leads",
        Some(&keyed.bot),
        Some(body),
    );
    assert_eq!(status, 201, "{body}");
    body
}

/// Returns the RFC 3339 time `days` after now.
fn days_ahead(days: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::days(days))
        .format(&Rfc3339)
        .unwrap()
}

fn retention(db: &Path, args: &[&str]) -> Value {
    let output = leadgate()
        .arg("retention")
        .args(args)
        .arg("--db")
        .arg(db)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn rule<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|rule| rule["rule"] == name)
}

fn count(db: &Path, sql: &str) -> i64 {
    open_db(db).query_row(sql, [], |row| row.get(0)).unwrap()
}

#[test]
fn runs_remove_exactly_what_is_due() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("retention.db");
    let keyed = Keyed::start(&db, &["--wait-ms", "600000"]);
    let plain = post_lead(
        &keyed,
        "w-1",
        &format!("Сколько стоит маникюр? Мой номер {PLAIN_PHONE}"),
    );
    let health = post_lead(
        &keyed,
        "w-2",
        &format!("Болит зуб, я беременна, можно к стоматологу? {HEALTH_PHONE}"),
    );

    // 200 days on, only the lead with health data is past its term (183 days). A dry run
    // reports it and changes nothing.
    let at_200 = days_ahead(200);
    let dry = retention(&db, &["run", "--dry-run", "--now", &at_200]);
    assert_eq!(dry["dry_run"], true);
    let special = rule(&dry, "special_category_term").expect("the special-category rule");
    assert_eq!(special["lead_ids"], json!([health]));
    assert!(rule(&dry, "leads_term").is_none(), "{dry}");
    assert_eq!(count(&db, "SELECT count(*) FROM leads"), 2);
    assert_eq!(count(&db, "SELECT count(*) FROM destruction_acts"), 0);

    let first = retention(&db, &["run", "--now", &at_200]);
    let special = rule(&first, "special_category_term").expect("the special-category rule");
    assert_eq!(special["lead_ids"], json!([health]));
    assert_eq!(count(&db, "SELECT count(*) FROM leads"), 1);
    let act_id = first["act_id"].as_i64().expect("an act");
    let act = retention(&db, &["acts", "--id", &act_id.to_string()]);
    assert_eq!(act["kind"], "retention");
    assert_eq!(act["performed_by"], "command line");
    assert_eq!(act["items"][0]["rule"], "special_category_term");
    assert_eq!(act["items"][0]["method"], "deleted");
    let categories = act["items"][0]["data_categories"].to_string();
    assert!(categories.contains("health data"), "{categories}");
    assert!(categories.contains("PHONE"), "{categories}");
    for value in ["600-70-80", "79176007080", "беременна"] {
        assert!(
            !act.to_string().contains(value),
            "the act holds a destroyed value"
        );
    }

    // The admin API shows the act, and the lead left is still readable.
    let (status, page, _) = call(&keyed.server, "GET", "/v1/acts", Some(&keyed.admin), None);
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["acts"][0]["id"], act_id);
    let (status, _, _) = call(
        &keyed.server,
        "GET",
        &format!("/v1/leads/{plain}"),
        Some(&keyed.staff),
        None,
    );
    assert_eq!(status, 200);
    let (status, _, _) = call(
        &keyed.server,
        "GET",
        &format!("/v1/leads/{health}"),
        Some(&keyed.staff),
        None,
    );
    assert_eq!(status, 404, "a lead past its term is still readable");
    keyed.server.stop();

    // 400 days on, the other lead is past its term too; a repeated run finds nothing.
    let at_400 = days_ahead(400);
    let second = retention(&db, &["run", "--now", &at_400]);
    let leads = rule(&second, "leads_term").expect("the leads rule");
    assert_eq!(leads["lead_ids"], json!([plain]));
    assert_ne!(second["act_id"], first["act_id"]);
    assert_eq!(count(&db, "SELECT count(*) FROM leads"), 0);
    let repeat = retention(&db, &["run", "--now", &at_400]);
    assert_eq!(repeat["rules"], json!([]), "{repeat}");
    assert_eq!(repeat["act_id"], Value::Null);

    // 1200 days on, the journal rows written before day 105 are past their term (1095
    // days), and those the runs wrote at days 200 and 400 are not.
    let before: i64 = count(&db, "SELECT count(*) FROM journal");
    let journal_run = retention(&db, &["run", "--now", &days_ahead(1200)]);
    let journal = rule(&journal_run, "journal_term").expect("the journal rule");
    let removed = journal["count"].as_i64().unwrap();
    assert!(removed > 0, "{journal_run}");
    let cutoff = days_ahead(105);
    let old = count(
        &db,
        &format!("SELECT count(*) FROM journal WHERE julianday(at) < julianday('{cutoff}')"),
    );
    assert_eq!(old, 0, "journal rows past their term are left");
    let kept = count(
        &db,
        "SELECT count(*) FROM journal WHERE action LIKE 'retention_%'",
    );
    assert!(
        kept >= 2,
        "the retention rows of days 200 and 400 were removed"
    );
    // The run adds one row of its own about the deletion.
    let after: i64 = count(&db, "SELECT count(*) FROM journal");
    assert_eq!(after, before - removed + 1);

    let text = leadgate()
        .args(["retention", "acts", "--text", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert_eq!(text.matches("DESTRUCTION ACT No.").count(), 3, "{text}");
}

#[test]
fn serve_runs_retention_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("serve.db");
    let keyed = Keyed::start(&db, &["--wait-ms", "600000"]);
    let lead = post_lead(&keyed, "s-1", "Здравствуйте, есть окно на стрижку завтра?");
    keyed.server.stop();

    // Destruction acts name the operator of the configuration.
    let config = dir.path().join("leadgate.toml");
    std::fs::write(&config, "[operator]\nname = \"ООО «Тест»\"\n").unwrap();
    let at_400 = days_ahead(400);
    let server = Server::start_with_env(
        &db,
        &["--wait-ms", "600000", "--config", config.to_str().unwrap()],
        &[("LEADGATE_NOW", at_400.as_str())],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !server.log().contains("retention run finished") {
        assert!(
            std::time::Instant::now() < deadline,
            "no retention run in the log:\n{}",
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (status, page, _) = call(&server, "GET", "/v1/acts", Some(&keyed.admin), None);
    assert_eq!(status, 200, "{page}");
    let act = &page["acts"][0];
    assert_eq!(act["performed_by"], "retention job");
    assert_eq!(act["operator"], "ООО «Тест»");
    assert_eq!(act["items"][0]["lead_ids"], json!([lead]));
    server.stop();
}

#[test]
fn withdrawal_schedules_erasure() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("withdrawal.db");
    let keyed = Keyed::start_with_env(
        &db,
        &["--wait-ms", "600000"],
        &[("LEADGATE_RETENTION_WITHDRAWAL_ERASE_DAYS", "10")],
    );
    let by_consent = post_lead(
        &keyed,
        "c-1",
        &format!("Запишите на маникюр, мой номер {PLAIN_PHONE}"),
    );
    let body = json!({"channel": "telegram", "external_id": "c-2",
        "text": "Хочу на стрижку", "contact": {"handle": "@anna_p"},
        "consent": {"granted": true}});
    let by_lead = post_lead_body(&keyed, &body)["lead_id"]
        .as_i64()
        .expect("lead_id");

    // One client withdraws through POST /v1/consents, the other with a new lead.
    let withdrawal = json!({"subject": {"phone": PLAIN_PHONE}, "event": "withdrawn",
        "purpose": "lead_processing", "channel": "whatsapp", "evidence": "c-3"});
    let (status, body, _) = call(
        &keyed.server,
        "POST",
        "/v1/consents",
        Some(&keyed.bot),
        Some(&withdrawal),
    );
    assert_eq!(status, 201, "{body}");
    let body = json!({"channel": "telegram", "external_id": "c-4",
        "text": "Больше не пишите мне", "contact": {"handle": "@anna_p"},
        "consent": {"granted": false}});
    let body = post_lead_body(&keyed, &body);
    assert_eq!(body["status"], "consent_required", "{body}");
    let after_withdrawal = body["lead_id"].as_i64().expect("lead_id");
    keyed.server.stop();

    let conn = open_db(&db);
    let due: Vec<(String, String)> = conn
        .prepare("SELECT reason, due_at FROM erasure_requests WHERE done_at IS NULL ORDER BY id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    drop(conn);
    assert_eq!(due.len(), 2, "{due:?}");
    let earliest = days_ahead(9);
    let latest = days_ahead(11);
    for (reason, due_at) in &due {
        assert_eq!(reason, "consent_withdrawn");
        assert!(
            due_at.as_str() > earliest.as_str() && due_at.as_str() < latest.as_str(),
            "erasure due {due_at}, not 10 days after the withdrawal"
        );
    }

    // Before the term nothing goes; after it, the leads stored before each withdrawal go and
    // the lead that carried the withdrawal stays.
    let early = retention(&db, &["run", "--now", &days_ahead(9)]);
    let removed: i64 = early["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| rule["count"].as_i64().unwrap())
        .sum();
    assert_eq!(removed, 0, "{early}");
    assert_eq!(early["act_id"], Value::Null);
    let report = retention(&db, &["run", "--now", &latest]);
    let erased = rule(&report, "consent_withdrawn").expect("the scheduled erasures ran");
    let mut lead_ids: Vec<i64> = erased["lead_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect();
    lead_ids.sort_unstable();
    assert_eq!(lead_ids, vec![by_consent, by_lead], "{report}");
    let left = count(&db, "SELECT count(*) FROM leads");
    assert_eq!(left, 1);
    let kept = count(
        &db,
        &format!("SELECT count(*) FROM leads WHERE id = {after_withdrawal}"),
    );
    assert_eq!(kept, 1, "the lead sent with the withdrawal was erased");
    let pending = count(
        &db,
        "SELECT count(*) FROM erasure_requests WHERE done_at IS NULL",
    );
    assert_eq!(pending, 0);
}
