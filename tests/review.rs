//! Template versions, draft review, reply polling and the reply webhook, on the real
//! `leadgate serve` binary with the small SmolLM2 model and a temporary database.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::server::{Keyed, call, leadgate, open_db};
use serde_json::{Value, json};

const CLIENT_NAME: &str = "Эльвира";
const CLIENT_PHONE: &str = "+7 917 555-12-34";
const REPLY_KINDS: [&str; 6] = [
    "booking_reply",
    "price_reply",
    "reschedule_reply",
    "cancel_reply",
    "complaint_reply",
    "fallback",
];

/// Sends `method path` with `key` and an optional JSON body; returns the status and body.
fn with_key(
    keyed: &Keyed,
    key: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let (status, value, _) = call(&keyed.server, method, path, Some(key), body);
    (status, value)
}

fn admin(keyed: &Keyed, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    with_key(keyed, &keyed.admin, method, path, body)
}

fn staff(keyed: &Keyed, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    with_key(keyed, &keyed.staff, method, path, body)
}

fn bot(keyed: &Keyed, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    with_key(keyed, &keyed.bot, method, path, body)
}

/// Posts a lead and returns the response body once it is qualified.
fn qualified_lead(keyed: &Keyed, external_id: &str, text: &str) -> Value {
    let body = json!({
        "channel": "telegram",
        "external_id": external_id,
        "text": text,
        "contact": { "name": CLIENT_NAME, "phone": CLIENT_PHONE },
        "consent": { "granted": true },
    });
    let (status, lead) = bot(keyed, "POST", "/v1/leads", Some(&body));
    assert_eq!(status, 201, "{lead}");
    assert_eq!(lead["status"], "pending_review", "{lead}");
    lead
}

fn pending_drafts(keyed: &Keyed) -> Vec<Value> {
    let (status, body) = staff(keyed, "GET", "/v1/drafts?status=pending", None);
    assert_eq!(status, 200, "{body}");
    body["drafts"].as_array().expect("drafts array").clone()
}

fn table_texts(db: &Path, sql: &str) -> Vec<String> {
    let conn = open_db(db);
    let mut statement = conn.prepare(sql).unwrap();
    statement
        .query_map([], |row| row.get::<_, Option<String>>(0))
        .unwrap()
        .map(|row| row.unwrap().unwrap_or_default())
        .collect()
}

