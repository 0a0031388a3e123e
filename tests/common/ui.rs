//! Plain-HTTP helpers for the staff page at `/ui`: a client that shows each redirect,
//! cookies, CSRF tokens and signing in with a key.

use std::time::Duration;

/// Builds an HTTP client that does not follow redirects, so each 303 can be checked.
pub fn browser() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(600))
        .build()
}

/// A response reduced to what the checks need.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub cookies: Vec<String>,
    pub csp: Option<String>,
    pub cache: Option<String>,
    pub body: String,
}

pub fn page(result: Result<ureq::Response, ureq::Error>) -> Page {
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("request failed: {error}"),
    };
    Page {
        status: response.status(),
        location: response.header("Location").map(str::to_string),
        cookies: response
            .all("Set-Cookie")
            .into_iter()
            .map(str::to_string)
            .collect(),
        csp: response
            .header("Content-Security-Policy")
            .map(str::to_string),
        cache: response.header("Cache-Control").map(str::to_string),
        body: response.into_string().unwrap(),
    }
}

/// Returns the value of the cookie `name` set by `page`, with its attributes.
pub fn set_cookie<'a>(page: &'a Page, name: &str) -> &'a str {
    page.cookies
        .iter()
        .find(|cookie| cookie.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", page.cookies))
}

pub fn cookie_value(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().unwrap();
    pair.split_once('=').unwrap().1.to_string()
}

/// Returns the CSRF token of the first form on the page.
pub fn csrf(page: &Page) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page.body.find(marker).expect("a form with a CSRF token") + marker.len();
    let end = page.body[start..].find('"').unwrap() + start;
    page.body[start..end].to_string()
}

/// Signs in with `key` and returns the session cookie and the session's CSRF token.
pub fn sign_in(base: &str, key: &str) -> (String, String) {
    let form = page(browser().get(&format!("{base}/ui/login")).call());
    assert_eq!(form.status, 200);
    let login_cookie = cookie_value(set_cookie(&form, "lg_login_csrf"));
    let signed_in = page(
        browser()
            .post(&format!("{base}/ui/login"))
            .set("Cookie", &format!("lg_login_csrf={login_cookie}"))
            .send_form(&[("csrf", &csrf(&form)), ("key", key)]),
    );
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(signed_in.location.as_deref(), Some("/ui/drafts"));
    let session = set_cookie(&signed_in, "lg_session");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(session.contains(attribute), "{session} lacks {attribute}");
    }
    let cookie = format!("lg_session={}", cookie_value(session));
    let queue = page(
        browser()
            .get(&format!("{base}/ui/drafts"))
            .set("Cookie", &cookie)
            .call(),
    );
    assert_eq!(queue.status, 200, "{}", queue.body);
    (cookie, csrf(&queue))
}
