//! `/models`: list and inspect models, serve browser bundles, and manage users (few-shot
//! adaptation of new users, reading and setting a user's simplex weights).
//!
//! Every weight write is versioned: the model's files carry a revision, reads return it as the
//! ETag, overwriting a user needs `If-Match` with it (428 without, 412 when stale), and each
//! write happens under the model's lock on a fresh copy of the files, then publishes a new
//! immutable bundle revision. No write is lost silently, and reads never write.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pal_core::pipeline::{FewShotConfig, adapt as fit_new_users};
use pal_core::reference::softmax;
use pal_core::{Comparison, Dataset};
use pal_format::http::{SetWeights, UserWeights};
use pal_format::model_dir::TrainedModel;
use serde::Deserialize;

use super::rank::check_weights;
use crate::bodies::{Body, ModelInfo};
use crate::bundle;
use crate::config::id_problem;
use crate::db::ModelRow;
use crate::error::{ApiError, shorten};
use crate::models::LoadedModel;
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
        users: m.model.users.len(),
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

fn user_json(id: &str, logits: &[f32], revision: u64) -> UserWeights {
    UserWeights {
        id: id.to_string(),
        weights: softmax(logits),
        logits: logits.to_vec(),
        revision,
    }
}

fn etag(revision: u64) -> String {
    format!("\"r{revision}\"")
}

pub async fn users(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<UserWeights>>, ApiError> {
    let m = state.model(&id).await?;
    let rev = m.revision();
    Ok(Json(
        m.model
            .users
            .iter()
            .zip(&m.model.weights.user_logits)
            .map(|(u, l)| user_json(u, l, rev))
            .collect(),
    ))
}

pub async fn get_user(
    State(state): State<AppState>,
    Path((id, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let m = state.model(&id).await?;
    let i = m
        .model
        .user_index(&user)
        .ok_or_else(|| ApiError::not_found("user", &user))?;
    let rev = m.revision();
    Ok((
        [(header::ETAG, etag(rev))],
        Json(user_json(&user, &m.model.weights.user_logits[i], rev)),
    )
        .into_response())
}

/// Writes a changed copy of model `id` as its next revision (files, then bundle) under the
/// model's lock. `change` gets the model freshly loaded from its files and says what to
/// answer; an error from it leaves every file as it was.
async fn write_model<T: Send + 'static>(
    state: &AppState,
    id: &str,
    change: impl FnOnce(&mut TrainedModel) -> Result<T, ApiError> + Send + 'static,
) -> Result<(T, u64), ApiError> {
    let m = state.model(id).await?;
    let lock = state.model_lock(id);
    let _guard = lock.lock().await;
    let (mdir, bdir, id2) = (state.model_dir(id), state.bundles_dir(id), id.to_string());
    let dataset: Dataset = m.dataset.clone();
    let out = blocking(state, "saving the model", move || {
        let mut model = TrainedModel::load(&mdir)?;
        let answer = change(&mut model)?;
        let rev = bundle::revision(&model) + 1;
        if !model.meta.is_object() {
            model.meta = serde_json::json!({});
        }
        model.meta["revision"] = rev.into();
        model.save(&mdir)?;
        // The shared data (candidates included) was written when the model was published.
        bundle::write(&bdir, &id2, &model, &dataset, &[])?;
        Ok((answer, rev))
    })
    .await;
    state.forget_model(id);
    out
}

/// Parses `If-Match: "rN"`; `Ok(None)` when absent.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| {
            s.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .strip_prefix('r')
        })
        .and_then(|n| n.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid(
                "header `If-Match`: expected an ETag like \"r3\" from a GET of the user",
            )
        })
}

/// Checks a user id and that the model may take one more user.
fn check_new_user(
    m: &LoadedModel,
    user: &str,
    state: &AppState,
    field: &str,
) -> Result<(), ApiError> {
    let limits = &state.config.limits;
    if let Some(why) = id_problem(user, limits.max_id_len) {
        return Err(ApiError::invalid(format!("{field}: user id {why}")));
    }
    if m.model.users.len() >= limits.max_users {
        return Err(ApiError::invalid(format!(
            "{field}: the model already has {} users (the server's limit)",
            m.model.users.len()
        )));
    }
    Ok(())
}

