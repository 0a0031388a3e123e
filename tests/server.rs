//! The real `leadgate serve` binary with the small SmolLM2 model and a temporary database,
//! driven over HTTP on 127.0.0.1.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::{Keyed, Server, agent, call, metric, send};
use serde_json::{Value, json};

const PLANTED_NAME: &str = "Эльвира";
const PLANTED_PHONE: &str = "+7 917 555-12-34";
const PLANTED_DIGITS: &str = "9175551234";
fn post_lead(keyed: &Keyed, body: &Value) -> (u16, Value, Option<String>) {
    call(
        &keyed.server,
        "POST",
        "/v1/leads",
        Some(&keyed.bot),
        Some(body),
    )
}

fn get_lead(keyed: &Keyed, id: i64) -> (u16, Value) {
    let path = format!("/v1/leads/{id}");
    let (status, body, _) = call(&keyed.server, "GET", &path, Some(&keyed.bot), None);
    (status, body)
}

fn planted_lead(external_id: &str) -> Value {
    json!({
        "channel": "telegram",
        "external_id": external_id,
        "text": format!(
            "Здравствуйте, меня зовут {PLANTED_NAME}, сильно болит зуб, можно сегодня к \
             стоматологу? Мой номер {PLANTED_PHONE}"
        ),
        "contact": { "name": PLANTED_NAME, "phone": PLANTED_PHONE },
        "received_at": "2026-12-04T10:00:00Z",
        "consent": { "granted": true }
    })
}

fn assert_one_of(value: &Value, allowed: &[&str], field: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string: {value}"));
    assert!(
        allowed.contains(&text),
        "{field} = {text}, expected one of {allowed:?}"
    );
}

fn wait_until_finished(keyed: &Keyed, id: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (status, body) = get_lead(keyed, id);
        assert_eq!(status, 200, "{body}");
        if body["status"] != "processing" {
            return body;
        }
        assert!(Instant::now() < deadline, "lead {id} still processing");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn assert_no_planted_values(text: &str, place: &str) {
    assert!(
        !text.contains(PLANTED_NAME),
        "the planted name is in {place}"
    );
    assert!(
        !text.contains(PLANTED_PHONE),
        "the planted phone is in {place}"
    );
    assert!(
        !text.contains(PLANTED_DIGITS),
        "the planted phone digits are in {place}"
    );
    assert!(
        !text.contains("555-12-34"),
        "part of the planted phone is in {place}"
    );
}

#[test]
fn lead_qualified_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leads.db");
    // The first lead waits while the model reads the long system prompt once.
    let keyed = Keyed::start(&db, &["--wait-ms", "600000"]);
    let server = &keyed.server;

    let (status, body, _) = post_lead(&keyed, &planted_lead("msg-1"));
    assert_eq!(status, 201, "{body}");
    let lead_id = body["lead_id"].as_i64().expect("lead_id");
    let q = &body["qualification"];
    assert_one_of(&body["status"], &["pending_review", "spam"], "status");
    assert_one_of(&q["service"], &leadgate::config::SERVICE_IDS, "service");
    assert_one_of(&q["intent"], &leadgate::qualify::INTENTS, "intent");
    assert_one_of(&q["urgency"], &leadgate::qualify::URGENCIES, "urgency");
    assert_one_of(
        &q["temperature"],
        &leadgate::qualify::TEMPERATURES,
        "temperature",
    );
    assert_one_of(&q["language"], &leadgate::qualify::LANGUAGES, "language");
    let score = q["score"].as_u64().expect("score");
    assert!(score <= 100, "score {score}");
    // The stems and the urgency words decide these, whatever the small model outputs.
    assert_eq!(q["service"], "dentistry");
    assert_eq!(q["urgency"], "high");
    if body["status"] == "pending_review" {
        let draft = body["draft"]["text"].as_str().expect("draft text");
        assert!(
            draft.contains(PLANTED_NAME),
            "the draft lacks the client's name: {draft}"
        );
        assert!(body["draft"]["template_version"].as_i64() == Some(1));
    }
    for key in ["queue_ms", "prompt_ms", "generate_ms", "total_ms"] {
        assert!(
            body["timings"][key].is_number(),
            "timings.{key} missing: {body}"
        );
    }

    let engine_requests = metric(server, "leadgate_engine_requests_total");
    assert!(
        engine_requests >= 1.0,
        "the engine counter is {engine_requests}"
    );
    let (status, repeat, _) = post_lead(&keyed, &planted_lead("msg-1"));
    assert_eq!(status, 200, "{repeat}");
    assert_eq!(repeat["lead_id"], lead_id);
    assert_eq!(repeat["qualification"], body["qualification"]);
    assert_eq!(
        metric(server, "leadgate_engine_requests_total"),
        engine_requests
    );

    let (status, fetched) = get_lead(&keyed, lead_id);
    assert_eq!(status, 200);
    assert_eq!(fetched["qualification"], body["qualification"]);
    let (status, missing) = get_lead(&keyed, 999_999);
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "lead_not_found");

    for path in ["/healthz", "/readyz", "/openapi.json"] {
        let (status, body, _) = send(agent().get(&server.url(path)), None);
        assert_eq!(status, 200, "{path}: {body}");
    }
    assert!(
        metric(
            server,
            "leadgate_http_requests_total{endpoint=\"/v1/leads\",method=\"POST\",status=\"201\"}"
        ) >= 1.0
    );

    let log = keyed.server.stop();
    assert!(
        log.contains("leadgate::prompt"),
        "the redacted prompt is not logged at trace"
    );
    assert_no_planted_values(&log, "the server log");

    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: Vec<String> = conn
        .prepare(
            "SELECT redacted_text FROM leads UNION ALL SELECT summary FROM qualifications \
             UNION ALL SELECT text FROM drafts UNION ALL SELECT fields FROM journal",
        )
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(rows.len() >= 3, "expected stored rows, got {}", rows.len());
    for row in &rows {
        assert_no_planted_values(row, "a stored lead, qualification, draft or journal row");
    }
    let mapped: i64 = conn
        .query_row(
            "SELECT count(*) FROM redaction_mappings WHERE value = ?1",
            [PLANTED_PHONE],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(mapped, 1, "the phone is not in the mapping table");
}

