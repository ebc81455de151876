//! Rewards for new texts: `POST /models/{id}/rewards` (pal's own body) and
//! `POST /models/{id}/rerank` (the Jina/vLLM/TEI shape plus `user`). Texts are embedded by the
//! encoder that made the model's items and prompts (checked once per dataset, 422 naming why
//! not), concurrent requests share encoder passes, and the rewards are the model's, exactly as
//! `/rank` scores the dataset's own items. Every limit is checked before any work; nothing is
//! stored. The shared checks and the scoring are used by OpenRLHF's route too (`openrlhf`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use pal_core::Variant;
use pal_format::rewards::{
    RerankDocument, RerankRequest, RerankResponse, RerankResult, Rewards, RewardsRequest,
};

use super::embed::encoder_of;
use super::prefs::{Access, Pref, resolve};
use crate::bodies::Body;
use crate::config::Limits;
use crate::embed::Side;
use crate::error::ApiError;
use crate::models::LoadedModel;
use crate::state::AppState;

/// Who may read stored users' rewards at the reward routes.
pub fn access(state: &AppState) -> Access {
    if state.config.reward.open_users {
        Access::Open
    } else {
        Access::Admin
    }
}

/// Checks a list of texts: at most `max_responses`, none empty (422), none longer than
/// `max_bytes` (413); `field` names them (`responses`, `documents`, `query`).
pub fn check_texts(
    field: &str,
    texts: &[String],
    max_bytes: usize,
    limits: &Limits,
) -> Result<(), ApiError> {
    if texts.is_empty() {
        return Err(ApiError::invalid(format!("field `{field}`: empty")));
    }
    if texts.len() > limits.max_responses {
        return Err(ApiError::invalid(format!(
            "field `{field}`: {} texts; the limit is {}",
            texts.len(),
            limits.max_responses
        )));
    }
    for (i, t) in texts.iter().enumerate() {
        check_text(&format!("{field}[{i}]"), t, max_bytes)?;
    }
    Ok(())
}

/// One text: not blank (422), at most `max_bytes` (413).
pub fn check_text(field: &str, text: &str, max_bytes: usize) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::invalid(format!("field `{field}`: empty")));
    }
    if text.len() > max_bytes {
        return Err(ApiError::too_large(format!(
            "field `{field}`: {} bytes; the limit is {max_bytes}",
            text.len()
        )));
    }
    Ok(())
}

/// Rows given embedded: each `dim` finite values.
fn check_rows(field: &str, rows: &[Vec<f32>], dim: usize) -> Result<(), ApiError> {
    for (i, r) in rows.iter().enumerate() {
        if r.len() != dim {
            return Err(ApiError::invalid(format!(
                "field `{field}[{i}]`: {} values; the model's embeddings have {dim}",
                r.len()
            )));
        }
        if r.iter().any(|v| !v.is_finite()) {
            return Err(ApiError::invalid(format!(
                "field `{field}[{i}]`: values must be finite"
            )));
        }
    }
    Ok(())
}

/// A prompt as a request gives it.
pub enum PromptIn {
    None,
    Text(String),
    Row(Vec<f32>),
}

/// Responses as a request gives them.
pub enum ResponsesIn {
    Texts(Vec<String>),
    Rows(Vec<Vec<f32>>),
}

