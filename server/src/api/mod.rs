//! The HTTP API: routes, bearer-token auth for writes, body and URI limits, JSON errors for
//! every failure (the framework's own 405/413/414 included), metrics, static app.

mod datasets;
mod jobs;
mod models;
mod rank;
mod upload;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::atomic::Ordering;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::services::ServeDir;

use crate::error::ApiError;
use crate::state::AppState;

/// Every route as `(method, path)`, in OpenAPI path syntax; `openapi.json` documents exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("post", "/datasets"),
    ("get", "/datasets"),
    ("get", "/datasets/{id}"),
    ("get", "/datasets/{id}/images/{name}"),
    ("post", "/jobs"),
    ("get", "/jobs"),
    ("get", "/jobs/{id}"),
    ("get", "/jobs/{id}/events"),
    ("post", "/jobs/{id}/cancel"),
    ("get", "/models"),
    ("get", "/models/{id}"),
    ("get", "/models/{id}/bundle"),
    ("get", "/models/{id}/files/{name}"),
    ("get", "/models/{id}/users"),
    ("post", "/models/{id}/users/adapt"),
    ("get", "/models/{id}/users/{user}"),
    ("put", "/models/{id}/users/{user}"),
    ("post", "/rank"),
];

/// The OpenAPI description served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/datasets", post(datasets::create).get(datasets::list))
        .route("/datasets/{id}", get(datasets::get_one))
        .route("/datasets/{id}/images/{name}", get(datasets::image))
        .route("/jobs", post(jobs::create).get(jobs::list))
        .route("/jobs/{id}", get(jobs::get_one))
        .route("/jobs/{id}/events", get(jobs::events))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/models", get(models::list))
        .route("/models/{id}", get(models::get_one))
        .route("/models/{id}/bundle", get(models::bundle))
        .route("/models/{id}/files/{name}", get(models::file))
        .route("/models/{id}/users", get(models::users))
        .route("/models/{id}/users/adapt", post(models::adapt))
        .route(
            "/models/{id}/users/{user}",
            get(models::get_user).put(models::put_user),
        )
        .route("/rank", post(rank::rank));
    let app = match &state.config.static_dir {
        Some(dir) => api.fallback_service(ServeDir::new(dir)),
        None => api
            .route(
                "/",
                get(|| async { Html(include_str!("../../../index.html")) }),
            )
            .fallback(|| async {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
            }),
    };
    app.layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(RequestBodyLimitLayer::new(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), json_errors))
        .with_state(state)
}

/// Runs blocking file work off the async threads, bounded by the configured I/O timeout (the
/// answer is then 503; the work itself is bounded by the limits checked before it started).
pub async fn blocking<T: Send + 'static>(
    state: &AppState,
    what: &str,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let secs = state.config.limits.io_timeout_secs;
    match tokio::time::timeout(
        std::time::Duration::from_secs(secs),
        tokio::task::spawn_blocking(f),
    )
    .await
    {
        Ok(joined) => joined.map_err(ApiError::join)?,
        Err(_) => Err(ApiError::unavailable(format!(
            "{what} took longer than {secs} s; try again later"
        ))),
    }
}

/// Outermost layer: refuses over-long URIs, and turns every error answer that is not JSON yet
/// (the router's 405, the body limit's 413, a static file's 404) into `{error, detail}`.
async fn json_errors(State(state): State<AppState>, req: Request, next: Next) -> Response {
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

/// Counts requests, and requires the bearer token (when configured) on every write.
async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    state.metrics.requests.fetch_add(1, Ordering::Relaxed);
    // Scoring is a read even though it is a POST.
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && req.uri().path() != "/rank";
    if let (true, Some(token)) = (write, &state.config.token) {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
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

/// `ok` while the database answers and every training worker is alive; `degraded` (503)
/// otherwise, so a load balancer stops sending work.
async fn health(State(state): State<AppState>) -> Response {
    let db_ok = state.db.ping().await.is_ok();
    let alive = state.metrics.workers_alive.load(Ordering::SeqCst);
    let workers = state.config.workers.max(1);
    let ok = db_ok && alive == workers;
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "degraded" },
        "database": state.db.kind,
        "database_ok": db_ok,
        "workers": workers,
        "workers_alive": alive,
        "version": env!("CARGO_PKG_VERSION"),
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let jobs = state.db.jobs().await?;
    let models = state.db.models().await?;
    let mut s = String::new();
    let m = &state.metrics;
    s += &format!(
        "pal_http_requests_total {}\n",
        m.requests.load(Ordering::Relaxed)
    );
    s += &format!(
        "pal_http_errors_total {}\n",
        m.errors.load(Ordering::Relaxed)
    );
    s += &format!(
        "pal_rank_requests_total {}\n",
        m.rank_requests.load(Ordering::Relaxed)
    );
    for status in ["queued", "running", "succeeded", "failed", "cancelled"] {
        let n = jobs.iter().filter(|j| j.status == status).count();
        s += &format!("pal_jobs{{status=\"{status}\"}} {n}\n");
    }
    s += &format!("pal_models_total {}\n", models.len());
    s += &format!(
        "pal_worker_panics_total {}\n",
        m.worker_panics.load(Ordering::Relaxed)
    );
    s += &format!(
        "pal_models_cached {}\n",
        crate::state::lock(&state.models).len()
    );
    s += &format!("pal_jobs_live {}\n", crate::state::lock(&state.jobs).len());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s).into_response())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// JSON body extractor whose rejections are `{error, detail}` JSON.
pub struct Body<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(v) = Json::<T>::from_request(req, state).await?;
        Ok(Body(v))
    }
}
