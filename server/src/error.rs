//! API errors: every failure is JSON `{error, detail}` with a fitting status code. Server-side
//! failures (5xx) keep their detail in the server log only; no answer carries a server path.

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
            format!("{what} `{}` not found", shorten(id)),
        )
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            detail,
        )
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }

    /// A server-side failure; `detail` goes to the log, never to the client.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    /// A failed blocking task: a panic inside it is a server-side failure.
    pub fn join(e: tokio::task::JoinError) -> Self {
        Self::internal(format!("blocking task: {e}"))
    }
}

/// An id cut to 64 characters for messages (ids come from the request; keep answers small).
pub fn shorten(id: &str) -> String {
    if id.chars().count() <= 64 {
        id.to_string()
    } else {
        format!("{}…", id.chars().take(64).collect::<String>())
    }
}

/// `text` with every absolute path reduced to its file name.
pub fn strip_paths(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let bare = word.trim_start_matches(['`', '(', '\'', '"']);
            if bare.starts_with('/') && bare.len() > 1 {
                let lead = &word[..word.len() - bare.len()];
                let name = bare.rsplit('/').find(|p| !p.is_empty()).unwrap_or("");
                format!("{lead}{name}")
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = if self.status.is_server_error() {
            let id = uuid::Uuid::new_v4().simple().to_string();
            tracing::error!(
                incident = %id,
                status = self.status.as_u16(),
                error = self.error,
                "{}",
                self.detail
            );
            if self.status == StatusCode::SERVICE_UNAVAILABLE {
                format!("{} (incident {id})", self.detail)
            } else {
                format!("the server failed; its log has the details (incident {id})")
            }
        } else {
            strip_paths(&self.detail)
        };
        let body = pal_format::http::ErrorBody {
            error: self.error.to_string(),
            detail,
        };
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
            PalError::File { path, reason } => {
                Self::invalid(format!("{}: {reason}", file_name(&path)))
            }
            PalError::Record {
                path,
                line,
                field,
                reason,
            } => Self::invalid(format!(
                "{}:{line}: field `{field}`: {reason}",
                file_name(&path)
            )),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_reduced_to_file_names() {
        assert_eq!(
            strip_paths("reading `/srv/pal/models/ab/model.json` failed at /tmp/x"),
            "reading `model.json` failed at x"
        );
        assert_eq!(strip_paths("a / b"), "a / b");
    }

    #[test]
    fn long_ids_are_shortened() {
        assert_eq!(shorten(&"x".repeat(100)).chars().count(), 65);
        assert_eq!(shorten("abc"), "abc");
    }
}
