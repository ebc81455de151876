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

use crate::auth::{hash_secret, new_visitor, visitor_access};
use crate::bodies::Body;
use crate::db::{Contributed, NewVisitorOutcome, VisitorRow, now};
use crate::error::ApiError;
use crate::ratelimit::network;
use crate::state::AppState;

/// 429 with `Retry-After` in whole seconds.
fn too_many(wait: std::time::Duration, why: &str) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        format!("{why}; retry in {secs} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Deletes the visitors idle for longer than `--visitor-ttl-days` (none when it is 0).
pub async fn expire_idle(state: &AppState) -> Result<usize, ApiError> {
    let days = state.config.limits.visitor_ttl_days;
    if days == 0 {
        return Ok(0);
    }
    let ttl_ms = i64::try_from(days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
    state.db.expire_visitors(now().saturating_sub(ttl_ms)).await
}

/// Creates a visitor of model `id`: 201 `{user, secret}`. The rate limit of the client's
/// network is checked before anything else; the caps (all visitors, and one network's share)
/// are checked in the transaction that inserts the row, after idle visitors expire when the
/// server is full. The secret is stored only as a salted hash, the network only as a keyed one.
pub async fn create(
    State(state): State<AppState>,
    Path(id): Path<String>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Result<Response, ApiError> {
    let addr = client.map(|Extension(ConnectInfo(a))| a.ip());
    if let Err(wait) = state.visitor_limiter.take(addr, Instant::now()) {
        return Ok(too_many(wait, "too many new visitors from this network"));
    }
    state.db.model(&id).await?;
    let limits = &state.config.limits;
    let caps = (limits.max_visitors, limits.max_visitors_per_network);
    let net = addr.map(|a| hash_secret(&state.db.network_key, &network(a).to_string()));
    let (row, secret) = new_visitor(&id, now());
    let mut outcome = state.db.insert_visitor(&row, net.as_deref(), caps).await?;
    if outcome == NewVisitorOutcome::ServerFull && expire_idle(&state).await? > 0 {
        outcome = state.db.insert_visitor(&row, net.as_deref(), caps).await?;
    }
    match outcome {
        NewVisitorOutcome::Created => {}
        NewVisitorOutcome::ServerFull => {
            return Err(ApiError::unavailable(format!(
                "the server holds its limit of {} visitors; try again later",
                caps.0
            )));
        }
        NewVisitorOutcome::NetworkFull => {
            return Ok(too_many(
                std::time::Duration::from_secs(3600),
                &format!(
                    "this network holds its share of {} visitors (idle ones expire after {} days)",
                    caps.1, limits.visitor_ttl_days
                ),
            ));
        }
    }
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
    visitor_access(state, headers, user)
        .await?
        .ok_or_else(|| ApiError::not_found("visitor", user))
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
    if req.pairs.len() > limit {
        return Err(ApiError::invalid(format!(
            "field `pairs`: {} comparisons exceed the server's limit of {limit} contributed \
             comparisons per visitor and model",
            req.pairs.len()
        )));
    }
    for (i, p) in req.pairs.iter().enumerate() {
        if let Some((f, why)) = m.pair_problem(p.prompt.as_deref(), &p.left, &p.right, p.label) {
            return Err(ApiError::invalid(format!("field `pairs[{i}].{f}`: {why}")));
        }
    }
    // The limit is checked again inside the transaction that stores them.
    match state
        .db
        .add_contributions(&id, &v.id, &req.pairs, limit)
        .await?
    {
        Contributed::Stored(_) => {}
        Contributed::OverLimit { stored } => {
            return Err(ApiError::invalid(format!(
                "field `pairs`: {} more would exceed the server's limit of {limit} contributed \
                 comparisons per visitor and model ({stored} stored)",
                req.pairs.len()
            )));
        }
        Contributed::Gone => return Err(ApiError::not_found("visitor", &v.id)),
    }
    let pairs = state.db.contributions(&id, &v.id).await?;
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
