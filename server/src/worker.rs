//! Training workers: dedicated threads take job ids from one queue; progress goes to the
//! database (per epoch) and to live subscribers. Jobs interrupted by a crash are requeued at
//! start and resume from their last checkpoint, unless they were already started twice (a job
//! that takes the process down is not retried forever). A job that fails or panics is marked
//! `failed` with the reason and the worker takes the next one. Models are published only when
//! complete, and only while the job is still running: a cancelled job never publishes.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;

use pal_core::pipeline::{evaluate, fit};
use pal_core::select::{Candidate, SelectConfig, SelectEvent, Selection, fit_selected, select};
use pal_core::train::{Control, Progress};
use pal_core::{Comparison, Dataset, ModelConfig, PalError, TrainedModel};
use pal_format::dataset::Split;
use tokio::runtime::Handle;

use crate::auth::VISITOR_PREFIX;
use crate::bodies::JobEvent;
use crate::db::{ContributionCount, JobRow, ModelRow, now};
use crate::error::ApiError;
use crate::spec::{self, JobSpec};
use crate::state::{AppState, JobChannel};

/// Counts a worker as alive from before its thread starts until the thread ends, however it
/// ends (a panic outside a job included), so `/health` never reports a dead worker as alive.
struct Alive(AppState);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.metrics.workers_alive.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts of one job after which it is no longer requeued at server start.
pub const MAX_ATTEMPTS: i64 = 2;

/// Checks a stored job against today's limits (they may be lower than when it was accepted).
async fn recheck(state: &AppState, job: &JobRow) -> Result<(), ApiError> {
    let spec: JobSpec = serde_json::from_value(job.spec.clone())
        .map_err(|e| ApiError::invalid(format!("stored job spec: {e}")))?;
    let ds = state.db.dataset(&job.dataset_id).await?;
    spec::check_stored(&state.db, &spec, &ds, job.created_at, &state.config.limits)
        .await
        .map(drop)
}

/// Requeues unfinished jobs, repairs bundles, and starts the worker threads.
pub async fn start(state: &AppState) -> Result<(), ApiError> {
    for job in state.db.jobs().await? {
        if job.status != "queued" && job.status != "running" {
            continue;
        }
        let refused = if job.attempts >= MAX_ATTEMPTS {
            Some(format!(
                "the server stopped while running this job {} times; it is not started again",
                job.attempts
            ))
        } else {
            recheck(state, &job).await.err().map(|e| e.detail)
        };
        match refused {
            Some(why) => {
                state
                    .db
                    .set_job_status(&job.id, "failed", Some(&why))
                    .await?;
            }
            None => {
                state.open_job_channel(&job.id);
                let _ = state.queue.send(job.id);
            }
        }
    }
    move_users_out(state).await?;
    repair_bundles(state).await;
    let rx = crate::state::lock(&state.queue_rx)
        .take()
        .ok_or_else(|| ApiError::internal("workers already started"))?;
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    for n in 0..state.config.workers.max(1) {
        let (state, rx, handle) = (state.clone(), rx.clone(), Handle::current());
        // Counted before the thread runs, so `/health` never sees a worker that is starting.
        state.metrics.workers_alive.fetch_add(1, Ordering::SeqCst);
        let alive = Alive(state.clone());
        std::thread::Builder::new()
            .name(format!("pal-train-{n}"))
            .spawn(move || {
                let _alive = alive;
                loop {
                    let next = crate::state::lock(&rx).blocking_recv();
                    let Some(id) = next else { break };
                    let outcome = catch_unwind(AssertUnwindSafe(|| run_job(&state, &handle, &id)));
                    let failure = match outcome {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e.detail),
                        Err(panic) => {
                            state.metrics.worker_panics.fetch_add(1, Ordering::Relaxed);
                            let msg = panic
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| panic.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "unknown panic".into());
                            Some(format!("internal error in the training worker: {msg}"))
                        }
                    };
                    if let Some(msg) = failure {
                        let msg = crate::error::strip_paths(&msg);
                        let _ = handle.block_on(state.db.set_job_status(&id, "failed", Some(&msg)));
                        finish(&state, &id, "failed", Some(&msg));
                    }
                }
            })
            .map_err(|e| ApiError::internal(format!("starting worker: {e}")))?;
    }
    Ok(())
}

