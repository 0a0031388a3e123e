//! Reading request bodies: the whole body within the size limit and the request timeout,
//! and optional JSON bodies with the API's error codes.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use super::error::{ApiError, parse_json};

/// Reads the whole body, or fails with 413 `body_too_large` past `max_bytes` and with
/// 408 `request_timeout` when the client takes longer than `timeout` to send it.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max_bytes: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_bytes as u64) {
        return Err(too_large(max_bytes));
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, max_bytes).collect()).await;
    match collected {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(too_large(max_bytes))
        }
        Ok(Err(_)) => Err(ApiError::bad_request(
            "invalid_body",
            "the request body could not be read; the connection broke or the framing is \
             invalid",
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} ms",
                timeout.as_millis()
            ),
        )),
    }
}

fn too_large(max_bytes: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is larger than the limit of {max_bytes} bytes"),
    )
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
