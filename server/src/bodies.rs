//! The server's own HTTP bodies (those the app shares are in `pal_format::http`): health,
//! model details, job events, and the JSON body extractor whose rejections are JSON errors.

use axum::Json;
use axum::extract::Request;
use serde::{Deserialize, Serialize};

use crate::db::ModelRow;
use crate::error::ApiError;

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    /// `ok`, or `degraded` (answered with 503).
    pub status: String,
    pub database: String,
    pub database_ok: bool,
    pub workers: usize,
    pub workers_alive: usize,
    pub version: String,
}

/// `GET /models/{id}`: the model's row plus what loading it tells.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    #[serde(flatten)]
    pub row: ModelRow,
    pub users: usize,
    pub trained_users: usize,
    pub revision: u64,
    pub params: usize,
}

/// One server-sent event of `GET /jobs/{id}/events` (its `event:` name is the tag).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JobEvent {
    /// The job's state when the stream starts; `progress` is its last `epoch` or `select` event.
    Status {
        status: String,
        progress: Option<serde_json::Value>,
    },
    Step {
        epoch: usize,
        epochs: usize,
        step: usize,
        steps: usize,
        loss: f32,
    },
    Epoch {
        epoch: usize,
        epochs: usize,
        train_loss: f32,
        val_loss: Option<f32>,
        val_accuracy: Option<f32>,
        seconds: f64,
    },
    /// `"k": "auto"`: the model search started its `run`-th training run of about `runs`
    /// (`what`: the candidate and fold).
    Select {
        run: usize,
        runs: usize,
        what: String,
    },
    /// The last event: `succeeded`, `failed` (with `error`) or `cancelled`.
    Done {
        status: String,
        error: Option<String>,
    },
}

impl JobEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            JobEvent::Status { .. } => "status",
            JobEvent::Step { .. } => "step",
            JobEvent::Epoch { .. } => "epoch",
            JobEvent::Select { .. } => "select",
            JobEvent::Done { .. } => "done",
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("job events serialise")
    }
}

/// JSON body extractor whose rejections are `{error, detail}` JSON.
pub struct Body<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(v) = Json::<T>::from_request(req, state).await?;
        Ok(Body(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_events_carry_their_name_as_the_tag() {
        let e = JobEvent::Done {
            status: "failed".into(),
            error: Some("x".into()),
        };
        let v = e.to_json();
        assert_eq!(v["event"], e.name());
        assert_eq!(serde_json::from_value::<JobEvent>(v).unwrap(), e);
    }
}
