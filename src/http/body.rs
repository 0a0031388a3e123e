//! Reading optional JSON request bodies with the API's error codes.

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;

use super::error::{ApiError, parse_json};

/// Parses an optional JSON body: an empty body gives `T::default()`.
///
/// # Errors
/// As [`parse_json`] for a body that is not empty.
pub fn parse_optional_json<T: DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: &Bytes,
    fields: &[&str],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(headers, body, fields)
}
