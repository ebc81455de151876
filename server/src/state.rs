//! Shared server state: database, data directory layout, job channels, loaded-model cache.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};

use crate::config::ServeConfig;
use crate::db::Db;
use crate::error::ApiError;
use crate::models::LoadedModel;

/// Live channel of one job: progress events and a cancel flag.
#[derive(Clone)]
pub struct JobChannel {
    pub events: broadcast::Sender<serde_json::Value>,
    pub cancel: Arc<AtomicBool>,
}

/// Request counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub rank_requests: AtomicU64,
    pub errors: AtomicU64,
}

pub struct Inner {
    pub db: Db,
    pub config: ServeConfig,
    pub jobs: Mutex<HashMap<String, JobChannel>>,
    pub models: Mutex<HashMap<String, Arc<LoadedModel>>>,
    /// Serialises writes to one model's files (user updates).
    pub model_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub queue: mpsc::UnboundedSender<String>,
    pub queue_rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    pub metrics: Metrics,
}

/// Cheap-to-clone handle on the server state.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub async fn open(config: ServeConfig) -> Result<Self, ApiError> {
        for sub in ["datasets", "models", "jobs"] {
            let dir = config.data_dir.join(sub);
            std::fs::create_dir_all(&dir)
                .map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
        }
        let db = Db::connect(&config.database_url()).await?;
        let (queue, rx) = mpsc::unbounded_channel();
        Ok(Self(Arc::new(Inner {
            db,
            config,
            jobs: Mutex::default(),
            models: Mutex::default(),
            model_locks: Mutex::default(),
            queue,
            queue_rx: Mutex::new(Some(rx)),
            metrics: Metrics::default(),
        })))
    }

    pub fn dataset_dir(&self, id: &str) -> PathBuf {
        self.config.data_dir.join("datasets").join(id)
    }

    pub fn model_dir(&self, id: &str) -> PathBuf {
        self.config.data_dir.join("models").join(id)
    }

    pub fn checkpoint_dir(&self, job: &str) -> PathBuf {
        self.config
            .data_dir
            .join("jobs")
            .join(job)
            .join("checkpoint")
    }

    /// The job's channel, created on first use.
    pub fn job_channel(&self, id: &str) -> JobChannel {
        let mut jobs = self.jobs.lock().expect("jobs lock");
        jobs.entry(id.to_string())
            .or_insert_with(|| JobChannel {
                events: broadcast::channel(256).0,
                cancel: Arc::new(AtomicBool::new(false)),
            })
            .clone()
    }

    pub fn cancel_requested(&self, id: &str) -> bool {
        self.job_channel(id).cancel.load(Ordering::SeqCst)
    }

    pub fn model_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.model_locks
            .lock()
            .expect("model locks")
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    pub fn forget_model(&self, id: &str) {
        self.models.lock().expect("models lock").remove(id);
    }
}
