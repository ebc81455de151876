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

    /// 413: a part of the body (a text) over its limit.
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", detail)
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

/// The first segments of the API's own routes: a word like `/models/{id}/visitors` in a
/// message names a route, not a file, and is kept (a test holds this to the route list).
pub const ROUTE_ROOTS: [&str; 8] = [
    "health",
    "metrics",
    "get_reward",
    "openapi.json",
    "datasets",
    "jobs",
    "models",
    "rank",
];

fn is_route(path: &str) -> bool {
    let first = path[1..]
        .split(['/', '`', '\'', '"', ')'])
        .next()
        .unwrap_or("");
    ROUTE_ROOTS.contains(&first)
}

/// `text` with every absolute path reduced to its file name (the API's routes excepted).
pub fn strip_paths(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let bare = word.trim_start_matches(['`', '(', '\'', '"']);
            if bare.starts_with('/') && bare.len() > 1 && !is_route(bare) {
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
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Every 503 is a passing condition (busy database, slow disk, full queue).
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}

/// Database error codes that mean "busy, try again": SQLite's busy and locked codes (with
/// their extended forms), PostgreSQL's serialization failure and deadlock.
const RETRYABLE: [&str; 6] = ["5", "6", "261", "517", "40001", "40P01"];

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        let busy = match &e {
            sqlx::Error::Database(d) => d.code().is_some_and(|c| RETRYABLE.contains(&&*c)),
            sqlx::Error::PoolTimedOut => true,
            _ => false,
        };
        if busy {
            tracing::warn!("database busy: {e}");
            return Self::unavailable("the database is busy; retry shortly");
        }
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
    fn routes_in_messages_are_kept() {
        assert_eq!(
            strip_paths("send the secret `POST /models/{id}/visitors` gave (see /rank)"),
            "send the secret `POST /models/{id}/visitors` gave (see /rank)"
        );
        assert_eq!(strip_paths("at /srv/models/x.json"), "at x.json");
    }

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
