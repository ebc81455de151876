//! API errors: every failure is JSON `{error, detail}` with a fitting status code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pal_core::PalError;

/// An error returned by a handler.
#[derive(Debug, thiserror::Error)]
#[error("{error}: {detail}")]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            error,
            detail: detail.into(),
        }
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} `{id}` not found"),
        )
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.error, "detail": self.detail});
        (self.status, Json(body)).into_response()
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(format!("database: {e}"))
    }
}

impl From<PalError> for ApiError {
    fn from(e: PalError) -> Self {
        match e {
            PalError::Io { .. } => Self::internal(e.to_string()),
            PalError::UnknownUser { .. } => {
                Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            _ => Self::invalid(e.to_string()),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        let status = r.status();
        let error = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "bad_json"
        };
        Self::new(status, error, r.body_text())
    }
}