/// The upgrade of a data dir from before mutable users were database rows: users a model's
/// files hold beyond those its job learned (admin-set, adapted) move into `model_users`, and
/// visitors into `visitor_weights` — rows first, then the files rewritten as the next revision
/// with only the learned users (`repair_bundles` then publishes its bundle). Once per model.
async fn move_users_out(state: &AppState) -> Result<(), ApiError> {
    for row in state.db.models().await? {
        let mdir = state.model_dir(&row.id);
        let loaded = tokio::task::spawn_blocking(move || TrainedModel::load(&mdir))
            .await
            .map_err(ApiError::join)?;
        let Ok(mut model) = loaded else { continue };
        let trained = match crate::models::recorded_trained_users(&model) {
            Some(n) => n,
            None => state.db.count_users(&row.dataset_id, Split::Train).await?,
        };
        let mut at = 0;
        let mut taken = model.take_users(|u| {
            at += 1;
            at > trained || u.starts_with(VISITOR_PREFIX)
        });
        if taken.is_empty() {
            continue;
        }
        let learned_visitors = taken
            .iter()
            .filter(|u| u.id.starts_with(VISITOR_PREFIX))
            .count();
        let (visitors, others): (Vec<_>, Vec<_>) = taken
            .drain(..)
            .partition(|u| u.id.starts_with(VISITOR_PREFIX));
        state.db.adopt_visitors(&row.id, &visitors).await?;
        if !others.is_empty() {
            let fixed = model.users.len();
            // Rows already there (a crash after them, before the files) are kept as they are.
            let kept: Vec<_> = {
                let mut v = Vec::new();
                for u in others {
                    if state.db.model_user(&row.id, &u.id).await?.is_none() {
                        v.push(u);
                    }
                }
                v
            };
            state
                .db
                .add_model_users(&row.id, &kept, (fixed, usize::MAX))
                .await?;
        }
        if !model.meta.is_object() {
            model.meta = serde_json::json!({});
        }
        model.meta["revision"] = (crate::bundle::revision(&model) + 1).into();
        model.meta["trained_users"] = model.users.len().into();
        let (mdir, n) = (state.model_dir(&row.id), model.users.len());
        tokio::task::spawn_blocking(move || model.save(&mdir))
            .await
            .map_err(ApiError::join)??;
        tracing::info!(model = %row.id, learned = n, visitors = learned_visitors,
            "moved the model's stored users into the database");
    }
    Ok(())
}

/// Rewrites the bundle of every model whose bundle is missing or behind its files (models from
/// before bundles were written at publish, or a crash between a save and its bundle), or lists
/// other users than `--publish-user-weights` says (a bundle from before users were private
/// goes private at the next start; turning the flag on or off takes effect the same way).
async fn repair_bundles(state: &AppState) {
    let Ok(models) = state.db.models().await else {
        return;
    };
    for row in models {
        let (mdir, bdir, ddir) = (
            state.model_dir(&row.id),
            state.bundles_dir(&row.id),
            state.dataset_dir(&row.dataset_id),
        );
        let (id, publish) = (row.id.clone(), state.config.publish_user_weights);
        // Only a bundle without its shared data needs the training comparisons (candidates).
        let train = if crate::bundle::has_shared_data(&bdir) {
            vec![]
        } else {
            match state.db.comparisons(&row.dataset_id, Split::Train).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(model = %row.id, "reading comparisons: {}", e.detail);
                    continue;
                }
            }
        };
        let done = tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
            let model = TrainedModel::load(&mdir)?;
            let listed = crate::bundle::listed_users(&model, publish);
            if crate::bundle::current(&bdir) == Some(crate::bundle::revision(&model))
                && crate::bundle::current_users(&bdir) == Some(listed)
            {
                return Ok(());
            }
            crate::bundle::write(
                &bdir,
                &id,
                &model,
                &Dataset::load(&ddir)?,
                (&train, publish),
            )
        })
        .await;
        if let Ok(Err(e)) = done {
            tracing::error!(model = %row.id, "writing the bundle: {}", e.detail);
        }
    }
}

fn finish(state: &AppState, id: &str, status: &str, error: Option<&str>) {
    state.close_job_channel(
        id,
        JobEvent::Done {
            status: status.to_string(),
            error: error.map(str::to_string),
        },
    );
}

