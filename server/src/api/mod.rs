//! The HTTP API: the route list (router and route table from one macro), body limits, health,
//! metrics, the static app; request ids, auth and JSON errors are in `layers`.

mod datasets;
mod embed;
mod jobs;
mod layers;
mod models;
mod openrlhf;
mod prefs;
mod rank;
mod rewards;
mod upload;
mod users;
pub(crate) mod visitors;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::atomic::Ordering;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::services::ServeDir;

use layers::{guard, json_errors, request_id};

use crate::bodies::Health;
use crate::error::ApiError;
use crate::state::AppState;

/// Declares every route once: the router and [`ROUTES`] (which `openapi.json` must document
/// exactly, `server/tests/api.rs`) are both generated from this one list.
macro_rules! routes {
    ($($method:ident $path:literal => $handler:path),* $(,)?) => {
        /// Every route as `(method, path)`, in OpenAPI path syntax.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        /// The API's routes (routes of one path with several methods are merged by axum).
        fn api_routes() -> Router<AppState> {
            Router::new()$(.route($path, axum::routing::$method($handler)))*
        }
    };
}

routes! {
    get "/health" => health,
    get "/metrics" => metrics,
    get "/openapi.json" => openapi,
    post "/datasets" => datasets::create,
    get "/datasets" => datasets::list,
    get "/datasets/{id}" => datasets::get_one,
    get "/datasets/{id}/images/{name}" => datasets::image,
    post "/jobs" => jobs::create,
    get "/jobs" => jobs::list,
    get "/jobs/{id}" => jobs::get_one,
    get "/jobs/{id}/events" => jobs::events,
    post "/jobs/{id}/cancel" => jobs::cancel,
    get "/models" => models::list,
    get "/models/{id}" => models::get_one,
    get "/models/{id}/bundle" => models::bundle,
    get "/models/{id}/files/{name}" => models::file,
    post "/models/{id}/visitors" => visitors::create,
    post "/models/{id}/embed" => embed::embed,
    post "/models/{id}/rewards" => rewards::rewards,
    post "/models/{id}/rerank" => rewards::rerank,
    post "/models/{id}/get_reward" => openrlhf::get_reward,
    get "/models/{id}/users" => users::users,
    post "/models/{id}/users/adapt" => users::adapt,
    get "/models/{id}/users/{user}" => users::get_user,
    put "/models/{id}/users/{user}" => users::put_user,
    delete "/models/{id}/users/{user}" => users::delete_user,
    get "/models/{id}/users/{user}/comparisons" => visitors::contributions,
    post "/models/{id}/users/{user}/comparisons" => visitors::contribute,
    post "/rank" => rank::rank,
    post "/get_reward" => openrlhf::mounted,
}

/// The OpenAPI description served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub fn router(state: AppState) -> Router {
    let api = api_routes();
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
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// `ok` while the database answers and every training worker is alive; `degraded` (503)
/// otherwise, so a load balancer stops sending work.
async fn health(State(state): State<AppState>) -> Response {
    let db_ok = state.db.ping().await.is_ok();
    let alive = state.metrics.workers_alive.load(Ordering::SeqCst);
    let workers = state.config.workers.max(1);
    let ok = db_ok && alive == workers;
    let body = Health {
        status: if ok { "ok" } else { "degraded" }.into(),
        database: state.db.kind.into(),
        database_ok: db_ok,
        workers,
        workers_alive: alive,
        version: env!("CARGO_PKG_VERSION").into(),
    };
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
    let e = &state.embedder;
    s += &format!(
        "pal_embed_passes_total {}\npal_embed_texts_total {}\npal_embed_prompts_remembered {}\n",
        e.stats.passes.load(Ordering::Relaxed),
        e.stats.texts.load(Ordering::Relaxed),
        e.memo_len()
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s).into_response())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
