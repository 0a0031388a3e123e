//! Reading JSON request bodies into typed requests with the API's error codes.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::{ApiError, json_error};

/// Parses a JSON body into `T`; `fields` are the accepted field names, listed in the
/// message when the body has another one.
///
/// # Errors
/// 415 when the content type is not JSON, 400 for invalid JSON or fields.
pub fn parse_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
    fields: &[&str],
) -> Result<T, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        ));
    }
    serde_json::from_slice(body).map_err(|e| json_error(&e, fields))
}

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