/// Sets (or creates) a user with the given simplex weights. Overwriting needs `If-Match`;
/// users learned by the training job are read-only.
pub async fn put_user(
    State(state): State<AppState>,
    Path((id, user)): Path<(String, String)>,
    headers: HeaderMap,
    Body(body): Body<SetWeights>,
) -> Result<Response, ApiError> {
    let m = state.model(&id).await?;
    check_weights(&body.weights, m.model.weights.config.k)?;
    let expected = if_match(&headers)?;
    let existing = m.model.user_index(&user);
    if existing.is_none() {
        check_new_user(&m, &user, &state, "path `user`")?;
    }
    let trained = m.trained_users;
    let logits: Vec<f32> = body.weights.iter().map(|w| w.max(1e-9).ln()).collect();
    let (u, l) = (user.clone(), logits.clone());
    let ((), rev) = write_model(&state, &id, move |model| {
        let current = bundle::revision(model);
        match (model.user_index(&u), expected) {
            (Some(i), _) if i < trained => Err(ApiError::conflict(format!(
                "user `{}` was learned by the training job; its weights are read-only (create a new user instead)",
                shorten(&u)
            ))),
            (_, Some(want)) if want != current => Err(ApiError::precondition_failed(format!(
                "the model changed since revision {want} (now {current}); GET the user again and retry"
            ))),
            (Some(_), None) => Err(ApiError::new(
                StatusCode::PRECONDITION_REQUIRED,
                "precondition_required",
                format!(
                    "user `{}` exists: overwriting needs `If-Match` with the ETag of a GET of the user",
                    shorten(&u)
                ),
            )),
            (Some(i), Some(_)) => {
                model.weights.user_logits[i] = l;
                Ok(())
            }
            (None, _) => {
                model.users.push(u);
                model.weights.user_logits.push(l);
                Ok(())
            }
        }
    })
    .await?;
    Ok((
        [(header::ETAG, etag(rev))],
        Json(user_json(&user, &logits, rev)),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptRequest {
    pairs: Vec<Comparison>,
    #[serde(default)]
    fewshot: Option<FewShotConfig>,
}

/// Checks an adapt request against the model and the limits before any fitting starts.
fn check_adapt(
    req: &AdaptRequest,
    m: &LoadedModel,
    state: &AppState,
) -> Result<FewShotConfig, ApiError> {
    let limits = &state.config.limits;
    if req.pairs.is_empty() {
        return Err(ApiError::invalid("field `pairs`: no comparisons"));
    }
    if req.pairs.len() > limits.max_adapt_pairs {
        return Err(ApiError::invalid(format!(
            "field `pairs`: {} comparisons exceed the server's limit {}",
            req.pairs.len(),
            limits.max_adapt_pairs
        )));
    }
    let cfg = req.fewshot.clone().unwrap_or_default();
    if cfg.epochs == 0 || cfg.epochs > limits.max_adapt_epochs {
        return Err(ApiError::invalid(format!(
            "field `fewshot.epochs`: must be 1 to {}",
            limits.max_adapt_epochs
        )));
    }
    let work = (cfg.epochs as u64).saturating_mul(req.pairs.len() as u64);
    if work > limits.max_adapt_work {
        return Err(ApiError::invalid(format!(
            "field `fewshot.epochs`: epochs × comparisons = {work} exceeds the server's limit {}",
            limits.max_adapt_work
        )));
    }
    for (name, v) in [("lr", cfg.lr), ("weight_decay", cfg.weight_decay)] {
        if !(0.0..=100.0).contains(&v) {
            return Err(ApiError::invalid(format!(
                "field `fewshot.{name}`: must be a number from 0 to 100"
            )));
        }
    }
    let items = &m.dataset.items;
    let prompts = m.dataset.prompts.as_ref();
    let needs_prompt = m.model.weights.config.variant == pal_core::Variant::B;
    for (i, c) in req.pairs.iter().enumerate() {
        let at = |f: &str| format!("field `pairs[{i}].{f}`");
        if m.model.user_index(&c.user).is_some() {
            return Err(ApiError::conflict(format!(
                "{}: user `{}` already exists in the model; set weights with PUT instead",
                at("user"),
                shorten(&c.user)
            )));
        }
        check_new_user(m, &c.user, state, &at("user"))?;
        if c.label > 1 {
            return Err(ApiError::invalid(format!(
                "{}: must be 0 or 1",
                at("label")
            )));
        }
        for (f, id) in [("left", &c.left), ("right", &c.right)] {
            if items.position(id).is_none() {
                return Err(ApiError::invalid(format!(
                    "{}: unknown item `{}`",
                    at(f),
                    shorten(id)
                )));
            }
        }
        if c.left == c.right {
            return Err(ApiError::invalid(format!(
                "{}: same item as left",
                at("right")
            )));
        }
        match (&c.prompt, prompts) {
            (None, _) if needs_prompt => {
                return Err(ApiError::invalid(format!(
                    "{}: missing (PAL-B models compare items under a prompt)",
                    at("prompt")
                )));
            }
            (Some(p), Some(s)) if s.position(p).is_none() => {
                return Err(ApiError::invalid(format!(
                    "{}: unknown prompt `{}`",
                    at("prompt"),
                    shorten(p)
                )));
            }
            _ => {}
        }
    }
    let users: std::collections::HashSet<&str> =
        req.pairs.iter().map(|c| c.user.as_str()).collect();
    if m.model.users.len() + users.len() > limits.max_users {
        return Err(ApiError::invalid(format!(
            "field `pairs`: {} new users would exceed the server's limit of {} users per model",
            users.len(),
            limits.max_users
        )));
    }
    Ok(cfg)
}

/// Fits new users from their comparisons; only their weights are learned. The fit runs on a
/// snapshot without holding the model; the new users are then added to the current files.
pub async fn adapt(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(req): Body<AdaptRequest>,
) -> Result<(StatusCode, Response), ApiError> {
    let m = state.model(&id).await?;
    let cfg = check_adapt(&req, &m, &state)?;
    let snapshot = m.clone();
    let pairs = req.pairs;
    let (users, logits) = blocking(&state, "fitting the new users", move || {
        let before = snapshot.model.users.len();
        let fitted = fit_new_users(&snapshot.model, &snapshot.dataset, &pairs, &cfg)?;
        Ok((
            fitted.users[before..].to_vec(),
            fitted.weights.user_logits[before..].to_vec(),
        ))
    })
    .await?;
    let (added, rev) = write_model(&state, &id, move |model| {
        if let Some(u) = users.iter().find(|u| model.user_index(u).is_some()) {
            return Err(ApiError::conflict(format!(
                "user `{}` was added to the model while it was being fitted",
                shorten(u)
            )));
        }
        model.users.extend(users.iter().cloned());
        model.weights.user_logits.extend(logits.iter().cloned());
        Ok(users.into_iter().zip(logits).collect::<Vec<_>>())
    })
    .await?;
    let body: Vec<_> = added.iter().map(|(u, l)| user_json(u, l, rev)).collect();
    Ok((
        StatusCode::CREATED,
        ([(header::ETAG, etag(rev))], Json(body)).into_response(),
    ))
}
