//! Signing in to the staff page: cookie sessions and CSRF tokens.
//!
//! The session cookie is HTTP-only and `SameSite=Strict` and contains a random token; the
//! database keeps only its SHA-256. Every form carries the session's CSRF token, and the
//! sign-in form, which comes before any session, carries one that must match a
//! short-lived cookie of its own.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use rand::TryRngCore;
use rand::rngs::OsRng;
use subtle::ConstantTimeEq;

use super::UiError;
use crate::auth::{Principal, Role};
use crate::http::AppState;
use crate::store::sessions;

pub const SESSION_COOKIE: &str = "lg_session";
pub const LOGIN_CSRF_COOKIE: &str = "lg_login_csrf";
/// How long a session lasts after sign-in, in seconds: one working day.
pub const SESSION_SECONDS: i64 = 12 * 3600;
/// How long the sign-in form stays valid, in seconds.
const LOGIN_FORM_SECONDS: i64 = 3600;

/// A signed-in staff member; a handler that takes it sends everyone else to sign in.
pub struct SignedIn {
    pub principal: Principal,
    pub csrf_token: String,
    pub token: String,
}

impl SignedIn {
    /// Checks the CSRF token of a submitted form.
    ///
    /// # Errors
    /// 403 when the token is missing or wrong.
    pub fn check_csrf(&self, submitted: &str) -> Result<(), UiError> {
        check_token(&self.csrf_token, submitted)
    }

    /// Returns `Ok` when the key's role is one of `roles`.
    ///
    /// # Errors
    /// 403 naming the roles allowed.
    pub fn require(&self, roles: &[Role]) -> Result<(), UiError> {
        if roles.contains(&self.principal.role) {
            return Ok(());
        }
        Err(UiError::forbidden(
            "Этот раздел доступен только администратору.",
        ))
    }
}

/// Compares a submitted CSRF token with the expected one in constant time.
pub fn check_token(expected: &str, submitted: &str) -> Result<(), UiError> {
    let same = !expected.is_empty()
        && expected.len() == submitted.len()
        && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()));
    if same {
        Ok(())
    } else {
        Err(UiError::forbidden(
            "Форма устарела или открыта не отсюда. Обновите страницу и повторите.",
        ))
    }
}

/// Returns 32 bytes of the operating system's random source as hex.
pub fn random_token() -> Result<String, UiError> {
    let mut bytes = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|_| UiError::internal())?;
    Ok(hex::encode(bytes))
}

/// Returns the value of cookie `name` from the request headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// Builds a `Set-Cookie` value for the staff page: HTTP-only, `SameSite=Strict`, path
/// `/ui`; a `max_age` of 0 removes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: i64) -> HeaderValue {
    // NOTE: without TLS in front, the cookie lacks `Secure`; add it when leadgate serves
    // HTTPS itself.
    let text = format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    HeaderValue::from_str(&text).expect("cookie names and hex tokens are valid header text")
}

/// Returns the sign-in form's CSRF token and the cookie that carries it.
pub fn login_form_token() -> Result<(String, HeaderValue), UiError> {
    let token = random_token()?;
    let cookie = set_cookie(LOGIN_CSRF_COOKIE, &token, LOGIN_FORM_SECONDS);
    Ok((token, cookie))
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<SignedIn, Response> {
        let sign_in = || Redirect::to("/ui/login").into_response();
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).map(str::to_string) else {
            return Err(sign_in());
        };
        let lookup = token.clone();
        let session = state
            .pipeline
            .store
            .call(move |conn| sessions::find(conn, &lookup))
            .await
            .map_err(|error| UiError::from(error).into_response())?;
        let Some(session) = session else {
            return Err(sign_in());
        };
        tracing::Span::current().record("key_id", session.principal.key_id);
        Ok(SignedIn {
            principal: session.principal,
            csrf_token: session.csrf_token,
            token,
        })
    }
}
