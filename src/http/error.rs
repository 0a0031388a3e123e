//! API errors: one type, one place that maps them to HTTP.
//!
//! The body is `{"error": {"code", "message"}}`. `code` is a stable snake_case string;
//! `message` names the field and the limit and never quotes the client's text. Server
//! faults return a generic message and log the cause once.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::compliance::ComplianceError;
use crate::pipeline::PipelineError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
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
        }
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
                .filter(|field| allowed_fields.contains(field) || *field == "contact")
            {
                ApiError::bad_request("missing_field", format!("the field `{field}` is required"))
            } else {
                ApiError::bad_request(
                    "invalid_field_type",
                    format!(
                        "a field has the wrong type (at {position}); strings are expected, \
                         and `contact` is an object"
                    ),
                )
            }
        }
    }
}