#[test]
fn template_versions_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leads.db");
    let keyed = Keyed::start(&db, &["--wait-ms", "600000"]);

    let (status, keys) = admin(&keyed, "GET", "/v1/templates", None);
    assert_eq!(status, 200, "{keys}");
    let keys = keys["templates"].as_array().unwrap();
    assert_eq!(keys.len(), 10, "{keys:?}");
    assert!(keys.iter().all(|k| k["active_version"] == 1), "{keys:?}");

    let unknown = json!({"body": "Здравствуйте, {{ name }}! Ждём вас {{ visit_date }}."});
    let (status, error) = admin(
        &keyed,
        "POST",
        "/v1/templates/booking_reply/versions",
        Some(&unknown),
    );
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["code"], "unknown_template_variable");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("visit_date"), "{message}");

    let broken = json!({"body": "Здравствуйте{% if name %}, {{ name }}"});
    let (status, error) = admin(
        &keyed,
        "POST",
        "/v1/templates/fallback/versions",
        Some(&broken),
    );
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["code"], "template_syntax_error");
    let (status, error) = admin(
        &keyed,
        "POST",
        "/v1/templates/farewell/versions",
        Some(&json!({"body": "Пока"})),
    );
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["code"], "unknown_template_kind");
    let (status, error) = admin(
        &keyed,
        "POST",
        "/v1/templates/fallback/versions?service=yoga",
        Some(&json!({"body": "Пока"})),
    );
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["code"], "unknown_service");

    let (status, original) = admin(
        &keyed,
        "GET",
        "/v1/templates/booking_reply/versions/1",
        None,
    );
    assert_eq!(status, 200, "{original}");
    let original_body = original["body"].as_str().unwrap().to_string();

    // A second version of every reply kind, saved inactive, then activated.
    for kind in REPLY_KINDS {
        let body = json!({"body": format!(
            "Здравствуйте{{% if name %}}, {{{{ name }}}}{{% endif %}}! Маркер второй версии {kind}."
        )});
        let path = format!("/v1/templates/{kind}/versions");
        let (status, saved) = admin(&keyed, "POST", &path, Some(&body));
        assert_eq!(status, 201, "{saved}");
        assert_eq!(saved["version"], 2, "{saved}");
        assert_eq!(saved["active"], false, "{saved}");
        let (status, versions) = admin(&keyed, "GET", &path, None);
        assert_eq!(status, 200, "{versions}");
        let versions = versions["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 2);
        assert_eq!(versions[0]["active"], true);
        assert_eq!(versions[1]["saved_by"], "test admin");
        let (status, activated) = admin(
            &keyed,
            "POST",
            &format!("{path}/2/activate"),
            Some(&json!({})),
        );
        assert_eq!(status, 200, "{activated}");
        assert_eq!(activated["active"]["version"], 2);
        assert_eq!(activated["previous_version"], 1);
    }
    let (status, missing) = admin(
        &keyed,
        "POST",
        "/v1/templates/fallback/versions/9/activate",
        Some(&json!({})),
    );
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["error"]["code"], "template_version_not_found");

    let (status, diff) = admin(
        &keyed,
        "GET",
        "/v1/templates/booking_reply/diff?from=1&to=2",
        None,
    );
    assert_eq!(status, 200, "{diff}");
    let diff = diff["diff"].as_str().unwrap();
    assert!(
        diff.starts_with("--- booking_reply v1\n+++ booking_reply v2\n"),
        "{diff}"
    );
    assert!(diff.contains("+Здравствуйте"), "{diff}");
    assert!(
        diff.contains("Маркер второй версии booking_reply"),
        "{diff}"
    );
    assert!(
        diff.lines()
            .any(|l| l.starts_with('-') && l.contains("Спасибо")),
        "{diff}"
    );

    // The draft uses the active version and records it.
    let lead = qualified_lead(&keyed, "t-1", "Хочу записаться на массаж спины в пятницу");
    let kind = lead["draft"]["template_kind"].as_str().unwrap().to_string();
    assert_eq!(lead["draft"]["template_version"], 2, "{lead}");
    let draft_text = lead["draft"]["text"].as_str().unwrap();
    assert!(
        draft_text.contains(&format!("Маркер второй версии {kind}")),
        "{draft_text}"
    );
    assert!(draft_text.contains(CLIENT_NAME), "{draft_text}");

    // Rollback makes version 1 active again, with its text unchanged.
    let path = format!("/v1/templates/{kind}/rollback");
    let (status, rolled) = admin(&keyed, "POST", &path, Some(&json!({})));
    assert_eq!(status, 200, "{rolled}");
    assert_eq!(rolled["active"]["version"], 1);
    assert_eq!(rolled["previous_version"], 2);
    let (status, error) = admin(&keyed, "POST", &path, Some(&json!({})));
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["error"]["code"], "no_older_version");
    let (_, booking) = admin(
        &keyed,
        "GET",
        "/v1/templates/booking_reply/versions/1",
        None,
    );
    assert_eq!(booking["body"].as_str().unwrap(), original_body);
    let (_, versions) = admin(
        &keyed,
        "GET",
        &format!("/v1/templates/{kind}/versions"),
        None,
    );
    let versions = versions["versions"].as_array().unwrap();
    assert_eq!(versions[0]["active"], true);
    assert_eq!(versions[1]["active"], false);
    assert!(
        versions[1]["body"]
            .as_str()
            .unwrap()
            .contains("Маркер второй версии")
    );

    let lead = qualified_lead(&keyed, "t-2", "Хочу записаться на массаж спины в пятницу");
    if lead["draft"]["template_kind"] == kind.as_str() {
        assert_eq!(lead["draft"]["template_version"], 1, "{lead}");
    }
    drop(keyed);

    // The database itself rejects a change to a saved version.
    let conn = open_db(&db);
    let update = conn.execute(
        "UPDATE response_templates SET body = 'подмена' WHERE kind = 'booking_reply'",
        [],
    );
    assert!(update.is_err(), "a saved version was changed");
}

