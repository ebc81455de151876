//! Whose taste a ranking or a reward is for, and who may ask: a stored user (the admin's, unless
//! the reward routes are open to stored users), a visitor (their secret), explicit simplex
//! weights (open) or, naming nobody, the population's mixture (open).

use axum::http::HeaderMap;
use pal_core::reference::{UserPref, softmax};

use crate::auth::{require_admin, visitor_access};
use crate::error::{ApiError, shorten};
use crate::models::LoadedModel;
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

/// Simplex weights and, on a residual model, the user's residual.
#[derive(Debug, Clone, PartialEq)]
pub struct Pref {
    pub weights: Vec<f32>,
    pub residual: Option<Vec<f32>>,
}

impl Pref {
    pub fn as_user(&self) -> UserPref<'_> {
        UserPref {
            weights: &self.weights,
            residual: self.residual.as_deref(),
        }
    }
}

/// Who may read a stored (non-visitor) user's taste at this route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Access {
    Admin,
    /// `pal serve --reward-open-users` at the reward routes.
    Open,
}

/// The taste of `user`, else of explicit `weights`, else the population's mixture.
pub async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
    m: &LoadedModel,
    user: Option<&str>,
    weights: Option<Vec<f32>>,
    access: Access,
) -> Result<Pref, ApiError> {
    match (user, weights) {
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "give at most one of `user` and `weights`",
        )),
        (None, Some(w)) => {
            check_weights(&w, m.model.weights.config.k)?;
            Ok(Pref {
                weights: w,
                residual: None,
            })
        }
        (None, None) => Ok(Pref {
            weights: m.mixture.clone(),
            residual: None,
        }),
        (Some(u), None) => stored(state, headers, m, u, access).await,
    }
}

async fn stored(
    state: &AppState,
    headers: &HeaderMap,
    m: &LoadedModel,
    user: &str,
    access: Access,
) -> Result<Pref, ApiError> {
    let model = &m.row.id;
    if let Some(v) = visitor_access(state, headers, user).await? {
        if let Some(w) = state.db.visitor_weights(model, &v.id).await? {
            return Ok(Pref {
                weights: softmax(&w.logits),
                residual: w.residual,
            });
        }
        return match m.stored_user(&v.id) {
            Some((w, r)) => Ok(Pref {
                weights: w,
                residual: r.map(<[f32]>::to_vec),
            }),
            None => Err(ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "visitor `{}` has saved no weights on this model yet",
                    shorten(&v.id)
                ),
            )),
        };
    }
    if access == Access::Admin {
        // The answer reveals the user's taste: as admin-only as reading their weights.
        require_admin(state, headers, "scoring for a stored user")?;
    }
    if let Some((w, r)) = m.stored_user(user) {
        return Ok(Pref {
            weights: w,
            residual: r.map(<[f32]>::to_vec),
        });
    }
    let s = state.db.model_user(model, user).await?;
    let s = s.ok_or_else(|| ApiError::not_found("user", user))?;
    Ok(Pref {
        weights: softmax(&s.logits),
        residual: s.residual,
    })
}
