//! Shared server state: database, data directory layout, live job channels, the bounded
//! loaded-model cache (and loading into it) and per-model write locks; `blocking` file work.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, mpsc};

use pal_format::Split;

use crate::bodies::JobEvent;
use crate::config::ServeConfig;
use crate::db::Db;
use crate::embed::TextEmbedder;
use crate::embed::batch::BatchConfig;
use crate::error::ApiError;
use crate::models::LoadedModel;
use crate::ratelimit::RateLimiter;

/// Live channel of one queued or running job: progress events and a cancel flag. It exists
/// only while the job is live (created when the job is queued or started, dropped when it ends),
/// so requests for unknown or finished jobs keep no state.
#[derive(Clone)]
pub struct JobChannel {
    pub events: broadcast::Sender<JobEvent>,
    pub cancel: Arc<AtomicBool>,
}

/// Request counters for `/metrics`, and worker liveness for `/health`.
#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub rank_requests: AtomicU64,
    pub errors: AtomicU64,
    pub workers_alive: AtomicUsize,
    pub worker_panics: AtomicU64,
}

/// Least-recently-used cache of loaded models, at most `cap` entries.
pub struct ModelCache {
    cap: usize,
    entries: HashMap<String, Arc<LoadedModel>>,
    order: VecDeque<String>,
}

