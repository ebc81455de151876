//! `POST /rank`: top-k items for a user (or explicit simplex weights) and a prompt.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use pal_format::http::{RankRequest, RankResponse};

use crate::auth::require_admin;
use crate::bodies::Body;
use crate::error::ApiError;
use crate::state::AppState;

/// Validates simplex weights for a model with `k` prototypes.
pub fn check_weights(w: &[f32], k: usize) -> Result<(), ApiError> {
    if w.len() != k {
        return Err(ApiError::invalid(format!(
            "field `weights`: expected {k} values, found {}",
            w.len()
        )));
    }
    if w.iter().any(|v| !v.is_finite() || *v < 0.0) {
        return Err(ApiError::invalid(
            "field `weights`: values must be finite and ≥ 0",
        ));
    }
    let sum: f32 = w.iter().sum();
    if (sum - 1.0).abs() > 1e-3 {
        return Err(ApiError::invalid(format!(
            "field `weights`: must sum to 1, sum is {sum}"
        )));
    }
    Ok(())
}

pub async fn rank(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(req): Body<RankRequest>,
) -> Result<Json<RankResponse>, ApiError> {
    state.metrics.rank_requests.fetch_add(1, Ordering::Relaxed);
    if req.user.is_some() {
        // The answer names the user's weights: as admin-only as reading them.
        require_admin(&state, &headers, "ranking for a stored user")?;
    }
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
    // A stored user of a residual model ranks with their residual too.
    let (w, residual) = match (&req.user, req.weights) {
        (Some(u), None) => match m.stored_user(u) {
            Some((w, r)) => (w, r.map(<[f32]>::to_vec)),
            None => {
                let s = state.db.model_user(&req.model, u).await?;
                let s = s.ok_or_else(|| ApiError::not_found("user", u))?;
                (pal_core::reference::softmax(&s.logits), s.residual)
            }
        },
        (None, Some(w)) => {
            check_weights(&w, m.model.weights.config.k)?;
            (w, None)
        }
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of `user` and `weights`",
            ));
        }
    };
    let pref = pal_core::reference::UserPref {
        weights: &w,
        residual: residual.as_deref(),
    };
    let ranking = m.rank(pref, req.prompt.as_deref(), req.items.as_deref(), req.k)?;
    Ok(Json(RankResponse {
        model: req.model,
        user: req.user,
        weights: w,
        prompt: req.prompt,
        ranking,
    }))
}
