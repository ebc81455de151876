//! Training workers: dedicated threads take job ids from one queue; progress goes to the
//! database (per epoch) and to live subscribers. Jobs interrupted by a crash are requeued at
//! start and resume from their last checkpoint; models are published only when complete.

use pal_core::config::{IdealPoint, Link, ModelConfig, NormBound, Variant};
use pal_core::dataset::Split;
use pal_core::pipeline::{evaluate, fit};
use pal_core::train::{Control, Progress, TrainConfig};
use pal_core::{Dataset, TrainedModel};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::db::{ModelRow, now};
use crate::error::ApiError;
use crate::state::AppState;

/// The model part of a job request; embedding dims come from the dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSpec {
    pub variant: Variant,
    pub k: usize,
    pub d: usize,
    pub hidden: Option<usize>,
    pub layers: usize,
    pub ideal_point: IdealPoint,
    pub link: Link,
    pub dropout: f64,
    pub norm_bound: Option<NormBound>,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            variant: Variant::B,
            k: 3,
            d: 16,
            hidden: None,
            layers: 3,
            ideal_point: IdealPoint::FPw,
            link: Link::Logistic,
            dropout: 0.0,
            norm_bound: None,
        }
    }
}

impl ModelSpec {
    pub fn config(&self, d_item: usize, d_prompt: usize) -> ModelConfig {
        ModelConfig {
            variant: self.variant,
            ideal_point: self.ideal_point,
            link: self.link,
            d_item,
            d_prompt: if self.variant == Variant::B {
                d_prompt
            } else {
                0
            },
            d: self.d,
            hidden: self.hidden.unwrap_or(self.d),
            layers: self.layers,
            k: self.k,
            dropout: self.dropout,
            norm_bound: self.norm_bound,
        }
    }
}

/// A training job request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub dataset: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub model: ModelSpec,
    #[serde(default)]
    pub train: TrainConfig,
}

/// Requeues unfinished jobs and starts the worker threads.
pub async fn start(state: &AppState) -> Result<(), ApiError> {
    for job in state.db.jobs().await? {
        if job.status == "queued" || job.status == "running" {
            let _ = state.queue.send(job.id);
        }
    }
    let rx = state
        .queue_rx
        .lock()
        .expect("queue lock")
        .take()
        .ok_or_else(|| ApiError::internal("workers already started"))?;
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    for n in 0..state.config.workers.max(1) {
        let (state, rx, handle) = (state.clone(), rx.clone(), Handle::current());
        std::thread::Builder::new()
            .name(format!("pal-train-{n}"))
            .spawn(move || {
                loop {
                    let next = rx.lock().expect("queue lock").blocking_recv();
                    let Some(id) = next else { break };
                    if let Err(e) = run_job(&state, &handle, &id) {
                        let msg = e.detail.clone();
                        let _ = handle.block_on(state.db.set_job_status(&id, "failed", Some(&msg)));
                        finish(&state, &id, "failed", Some(&msg));
                    }
                }
            })
            .map_err(|e| ApiError::internal(format!("starting worker: {e}")))?;
    }
    Ok(())
}

fn finish(state: &AppState, id: &str, status: &str, error: Option<&str>) {
    let _ = state
        .job_channel(id)
        .events
        .send(serde_json::json!({"event": "done", "status": status, "error": error}));
}

fn run_job(state: &AppState, rt: &Handle, id: &str) -> Result<(), ApiError> {
    let job = rt.block_on(state.db.job(id))?;
    if job.status == "cancelled" || job.status == "succeeded" {
        return Ok(());
    }
    let spec: JobSpec = serde_json::from_value(job.spec.clone())
        .map_err(|e| ApiError::internal(format!("stored job spec: {e}")))?;
    rt.block_on(state.db.set_job_status(id, "running", None))?;
    let data = Dataset::load(&state.dataset_dir(&job.dataset_id))?;
    let train = rt.block_on(state.db.comparisons(&job.dataset_id, Split::Train))?;
    let val = rt.block_on(state.db.comparisons(&job.dataset_id, Split::Val))?;
    let test = rt.block_on(state.db.comparisons(&job.dataset_id, Split::Test))?;
    let cfg = spec.model.config(data.items.dim(), data.prompt_dim());
    let channel = state.job_channel(id);
    let epochs = spec.train.epochs;
    let mut on_progress = |p: &Progress| {
        if channel.cancel.load(std::sync::atomic::Ordering::SeqCst) {
            return Control::Stop;
        }
        let event = match p {
            Progress::Step {
                epoch,
                step,
                steps,
                loss,
            } => serde_json::json!({
                "event": "step", "epoch": epoch, "epochs": epochs, "step": step, "steps": steps, "loss": loss,
            }),
            Progress::Epoch(s) => {
                let ev = serde_json::json!({
                    "event": "epoch", "epoch": s.epoch, "epochs": epochs, "train_loss": s.train_loss,
                    "val_loss": s.val_loss, "val_accuracy": s.val_accuracy, "seconds": s.seconds,
                });
                let _ = rt.block_on(state.db.set_job_progress(id, &ev));
                ev
            }
        };
        let _ = channel.events.send(event);
        Control::Continue
    };
    let (model, report) = fit(
        &data,
        &cfg,
        &spec.train,
        &train,
        (!val.is_empty()).then_some(val.as_slice()),
        Some(&state.checkpoint_dir(id)),
        &mut on_progress,
    )?;
    if report.cancelled {
        rt.block_on(state.db.set_job_status(id, "cancelled", None))?;
        finish(state, id, "cancelled", None);
        return Ok(());
    }
    let metrics = if test.is_empty() {
        serde_json::json!({})
    } else {
        let r = evaluate(&model, &data, &test, "test split")?;
        serde_json::json!({"test_accuracy": r.accuracy, "test_log_loss": r.log_loss, "test_pairs": r.n})
    };
    // Files first (atomic directory swap), then the database row: a crash in between reruns the
    // finished job from its checkpoint and publishes the same model id.
    let model = TrainedModel::new(model.weights, model.users, model.meta);
    model.save(&state.model_dir(id))?;
    let row = ModelRow {
        id: id.to_string(),
        job_id: Some(id.to_string()),
        dataset_id: job.dataset_id.clone(),
        name: spec.name.clone().unwrap_or_else(|| cfg.name()),
        config: serde_json::to_value(&cfg).unwrap_or_default(),
        metrics: Some(metrics),
        created_at: now(),
    };
    rt.block_on(state.db.publish_model(&row))?;
    state.forget_model(id);
    finish(state, id, "succeeded", None);
    Ok(())
}
