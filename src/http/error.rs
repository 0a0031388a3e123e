//! API errors: one type, one place that maps them to HTTP.
//!
//! The body is `{"error": {"code", "message"}}`. `code` is a stable snake_case string;
//! `message` names the field and the limit and never quotes the client's text. Server
//! faults return a generic message and log the cause once.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::compliance::ComplianceError;
use crate::draft::templates::TemplateError;
use crate::pipeline::PipelineError;
use crate::review::ReviewError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for the `Retry-After` header, on 429 and 503.
    pub retry_after: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code, such as `text_too_long`.
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Builds the 429 for a key over its rate limit; `wait` becomes `Retry-After`, rounded up.
    pub fn rate_limited(wait: Duration) -> ApiError {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "this API key is over its rate limit; nothing was stored, send the request \
                 again in {} s",
                seconds.max(1)
            ),
        );
        error.retry_after = Some(seconds.max(1));
        error
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    /// 401 `unauthorized`; the response carries `WWW-Authenticate: Bearer`.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        ApiError::from(PipelineError::from(error))
    }
}

impl From<ComplianceError> for ApiError {
    fn from(error: ComplianceError) -> ApiError {
        match error {
            ComplianceError::Store(error) => ApiError::from(error),
            ComplianceError::InvalidSubject(error) => {
                ApiError::unprocessable("invalid_subject", error.to_string())
            }
        }
    }
}

impl From<PipelineError> for ApiError {
    fn from(error: PipelineError) -> ApiError {
        match error {
            PipelineError::UnknownLead { id } => {
                ApiError::not_found("lead_not_found", format!("lead {id} does not exist"))
            }
            PipelineError::Store(StoreError::Busy) => {
                tracing::warn!(%error, "request failed");
                let mut error = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_busy",
                    "the database stayed locked longer than its busy timeout; send the \
                     request again",
                );
                error.retry_after = Some(1);
                error
            }
            PipelineError::InvalidContact(error) => {
                ApiError::unprocessable("invalid_contact", error.message)
            }
            PipelineError::Store(StoreError::UnknownConsentText { .. }) => ApiError::unprocessable(
                "unknown_consent_text",
                format!("{error}; see GET /v1/consent-texts"),
            ),
            PipelineError::Store(StoreError::ConsentTextInUse { .. }) => {
                ApiError::conflict("consent_text_in_use", error.to_string())
            }
            PipelineError::EngineStopped => {
                tracing::error!(%error, "request failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "engine_stopped",
                    "the model engine has stopped; the server is shutting down or needs a restart",
                )
            }
            error => {
                tracing::error!(%error, "request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the server failed to handle the request; see the server log",
                )
            }
        }
    }
}

impl From<TemplateError> for ApiError {
    fn from(error: TemplateError) -> ApiError {
        let code = match &error {
            TemplateError::UnknownKind { .. } => "unknown_template_kind",
            TemplateError::UnknownService { .. } => "unknown_service",
            TemplateError::EmptyBody => "empty_template",
            TemplateError::BodyTooLong { .. } => "template_too_long",
            TemplateError::Syntax { .. } => "template_syntax_error",
            TemplateError::UnknownVariable { .. } => "unknown_template_variable",
            TemplateError::Render { .. } => "template_render_error",
        };
        ApiError::unprocessable(code, error.to_string())
    }
}

impl From<ReviewError> for ApiError {
    fn from(error: ReviewError) -> ApiError {
        match error {
            ReviewError::Store(error) => ApiError::from(error),
            ReviewError::NotFound { .. } => {
                ApiError::not_found("draft_not_found", error.to_string())
            }
            ReviewError::AlreadyReviewed { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "draft_already_reviewed",
                error.to_string(),
            ),
            ReviewError::Empty { .. } => ApiError::unprocessable("empty_text", error.to_string()),
            ReviewError::TooLong { .. } => {
                ApiError::unprocessable("text_too_long", error.to_string())
            }
        }
    }
}

/// Checks that the request declares a JSON body, or fails with 415 `unsupported_media_type`.
pub fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
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
    Ok(())
}

/// Parses a JSON request body after checking its content type; errors name only the fields
/// in `allowed_fields`, never the client's values.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    body: &[u8],
    allowed_fields: &[&str],
) -> Result<T, ApiError> {
    require_json(headers)?;
    serde_json::from_slice(body).map_err(|e| json_error(&e, allowed_fields))
}

/// Classifies a JSON body error without quoting the body: serde's data messages can
/// contain the client's values, so only our own field names are taken from them.
pub fn json_error(error: &serde_json::Error, allowed_fields: &[&str]) -> ApiError {
    use serde_json::error::Category;
    let position = format!("line {}, column {}", error.line(), error.column());
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::bad_request(
            "invalid_json",
            format!("the body is not valid JSON (at {position}); send one JSON object"),
        ),
        Category::Data => {
            let text = error.to_string();
            if text.starts_with("unknown field") {
                ApiError::bad_request(
                    "unknown_field",
                    format!(
                        "the body has a field that is not accepted (at {position}); \
                         accepted fields: {}",
                        allowed_fields.join(", ")
                    ),
                )
            } else if let Some(field) = text
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
                // serde names a missing field of our own types, never a client's key, but
                // only plain names pass in case that changes.
                .filter(|field| {
                    allowed_fields.contains(field)
                        || field.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                })
            {
                ApiError::bad_request("missing_field", format!("the field `{field}` is required"))
            } else {
                ApiError::bad_request(
                    "invalid_field_type",
                    format!(
                        "a field has the wrong type (at {position}); /openapi.json lists the \
                         type of each field"
                    ),
                )
            }
        }
    }
}
