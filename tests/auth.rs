//! API keys against the real binary: `leadgate keys create|list|revoke`, every `/v1`
//! endpoint checked with no key, a revoked key and a key of each role, and every route of
//! the staff page with no session and a session of each role.

mod common;

use common::server::{Keyed, call, create_key, leadgate, open_db};
use common::ui::{browser, cookie_value, csrf, page, set_cookie, sign_in};
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
    /// The path. `{lead}` stands for a lead the bot created, `{unused_text}` for a
    /// consent text version that no consent refers to, and `{act}` for a destruction act.
    /// [`ENDPOINTS`] describes `{draft}` and `{fresh_draft}`.
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

fn consent_body(n: usize) -> Option<Value> {
    Some(
        json!({"subject": {"phone": "+7 917 000-00-01"}, "event": "granted",
        "purpose": "lead_processing", "channel": "web", "evidence": format!("matrix-{n}")}),
    )
}

fn consent_text_body(_: usize) -> Option<Value> {
    Some(
        json!({"purpose": "lead_processing", "categories": ["имя"], "operations": ["хранение"],
        "term": "один год", "withdrawal": "напишите на {{ contact }}", "body": "Согласие"}),
    )
}

fn empty_body(_: usize) -> Option<Value> {
    Some(json!({}))
}

fn reason_body(_: usize) -> Option<Value> {
    Some(json!({"reason": "Клиенту ответили по телефону"}))
}

fn template_body(_: usize) -> Option<Value> {
    Some(json!({"body": "Здравствуйте{% if name %}, {{ name }}{% endif %}!", "activate": true}))
}

fn erase_body(_: usize) -> Option<Value> {
    Some(json!({"phone": "+79170000009"}))
}

const REVIEWERS: &[Caller] = &[Caller::Staff, Caller::Admin];

