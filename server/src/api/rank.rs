//! `POST /rank`: top-k items for a user (or explicit simplex weights) and a prompt.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use pal_format::http::{RankRequest, RankResponse};

use super::prefs::{Access, resolve};
use crate::bodies::Body;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn rank(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(req): Body<RankRequest>,
) -> Result<Json<RankResponse>, ApiError> {
    state.metrics.rank_requests.fetch_add(1, Ordering::Relaxed);
    if req.k == 0 {
        return Err(ApiError::invalid("field `k`: must be ≥ 1"));
    }
    let m = state.model(&req.model).await.map_err(|e| {
        if e.status == axum::http::StatusCode::NOT_FOUND {
            ApiError::invalid(format!("field `model`: {}", e.detail))
        } else {
            e
        }
    })?;
    if req.user.is_none() && req.weights.is_none() {
        return Err(ApiError::invalid(
            "give exactly one of `user` and `weights`",
        ));
    }
    // A stored user of a residual model ranks with their residual too.
    let user = req.user.as_deref();
    let pref = resolve(&state, &headers, &m, user, req.weights, Access::Admin).await?;
    let ranking = m.rank(
        pref.as_user(),
        req.prompt.as_deref(),
        req.items.as_deref(),
        req.k,
    )?;
    Ok(Json(RankResponse {
        model: req.model,
        user: req.user,
        weights: pref.weights,
        prompt: req.prompt,
        ranking,
    }))
}
