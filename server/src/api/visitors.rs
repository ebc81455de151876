//! Visitors, people without accounts: `POST /models/{id}/visitors` (open, rate-limited per
//! client address) gives a user id and a secret shown once; with that secret a visitor reads and
//! writes their own weights (`users`) and, only when they consent, contributes their answers
//! (`/models/{id}/users/{user}/comparisons`), which a training job may include.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use pal_format::http::{Contribute, Contributions, NewVisitor};

use crate::auth::{new_visitor, require_visitor, visitor_of};
use crate::bodies::Body;
use crate::db::{VisitorRow, now};
use crate::error::ApiError;
use crate::state::AppState;

/// 429 with `Retry-After` in whole seconds.
fn too_many(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        format!("too many new visitors from this address; retry in {secs} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Creates a visitor of model `id`: 201 `{user, secret}`. The rate limit is checked before
/// anything else; the secret is stored only as a salted hash.
pub async fn create(
    State(state): State<AppState>,
    Path(id): Path<String>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Result<Response, ApiError> {
    let addr = client.map(|Extension(ConnectInfo(a))| a.ip());
    if let Err(wait) = state.visitor_limiter.take(addr, Instant::now()) {
        return Ok(too_many(wait));
    }
    state.db.model(&id).await?;
    let limit = state.config.limits.max_visitors;
    if state.db.count_visitors().await? >= limit {
        return Err(ApiError::unavailable(format!(
            "the server holds its limit of {limit} visitors; try again later"
        )));
    }
    let (row, secret) = new_visitor(&id, now());
    state.db.insert_visitor(&row).await?;
    let location = format!("/models/{id}/users/{}", row.id);
    let mut resp = (
        StatusCode::CREATED,
        Json(NewVisitor {
            user: row.id,
            secret,
        }),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// The visitor `user`, authorised by their secret (or the admin token); 404 for other users.
async fn authorised_visitor(
    state: &AppState,
    headers: &HeaderMap,
    user: &str,
) -> Result<VisitorRow, ApiError> {
    let v = visitor_of(state, user)
        .await?
        .ok_or_else(|| ApiError::not_found("visitor", user))?;
    require_visitor(state, headers, &v)?;
    Ok(v)
}

/// Stores answers a visitor chose to contribute (201): each must be a comparison of the
/// model's items under one of its prompts; all are checked before any is stored.
pub async fn contribute(
    State(state): State<AppState>,
    Path((id, user)): Path<(String, String)>,
    headers: HeaderMap,
    Body(req): Body<Contribute>,
) -> Result<(StatusCode, Json<Contributions>), ApiError> {
    let v = authorised_visitor(&state, &headers, &user).await?;
    let m = state.model(&id).await?;
    if req.pairs.is_empty() {
        return Err(ApiError::invalid("field `pairs`: no comparisons"));
    }
    let limit = state.config.limits.max_contributions;
    let mut pairs = state.db.contributions(&id, &v.id).await?;
    let had = pairs.len();
    if had + req.pairs.len() > limit {
        return Err(ApiError::invalid(format!(
            "field `pairs`: {} more would exceed the server's limit of {limit} contributed \
             comparisons per visitor and model ({had} stored)",
            req.pairs.len()
        )));
    }
    for (i, p) in req.pairs.iter().enumerate() {
        if let Some((f, why)) = m.pair_problem(p.prompt.as_deref(), &p.left, &p.right, p.label) {
            return Err(ApiError::invalid(format!("field `pairs[{i}].{f}`: {why}")));
        }
    }
    state.db.add_contributions(&id, &v.id, &req.pairs).await?;
    // Stored after the earlier ones, in order: the visitor's whole list without reading it again.
    pairs.extend(req.pairs.iter().cloned());
    Ok((
        StatusCode::CREATED,
        Json(Contributions {
            stored: req.pairs.len(),
            pairs,
        }),
    ))
}

/// The answers a visitor contributed to the model, oldest first.
pub async fn contributions(
    State(state): State<AppState>,
    Path((id, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Contributions>, ApiError> {
    let v = authorised_visitor(&state, &headers, &user).await?;
    state.db.model(&id).await?;
    Ok(Json(Contributions {
        stored: 0,
        pairs: state.db.contributions(&id, &v.id).await?,
    }))
}
