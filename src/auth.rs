//! API keys on the request path: generating keys, reading the key a request presents, and
//! the role checks of the handlers.
//!
//! A handler that takes a [`Principal`] argument rejects requests without a valid key with
//! 401 `unauthorized`; [`Principal::require`] rejects a wrong role with 403 `forbidden`.
//! The presented key is never logged; the key id is.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use rand::TryRngCore;
use rand::rngs::OsRng;

pub use crate::store::keys::{Principal, Role};

use crate::http::AppState;
use crate::http::error::ApiError;

/// The text every key starts with, so that a leaked key is easy to find in a file or log.
pub const KEY_PREFIX: &str = "lg_";
/// Random bytes in a key.
const KEY_BYTES: usize = 32;
/// Characters of a key that `keys list` shows: the prefix and 24 of its 256 random bits.
const SHOWN_CHARS: usize = KEY_PREFIX.len() + 6;

/// A new key: the secret (shown once) and what is stored of it.
pub struct NewKey {
    pub secret: String,
    pub prefix: String,
    pub sha256: String,
}

/// Generates a key from 32 bytes of the operating system's random source.
///
/// # Errors
/// When the operating system's random source fails.
pub fn generate_key() -> Result<NewKey, rand::rand_core::OsError> {
    let mut bytes = [0u8; KEY_BYTES];
    OsRng.try_fill_bytes(&mut bytes)?;
    let secret = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    Ok(NewKey {
        prefix: secret[..SHOWN_CHARS].to_string(),
        sha256: crate::store::keys::key_sha256(&secret),
        secret,
    })
}

/// Returns the key from `Authorization: Bearer <key>` or, failing that, `X-Api-Key`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        });
    let api_key = || {
        headers
            .get("x-api-key")
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    bearer.or_else(api_key).filter(|key| !key.is_empty())
}

impl Principal {
    /// Returns `Ok` when the key's role is one of `roles`.
    ///
    /// # Errors
    /// 403 `forbidden`, naming the roles allowed.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        let allowed = roles
            .iter()
            .map(|role| role.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "a key with role {} cannot use this endpoint; it needs role {allowed}",
                self.role
            ),
        ))
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Principal, ApiError> {
        let Some(key) = presented_key(&parts.headers) else {
            return Err(ApiError::unauthorized(
                "an API key is required: send `Authorization: Bearer <key>`",
            ));
        };
        let key = key.to_string();
        let store = state.pipeline.store.clone();
        let principal = store
            .call(move |conn| crate::store::keys::find_key(conn, &key))
            .await?;
        let Some(principal) = principal else {
            return Err(ApiError::unauthorized(
                "the API key is unknown or revoked; create one with `leadgate keys create`",
            ));
        };
        tracing::Span::current().record("key_id", principal.key_id);
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_differ_and_hash_to_hex() {
        let first = generate_key().unwrap();
        let second = generate_key().unwrap();
        assert_ne!(first.secret, second.secret);
        assert_eq!(first.secret.len(), KEY_PREFIX.len() + 2 * KEY_BYTES);
        assert!(first.secret.starts_with(&first.prefix));
        assert_eq!(first.sha256.len(), 64);
        assert!(!first.sha256.contains(&first.secret[KEY_PREFIX.len()..]));
    }

    #[test]
    fn key_read_from_either_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_key(&headers), None);
        headers.insert("x-api-key", "lg_b".parse().unwrap());
        assert_eq!(presented_key(&headers), Some("lg_b"));
        headers.insert(header::AUTHORIZATION, "Bearer lg_a".parse().unwrap());
        assert_eq!(presented_key(&headers), Some("lg_a"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(presented_key(&headers), Some("lg_b"));
    }
}