#[test]
fn drafts_reviewed_and_replies_polled() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leads.db");
    let keyed = Keyed::start(&db, &["--wait-ms", "600000"]);
    let texts = [
        "Хочу записаться на маникюр в субботу",
        "Сколько стоит стрижка?",
        "Хочу записаться на массаж спины в пятницу",
    ];
    for (n, text) in texts.iter().enumerate() {
        qualified_lead(&keyed, &format!("r-{n}"), text);
    }
    let drafts = pending_drafts(&keyed);
    assert_eq!(drafts.len(), 3, "{drafts:?}");
    for draft in &drafts {
        assert!(draft["lead_text"].is_string(), "{draft}");
        assert!(draft["qualification"]["intent"].is_string(), "{draft}");
        assert!(
            draft["text"].as_str().unwrap().contains(CLIENT_NAME),
            "{draft}"
        );
    }
    let ids: Vec<i64> = drafts
        .iter()
        .map(|d| d["draft_id"].as_i64().unwrap())
        .collect();

    // Approve as drafted.
    let approve = |id: i64, body: &Value| {
        staff(
            &keyed,
            "POST",
            &format!("/v1/drafts/{id}/approve"),
            Some(body),
        )
    };
    let (status, first) = approve(ids[0], &json!({}));
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["edited"], false);
    assert_eq!(first["text"], drafts[0]["text"]);
    let (status, again) = approve(ids[0], &json!({}));
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["code"], "draft_already_reviewed");

    // Edit, then approve.
    let edited = format!("{CLIENT_NAME}, стрижка стоит от 1 200 ₽. Когда вам удобно прийти?");
    let (status, second) = approve(ids[1], &json!({ "text": edited }));
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["edited"], true);
    assert_eq!(second["text"], edited.as_str());

    // Reject with a reason.
    let reject = |id: i64, body: &Value| {
        staff(
            &keyed,
            "POST",
            &format!("/v1/drafts/{id}/reject"),
            Some(body),
        )
    };
    let (status, error) = reject(ids[2], &json!({}));
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["code"], "missing_field");
    let (status, error) = reject(ids[2], &json!({"reason": "  "}));
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["code"], "empty_text");
    let (status, rejected) = reject(
        ids[2],
        &json!({"reason": "Клиенту уже ответили по телефону"}),
    );
    assert_eq!(status, 200, "{rejected}");
    let (status, error) = approve(ids[2], &json!({}));
    assert_eq!(status, 409, "{error}");
    let (status, error) = approve(999_999, &json!({}));
    assert_eq!(status, 404, "{error}");
    assert_eq!(error["error"]["code"], "draft_not_found");

    assert!(pending_drafts(&keyed).is_empty());
    let (_, approved) = staff(&keyed, "GET", "/v1/drafts?status=approved", None);
    let approved = approved["drafts"].as_array().unwrap().clone();
    assert_eq!(approved.len(), 2, "{approved:?}");
    let edited_view = &approved[1];
    assert_eq!(
        edited_view["text"], drafts[1]["text"],
        "the original changed"
    );
    assert_eq!(edited_view["edited_text"], edited.as_str());
    assert_eq!(edited_view["reviewed_by"], "test staff");
    assert!(edited_view["reviewed_at"].is_string());
    assert!(approved[0].get("edited_text").is_none(), "{}", approved[0]);
    let (_, rejected) = staff(&keyed, "GET", "/v1/drafts?status=rejected", None);
    assert_eq!(
        rejected["drafts"][0]["reject_reason"],
        "Клиенту уже ответили по телефону"
    );
    let (status, lead) = staff(
        &keyed,
        "GET",
        &format!("/v1/leads/{}", drafts[1]["lead_id"]),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(lead["status"], "approved");

    // Polling: every reply once, in approval order, whatever the page size.
    let (status, all) = bot(&keyed, "GET", "/v1/replies?since=0", None);
    assert_eq!(status, 200, "{all}");
    let replies = all["replies"].as_array().unwrap();
    assert_eq!(replies.len(), 2, "{all}");
    assert_eq!(replies[0]["draft_id"], ids[0]);
    assert_eq!(replies[1]["draft_id"], ids[1]);
    assert_eq!(replies[1]["text"], edited.as_str());
    assert_eq!(replies[0]["external_id"], "r-0");
    let next = all["next_since"].as_i64().unwrap();
    assert_eq!(next, replies[1]["reply_id"].as_i64().unwrap());
    let (_, empty) = bot(&keyed, "GET", &format!("/v1/replies?since={next}"), None);
    assert_eq!(empty["replies"].as_array().unwrap().len(), 0);
    assert_eq!(empty["next_since"], next);
    let mut seen = Vec::new();
    let mut since = 0;
    loop {
        let (_, page) = bot(
            &keyed,
            "GET",
            &format!("/v1/replies?since={since}&limit=1"),
            None,
        );
        let page_replies = page["replies"].as_array().unwrap();
        if page_replies.is_empty() {
            break;
        }
        assert_eq!(page_replies.len(), 1);
        seen.push(page_replies[0]["reply_id"].as_i64().unwrap());
        since = page["next_since"].as_i64().unwrap();
    }
    let all_ids: Vec<i64> = replies
        .iter()
        .map(|r| r["reply_id"].as_i64().unwrap())
        .collect();
    assert_eq!(seen, all_ids);
    for (query, code) in [
        ("since=-1", "invalid_since"),
        ("since=abc", "invalid_query"),
        ("limit=0", "invalid_limit"),
    ] {
        let (status, error) = bot(&keyed, "GET", &format!("/v1/replies?{query}"), None);
        assert!(status == 400 || status == 422, "{query}: {status} {error}");
        assert_eq!(error["error"]["code"], code, "{query}");
    }
    // Another bot sees none of these replies: they answer leads it did not send.
    let (_, other_bot) = common::server::create_key(&db, "bot", "other bot");
    let (status, other) = with_key(&keyed, &other_bot, "GET", "/v1/replies", None);
    assert_eq!(status, 200, "{other}");
    assert_eq!(other["replies"].as_array().unwrap().len(), 0, "{other}");
    assert_eq!(other["next_since"], 0);
    let (status, error) = staff(&keyed, "GET", "/v1/drafts?status=sent", None);
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["code"], "invalid_status");
    drop(keyed);

    // Stored: the original and the edit, both with placeholders; who and when.
    let conn = open_db(&db);
    let (text, edited_text, by): (String, String, String) = conn
        .query_row(
            "SELECT text, edited_text, reviewed_by FROM drafts WHERE id = ?1",
            [ids[1]],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    assert!(text.contains("[PERSON_1]"), "{text}");
    assert!(
        edited_text.starts_with("[PERSON_1], стрижка"),
        "{edited_text}"
    );
    assert_eq!(by, "test staff");
    for row in table_texts(
        &db,
        "SELECT text FROM drafts UNION ALL SELECT ifnull(edited_text, '') FROM drafts \
         UNION ALL SELECT text FROM replies UNION ALL SELECT fields FROM journal",
    ) {
        assert!(
            !row.contains(CLIENT_NAME),
            "a stored row holds the name: {row}"
        );
        assert!(
            !row.contains("555-12-34"),
            "a stored row holds the phone: {row}"
        );
    }
    let reads: i64 = conn
        .query_row(
            "SELECT count(*) FROM journal WHERE action IN ('draft_read', 'reply_read') \
             AND fields LIKE '%PERSON%'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(reads >= 5, "only {reads} journaled reads of the name");
}

/// A webhook receiver on 127.0.0.1 that responds to each request with the next status of
/// a script per reply id, and records the requests it got.
struct Receiver {
    url: String,
    requests: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Receiver {
    /// `first_reply_statuses` are the responses to the first reply's attempts in turn; every
    /// other reply gets 500.
    fn start(first_reply_statuses: Vec<u16>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let sink = requests.clone();
        std::thread::spawn(move || {
            let mut script = first_reply_statuses.into_iter();
            let mut first_reply = None;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let Some((authorization, body)) = read_request(&mut stream) else {
                    continue;
                };
                let reply_id = body["reply_id"].as_i64();
                let first = *first_reply.get_or_insert(reply_id);
                let status = if reply_id == first {
                    script.next().unwrap_or(200)
                } else {
                    500
                };
                sink.lock().unwrap().push((authorization, body));
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.write_all(response.as_bytes());
            }
        });
        Receiver { url, requests }
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// Reads one HTTP request and returns its Authorization header and JSON body.
fn read_request(stream: &mut std::net::TcpStream) -> Option<(String, Value)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut authorization = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        if name.eq_ignore_ascii_case("authorization") {
            authorization = value.trim().to_string();
        }
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((authorization, serde_json::from_slice(&body).ok()?))
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn webhook_retries_then_stores_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leads.db");
    let receiver = Receiver::start(vec![503, 502, 200]);
    let config = dir.path().join("leadgate.toml");
    std::fs::write(
        &config,
        format!(
            "[webhook]\nurl = \"{}\"\nmax_attempts = 3\nfirst_retry_ms = 200\ntimeout_ms = 5000\n",
            receiver.url
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let args = ["--wait-ms", "600000", "--config", config_arg];

    let started = leadgate()
        .args(["serve", "--listen", "127.0.0.1:0", "--config", config_arg])
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    assert!(!started.status.success(), "started without a webhook token");
    let stderr = String::from_utf8_lossy(&started.stderr);
    assert!(stderr.contains("LEADGATE_WEBHOOK_TOKEN"), "{stderr}");

    let keyed = Keyed::start_with_env(&db, &args, &[("LEADGATE_WEBHOOK_TOKEN", "s3cret")]);
    qualified_lead(&keyed, "w-1", "Хочу записаться на маникюр в субботу");
    qualified_lead(&keyed, "w-2", "Сколько стоит стрижка?");
    let drafts = pending_drafts(&keyed);
    assert_eq!(drafts.len(), 2);
    for draft in &drafts {
        let path = format!("/v1/drafts/{}/approve", draft["draft_id"]);
        let (status, reply) = staff(&keyed, "POST", &path, Some(&json!({})));
        assert_eq!(status, 200, "{reply}");
    }
    // Reply 1: 503, 502, then 200. Reply 2: 500 three times, then it is given up.
    wait_for("six webhook requests", Duration::from_secs(60), || {
        receiver.count() >= 6
    });
    let conn = open_db(&db);
    let outcome = |reply_id: i64| -> (String, i64, Option<i64>) {
        conn.query_row(
            "SELECT status, attempts, last_status FROM webhook_deliveries WHERE reply_id = ?1",
            [reply_id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap()
    };
    wait_for("both outcomes stored", Duration::from_secs(30), || {
        outcome(1).0 != "pending" && outcome(2).0 != "pending"
    });
    assert_eq!(outcome(1), ("delivered".to_string(), 3, Some(200)));
    assert_eq!(outcome(2), ("failed".to_string(), 3, Some(500)));
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(receiver.count(), 6, "a reply was sent after it was settled");

    let requests = receiver.requests.lock().unwrap().clone();
    for (authorization, body) in &requests {
        assert_eq!(authorization, "Bearer s3cret");
        assert!(
            body["text"].as_str().unwrap().contains(CLIENT_NAME),
            "{body}"
        );
        assert!(body["reply_id"].is_i64(), "{body}");
    }
    let (_, polled) = bot(&keyed, "GET", "/v1/replies", None);
    assert_eq!(polled["replies"].as_array().unwrap().len(), 2);
    let log = keyed.server.stop();
    assert!(!log.contains("s3cret"), "the token is in the log");
    assert!(
        !log.contains(CLIENT_NAME),
        "the client's name is in the log"
    );
}