/// Every `/v1` endpoint. A row added here is checked for all five callers. In a path,
/// `{draft}` is a pending draft, and `{fresh_draft}` a draft that no allowed caller has
/// reviewed yet, a new one for each of them.
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
        method: "POST",
        path: "/v1/consents",
        body: consent_body,
        allowed: &[Caller::Bot],
        success: 201,
    },
    Endpoint {
        method: "GET",
        path: "/v1/consents/verify",
        body: no_body,
        allowed: &[Caller::Admin],
        success: 200,
    },
    Endpoint {
        method: "GET",
        path: "/v1/consent-texts",
        body: no_body,
        allowed: &[Caller::Bot, Caller::Staff, Caller::Admin],
        success: 200,
    },
    Endpoint {
        method: "POST",
        path: "/v1/consent-texts",
        body: consent_text_body,
        allowed: &[Caller::Admin],
        success: 201,
    },
    Endpoint {
        method: "GET",
        path: "/v1/consent-texts/lead_processing/1",
        body: no_body,
        allowed: &[Caller::Bot, Caller::Staff, Caller::Admin],
        success: 200,
    },
    Endpoint {
        method: "PUT",
        path: "/v1/consent-texts/lead_processing/{unused_text}",
        body: consent_text_body,
        allowed: &[Caller::Admin],
        success: 200,
    },
    Endpoint {
        method: "POST",
        path: "/v1/consent-texts/lead_processing/1/activate",
        body: no_body,
        allowed: &[Caller::Admin],
        success: 200,
    },
    Endpoint {
        method: "GET",
        path: "/v1/drafts?status=pending",
        body: no_body,
        allowed: REVIEWERS,
        success: 200,
    },
    Endpoint {
        method: "GET",
        path: "/v1/drafts/{draft}",
        body: no_body,
        allowed: REVIEWERS,
        success: 200,
    },
    Endpoint {
        method: "POST",
        path: "/v1/drafts/{fresh_draft}/approve",
        body: empty_body,
        allowed: REVIEWERS,
        success: 200,
    },
    Endpoint {
        method: "POST",
        path: "/v1/drafts/{fresh_draft}/reject",
        body: reason_body,
        allowed: REVIEWERS,
        success: 200,
    },
    Endpoint {
        method: "GET",
        path: "/v1/replies?since=0",
        body: no_body,
        allowed: &[Caller::Bot],
        success: 200,
    },
    Endpoint {
        method: "GET",
        path: "/v1/templates",
        body: no_body,
        allowed: &[Caller::Admin],
        success: 200,
    },
    Endpoint {
        method: "GET",
        path: "/v1/templates/fallback/versions",
        body: no_body,
        allowed: &[Caller::Admin],
        success: 200,
    },
    Endpoint {
        method: "POST",
        path: "/v1/templates/fallback/versions",
        body: template_body,
        allowed: &[Caller::Admin],
        success: 201,
    },
    Endpoint {
        method: "GET",
        path: "/v1/templates/fallback/versions/1",
        body: no_body,
        allowed: &[Caller::Admin],
        success: 200,
    },
    Endpoint {
        method: "POST",
        path: "/v1/templates/fallback/rollback",
        body: empty_body,
        allowed: &[Caller::Admin],
        success: 200,
    },
    Endpoint {
        method: "POST",
        path: "/v1/templates/fallback/versions/2/activate",
        body: empty_body,
        allowed: &[Caller::Admin],
        success: 200,
    },
    Endpoint {
        method: "GET",
        path: "/v1/templates/fallback/diff?from=1&to=2",
        body: no_body,
        allowed: &[Caller::Admin],
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
        path: "/v1/acts/{act}",
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

/// Sends five leads with their clients' consent, so that each gets a draft, and returns the
/// oldest pending draft and the other four.
fn pending_drafts(keyed: &Keyed, prefix: &str) -> (i64, Vec<i64>) {
    let server = &keyed.server;
    for n in 0..5 {
        let body = json!({"channel": "web", "external_id": format!("{prefix}-{n}"),
            "text": "Хочу записаться на маникюр в субботу", "consent": {"granted": true}});
        let (status, body, _) = call(server, "POST", "/v1/leads", Some(&keyed.bot), Some(&body));
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["status"], "pending_review", "{body}");
    }
    let (status, pending, _) = call(server, "GET", "/v1/drafts", Some(&keyed.staff), None);
    assert_eq!(status, 200, "{pending}");
    let mut drafts: Vec<i64> = pending["drafts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|draft| draft["draft_id"].as_i64().unwrap())
        .collect();
    assert_eq!(drafts.len(), 5, "{pending}");
    let kept = drafts.remove(0);
    (kept, drafts)
}

/// Returns true when a matrix path (with values and a query) is an instance of an OpenAPI
/// path template such as `/v1/leads/{id}`.
fn same_route(matrix_path: &str, template: &str) -> bool {
    let path = matrix_path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').collect();
    let templates: Vec<&str> = template.split('/').collect();
    segments.len() == templates.len()
        && segments
            .iter()
            .zip(&templates)
            .all(|(segment, template)| template.starts_with('{') || segment == template)
}

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

    let conn = open_db(&db);
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

    // A consent text version no consent refers to, for the PUT row.
    let (status, body, _) = call(
        server,
        "POST",
        "/v1/consent-texts",
        Some(&keyed.admin),
        consent_text_body(0).as_ref(),
    );
    assert_eq!(status, 201, "{body}");
    let unused_text = body["version"].as_i64().expect("version");

    // A destruction act for the `{act}` row: the erasure of a client with a stored lead.
    let erased = json!({"channel": "web", "external_id": "erased-1",
        "text": "Запишите на стрижку", "contact": {"phone": "+7 917 000-00-08"},
        "consent": {"granted": true}});
    let (status, body, _) = call(server, "POST", "/v1/leads", Some(&keyed.bot), Some(&erased));
    assert_eq!(status, 201, "{body}");
    let subject = json!({"phone": "+79170000008"});
    let (status, body, _) = call(
        server,
        "POST",
        "/v1/subjects/erase",
        Some(&keyed.admin),
        Some(&subject),
    );
    assert_eq!(status, 200, "{body}");
    let act = body["act_id"].as_i64().expect("an act");

    // Drafts to review: one per allowed approve or reject call, and one that stays pending.
    let (kept_draft, mut fresh_drafts) = pending_drafts(&keyed, "draft");

    let mut calls = 2;
    for endpoint in ENDPOINTS {
        for caller in CALLERS {
            let uses_fresh = endpoint.path.contains("{fresh_draft}");
            let fresh = if uses_fresh && endpoint.allowed.contains(&caller) {
                fresh_drafts.pop()
            } else {
                fresh_drafts.last().copied()
            };
            let path = endpoint
                .path
                .replace("{lead}", &own_lead.to_string())
                .replace("{unused_text}", &unused_text.to_string())
                .replace("{draft}", &kept_draft.to_string())
                .replace("{fresh_draft}", &fresh.unwrap_or(0).to_string())
                .replace("{act}", &act.to_string());
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

    // Every operation of the API has a row above.
    let (status, openapi, _) = call(server, "GET", "/openapi.json", None, None);
    assert_eq!(status, 200);
    let paths = openapi["paths"]
        .as_object()
        .expect("paths in /openapi.json");
    for (path, operations) in paths {
        for method in operations.as_object().expect("operations").keys() {
            let covered = ENDPOINTS.iter().any(|endpoint| {
                endpoint.method.eq_ignore_ascii_case(method) && same_route(endpoint.path, path)
            });
            assert!(covered, "{method} {path} has no row in the role matrix");
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

/// Who opens the staff page in the `/ui` matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Visitor {
    NoSession,
    Staff,
    Admin,
}

/// One route of the staff page, opened with a session of each role. The page signs in
/// with a key once and then uses a cookie, so its cells differ from the API's: no session
/// is sent to the sign-in form, and a role that may not use the route gets 403.
struct UiRoute {
    method: &'static str,
    /// The path; `{draft}` is a pending draft, `{fresh_draft}` a new one for each caller.
    path: &'static str,
    /// The form fields besides `csrf`; GET routes have none.
    form: &'static [(&'static str, &'static str)],
    allowed: &'static [Visitor],
    success: u16,
}

const UI_REVIEWERS: &[Visitor] = &[Visitor::Staff, Visitor::Admin];
const UI_ADMINS: &[Visitor] = &[Visitor::Admin];

/// Every route of the staff page that needs a session, in the order the matrix calls them.
/// `/ui` itself, `/ui/login` and `/ui/logout` are checked after it.
const UI_ROUTES: &[UiRoute] = &[
    UiRoute {
        method: "GET",
        path: "/ui/drafts",
        form: &[],
        allowed: UI_REVIEWERS,
        success: 200,
    },
    UiRoute {
        method: "GET",
        path: "/ui/drafts/{draft}",
        form: &[],
        allowed: UI_REVIEWERS,
        success: 200,
    },
    UiRoute {
        method: "POST",
        path: "/ui/drafts/{fresh_draft}/approve",
        form: &[("action", "approve")],
        allowed: UI_REVIEWERS,
        success: 303,
    },
    UiRoute {
        method: "POST",
        path: "/ui/drafts/{fresh_draft}/reject",
        form: &[("reason", "Клиенту ответили по телефону")],
        allowed: UI_REVIEWERS,
        success: 303,
    },
    UiRoute {
        method: "GET",
        path: "/ui/templates",
        form: &[],
        allowed: UI_ADMINS,
        success: 200,
    },
    UiRoute {
        method: "GET",
        path: "/ui/templates/fallback",
        form: &[],
        allowed: UI_ADMINS,
        success: 200,
    },
    UiRoute {
        method: "POST",
        path: "/ui/templates/fallback/save",
        form: &[("body", "Здравствуйте! Скоро ответим."), ("activate", "1")],
        allowed: UI_ADMINS,
        success: 303,
    },
    UiRoute {
        method: "POST",
        path: "/ui/templates/fallback/rollback",
        form: &[],
        allowed: UI_ADMINS,
        success: 303,
    },
    UiRoute {
        method: "POST",
        path: "/ui/templates/fallback/activate",
        form: &[("version", "2")],
        allowed: UI_ADMINS,
        success: 303,
    },
    UiRoute {
        method: "GET",
        path: "/ui/consent",
        form: &[],
        allowed: UI_ADMINS,
        success: 200,
    },
    UiRoute {
        method: "POST",
        path: "/ui/consent/activate",
        form: &[("purpose", "lead_processing"), ("version", "1")],
        allowed: UI_ADMINS,
        success: 303,
    },
];

#[test]
fn staff_page_role_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ui-matrix.db");
    let (revoked_id, revoked) = create_key(&db, "admin", "revoked admin");
    let keyed = Keyed::start(&db, &["--wait-ms", "600000"]);
    let server = &keyed.server;
    let base = server.base.clone();
    let (ok, _, stderr) = run(&["keys", "revoke", &revoked_id.to_string()], &db);
    assert!(ok, "{stderr}");

    // A bot key and a revoked key cannot sign in.
    let form = page(browser().get(&format!("{base}/ui/login")).call());
    assert_eq!(form.status, 200);
    let login_cookie = format!(
        "lg_login_csrf={}",
        cookie_value(set_cookie(&form, "lg_login_csrf"))
    );
    let token = csrf(&form);
    for (key, expected) in [(&keyed.bot, 403), (&revoked, 401)] {
        let attempt = page(
            browser()
                .post(&format!("{base}/ui/login"))
                .set("Cookie", &login_cookie)
                .send_form(&[("csrf", &token), ("key", key)]),
        );
        assert_eq!(attempt.status, expected, "{}", attempt.body);
    }

    // Drafts: one per allowed approve or reject call, and one that stays pending.
    let (kept_draft, mut fresh_drafts) = pending_drafts(&keyed, "ui-draft");

    let staff = sign_in(&base, &keyed.staff);
    let admin = sign_in(&base, &keyed.admin);
    for route in UI_ROUTES {
        for visitor in [Visitor::NoSession, Visitor::Staff, Visitor::Admin] {
            let session = match visitor {
                Visitor::NoSession => None,
                Visitor::Staff => Some(&staff),
                Visitor::Admin => Some(&admin),
            };
            let allowed = route.allowed.contains(&visitor);
            let fresh = if allowed && route.path.contains("{fresh_draft}") {
                fresh_drafts.pop()
            } else {
                fresh_drafts.last().copied()
            };
            let path = route
                .path
                .replace("{draft}", &kept_draft.to_string())
                .replace("{fresh_draft}", &fresh.unwrap_or(0).to_string());
            let url = format!("{base}{path}");
            let mut request = browser().request(route.method, &url);
            if let Some((cookie, _)) = session {
                request = request.set("Cookie", cookie);
            }
            let response = if route.method == "GET" {
                page(request.call())
            } else {
                let csrf = session.map_or("none", |(_, csrf)| csrf.as_str());
                let mut fields = vec![("csrf", csrf)];
                fields.extend(route.form.iter().copied());
                page(request.send_form(&fields))
            };
            let cell = format!("{} {} as {visitor:?}", route.method, route.path);
            match visitor {
                Visitor::NoSession => {
                    assert_eq!(response.status, 303, "{cell}: {}", response.body);
                    assert_eq!(response.location.as_deref(), Some("/ui/login"), "{cell}");
                }
                _ if allowed => {
                    assert_eq!(response.status, route.success, "{cell}: {}", response.body)
                }
                _ => assert_eq!(response.status, 403, "{cell}: {}", response.body),
            }
        }
    }

    // `/ui` redirects everyone to the queue, which redirects a visitor without a session to
    // the sign-in form. Signing out needs a session.
    let root = page(browser().get(&format!("{base}/ui")).call());
    assert_eq!(root.status, 303);
    assert_eq!(root.location.as_deref(), Some("/ui/drafts"));
    let anonymous_out = page(
        browser()
            .post(&format!("{base}/ui/logout"))
            .send_form(&[("csrf", "none")]),
    );
    assert_eq!(anonymous_out.status, 303);
    assert_eq!(anonymous_out.location.as_deref(), Some("/ui/login"));
    for (cookie, csrf) in [&staff, &admin] {
        let out = page(
            browser()
                .post(&format!("{base}/ui/logout"))
                .set("Cookie", cookie)
                .send_form(&[("csrf", csrf)]),
        );
        assert_eq!(out.status, 303, "{}", out.body);
        let after = page(
            browser()
                .get(&format!("{base}/ui/drafts"))
                .set("Cookie", cookie)
                .call(),
        );
        assert_eq!(after.location.as_deref(), Some("/ui/login"));
    }
}
