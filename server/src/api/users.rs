//! A model's users: listing, reading and setting simplex weights, deleting a visitor ("forget
//! me"), and few-shot adaptation of new users.
//!
//! Who may: dataset and admin-made users are the admin's (`--token`; open without one); a
//! visitor's user needs that visitor's secret or the admin token (`auth`).
//!
//! Where they live: users the training job learned are in the model's files (read-only, ETag
//! the model's revision); every other user — admin-set, adapted (`model_users`) or a visitor
//! (`visitor_weights`) — is a database row with its own revision, so a write never touches the
//! model's files or bundle and never reloads the model. Overwriting a stored user needs
//! `If-Match` with its ETag (428 without, 412 when stale); a visitor may send `If-Match` (412
//! when stale). Each write is one transaction: no acknowledged write is lost.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pal_core::Comparison;
use pal_core::pipeline::{FewShotConfig, adapt as fit_new_users};
use pal_core::reference::softmax;
use pal_format::http::{SetWeights, UserWeights};
use pal_format::model_dir::TakenUser;
use serde::Deserialize;

use super::prefs::{check_weights, user_stored, visitor_stored};
use crate::auth::{VISITOR_PREFIX, require_admin, visitor_access};
use crate::bodies::Body;
use crate::config::id_problem;
use crate::db::{UserWrite, UsersAdded, WeightsWrite};
use crate::error::{ApiError, shorten};
use crate::models::LoadedModel;
use crate::state::AppState;
use crate::state::blocking;

fn precondition_required(user: &str) -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_REQUIRED,
        "precondition_required",
        format!(
            "user `{}` exists: overwriting needs `If-Match` with the ETag of a GET of the user",
            shorten(user)
        ),
    )
}

fn model_full(users: usize) -> ApiError {
    ApiError::invalid(format!(
        "the model already has {users} users (the server's limit)"
    ))
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
    headers: HeaderMap,
) -> Result<Json<Vec<UserWeights>>, ApiError> {
    require_admin(&state, &headers, "listing a model's users")?;
    let m = state.model(&id).await?;
    let rev = m.revision();
    let mut list: Vec<UserWeights> = m
        .model
        .users
        .iter()
        .zip(&m.model.weights.user_logits)
        .map(|(u, l)| user_json(u, l, rev))
        .collect();
    for (u, w) in state.db.model_users(&id).await? {
        list.push(user_json(&u, &w.logits, w.revision));
    }
    Ok(Json(list))
}

pub async fn get_user(
    State(state): State<AppState>,
    Path((id, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let s = match visitor_access(&state, &headers, &user).await? {
        Some(v) => visitor_stored(&state, &*state.model(&id).await?, &v).await?,
        None => {
            require_admin(&state, &headers, "reading a user's weights")?;
            user_stored(&state, &*state.model(&id).await?, &user).await?
        }
    };
    let w = user_json(&user, &s.logits, s.revision);
    Ok(([(header::ETAG, etag(w.revision))], Json(w)).into_response())
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

/// Checks a user id that is not the model's own (training-learned) user; the limit on users
/// is checked in the transaction that stores one.
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
    if m.model.user_index(user).is_some() {
        return Err(ApiError::conflict(format!(
            "{field}: user `{}` was learned by the training job; its weights are read-only \
             (create a new user instead)",
            shorten(user)
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
    check_new_user(&m, &user, &state, "path `user`")?;
    let limits = (m.model.users.len(), state.config.limits.max_users);
    let rev = match state
        .db
        .put_model_user((&id, &user), &logits, expected, limits)
        .await?
    {
        UserWrite::Written(rev) => rev,
        UserWrite::Stale(now) => {
            return Err(ApiError::precondition_failed(format!(
                "the user changed since revision {} (now {now}); GET the user again and retry",
                expected.unwrap_or(0)
            )));
        }
        UserWrite::Exists => return Err(precondition_required(&user)),
        UserWrite::Full(n) => return Err(model_full(n)),
    };
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
        check_new_user(m, &c.user, state, &at("user"))?;
        if let Some((f, why)) = m.pair_problem(c.prompt.as_deref(), &c.left, &c.right, c.label) {
            return Err(ApiError::invalid(format!("{}: {why}", at(f))));
        }
    }
    let users: std::collections::HashSet<&str> =
        req.pairs.iter().map(|c| c.user.as_str()).collect();
    if m.model.users.len() + users.len() > limits.max_users {
        return Err(too_many_new(users.len(), limits.max_users));
    }
    Ok(cfg)
}

fn too_many_new(n: usize, max: usize) -> ApiError {
    ApiError::invalid(format!(
        "field `pairs`: {n} new users would exceed the server's limit of {max} users per model"
    ))
}

/// Fits new users from their comparisons; only their weights (and residuals) are learned. The
/// fit runs on the loaded model; the new users are then stored as rows, all or none, and the
/// user limit is checked again in that transaction.
pub async fn adapt(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(req): Body<AdaptRequest>,
) -> Result<(StatusCode, Response), ApiError> {
    let m = state.model(&id).await?;
    let cfg = check_adapt(&req, &m, &state)?;
    let snapshot = m.clone();
    let pairs = req.pairs;
    let mut fitted = blocking(&state, "fitting the new users", move || {
        let before = snapshot.model.users.len();
        let mut fitted = fit_new_users(&snapshot.model, &snapshot.dataset, &pairs, &cfg)?;
        let mut n = 0;
        Ok(fitted.take_users(|_| {
            n += 1;
            n > before
        }))
    })
    .await?;
    let limits = (m.model.users.len(), state.config.limits.max_users);
    match state.db.add_model_users(&id, &fitted, limits).await? {
        UsersAdded::Added => {}
        UsersAdded::Exists(u) => {
            return Err(ApiError::conflict(format!(
                "user `{}` already exists in the model (perhaps added while this fit ran); set \
                 weights with PUT instead",
                shorten(&u)
            )));
        }
        UsersAdded::Full(_) => {
            return Err(too_many_new(fitted.len(), state.config.limits.max_users));
        }
    }
    let body: Vec<_> = fitted
        .drain(..)
        .map(|TakenUser { id, logits, .. }| user_json(&id, &logits, 1))
        .collect();
    Ok((
        StatusCode::CREATED,
        ([(header::ETAG, etag(1))], Json(body)).into_response(),
    ))
}
