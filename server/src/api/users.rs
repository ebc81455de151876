//! A model's users: listing, reading and setting simplex weights, deleting a visitor ("forget
//! me"), and few-shot adaptation of new users.
//!
//! Who may: dataset and admin-made users are the admin's (`--token`; open without one); a
//! visitor's user needs that visitor's secret or the admin token (`auth`). A visitor's weights
//! live in the database, never in the model's files or bundles.
//!
//! Every weight write is versioned: reads return a revision as the ETag, overwriting a model
//! user needs `If-Match` with it (428 without, 412 when stale), and each write to a model's
//! files happens under the model's lock on a fresh copy, then publishes a new immutable bundle
//! revision. A visitor's write may send `If-Match` (412 when stale). No write is lost silently,
//! and reads never write.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pal_core::pipeline::{FewShotConfig, adapt as fit_new_users};
use pal_core::reference::softmax;
use pal_core::{Comparison, Dataset};
use pal_format::http::{SetWeights, UserWeights};
use pal_format::model_dir::TrainedModel;
use serde::Deserialize;

use super::rank::check_weights;
use crate::auth::{VISITOR_PREFIX, require_admin, visitor_access};
use crate::bodies::Body;
use crate::bundle;
use crate::config::id_problem;
use crate::db::{VisitorRow, WeightsWrite};
use crate::error::{ApiError, shorten};
use crate::models::LoadedModel;
use crate::state::AppState;
use crate::state::blocking;

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
    headers: HeaderMap,
) -> Result<Json<Vec<UserWeights>>, ApiError> {
    require_admin(&state, &headers, "listing a model's users")?;
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

/// A visitor's weights on a model: their own (saved with PUT), else those the model learned for
/// them (a model trained with their contributions); 404 when neither exists.
async fn visitor_weights(
    state: &AppState,
    m: &LoadedModel,
    v: &VisitorRow,
) -> Result<UserWeights, ApiError> {
    if let Some(w) = state.db.visitor_weights(&m.row.id, &v.id).await? {
        return Ok(user_json(&v.id, &w.logits, w.revision));
    }
    match m.model.user_index(&v.id) {
        Some(i) => Ok(user_json(&v.id, &m.model.weights.user_logits[i], 0)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "visitor `{}` has saved no weights on this model yet",
                shorten(&v.id)
            ),
        )),
    }
}

pub async fn get_user(
    State(state): State<AppState>,
    Path((id, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(v) = visitor_access(&state, &headers, &user).await? {
        let m = state.model(&id).await?;
        let w = visitor_weights(&state, &m, &v).await?;
        return Ok(([(header::ETAG, etag(w.revision))], Json(w)).into_response());
    }
    require_admin(&state, &headers, "reading a user's weights")?;
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

/// Parses `If-Match: "rN"`; `Ok(None)` when absent. `If-Match` compares strongly (RFC 9110
/// 13.1.1), and every ETag this server sends is strong, so a weak `W/"rN"` never matches: 412.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or("").trim();
    if text.starts_with("W/") {
        return Err(ApiError::precondition_failed(
            "header `If-Match`: a weak ETag never matches; send the strong ETag (\"r3\") of a GET",
        ));
    }
    text.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .and_then(|s| s.strip_prefix('r'))
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
    if user.starts_with(VISITOR_PREFIX) {
        return Err(ApiError::invalid(format!(
            "{field}: user ids starting with `{VISITOR_PREFIX}` are reserved for visitors \
             (`POST /models/{{id}}/visitors`)"
        )));
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
    let visitor = visitor_access(&state, &headers, &user).await?;
    if visitor.is_none() {
        require_admin(&state, &headers, "setting a user's weights")?;
    }
    let m = state.model(&id).await?;
    check_weights(&body.weights, m.model.weights.config.k)?;
    let expected = if_match(&headers)?;
    let logits: Vec<f32> = body.weights.iter().map(|w| w.max(1e-9).ln()).collect();
    if visitor.is_some() {
        let rev = match state
            .db
            .set_visitor_weights(&id, &user, &logits, expected)
            .await?
        {
            WeightsWrite::Written(rev) => rev,
            WeightsWrite::Stale(now) => {
                return Err(ApiError::precondition_failed(format!(
                    "the visitor's weights changed since that revision (now r{now}); GET them \
                     again and retry"
                )));
            }
            WeightsWrite::Gone => return Err(ApiError::not_found("visitor", &user)),
        };
        let body = user_json(&user, &logits, rev);
        return Ok(([(header::ETAG, etag(rev))], Json(body)).into_response());
    }
    let existing = m.model.user_index(&user);
    if existing.is_none() {
        check_new_user(&m, &user, &state, "path `user`")?;
    }
    let trained = m.trained_users;
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

/// "Forget me": deletes a visitor, their weights on every model and their contributions (204).
/// Model users are not deleted here: a model's users change by training a new model.
pub async fn delete_user(
    State(state): State<AppState>,
    Path((id, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let Some(v) = visitor_access(&state, &headers, &user).await? else {
        require_admin(&state, &headers, "deleting a user")?;
        state.model(&id).await?;
        return Err(ApiError::conflict(format!(
            "user `{}` is not a visitor; a model's own users change only by training a new model",
            shorten(&user)
        )));
    };
    state.db.model(&id).await?;
    state.db.delete_visitor(&v.id).await?;
    Ok(StatusCode::NO_CONTENT)
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
        if let Some((f, why)) = m.pair_problem(c.prompt.as_deref(), &c.left, &c.right, c.label) {
            return Err(ApiError::invalid(format!("{}: {why}", at(f))));
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