impl ModelCache {
    fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&mut self, id: &str) -> Option<Arc<LoadedModel>> {
        let m = self.entries.get(id)?.clone();
        if let Some(pos) = self.order.iter().position(|k| k == id) {
            let k = self.order.remove(pos).expect("position is in range");
            self.order.push_back(k);
        }
        Some(m)
    }

    pub fn insert(&mut self, id: &str, m: Arc<LoadedModel>) {
        self.remove(id);
        while self.entries.len() >= self.cap {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.entries.remove(&old);
        }
        self.entries.insert(id.to_string(), m);
        self.order.push_back(id.to_string());
    }

    pub fn remove(&mut self, id: &str) {
        if self.entries.remove(id).is_some() {
            self.order.retain(|k| k != id);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

pub struct Inner {
    pub db: Db,
    pub config: ServeConfig,
    /// Canonical `config.import_roots`.
    pub import_roots: Vec<PathBuf>,
    pub jobs: Mutex<HashMap<String, JobChannel>>,
    pub models: Mutex<ModelCache>,
    /// Serialises reads of a model's files into the cache and every write to them.
    pub model_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub queue: mpsc::UnboundedSender<String>,
    pub queue_rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    pub metrics: Metrics,
    /// Visitor creation per client address.
    pub visitor_limiter: RateLimiter,
    /// The text encoder (typed prompts, reward texts): batched, prompts remembered.
    pub embedder: TextEmbedder,
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

/// Locks a std mutex, recovering the data if a panicking thread poisoned it (every critical
/// section here leaves its map consistent).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AppState {
    pub async fn open(config: ServeConfig) -> Result<Self, ApiError> {
        for sub in ["datasets", "models", "jobs", "bundles", "staging"] {
            let dir = config.data_dir.join(sub);
            std::fs::create_dir_all(&dir)
                .map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
        }
        // Leftovers of imports interrupted by a crash.
        if let Ok(rd) = std::fs::read_dir(config.data_dir.join("staging")) {
            for e in rd.flatten() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let import_roots =
            crate::import::canonical_roots(&config.import_roots).map_err(ApiError::invalid)?;
        let db = Db::connect(&config.database_url()).await?;
        let (queue, rx) = mpsc::unbounded_channel();
        let cache = ModelCache::new(config.limits.max_cached_models);
        let limits_rate = config.limits.visitors_per_minute;
        let embedder = TextEmbedder::new(
            BatchConfig {
                queue: config.limits.embed_queue,
                max_texts: config.limits.embed_batch.max(1),
                wait: std::time::Duration::from_millis(config.limits.embed_wait_ms),
                bucket: 16,
            },
            config.limits.prompt_memo,
        );
        Ok(Self(Arc::new(Inner {
            db,
            config,
            import_roots,
            jobs: Mutex::default(),
            models: Mutex::new(cache),
            model_locks: Mutex::default(),
            queue,
            queue_rx: Mutex::new(Some(rx)),
            metrics: Metrics::default(),
            visitor_limiter: RateLimiter::new(limits_rate),
            embedder,
        })))
    }

    pub fn dataset_dir(&self, id: &str) -> PathBuf {
        self.config.data_dir.join("datasets").join(id)
    }

    /// Where an upload is assembled before it is moved into `datasets/`.
    pub fn staging_dir(&self, id: &str) -> PathBuf {
        self.config.data_dir.join("staging").join(id)
    }

    pub fn model_dir(&self, id: &str) -> PathBuf {
        self.config.data_dir.join("models").join(id)
    }

    /// A model's browser bundles (one immutable directory per model revision).
    pub fn bundles_dir(&self, id: &str) -> PathBuf {
        self.config.data_dir.join("bundles").join(id)
    }

    /// The finished model search of a `"k": "auto"` job (read back when the job is rerun).
    pub fn selection_file(&self, job: &str) -> PathBuf {
        self.config
            .data_dir
            .join("jobs")
            .join(job)
            .join("selection.json")
    }

    /// The candidates an unfinished model search of a job has scored so far.
    pub fn search_partial_file(&self, job: &str) -> PathBuf {
        self.config
            .data_dir
            .join("jobs")
            .join(job)
            .join("search.partial.json")
    }

    pub fn checkpoint_dir(&self, job: &str) -> PathBuf {
        self.config
            .data_dir
            .join("jobs")
            .join(job)
            .join("checkpoint")
    }

    /// Opens the live channel of a job that exists and is queued or running.
    pub fn open_job_channel(&self, id: &str) -> JobChannel {
        lock(&self.jobs)
            .entry(id.to_string())
            .or_insert_with(|| JobChannel {
                events: broadcast::channel(64).0,
                cancel: Arc::new(AtomicBool::new(false)),
            })
            .clone()
    }

    /// The live channel of a job, if it has one.
    pub fn live_job(&self, id: &str) -> Option<JobChannel> {
        lock(&self.jobs).get(id).cloned()
    }

    /// Sends the job's last event and drops its channel.
    pub fn close_job_channel(&self, id: &str, last: JobEvent) {
        if let Some(ch) = lock(&self.jobs).remove(id) {
            let _ = ch.events.send(last);
        }
    }

    pub fn model_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.model_locks)
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    pub fn forget_model(&self, id: &str) {
        lock(&self.models).remove(id);
    }

    /// A loaded model: the cached one, or read from its files under the model's lock (so a
    /// load never sees a write half-done and never caches a copy older than the last write).
    pub async fn model(&self, id: &str) -> Result<Arc<LoadedModel>, ApiError> {
        if let Some(m) = lock(&self.models).get(id) {
            return Ok(m);
        }
        let row = self.db.model(id).await?;
        let model_lock = self.model_lock(id);
        let _guard = model_lock.lock().await;
        if let Some(m) = lock(&self.models).get(id) {
            return Ok(m);
        }
        let (model_dir, data_dir) = (self.model_dir(id), self.dataset_dir(&row.dataset_id));
        let dataset_id = row.dataset_id.clone();
        let mut loaded = blocking(self, "loading the model", move || {
            LoadedModel::read(row, &model_dir, &data_dir)
        })
        .await?;
        if crate::models::recorded_trained_users(&loaded.model).is_none() {
            // Models published before the count was recorded: the users of the training split.
            let n = self.db.count_users(&dataset_id, Split::Train).await?;
            loaded.trained_users = n.min(loaded.model.users.len());
        }
        let loaded = Arc::new(loaded);
        lock(&self.models).insert(id, loaded.clone());
        Ok(loaded)
    }
}

/// Runs blocking file work off the async threads, bounded by the configured I/O timeout (the
/// answer is then 503; the work itself is bounded by the limits checked before it started).
pub async fn blocking<T: Send + 'static>(
    state: &AppState,
    what: &str,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let secs = state.config.limits.io_timeout_secs;
    match tokio::time::timeout(
        std::time::Duration::from_secs(secs),
        tokio::task::spawn_blocking(f),
    )
    .await
    {
        Ok(joined) => joined.map_err(ApiError::join)?,
        Err(_) => Err(ApiError::unavailable(format!(
            "{what} took longer than {secs} s; try again later"
        ))),
    }
}