fn run_job(state: &AppState, rt: &Handle, id: &str) -> Result<(), ApiError> {
    let channel = state.open_job_channel(id);
    if !rt.block_on(state.db.claim_job(id))? {
        // Cancelled (or finished) while queued.
        let job = rt.block_on(state.db.job(id))?;
        finish(state, id, &job.status, None);
        return Ok(());
    }
    let job = rt.block_on(state.db.job(id))?;
    let spec: JobSpec = serde_json::from_value(job.spec.clone())
        .map_err(|e| ApiError::internal(format!("stored job spec: {e}")))?;
    let data = Dataset::load(&state.dataset_dir(&job.dataset_id))?;
    let mut train = rt.block_on(state.db.comparisons(&job.dataset_id, Split::Train))?;
    if spec.include_contributions {
        // Those made before the job was created, by visitors who still exist, in one snapshot:
        // a rerun after a crash trains on the same set, less any a visitor has since deleted
        // ("forget me"). The limits are checked again on what was read.
        let more = rt.block_on(
            state
                .db
                .dataset_contributions(&job.dataset_id, job.created_at),
        )?;
        let ds = rt.block_on(state.db.dataset(&job.dataset_id))?;
        let users: std::collections::HashSet<&str> =
            train.iter().map(|c| c.user.as_str()).collect();
        let visitors: std::collections::HashSet<&str> =
            more.iter().map(|c| c.user.as_str()).collect();
        let extra = ContributionCount {
            rows: more.len(),
            visitors: visitors.len(),
        };
        spec::check_contributions(&ds, users.len(), extra, &state.config.limits)?;
        train.extend(more);
    }
    let val = rt.block_on(state.db.comparisons(&job.dataset_id, Split::Val))?;
    let test = rt.block_on(state.db.comparisons(&job.dataset_id, Split::Test))?;
    let mut cfg = spec.model.config(data.items.dim(), data.prompt_dim());
    let (model, report) = match spec.model.selection(&state.config.limits) {
        Some(sel) => {
            // `"k": "auto"`: cross-validate on train + val, then refit on them all. The search
            // is kept beside the checkpoint, so a rerun after a crash goes straight to the refit.
            let mut rows = train.clone();
            rows.extend(val.iter().cloned());
            let Some(chosen) = choose(state, rt, &channel, id, &data, &cfg, &spec, &rows, &sel)?
            else {
                rt.block_on(state.db.set_job_status(id, "cancelled", None))?;
                finish(state, id, "cancelled", None);
                return Ok(());
            };
            cfg = chosen.config(&cfg);
            let mut on = relay(state, rt, &channel, id, chosen.best().epochs);
            let (mut m, r) = fit_selected(
                &data,
                &cfg,
                &spec.train,
                &rows,
                &chosen,
                Some(&state.checkpoint_dir(id)),
                &mut on,
            )?;
            if !m.meta.is_object() {
                m.meta = serde_json::json!({});
            }
            m.meta["selection"] = serde_json::to_value(&chosen)
                .map_err(|e| ApiError::internal(format!("the model search as JSON: {e}")))?;
            (m, r)
        }
        None => fit(
            &data,
            &cfg,
            &spec.train,
            &train,
            (!val.is_empty()).then_some(val.as_slice()),
            Some(&state.checkpoint_dir(id)),
            &mut relay(state, rt, &channel, id, spec.train.epochs),
        )?,
    };
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
    // Files first (atomic directory swaps), then the database row: a crash in between reruns the
    // finished job from its checkpoint and publishes the same model id.
    // Visitors learned from their contributions are the database's, never the model files' or
    // the bundle's: their weights move into `visitor_weights` in the publishing transaction.
    let mut model = model;
    let learned = model.take_users(|u| u.starts_with(VISITOR_PREFIX));
    let mut meta = std::mem::take(&mut model.meta);
    if !meta.is_object() {
        meta = serde_json::json!({});
    }
    meta["trained_users"] = model.users.len().into();
    meta["revision"] = 1.into();
    let model = TrainedModel::new(model.weights, model.users, meta);
    model.save(&state.model_dir(id))?;
    let publish = state.config.publish_user_weights;
    crate::bundle::write(&state.bundles_dir(id), id, &model, &data, (&train, publish))?;
    let row = ModelRow {
        id: id.to_string(),
        job_id: Some(id.to_string()),
        dataset_id: job.dataset_id.clone(),
        name: spec.name.clone().unwrap_or_else(|| cfg.name()),
        config: serde_json::to_value(&cfg).unwrap_or_default(),
        metrics: Some(metrics),
        created_at: now(),
    };
    if !rt.block_on(state.db.publish_model(&row, &learned))? {
        // Cancelled between the last step and publishing: nothing is published.
        let _ = std::fs::remove_dir_all(state.model_dir(id));
        let _ = std::fs::remove_dir_all(state.bundles_dir(id));
        let job = rt.block_on(state.db.job(id))?;
        finish(state, id, &job.status, None);
        return Ok(());
    }
    state.forget_model(id);
    finish(state, id, "succeeded", None);
    Ok(())
}

