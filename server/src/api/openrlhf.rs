//! OpenRLHF's remote reward model: `POST /models/{id}/get_reward`, and `POST /get_reward` for the
//! model `pal serve --reward-model` names, so `--remote_rm_url http://HOST:PORT/get_reward`
//! works unchanged. Each query splits into prompt and response (`chat`), each label names whose
//! reward it is (a user id; `null`, `""` or no `labels`: the population's mixture), and all
//! texts of the request go to the encoder in one batch. Rewards come back in request order, as
//! `rewards` and `scores` (the same values).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use pal_core::Variant;
use pal_format::rewards::{GetRewardRequest, GetRewardResponse};
use serde_json::Value;

use super::embed::encoder_of;
use super::prefs::{Pref, resolve};
use super::rewards::access;
use crate::bodies::Body;
use crate::chat::{SplitError, split};
use crate::embed::Side;
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /get_reward`: the `--reward-model`'s answer; 404 when the server mounts none.
pub async fn mounted(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body<GetRewardRequest>,
) -> Result<Json<GetRewardResponse>, ApiError> {
    let Some(id) = state.config.reward.model.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no reward model is mounted here: start `pal serve --reward-model MODEL_ID`, or \
             POST /models/{id}/get_reward",
        ));
    };
    get_reward(State(state), Path(id), headers, body).await
}

/// A label as a user: a string names one (`""`: nobody), `null` nobody.
fn label_user(i: usize, v: &Value) -> Result<Option<String>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(ApiError::invalid(format!(
            "field `labels[{i}]`: must be a user id (a string) or null"
        ))),
    }
}

/// A part of query `field` after the split: not empty (422), at most `max` bytes (413).
fn part(field: &str, what: &str, text: &str, max: usize) -> Result<(), ApiError> {
    if text.is_empty() {
        return Err(ApiError::invalid(format!(
            "field `{field}`: its {what} is empty"
        )));
    }
    if text.len() > max {
        return Err(ApiError::too_large(format!(
            "field `{field}`: its {what} is {} bytes; the limit is {max}",
            text.len()
        )));
    }
    Ok(())
}

/// One query as (prompt, response, user), every limit checked.
fn parse(
    state: &AppState,
    req: &GetRewardRequest,
) -> Result<Vec<(String, String, Option<String>)>, ApiError> {
    let limits = &state.config.limits;
    let n = req.query.len();
    if n == 0 {
        return Err(ApiError::invalid("field `query`: empty"));
    }
    if n > limits.max_responses {
        return Err(ApiError::invalid(format!(
            "field `query`: {n} queries; the limit is {}",
            limits.max_responses
        )));
    }
    for (field, len) in [
        ("prompts", req.prompts.as_ref().map(Vec::len)),
        ("labels", req.labels.as_ref().map(Vec::len)),
    ] {
        if let Some(len) = len.filter(|&l| l != n) {
            return Err(ApiError::invalid(format!(
                "field `{field}`: {len} entries for {n} queries"
            )));
        }
    }
    let max_query = limits.max_prompt_bytes + limits.max_response_bytes;
    let markers = &state.config.reward.split_markers;
    let mut out = Vec::with_capacity(n);
    for (i, q) in req.query.iter().enumerate() {
        let field = format!("query[{i}]");
        if q.len() > max_query {
            return Err(ApiError::too_large(format!(
                "field `{field}`: {} bytes; the limit is {max_query}",
                q.len()
            )));
        }
        let given = req.prompts.as_ref().map(|p| p[i].as_str());
        let (prompt, response) = split(q, given, markers).map_err(|e| {
            ApiError::invalid(match e {
                SplitError::PromptNotInQuery => {
                    format!("field `{field}`: does not contain `prompts[{i}]`")
                }
                SplitError::NoMarker => format!(
                    "field `{field}`: no `prompts` given and none of the split markers \
                     (pal serve --reward-split) is in it"
                ),
            })
        })?;
        part(&field, "response", &response, limits.max_response_bytes)?;
        part(&field, "prompt", &prompt, limits.max_prompt_bytes)?;
        let user = match &req.labels {
            Some(l) => label_user(i, &l[i])?,
            None => None,
        };
        out.push((prompt, response, user));
    }
    Ok(out)
}

pub async fn get_reward(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(req): Body<GetRewardRequest>,
) -> Result<Json<GetRewardResponse>, ApiError> {
    let queries = parse(&state, &req)?;
    drop(req);
    let m = state.model(&id).await?;
    // Each distinct user once (each checked for access).
    let mut prefs: HashMap<Option<String>, Pref> = HashMap::new();
    for (_, _, user) in &queries {
        if !prefs.contains_key(user) {
            let p = resolve(&state, &headers, &m, user.as_deref(), None, access(&state))
                .await
                .map_err(|e| match e.status {
                    StatusCode::NOT_FOUND => ApiError {
                        detail: format!("field `labels`: {}", e.detail),
                        ..e
                    },
                    _ => e,
                })?;
            prefs.insert(user.clone(), p);
        }
    }
    let with_prompts = m.model.weights.config.variant == Variant::B;
    if with_prompts {
        encoder_of(&state, &m, Side::Prompts).await?;
    }
    encoder_of(&state, &m, Side::Items).await?;
    let mut distinct: Vec<&str> = Vec::new();
    let mut prompt_of: Vec<usize> = Vec::with_capacity(queries.len());
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (p, _, _) in &queries {
        let at = *seen.entry(p.as_str()).or_insert_with(|| {
            distinct.push(p);
            distinct.len() - 1
        });
        prompt_of.push(at);
    }
    let prompts: Vec<&str> = if with_prompts { distinct } else { Vec::new() };
    let responses: Vec<String> = queries.iter().map(|(_, r, _)| r.clone()).collect();
    let (prompt_rows, rows) = state
        .embedder
        .embed_with_prompts(&prompts, responses)
        .await?;
    let features = m.features_of(&rows.concat());
    let weights = &m.model.weights;
    // One scoring pass per (user, prompt) group, written back in request order.
    let mut groups: HashMap<(&Option<String>, usize), Vec<usize>> = HashMap::new();
    for (i, (_, _, user)) in queries.iter().enumerate() {
        groups.entry((user, prompt_of[i])).or_default().push(i);
    }
    let mut rewards = vec![0f32; queries.len()];
    for ((user, p), rows) in groups {
        let prompt: &[f32] = if with_prompts { &prompt_rows[p] } else { &[] };
        let scores = features.scores(weights, prefs[user].as_user(), prompt, Some(&rows));
        for (i, s) in rows.into_iter().zip(scores) {
            rewards[i] = s;
        }
    }
    Ok(Json(GetRewardResponse {
        scores: rewards.clone(),
        rewards,
    }))
}