#[test]
fn invalid_bodies_get_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let keyed = Keyed::start(&dir.path().join("leads.db"), &[]);
    let server = &keyed.server;
    let bearer = format!("Bearer {}", keyed.bot);
    let engine_requests = metric(server, "leadgate_engine_requests_total");
    let valid = json!({"channel": "web", "external_id": "x", "text": "Сколько стоит маникюр?"});
    let with = |key: &str, value: Value| {
        let mut body = valid.clone();
        body[key] = value;
        body.to_string()
    };
    let mut missing_text = valid.clone();
    missing_text.as_object_mut().unwrap().remove("text");
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("empty text", with("text", json!("   ")), 422, "empty_text"),
        (
            "20 KiB text",
            with("text", json!("а".repeat(10 * 1024))),
            422,
            "text_too_long",
        ),
        (
            "wrong channel",
            with("channel", json!("fax")),
            422,
            "invalid_channel",
        ),
        (
            "broken JSON",
            "{\"channel\": \"web\",".to_string(),
            400,
            "invalid_json",
        ),
        (
            "unknown field",
            with("secret", json!(1)),
            400,
            "unknown_field",
        ),
        (
            "missing field",
            missing_text.to_string(),
            400,
            "missing_field",
        ),
        (
            "wrong type",
            with("text", json!(5)),
            400,
            "invalid_field_type",
        ),
        (
            "bad time",
            with("received_at", json!("вчера")),
            422,
            "invalid_received_at",
        ),
        (
            "invalid contact phone",
            with("contact", json!({"phone": "12-маникюр"})),
            422,
            "invalid_contact",
        ),
        (
            "unknown consent version",
            with("consent", json!({"granted": true, "text_version": 99})),
            422,
            "unknown_consent_text",
        ),
        (
            "consent without granted",
            with("consent", json!({"evidence": "m-1"})),
            400,
            "missing_field",
        ),
    ];
    for (name, body, status, code) in cases {
        let request = agent()
            .post(&server.url("/v1/leads"))
            .set("Authorization", &bearer)
            .set("Content-Type", "application/json");
        let (got, response, _) = send(request, Some(&body));
        assert_eq!(got, status, "{name}: {response}");
        assert_eq!(response["error"]["code"], code, "{name}: {response}");
        let message = response["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{name}: empty message");
        assert!(
            !message.contains("маникюр"),
            "{name}: the message quotes the text"
        );
    }
    let request = agent()
        .post(&server.url("/v1/leads"))
        .set("Authorization", &bearer)
        .set("Content-Type", "text/plain");
    let (status, response, _) = send(request, Some(&valid.to_string()));
    assert_eq!(status, 415, "{response}");
    assert_eq!(response["error"]["code"], "unsupported_media_type");
    let (status, response, _) = call(server, "GET", "/v1/leads/abc", Some(&keyed.bot), None);
    assert_eq!(status, 400, "{response}");
    assert_eq!(response["error"]["code"], "invalid_lead_id");
    // Only the start-up warm-up may have reached the model, never a rejected body.
    assert!(metric(server, "leadgate_engine_requests_total") <= engine_requests.max(1.0));
}

