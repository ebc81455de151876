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

use super::Body;
use crate::db::{JobRow, now};
use crate::error::ApiError;
use crate::state::AppState;
use crate::worker::JobSpec;

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
    let model = spec.model.config(ds.d_item as usize, ds.d_prompt as usize);
    model
        .validate()
        .map_err(|e| ApiError::invalid(format!("field `model`: {e}")))?;
    spec.train
        .validate()
        .and_then(|()| {
            spec.train
                .engine
                .is_fused(spec.train.device, &model)
                .map(drop)
        })
        .map_err(|e| ApiError::invalid(format!("field `train`: {e}")))?;
    if spec.model.variant == pal_core::Variant::B && ds.d_prompt == 0 {
        return Err(ApiError::invalid(
            "field `model.variant`: PAL-B needs a dataset with prompts",
        ));
    }
    let t = now();
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
    };
    state.db.insert_job(&job).await?;
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

pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobRow>, ApiError> {
    let job = state.db.job(&id).await?;
    match job.status.as_str() {
        "queued" => {
            state.db.set_job_status(&id, "cancelled", None).await?;
            let _ = state
                .job_channel(&id)
                .events
                .send(serde_json::json!({"event": "done", "status": "cancelled"}));
        }
        "running" => state.job_channel(&id).cancel.store(true, Ordering::SeqCst),
        other => return Err(ApiError::conflict(format!("job `{id}` is already {other}"))),
    }
    Ok(Json(state.db.job(&id).await?))
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
    // Subscribe before reading the row so no event falls between the two.
    let rx = state.job_channel(&id).events.subscribe();
    let job = state.db.job(&id).await?;
    let first =
        serde_json::json!({"event": "status", "status": job.status, "progress": job.progress});
    let done = is_final(&job.status);
    let head = stream::iter(vec![first.clone()]);
    // Ends right after the `done` event.
    let tail = stream::unfold((rx, false), |(mut rx, finished)| async move {
        if finished {
            return None;
        }
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    let done = ev["event"] == "done";
                    return Some((ev, (rx, done)));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let events = head
        .chain(if done {
            stream::iter(vec![
                serde_json::json!({"event": "done", "status": job.status}),
            ])
            .left_stream()
        } else {
            tail.right_stream()
        })
        .map(|v| {
            let name = v["event"].as_str().unwrap_or("message").to_string();
            Ok(Event::default().event(name).data(v.to_string()))
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
