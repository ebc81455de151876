//! The router's layers: request ids and tracing spans, request counting and bearer-token auth
//! for writes, and JSON for every error answer (the framework's own 405/413/414 included).

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::error::ApiError;
use crate::state::AppState;

/// The header carrying a request's id, in both directions.
pub const REQUEST_ID: &str = "x-request-id";

/// A client's own request id when it is short and plain, else a fresh one.
fn request_id_of(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_string)
}

/// Gives every request an id (answered in `x-request-id`) and a tracing span carrying it, so
/// every log line of the request (errors and incidents included) names it.
pub async fn request_id(req: Request, next: Next) -> Response {
    let id = request_id_of(&req);
    let span = tracing::info_span!(
        "request",
        id = %id,
        method = %req.method(),
        path = %req.uri().path()
    );
    let start = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    // The access log is `debug` (`PAL_LOG=pal_server=debug`): at tens of thousands of requests
    // a second, a line each would cost more than the request.
    span.in_scope(|| {
        tracing::debug!(
            status = resp.status().as_u16(),
            ms = start.elapsed().as_secs_f64() * 1e3,
            "answered"
        )
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

/// Outermost layer: refuses over-long URIs, and turns every error answer that is not JSON yet
/// (the router's 405, the body limit's 413, a static file's 404) into `{error, detail}`.
pub async fn json_errors(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let max = state.config.limits.max_uri_len;
    if req.uri().to_string().len() > max {
        state.metrics.errors.fetch_add(1, Ordering::Relaxed);
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request URI is longer than {max} bytes"),
        )
        .into_response();
    }
    let method = req.method().clone();
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (error, detail) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            format!("method {method} is not allowed on this route"),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "too_large",
            format!(
                "the request body is larger than the server's limit of {} bytes",
                state.config.max_body_bytes
            ),
        ),
        StatusCode::NOT_FOUND => ("not_found", "no such route or file".to_string()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "send the body as `Content-Type: application/json`".to_string(),
        ),
        s => (
            "error",
            s.canonical_reason().unwrap_or("request failed").to_string(),
        ),
    };
    ApiError::new(status, error, detail).into_response()
}

/// Non-GET requests the admin token does not guard: reads sent as POST (`/rank`, a typed
/// prompt's embedding, the reward routes; they store nothing, and ask for the token themselves
/// where the answer reveals a stored user's taste), and writes whose handler authorises the caller
/// itself (`auth`): creating a visitor (open, rate limited), and a user's weights, deletion and
/// contributions (the visitor's secret, or the admin token for any other user).
fn authorised_by_handler(method: &Method, path: &str) -> bool {
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, seg.as_slice()) {
        (&Method::POST, ["rank"] | ["get_reward"]) => true,
        (
            &Method::POST,
            [
                "models",
                _,
                "embed" | "visitors" | "rewards" | "rerank" | "get_reward",
            ],
        ) => true,
        (&Method::PUT | &Method::DELETE, ["models", _, "users", user]) => *user != "adapt",
        (&Method::POST, ["models", _, "users", _, "comparisons"]) => true,
        _ => false,
    }
}

/// Counts requests, and requires the bearer token (when configured) on every write but those
/// the handler authorises.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    state.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && !authorised_by_handler(req.method(), req.uri().path());
    if let (true, Some(token)) = (write, &state.config.token) {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given.is_none_or(|g| !crate::auth::same(g, token)) {
            state.metrics.errors.fetch_add(1, Ordering::Relaxed);
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "write endpoints need `Authorization: Bearer <token>`",
            )
            .into_response();
        }
    }
    let resp = next.run(req).await;
    if resp.status().is_client_error() || resp.status().is_server_error() {
        state.metrics.errors.fetch_add(1, Ordering::Relaxed);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_and_visitor_routes_skip_the_admin_check() {
        let yes = [
            (Method::POST, "/models/m/visitors"),
            (Method::PUT, "/models/m/users/u"),
            (Method::DELETE, "/models/m/users/u"),
            (Method::POST, "/models/m/users/u/comparisons"),
            (Method::POST, "/rank"),
            (Method::POST, "/models/m/embed"),
            (Method::POST, "/models/m/rewards"),
            (Method::POST, "/models/m/rerank"),
            (Method::POST, "/models/m/get_reward"),
            (Method::POST, "/get_reward"),
        ];
        for (m, p) in yes {
            assert!(authorised_by_handler(&m, p), "{m} {p}");
        }
        let no = [
            (Method::POST, "/models/m/users/adapt"),
            (Method::PUT, "/models/m/users/adapt"),
            (Method::POST, "/models/m/users/u"),
            (Method::POST, "/jobs"),
            (Method::POST, "/datasets"),
            (Method::POST, "/models/m/visitors/x"),
            (Method::DELETE, "/models/m/users/u/comparisons"),
        ];
        for (m, p) in no {
            assert!(!authorised_by_handler(&m, p), "{m} {p}");
        }
    }
}
