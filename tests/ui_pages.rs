//! The staff page over plain HTTP on the real binary: sign-in, cookies, CSRF tokens, role
//! checks, security headers, the journal of reads, and the admin template pages.

mod common;

use common::server::{Keyed, call, create_key, leadgate, open_db};
use common::ui::{browser, cookie_value, csrf, page, set_cookie, sign_in};
use serde_json::json;

#[test]
fn staff_page_sessions_and_csrf() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ui.db");
    let keyed = Keyed::start(&db, &["--wait-ms", "600000"]);
    let base = keyed.server.base.clone();
    let lead = json!({"channel": "web", "external_id": "ui-1",
        "text": "Хочу записаться на маникюр в субботу", "contact": {"name": "Эльвира"},
        "consent": {"granted": true}});
    let (status, body, _) = call(
        &keyed.server,
        "POST",
        "/v1/leads",
        Some(&keyed.bot),
        Some(&lead),
    );
    assert_eq!(status, 201, "{body}");

    // Without a session every page sends the browser to the sign-in form.
    let anonymous = page(browser().get(&format!("{base}/ui/drafts")).call());
    assert_eq!(anonymous.status, 303);
    assert_eq!(anonymous.location.as_deref(), Some("/ui/login"));

    // The sign-in form rejects a wrong CSRF token, a bot key and an unknown key.
    let form = page(browser().get(&format!("{base}/ui/login")).call());
    let login_cookie = format!(
        "lg_login_csrf={}",
        cookie_value(set_cookie(&form, "lg_login_csrf"))
    );
    let token = csrf(&form);
    let attempt = |csrf: &str, key: &str| {
        page(
            browser()
                .post(&format!("{base}/ui/login"))
                .set("Cookie", &login_cookie)
                .send_form(&[("csrf", csrf), ("key", key)]),
        )
    };
    assert_eq!(attempt("forged", &keyed.staff).status, 403);
    assert_eq!(attempt(&token, &keyed.bot).status, 403);
    assert_eq!(attempt(&token, "lg_unknown").status, 401);

    let (cookie, token) = sign_in(&base, &keyed.staff);
    let queue = page(
        browser()
            .get(&format!("{base}/ui/drafts"))
            .set("Cookie", &cookie)
            .call(),
    );
    assert!(
        queue.body.contains("маникюр"),
        "the queue lacks the lead's text"
    );
    assert!(
        queue.body.contains("Эльвира"),
        "the draft lacks the client's name"
    );
    assert!(
        queue.body.contains("accesskey=\"1\""),
        "no keyboard shortcut"
    );
    assert!(
        queue.body.contains("name=\"viewport\""),
        "no viewport for phones"
    );
    assert_eq!(queue.cache.as_deref(), Some("no-store"));
    assert!(queue.csp.unwrap_or_default().contains("default-src 'none'"));

    // A form without the session's CSRF token changes nothing.
    let (_, drafts, _) = call(&keyed.server, "GET", "/v1/drafts", Some(&keyed.staff), None);
    let draft_id = drafts["drafts"][0]["draft_id"].as_i64().unwrap();
    let approve_url = format!("{base}/ui/drafts/{draft_id}/approve");
    let forged = page(
        browser()
            .post(&approve_url)
            .set("Cookie", &cookie)
            .send_form(&[("csrf", "forged"), ("action", "approve"), ("text", "")]),
    );
    assert_eq!(forged.status, 403);
    let missing = page(
        browser()
            .post(&approve_url)
            .set("Cookie", &cookie)
            .send_form(&[("action", "approve")]),
    );
    assert_eq!(missing.status, 400);
    let (_, pending, _) = call(&keyed.server, "GET", "/v1/drafts", Some(&keyed.staff), None);
    assert_eq!(
        pending["drafts"].as_array().unwrap().len(),
        1,
        "a forged form approved"
    );

    // Staff may not open the template and consent pages.
    let templates = page(
        browser()
            .get(&format!("{base}/ui/templates"))
            .set("Cookie", &cookie)
            .call(),
    );
    assert_eq!(templates.status, 403);
    let consent = page(
        browser()
            .get(&format!("{base}/ui/consent"))
            .set("Cookie", &cookie)
            .call(),
    );
    assert_eq!(consent.status, 403);

    // With the token, the reject form works.
    let rejected = page(
        browser()
            .post(&format!("{base}/ui/drafts/{draft_id}/reject"))
            .set("Cookie", &cookie)
            .send_form(&[
                ("csrf", &token),
                ("reason", "Эльвира уже записана по телефону"),
            ]),
    );
    assert_eq!(rejected.status, 303, "{}", rejected.body);
    let (_, view, _) = call(
        &keyed.server,
        "GET",
        &format!("/v1/drafts/{draft_id}"),
        Some(&keyed.staff),
        None,
    );
    assert_eq!(view["status"], "rejected");
    assert_eq!(view["reject_reason"], "Эльвира уже записана по телефону");
    assert_eq!(view["reviewed_by"], "test staff");

    // Signing out ends the session.
    let out = page(
        browser()
            .post(&format!("{base}/ui/logout"))
            .set("Cookie", &cookie)
            .send_form(&[("csrf", &token)]),
    );
    assert_eq!(out.status, 303);
    let after = page(
        browser()
            .get(&format!("{base}/ui/drafts"))
            .set("Cookie", &cookie)
            .call(),
    );
    assert_eq!(after.status, 303, "the session outlived the sign-out");

    // Revoking a key ends its sessions at once.
    let (staff_id, staff_key) = create_key(&db, "staff", "evening shift");
    let (cookie, _) = sign_in(&base, &staff_key);
    let revoke = leadgate()
        .args(["keys", "revoke", &staff_id.to_string(), "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(revoke.status.success());
    let after = page(
        browser()
            .get(&format!("{base}/ui/drafts"))
            .set("Cookie", &cookie)
            .call(),
    );
    assert_eq!(after.status, 303, "a revoked key's session still works");
    drop(keyed);

    // The full view of the draft was journaled with the key, without the values.
    let conn = open_db(&db);
    type Read = (Option<i64>, Option<String>, String, String);
    let reads: Vec<Read> = conn
        .prepare(
            "SELECT key_id, role, personal_fields, fields FROM journal \
             WHERE action = 'ui_draft_read'",
        )
        .unwrap()
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!reads.is_empty(), "no journaled read");
    for (key_id, role, personal_fields, fields) in &reads {
        assert!(key_id.is_some(), "a read without its key");
        assert_eq!(role.as_deref(), Some("staff"));
        assert!(personal_fields.contains("lead.text"), "{personal_fields}");
        assert!(personal_fields.contains("draft.text"), "{personal_fields}");
        assert!(fields.contains("PERSON"), "{fields}");
        assert!(
            !fields.contains("Эльвира"),
            "a journal entry holds the name"
        );
    }
    let stored_reason: String = conn
        .query_row(
            "SELECT reject_reason FROM drafts WHERE id = ?1",
            [draft_id],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored_reason, "[PERSON_1] уже записана по телефону");
}