/// Progress of a training run of `epochs` epochs to the job's subscribers and (per epoch) the
/// database; answers `Stop` once the job is cancelled.
fn relay<'a>(
    state: &'a AppState,
    rt: &'a Handle,
    channel: &'a JobChannel,
    id: &'a str,
    epochs: usize,
) -> impl FnMut(&Progress) -> Control + 'a {
    move |p: &Progress| {
        if channel.cancel.load(Ordering::SeqCst) {
            return Control::Stop;
        }
        let event = match p {
            Progress::Step {
                epoch,
                step,
                steps,
                loss,
            } => JobEvent::Step {
                epoch: *epoch,
                epochs,
                step: *step,
                steps: *steps,
                loss: *loss,
            },
            Progress::Epoch(s) => {
                let ev = JobEvent::Epoch {
                    epoch: s.epoch,
                    epochs,
                    train_loss: s.train_loss,
                    val_loss: s.val_loss,
                    val_accuracy: s.val_accuracy,
                    seconds: s.seconds,
                };
                let _ = rt.block_on(state.db.set_job_progress(id, &ev.to_json()));
                ev
            }
        };
        let _ = channel.events.send(event);
        Control::Continue
    }
}

/// The model search of a `"k": "auto"` job: the stored one when a previous run of this job
/// finished it, else a search (its runs reported as `select` events) that skips the candidates
/// an interrupted run already scored (kept in `jobs/ID/search.partial.json`). `None` when the
/// job was cancelled during the search.
#[allow(clippy::too_many_arguments)]
fn choose(
    state: &AppState,
    rt: &Handle,
    channel: &JobChannel,
    id: &str,
    data: &Dataset,
    cfg: &ModelConfig,
    spec: &JobSpec,
    rows: &[Comparison],
    sel: &SelectConfig,
) -> Result<Option<Selection>, ApiError> {
    let file = state.selection_file(id);
    if let Ok(bytes) = std::fs::read(&file)
        && let Ok(done) = serde_json::from_slice::<Selection>(&bytes)
    {
        return Ok(Some(done));
    }
    // Candidates an interrupted run of this job already scored: not trained again.
    let partial = state.search_partial_file(id);
    let mut scored: Vec<Candidate> = std::fs::read(&partial)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let resumed = scored.clone();
    let mut kept: Result<(), ApiError> = Ok(());
    let found = select(data, cfg, &spec.train, rows, sel, &resumed, &mut |ev| {
        if channel.cancel.load(Ordering::SeqCst) {
            return Control::Stop;
        }
        match ev {
            SelectEvent::Fit { index, total, what } => {
                let ev = JobEvent::Select {
                    run: index,
                    runs: total,
                    what: what.to_string(),
                };
                let _ = rt.block_on(state.db.set_job_progress(id, &ev.to_json()));
                let _ = channel.events.send(ev);
            }
            SelectEvent::Scored(c) => {
                scored.push(c.clone());
                if kept.is_ok() {
                    kept = write_json(&partial, &scored);
                }
            }
            SelectEvent::Epoch => {}
        }
        Control::Continue
    });
    kept?;
    let found = match found {
        Err(PalError::Cancelled) => return Ok(None),
        other => other?,
    };
    write_json(&file, &found)?;
    Ok(Some(found))
}

/// Writes `value` as JSON to `file` atomically, creating its directory.
fn write_json(file: &std::path::Path, value: &impl serde::Serialize) -> Result<(), ApiError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| ApiError::internal(format!("writing the model search: {e}")))?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| ApiError::internal(format!("creating the job's directory: {e}")))?;
    }
    pal_format::write_atomic(file, &bytes)?;
    Ok(())
}
