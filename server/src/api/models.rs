//! `/models`: list and inspect models, export browser bundles, and manage users
//! (few-shot adaptation of new users, reading and setting a user's simplex weights).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pal_core::Comparison;
use pal_core::checkpoint::{MANIFEST_JSON, MODEL_JSON, TrainedModel, WEIGHTS_FILE};
use pal_core::dataset::{ITEMS_FILE, PROMPTS_FILE};
use pal_core::pipeline::{FewShotConfig, adapt as fit_new_users};
use pal_core::reference::softmax;
use pal_data::CONTENT_FILE;
use serde::Deserialize;

use super::Body;
use super::rank::check_weights;
use crate::db::ModelRow;
use crate::error::ApiError;
use crate::models;
use crate::state::AppState;

pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<ModelRow>>, ApiError> {
    Ok(Json(state.db.models().await?))
}

pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let m = models::load(&state, &id).await?;
    let mut v = serde_json::to_value(&m.row).map_err(|e| ApiError::internal(e.to_string()))?;
    v["users"] = m.model.users.len().into();
    v["params"] = m.model.weights.num_params().into();
    Ok(Json(v))
}

/// The files a bundle may hold, the only names `/models/{id}/files/{name}` serves.
const BUNDLE_FILES: [&str; 6] = [
    MANIFEST_JSON,
    CONTENT_FILE,
    MODEL_JSON,
    WEIGHTS_FILE,
    ITEMS_FILE,
    PROMPTS_FILE,
];

fn bundle_dir(state: &AppState, id: &str) -> std::path::PathBuf {
    state.model_dir(id).join("bundle")
}

/// Writes the browser bundle (weights, manifest, the dataset's items and prompts) and returns
/// the manifest.
pub async fn bundle(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let m = models::load(&state, &id).await?;
    let lock = state.model_lock(&id);
    let _guard = lock.lock().await;
    let dir = bundle_dir(&state, &id);
    let m2 = m.clone();
    let mut manifest =
        tokio::task::spawn_blocking(move || -> Result<serde_json::Value, ApiError> {
            let mut manifest = m2.model.export_bundle(&dir)?;
            m2.dataset.items.save(&dir.join(ITEMS_FILE))?;
            manifest["items_file"] = ITEMS_FILE.into();
            if let Some(p) = &m2.dataset.prompts {
                p.save(&dir.join(PROMPTS_FILE))?;
                manifest["prompts_file"] = PROMPTS_FILE.into();
            }
            let content = m2.dataset.dir.join(CONTENT_FILE);
            if content.is_file() {
                std::fs::copy(&content, dir.join(CONTENT_FILE))
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                manifest["content_file"] = CONTENT_FILE.into();
            }
            Ok(manifest)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    manifest["files"] = BUNDLE_FILES
        .iter()
        .filter(|f| **f != PROMPTS_FILE || manifest.get("prompts_file").is_some())
        .filter(|f| **f != CONTENT_FILE || manifest.get("content_file").is_some())
        .map(|f| format!("/models/{id}/files/{f}"))
        .collect::<Vec<_>>()
        .into();
    Ok(Json(manifest))
}

/// A file of the model's bundle (call `/models/{id}/bundle` first).
pub async fn file(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !BUNDLE_FILES.contains(&name.as_str()) {
        return Err(ApiError::not_found("bundle file", &name));
    }
    state.db.model(&id).await?;
    let path = bundle_dir(&state, &id).join(&name);
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|_| ApiError::not_found("bundle file (export the bundle first)", &name))?;
    let kind = if name.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    };
    Ok(([(header::CONTENT_TYPE, kind)], bytes).into_response())
}

fn user_json(id: &str, logits: &[f32]) -> serde_json::Value {
    serde_json::json!({"id": id, "weights": softmax(logits), "logits": logits})
}

pub async fn users(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let m = models::load(&state, &id).await?;
    Ok(Json(
        m.model
            .users
            .iter()
            .zip(&m.model.weights.user_logits)
            .map(|(u, l)| user_json(u, l))
            .collect(),
    ))
}

pub async fn get_user(
    State(state): State<AppState>,
    Path((id, user)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let m = models::load(&state, &id).await?;
    let i = m
        .model
        .user_index(&user)
        .ok_or_else(|| ApiError::not_found("user", &user))?;
    Ok(Json(user_json(&user, &m.model.weights.user_logits[i])))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetWeights {
    weights: Vec<f32>,
}

/// Sets (or creates) a user with the given simplex weights.
pub async fn put_user(
    State(state): State<AppState>,
    Path((id, user)): Path<(String, String)>,
    Body(body): Body<SetWeights>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let m = models::load(&state, &id).await?;
    check_weights(&body.weights, m.model.weights.config.k)?;
    if user.is_empty() {
        return Err(ApiError::invalid("user id must not be empty"));
    }
    let logits: Vec<f32> = body.weights.iter().map(|w| w.max(1e-9).ln()).collect();
    let lock = state.model_lock(&id);
    let _guard = lock.lock().await;
    let dir = state.model_dir(&id);
    let (u, l) = (user.clone(), logits.clone());
    tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
        let mut model = TrainedModel::load(&dir)?;
        match model.user_index(&u) {
            Some(i) => model.weights.user_logits[i] = l,
            None => {
                model.users.push(u);
                model.weights.user_logits.push(l);
            }
        }
        model.save(&dir)?;
        Ok(())
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    state.forget_model(&id);
    Ok(Json(user_json(&user, &logits)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptRequest {
    pairs: Vec<Comparison>,
    #[serde(default)]
    fewshot: Option<FewShotConfig>,
}

/// Fits new users from their comparisons; only their weights are learned.
pub async fn adapt(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(req): Body<AdaptRequest>,
) -> Result<(StatusCode, Json<Vec<serde_json::Value>>), ApiError> {
    if req.pairs.is_empty() {
        return Err(ApiError::invalid("field `pairs`: no comparisons"));
    }
    if let Some((i, c)) = req.pairs.iter().enumerate().find(|(_, c)| c.label > 1) {
        return Err(ApiError::invalid(format!(
            "field `pairs[{i}].label`: must be 0 or 1, got {}",
            c.label
        )));
    }
    let m = models::load(&state, &id).await?;
    if let Some(c) = req
        .pairs
        .iter()
        .find(|c| m.model.user_index(&c.user).is_some())
    {
        return Err(ApiError::conflict(format!(
            "user `{}` already exists in model `{id}`; set weights with PUT instead",
            c.user
        )));
    }
    let lock = state.model_lock(&id);
    let _guard = lock.lock().await;
    let dir = state.model_dir(&id);
    let cfg = req.fewshot.unwrap_or_default();
    let pairs = req.pairs;
    let m2 = m.clone();
    let added = tokio::task::spawn_blocking(move || -> Result<Vec<serde_json::Value>, ApiError> {
        let current = TrainedModel::load(&dir)?;
        let before = current.users.len();
        let adapted = fit_new_users(&current, &m2.dataset, &pairs, &cfg)?;
        adapted.save(&dir)?;
        Ok(adapted.users[before..]
            .iter()
            .zip(&adapted.weights.user_logits[before..])
            .map(|(u, l)| user_json(u, l))
            .collect())
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    state.forget_model(&id);
    Ok((StatusCode::CREATED, Json(added)))
}
