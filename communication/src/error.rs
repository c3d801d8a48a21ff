//! The one error type of the HTTP edge and its mapping to status codes and JSON bodies
//! (`{"error": {"code": ..., "message": ...}}`). Internal errors are logged, never shown.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no token, or a token that does not verify.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403: a valid token without the needed role.
    #[error("{0}")]
    Forbidden(String),
    /// 400/413/415/422 as the JSON extractor decided: the body is not what the route takes.
    #[error("{message}")]
    BadRequest { status: StatusCode, message: String },
    /// 422: well-formed JSON with an invalid field.
    #[error("{field}: {message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    /// 409: the same idempotency key was used for a different message.
    #[error("{0}")]
    Conflict(String),
    /// 404: the resource does not exist or is not the caller's (the two are not told apart).
    #[error("{0}")]
    NotFound(String),
    /// 429: the client sent too many requests; `Retry-After` says when to try again.
    #[error("too many requests; retry after {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    /// 503: a dependency (broker, database) is unavailable; the client should retry.
    #[error("service unavailable")]
    Unavailable(String),
}

/// A body the route cannot take: the extractor's own status (400, 413, 415, 422) and reason.
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        Self::BadRequest {
            status: e.status(),
            message: e.body_text(),
        }
    }
}

impl From<edge::auth::AuthError> for ApiError {
    fn from(e: edge::auth::AuthError) -> Self {
        use edge::auth::AuthError;
        match e {
            AuthError::Forbidden(_) => Self::Forbidden(e.to_string()),
            AuthError::BadClaim { .. } => Self::BadRequest {
                status: StatusCode::BAD_REQUEST,
                message: e.to_string(),
            },
            AuthError::Unavailable(_) | AuthError::Setup(_) => {
                tracing::error!(error = %e, "token keys unavailable");
                Self::Unavailable(e.to_string())
            }
            AuthError::Missing | AuthError::Invalid(_) | AuthError::NoSubject => {
                Self::Unauthenticated(e.to_string())
            }
        }
    }
}

/// A refused file: 413 when too large, 422 on the `file` field otherwise; the stores failing: 503.
impl From<edge::files::FileError> for ApiError {
    fn from(e: edge::files::FileError) -> Self {
        use edge::files::FileError;
        match e {
            FileError::TooLarge { .. } => Self::BadRequest {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: e.to_string(),
            },
            FileError::TooMany(_) => Self::InvalidField {
                field: "attachments",
                message: e.to_string(),
            },
            e if e.is_refusal() => Self::InvalidField {
                field: "file",
                message: e.to_string(),
            },
            e => {
                tracing::error!(error = %e, "attachment storage failure");
                Self::Unavailable(e.to_string())
            }
        }
    }
}

impl From<tickets::StoreError> for ApiError {
    fn from(e: tickets::StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::BadRequest { status, .. } => (*status, "bad_request"),
            Self::InvalidField { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Unavailable(detail) => {
                tracing::error!(error = %detail, "dependency unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
        };
        let mut body = json!({ "error": { "code": code, "message": self.to_string() } });
        if let Self::InvalidField { field, .. } = &self {
            body["error"]["field"] = json!(field);
        }
        let mut response = (status, Json(body)).into_response();
        if let Self::TooManyRequests { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}
