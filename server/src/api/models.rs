//! `/models`: list and inspect models and serve their browser bundles (immutable revisions;
//! `?rev=N` pins one). Users of a model are in `users`, visitors in `visitors`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::bodies::ModelInfo;
use crate::bundle;
use crate::db::ModelRow;
use crate::error::{ApiError, shorten};
use crate::state::AppState;
use crate::state::blocking;

pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<ModelRow>>, ApiError> {
    Ok(Json(state.db.models().await?))
}

pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelInfo>, ApiError> {
    let m = state.model(&id).await?;
    Ok(Json(ModelInfo {
        row: m.row.clone(),
        users: m.model.users.len() + state.db.count_model_users(&id).await?,
        trained_users: m.trained_users,
        revision: m.revision(),
        params: m.model.weights.num_params(),
    }))
}

/// Reads a file of the model's bundle; 404 when it does not exist.
async fn bundle_file(
    state: &AppState,
    id: &str,
    name: &str,
    rev: Option<u64>,
) -> Result<Vec<u8>, ApiError> {
    let dir = state.bundles_dir(id);
    let path = bundle::file_path(&dir, name, rev)
        .ok_or_else(|| ApiError::not_found("bundle file", name))?;
    let shown = shorten(name);
    blocking(state, "reading the bundle", move || {
        std::fs::read(&path).map_err(|_| ApiError::not_found("bundle file", &shown))
    })
    .await
}

/// The browser bundle's manifest (written when the model was published or last changed).
pub async fn bundle(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.db.model(&id).await?;
    let bytes = bundle_file(&state, &id, pal_format::bundle::MANIFEST_JSON, None).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}

#[derive(Deserialize)]
pub struct FileQuery {
    rev: Option<u64>,
}

/// A file of the model's bundle; `?rev=N` pins the revision a manifest named.
pub async fn file(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    Query(q): Query<FileQuery>,
) -> Result<Response, ApiError> {
    state.db.model(&id).await?;
    let bytes = bundle_file(&state, &id, &name, q.rev).await?;
    let kind = if name.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    };
    Ok(([(header::CONTENT_TYPE, kind)], bytes).into_response())
}