#[test]
fn admin_template_pages() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ui.db");
    let keyed = Keyed::start(&db, &[]);
    let base = keyed.server.base.clone();
    let (cookie, token) = sign_in(&base, &keyed.admin);

    let list = page(
        browser()
            .get(&format!("{base}/ui/templates"))
            .set("Cookie", &cookie)
            .call(),
    );
    assert_eq!(list.status, 200);
    assert!(list.body.contains("/ui/templates/booking_reply"));

    let save = |body: &str| {
        page(
            browser()
                .post(&format!("{base}/ui/templates/fallback/save"))
                .set("Cookie", &cookie)
                .send_form(&[("csrf", &token), ("body", body), ("activate", "1")]),
        )
    };
    let rejected = save("Здравствуйте, {{ client_phone }}!");
    assert_eq!(rejected.status, 422);
    assert!(
        rejected.body.contains("client_phone"),
        "the page does not name the variable"
    );
    let saved = save("Здравствуйте{% if name %}, {{ name }}{% endif %}! Скоро ответим.");
    assert_eq!(saved.status, 303, "{}", saved.body);

    let (_, versions, _) = call(
        &keyed.server,
        "GET",
        "/v1/templates/fallback/versions",
        Some(&keyed.admin),
        None,
    );
    let versions = versions["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1]["active"], true);
    assert_eq!(versions[1]["saved_by"], "test admin");

    let diff = page(
        browser()
            .get(&format!("{base}/ui/templates/fallback?from=1&to=2"))
            .set("Cookie", &cookie)
            .call(),
    );
    assert_eq!(diff.status, 200);
    assert!(
        diff.body.contains("class=\"add\""),
        "no added line in the difference"
    );

    let consent = page(
        browser()
            .get(&format!("{base}/ui/consent"))
            .set("Cookie", &cookie)
            .call(),
    );
    assert_eq!(consent.status, 200);
    assert!(
        consent.body.contains("Цепочка записей цела"),
        "the chain is not shown as valid"
    );
    assert!(
        consent.body.contains("lead_processing"),
        "the shipped consent text is missing"
    );

    let rollback = page(
        browser()
            .post(&format!("{base}/ui/templates/fallback/rollback"))
            .set("Cookie", &cookie)
            .send_form(&[("csrf", &token)]),
    );
    assert_eq!(rollback.status, 303);
    let (_, active, _) = call(
        &keyed.server,
        "GET",
        "/v1/templates/fallback/versions",
        Some(&keyed.admin),
        None,
    );
    assert_eq!(active["versions"][0]["active"], true);
}
