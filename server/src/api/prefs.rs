//! Whose taste a ranking or a reward is for, and who may ask: a stored user (the admin's, unless
//! the reward routes are open to stored users), a visitor (their secret), explicit simplex
//! weights (open) or, naming nobody, the population's mixture (open).

use axum::http::HeaderMap;
use pal_core::reference::{UserPref, softmax};

use crate::auth::{require_admin, visitor_access};
use crate::db::{StoredUser, VisitorRow};
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

/// A visitor's weights on a model: their own (saved with PUT), else those the model learned
/// for them (a model trained with their contributions, revision 0); 404 when neither exists.
pub async fn visitor_stored(
    state: &AppState,
    m: &LoadedModel,
    v: &VisitorRow,
) -> Result<StoredUser, ApiError> {
    if let Some(w) = state.db.visitor_weights(&m.row.id, &v.id).await? {
        return Ok(w);
    }
    m.stored_user(&v.id, 0).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "visitor `{}` has saved no weights on this model yet",
                shorten(&v.id)
            ),
        )
    })
}

/// A dataset or admin-made user: learned (in the model's files, the model's revision) or a
/// database row; 404 when neither. The caller checks access first.
pub async fn user_stored(
    state: &AppState,
    m: &LoadedModel,
    user: &str,
) -> Result<StoredUser, ApiError> {
    if let Some(s) = m.stored_user(user, m.revision()) {
        return Ok(s);
    }
    let s = state.db.model_user(&m.row.id, user).await?;
    s.ok_or_else(|| ApiError::not_found("user", user))
}

async fn stored(
    state: &AppState,
    headers: &HeaderMap,
    m: &LoadedModel,
    user: &str,
    access: Access,
) -> Result<Pref, ApiError> {
    let s = match visitor_access(state, headers, user).await? {
        Some(v) => visitor_stored(state, m, &v).await?,
        None => {
            if access == Access::Admin {
                // The answer reveals the user's taste: as admin-only as reading their weights.
                require_admin(state, headers, "scoring for a stored user")?;
            }
            user_stored(state, m, user).await?
        }
    };
    Ok(Pref {
        weights: softmax(&s.logits),
        residual: s.residual,
    })
}
