//! API keys against the real binary: `leadgate keys create|list|revoke`, and every `/v1`
//! endpoint checked with no key, a revoked key and a key of each role.

mod common;

use common::server::{Keyed, call, create_key, leadgate};
use serde_json::{Value, json};

/// Who sends a request in the matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    NoKey,
    Revoked,
    Bot,
    Staff,
    Admin,
}

const CALLERS: [Caller; 5] = [
    Caller::NoKey,
    Caller::Revoked,
    Caller::Bot,
    Caller::Staff,
    Caller::Admin,
];

/// One endpoint of the matrix: the roles that may use it and the status they get.
struct Endpoint {
    method: &'static str,
    /// The path; `{lead}` stands for a lead the bot created.
    path: &'static str,
    /// The body for the n-th call, so that calls that create something do not collide.
    body: fn(usize) -> Option<Value>,
    allowed: &'static [Caller],
    success: u16,
}

fn no_body(_: usize) -> Option<Value> {
    None
}

fn lead_body(n: usize) -> Option<Value> {
    Some(
        json!({"channel": "web", "external_id": format!("matrix-{n}"),
        "text": "Сколько стоит маникюр?"}),
    )
}

fn erase_body(_: usize) -> Option<Value> {
    Some(json!({"phone": "+79170000009"}))
}

/// Every `/v1` endpoint. A row added here is checked for all five callers.
const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        method: "POST",
        path: "/v1/leads",
        body: lead_body,
        allowed: &[Caller::Bot],
        success: 201,
    },
    Endpoint {
        method: "GET",
        path: "/v1/leads/{lead}",
        body: no_body,
        allowed: &[Caller::Bot, Caller::Staff, Caller::Admin],
        success: 200,
    },
    Endpoint {
        method: "GET",
        path: "/v1/journal?limit=5",
        body: no_body,
        allowed: &[Caller::Admin],
        success: 200,
    },
    Endpoint {
        method: "GET",
        path: "/v1/acts",
        body: no_body,
        allowed: &[Caller::Admin],
        success: 200,
    },
    Endpoint {
        method: "GET",
        path: "/v1/subjects/export?phone=%2B79170000009",
        body: no_body,
        allowed: &[Caller::Admin],
        success: 200,
    },
    Endpoint {
        method: "POST",
        path: "/v1/subjects/erase",
        body: erase_body,
        allowed: &[Caller::Admin],
        success: 200,
    },
];