/// The model's rewards of `responses` under `prompt` for `pref`, and the encoder that embedded
/// any texts.
pub async fn score(
    state: &AppState,
    m: &std::sync::Arc<LoadedModel>,
    pref: &Pref,
    prompt: PromptIn,
    responses: ResponsesIn,
) -> Result<(Vec<f32>, Option<String>), ApiError> {
    let needs_prompt = m.model.weights.config.variant == Variant::B;
    let prompt_dim = m.dataset.prompts.as_ref().map_or(0, |p| p.dim());
    let (prompt_text, mut prompt_row) = match (needs_prompt, prompt) {
        (false, _) => (None, Some(Vec::new())),
        (true, PromptIn::None) => {
            return Err(ApiError::invalid(
                "field `prompt`: missing (PAL-B models score responses under a prompt)",
            ));
        }
        (true, PromptIn::Row(r)) => {
            check_rows("prompt_embedding", std::slice::from_ref(&r), prompt_dim)?;
            (None, Some(r))
        }
        (true, PromptIn::Text(t)) => (Some(t), None),
    };
    let mut encoder = None;
    if prompt_text.is_some() {
        encoder = Some(encoder_of(state, m, Side::Prompts).await?);
    }
    let (texts, given) = match responses {
        ResponsesIn::Rows(rows) => {
            check_rows("response_embeddings", &rows, m.dataset.items.dim())?;
            (Vec::new(), Some(rows))
        }
        ResponsesIn::Texts(texts) => {
            encoder = Some(encoder_of(state, m, Side::Items).await?);
            (texts, None)
        }
    };
    // The prompt (unless remembered) and any response texts, in one encoder pass.
    let prompts: Vec<&str> = prompt_text.as_deref().into_iter().collect();
    let (mut p, embedded) = state.embedder.embed_with_prompts(&prompts, texts).await?;
    if prompt_text.is_some() {
        prompt_row = p.pop();
    }
    let rows = given.unwrap_or(embedded);
    let prompt_row = prompt_row.unwrap_or_default();
    let flat: Vec<f32> = rows.concat();
    Ok((m.score_rows(pref.as_user(), &prompt_row, &flat), encoder))
}

/// One of `text` or `embedding` (both absent: none).
fn prompt_in(text: Option<String>, row: Option<Vec<f32>>) -> Result<PromptIn, ApiError> {
    match (text, row) {
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "give at most one of `prompt` and `prompt_embedding`",
        )),
        (Some(t), None) => Ok(PromptIn::Text(t.trim().to_string())),
        (None, Some(r)) => Ok(PromptIn::Row(r)),
        (None, None) => Ok(PromptIn::None),
    }
}

pub async fn rewards(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(req): Body<RewardsRequest>,
) -> Result<Json<Rewards>, ApiError> {
    let limits = &state.config.limits;
    let responses = match (req.responses, req.response_embeddings) {
        (Some(t), None) => {
            check_texts("responses", &t, limits.max_response_bytes, limits)?;
            ResponsesIn::Texts(t)
        }
        (None, Some(r)) if r.is_empty() => {
            return Err(ApiError::invalid("field `response_embeddings`: empty"));
        }
        (None, Some(r)) if r.len() > limits.max_responses => {
            return Err(ApiError::invalid(format!(
                "field `response_embeddings`: {} rows; the limit is {}",
                r.len(),
                limits.max_responses
            )));
        }
        (None, Some(r)) => ResponsesIn::Rows(r),
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of `responses` and `response_embeddings`",
            ));
        }
    };
    if let Some(p) = &req.prompt {
        check_text("prompt", p, limits.max_prompt_bytes)?;
    }
    let prompt = prompt_in(req.prompt, req.prompt_embedding)?;
    let m = state.model(&id).await?;
    let user = req.user.as_deref();
    let pref = resolve(&state, &headers, &m, user, req.weights, access(&state)).await?;
    let (rewards, encoder) = score(&state, &m, &pref, prompt, responses).await?;
    Ok(Json(Rewards {
        rewards,
        encoder,
        weights: pref.weights,
    }))
}

pub async fn rerank(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(req): Body<RerankRequest>,
) -> Result<Json<RerankResponse>, ApiError> {
    let limits = &state.config.limits;
    check_texts(
        "documents",
        &req.documents,
        limits.max_response_bytes,
        limits,
    )?;
    check_text("query", &req.query, limits.max_prompt_bytes)?;
    if req.top_n == Some(0) {
        return Err(ApiError::invalid("field `top_n`: must be ≥ 1"));
    }
    let m = state.model(&id).await?;
    let user = req.user.as_deref();
    let pref = resolve(&state, &headers, &m, user, req.weights, access(&state)).await?;
    let prompt = PromptIn::Text(req.query.trim().to_string());
    let docs = req.documents;
    let (rewards, _) = score(&state, &m, &pref, prompt, ResponsesIn::Texts(docs.clone())).await?;
    let n = req.top_n.unwrap_or(rewards.len());
    let results = pal_infer::top_k(&rewards, n)
        .into_iter()
        .map(|(index, relevance_score)| RerankResult {
            index,
            relevance_score,
            document: req.return_documents.then(|| RerankDocument {
                text: docs[index].clone(),
            }),
        })
        .collect();
    Ok(Json(RerankResponse { model: id, results }))
}