#[test]
fn queue_full_answers_202_then_finishes() {
    let dir = tempfile::tempdir().unwrap();
    // One lead may wait besides the running one, and the wait for a result is long, so a
    // 202 here comes from the full queue, not from the wait.
    let keyed = Keyed::start(
        &dir.path().join("leads.db"),
        &["--queue-capacity", "1", "--wait-ms", "600000"],
    );
    let keyed = Arc::new(keyed);
    let posts: Vec<_> = (0..4)
        .map(|n| {
            let keyed = keyed.clone();
            std::thread::spawn(move || {
                let body = json!({"channel": "whatsapp", "external_id": format!("q-{n}"),
                    "text": "Хочу записаться на массаж спины в пятницу",
                    "consent": {"granted": true}});
                post_lead(&keyed, &body)
            })
        })
        .collect();
    let answers: Vec<_> = posts.into_iter().map(|t| t.join().unwrap()).collect();
    let mut ids = Vec::new();
    let mut accepted_later = 0;
    for (status, response, retry_after) in answers {
        assert!(status == 201 || status == 202, "{status}: {response}");
        if status == 202 {
            accepted_later += 1;
            assert_eq!(response["status"], "processing");
            assert!(retry_after.is_some(), "202 without Retry-After");
        }
        ids.push(response["lead_id"].as_i64().expect("lead_id"));
    }
    assert!(accepted_later >= 1, "no lead found the queue full");
    for id in ids {
        let lead = wait_until_finished(&keyed, id);
        assert_one_of(&lead["status"], &["pending_review", "spam"], "status");
        assert_eq!(lead["qualification"]["service"], "massage");
    }
}

#[test]
fn shutdown_finishes_leads_and_restart_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leads.db");
    let keyed = Keyed::start(&db, &["--wait-ms", "0"]);
    let body = json!({"channel": "instagram", "external_id": "r-1",
        "text": "Сколько стоит стрижка?", "consent": {"granted": true}});
    let (status, first, _) = post_lead(&keyed, &body);
    assert_eq!(status, 202, "{first}");
    let id = first["lead_id"].as_i64().unwrap();
    // SIGTERM: the server stops listening but finishes the accepted lead first.
    let Keyed {
        server,
        db,
        bot,
        staff,
        admin,
    } = keyed;
    server.stop();

    let keyed = Keyed {
        server: Server::start(&db, &[]),
        db,
        bot,
        staff,
        admin,
    };
    let (status, again) = get_lead(&keyed, id);
    assert_eq!(status, 200, "{again}");
    assert_one_of(&again["status"], &["pending_review", "spam"], "status");
    assert_eq!(again["qualification"]["service"], "hair");
    let (status, repeat, _) = post_lead(&keyed, &body);
    assert_eq!(status, 200, "{repeat}");
    assert_eq!(repeat["lead_id"], id);
    assert_eq!(repeat["qualification"], again["qualification"]);
}
