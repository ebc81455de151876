//! `/jobs`: start training, read status, stream progress (SSE), cancel.

use std::convert::Infallible;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::stream::{self, StreamExt};
use tokio::sync::broadcast;

use crate::bodies::{Body, JobEvent};
use crate::db::{JobRow, now};
use crate::error::ApiError;
use crate::spec::{self, JobSpec};
use crate::state::AppState;

pub async fn create(
    State(state): State<AppState>,
    Body(spec): Body<JobSpec>,
) -> Result<(StatusCode, Json<JobRow>), ApiError> {
    let ds = state.db.dataset(&spec.dataset).await.map_err(|e| {
        if e.status == StatusCode::NOT_FOUND {
            ApiError::invalid(format!("field `dataset`: {}", e.detail))
        } else {
            e
        }
    })?;
    let t = now();
    spec::check_stored(&state.db, &spec, &ds, t, &state.config.limits).await?;
    let job = JobRow {
        id: uuid::Uuid::new_v4().simple().to_string(),
        dataset_id: spec.dataset.clone(),
        status: "queued".into(),
        spec: serde_json::to_value(&spec).map_err(|e| ApiError::internal(e.to_string()))?,
        progress: None,
        error: None,
        model_id: None,
        created_at: t,
        updated_at: t,
        attempts: 0,
    };
    state.db.insert_job(&job).await?;
    state.open_job_channel(&job.id);
    state
        .queue
        .send(job.id.clone())
        .map_err(|_| ApiError::internal("training queue is closed"))?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<JobRow>>, ApiError> {
    Ok(Json(state.db.jobs().await?))
}

pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobRow>, ApiError> {
    Ok(Json(state.db.job(&id).await?))
}

/// Cancels a queued or running job. The state change is one conditional update, so a job
/// answered `cancelled` never publishes a model: a running job stops at its next step, and
/// publishing only succeeds while the job is still `running`.
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobRow>, ApiError> {
    let job = state.db.job(&id).await?;
    if state.db.set_job_status(&id, "cancelled", None).await? {
        if let Some(ch) = state.live_job(&id) {
            ch.cancel.store(true, Ordering::SeqCst);
        }
        if job.status == "queued" {
            state.close_job_channel(
                &id,
                JobEvent::Done {
                    status: "cancelled".into(),
                    error: None,
                },
            );
        }
        return Ok(Json(state.db.job(&id).await?));
    }
    let now = state.db.job(&id).await?;
    Err(ApiError::conflict(format!(
        "job `{}` is already {}",
        crate::error::shorten(&id),
        now.status
    )))
}

fn is_final(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}

/// Server-sent events: the job's current state first, then `step`/`epoch` events, ending with
/// a `done` event.
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // The row first: an unknown id is a 404 and leaves nothing behind.
    state.db.job(&id).await?;
    // Subscribe (if the job is live) before reading the row again, so no event falls between.
    let rx = state.live_job(&id).map(|c| c.events.subscribe());
    let job = state.db.job(&id).await?;
    let first = JobEvent::Status {
        status: job.status.clone(),
        progress: job.progress.clone(),
    };
    let head = stream::iter(vec![first]);
    let events = match rx {
        Some(rx) if !is_final(&job.status) => {
            // Ends right after the `done` event, or when the channel closes.
            let tail = stream::unfold((rx, false), |(mut rx, finished)| async move {
                if finished {
                    return None;
                }
                loop {
                    match rx.recv().await {
                        Ok(ev) => {
                            let done = matches!(ev, JobEvent::Done { .. });
                            return Some((ev, (rx, done)));
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            });
            head.chain(tail).left_stream()
        }
        _ => {
            let done = JobEvent::Done {
                status: job.status,
                error: job.error,
            };
            head.chain(stream::iter(vec![done])).right_stream()
        }
    }
    .map(|v| {
        Ok(Event::default()
            .event(v.name())
            .data(v.to_json().to_string()))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