fn run(args: &[&str], db: &std::path::Path) -> (bool, String, String) {
    let output = leadgate().args(args).arg("--db").arg(db).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn keys_cli_creates_lists_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keys.db");
    let (id, secret) = create_key(&db, "staff", "front desk");
    assert!(secret.starts_with("lg_"), "the key lacks its prefix");
    assert_eq!(secret.len(), 3 + 64);

    let (ok, stdout, stderr) = run(&["keys", "list"], &db);
    assert!(ok, "{stderr}");
    let keys: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(keys[0]["id"], id);
    assert_eq!(keys[0]["name"], "front desk");
    assert_eq!(keys[0]["role"], "staff");
    assert_eq!(keys[0]["revoked_at"], Value::Null);
    assert!(
        !stdout.contains(&secret[3..]),
        "keys list prints the secret"
    );

    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: String = conn
        .query_row("SELECT key_sha256 FROM api_keys", [], |row| row.get(0))
        .unwrap();
    assert_eq!(stored.len(), 64);
    let secret_in_db: i64 = conn
        .query_row(
            "SELECT count(*) FROM api_keys WHERE key_sha256 = ?1 OR prefix = ?1 OR name = ?1",
            [&secret],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(secret_in_db, 0, "the key is stored in clear");

    let (ok, _, stderr) = run(&["keys", "revoke", &id.to_string()], &db);
    assert!(ok, "{stderr}");
    let (_, stdout, _) = run(&["keys", "list"], &db);
    let keys: Value = serde_json::from_str(&stdout).unwrap();
    assert!(keys[0]["revoked_at"].is_string(), "{keys}");

    let (ok, _, stderr) = run(&["keys", "revoke", "999"], &db);
    assert!(!ok, "revoking an unknown key succeeded");
    assert!(stderr.contains("999"), "{stderr}");
    let (ok, _, stderr) = run(&["keys", "create", "--role", "owner", "--name", "x"], &db);
    assert!(!ok, "an unknown role was accepted");
    assert!(stderr.contains("bot, staff or admin"), "{stderr}");
}

#[test]
fn role_matrix_every_cell() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("auth.db");
    let (revoked_id, revoked) = create_key(&db, "admin", "revoked admin");
    let keyed = Keyed::start(&db, &["--wait-ms", "600000"]);
    let server = &keyed.server;

    // A key created while the server runs is accepted at once, and a revoked one rejected.
    let (_, late_bot) = create_key(&db, "bot", "late bot");
    let (status, body, _) = call(
        server,
        "POST",
        "/v1/leads",
        Some(&late_bot),
        lead_body(0).as_ref(),
    );
    assert_eq!(status, 201, "a key made while serving: {body}");
    let lead = body["lead_id"].as_i64().expect("lead_id");
    let (ok, _, stderr) = run(&["keys", "revoke", &revoked_id.to_string()], &db);
    assert!(ok, "{stderr}");

    // The bot that owns the matrix's lead.
    let (status, body, _) = call(
        server,
        "POST",
        "/v1/leads",
        Some(&keyed.bot),
        lead_body(1).as_ref(),
    );
    assert_eq!(status, 201, "{body}");
    let own_lead = body["lead_id"].as_i64().expect("lead_id");

    let mut calls = 2;
    for endpoint in ENDPOINTS {
        let path = endpoint.path.replace("{lead}", &own_lead.to_string());
        for caller in CALLERS {
            let key = match caller {
                Caller::NoKey => None,
                Caller::Revoked => Some(revoked.as_str()),
                Caller::Bot => Some(keyed.bot.as_str()),
                Caller::Staff => Some(keyed.staff.as_str()),
                Caller::Admin => Some(keyed.admin.as_str()),
            };
            calls += 1;
            let body = (endpoint.body)(calls);
            let (status, response, _) = call(server, endpoint.method, &path, key, body.as_ref());
            let cell = format!("{} {} as {caller:?}", endpoint.method, endpoint.path);
            let (expected, code) = match caller {
                Caller::NoKey | Caller::Revoked => (401, Some("unauthorized")),
                _ if endpoint.allowed.contains(&caller) => (endpoint.success, None),
                _ => (403, Some("forbidden")),
            };
            assert_eq!(status, expected, "{cell}: {response}");
            if let Some(code) = code {
                assert_eq!(response["error"]["code"], code, "{cell}: {response}");
            }
        }
    }

    // A bot reads only its own leads: another bot's lead is 404, as if it did not exist.
    let path = format!("/v1/leads/{lead}");
    let (status, body, _) = call(server, "GET", &path, Some(&keyed.bot), None);
    assert_eq!(status, 404, "another bot's lead: {body}");
    assert_eq!(body["error"]["code"], "lead_not_found");
    let (status, _, _) = call(server, "GET", &path, Some(&late_bot), None);
    assert_eq!(status, 200, "the bot's own lead");
    let (status, _, _) = call(server, "GET", &path, Some(&keyed.staff), None);
    assert_eq!(status, 200, "staff read a bot's lead");

    // The X-Api-Key header works as well as the bearer token.
    let response = common::server::agent()
        .get(&server.url(&path))
        .set("X-Api-Key", &late_bot)
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);

    // A bot cannot take over another bot's (channel, external_id).
    let (status, body, _) = call(
        server,
        "POST",
        "/v1/leads",
        Some(&keyed.bot),
        lead_body(0).as_ref(),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "external_id_taken");

    // The open endpoints stay open.
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let (status, body, _) = call(server, "GET", path, None, None);
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (_, openapi, _) = call(server, "GET", "/openapi.json", None, None);
    assert!(
        openapi["components"]["securitySchemes"]["api_key"].is_object(),
        "no security scheme in /openapi.json"
    );

    let log = keyed.server.stop();
    for key in [&keyed.bot, &keyed.staff, &keyed.admin, &late_bot, &revoked] {
        assert!(!log.contains(&key[3..]), "a key is in the server log");
    }
}
