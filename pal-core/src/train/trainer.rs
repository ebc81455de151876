//! The training loop: mini-batches shuffled per epoch from the seed, early stopping on a
//! validation split, per-epoch checkpoints and exact resume.

use std::path::Path;
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::error::{PalError, Result};
use crate::reference::PalWeights;
use pal_format::dataset::Encoded;

use super::config::{Control, EpochStats, Progress, TrainConfig, TrainReport};
use super::stepper::Stepper;
use super::tables::{Tables, score};

#[derive(Serialize, Deserialize)]
struct ResumeState {
    epoch: usize,
    best_epoch: usize,
    best_val: Option<f32>,
    stale: usize,
    history: Vec<EpochStats>,
    config: TrainConfig,
}

/// A training job: data, config and optional checkpoint directory.
pub struct Trainer<'a> {
    pub config: &'a TrainConfig,
    pub tables: &'a Tables,
    pub train: &'a Encoded,
    pub val: Option<&'a Encoded>,
    /// Saves state every epoch and resumes from it when present.
    pub checkpoint_dir: Option<&'a Path>,
}

const STATE_FILE: &str = "state.json";
const LAST_FILE: &str = "last.safetensors";
const BEST_FILE: &str = "best.safetensors";

impl Trainer<'_> {
    /// Trains `init` and returns the best weights (lowest validation loss, or last epoch).
    pub fn run(
        &self,
        init: PalWeights,
        progress: &mut dyn FnMut(&Progress) -> Control,
    ) -> Result<(PalWeights, TrainReport)> {
        let cfg = self.config;
        cfg.validate()?;
        init.config.validate()?;
        if self.train.is_empty() {
            return Err(PalError::Data("training split has no comparisons".into()));
        }
        let n_users = init.user_logits.len();
        let mut stepper = Stepper::new(&init, cfg, self.tables)?;
        let mut state = ResumeState {
            epoch: 0,
            best_epoch: 0,
            best_val: None,
            stale: 0,
            history: vec![],
            config: cfg.clone(),
        };
        let mut best = init.clone();
        if let Some(dir) = self.checkpoint_dir {
            std::fs::create_dir_all(dir).map_err(|e| PalError::io(dir, e))?;
            let state_path = dir.join(STATE_FILE);
            if state_path.exists() {
                let text = std::fs::read_to_string(&state_path)
                    .map_err(|e| PalError::io(&state_path, e))?;
                let saved: ResumeState = serde_json::from_str(&text)
                    .map_err(|e| PalError::file(&state_path, e.to_string()))?;
                if saved.config != *cfg {
                    return Err(PalError::file(
                        &state_path,
                        "checkpoint was made with a different training config",
                    ));
                }
                let load = |name: &str| -> Result<PalWeights> {
                    let p = dir.join(name);
                    let bytes = std::fs::read(&p).map_err(|e| PalError::io(&p, e))?;
                    pal_math::weights::weights_from_bytes(&init.config, n_users, &bytes, &p)
                };
                stepper.set_weights(&load(LAST_FILE)?, cfg, self.tables)?;
                best = load(BEST_FILE)?;
                stepper.load_optimizer(dir)?;
                state = saved;
            }
        }
        let started = Instant::now();
        let mut samples = 0usize;
        let (mut stopped_early, mut cancelled) = (false, false);
        let steps = self.train.len().div_ceil(cfg.batch_size);
        while state.epoch < cfg.epochs {
            let epoch = state.epoch + 1;
            let t0 = Instant::now();
            let mut order: Vec<usize> = (0..self.train.len()).collect();
            let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ (epoch as u64) << 20);
            order.shuffle(&mut rng);
            let mut total = 0.0f64;
            for (step, chunk) in order.chunks(cfg.batch_size).enumerate() {
                let value = stepper.step(cfg, self.tables, self.train, chunk)?;
                if !value.is_finite() {
                    return Err(PalError::Data(format!(
                        "training diverged at epoch {epoch}, step {}: loss is {value}",
                        step + 1
                    )));
                }
                total += value as f64 * chunk.len() as f64;
                samples += chunk.len();
                let report = Progress::Step {
                    epoch,
                    step: step + 1,
                    steps,
                    loss: value,
                };
                if progress(&report) == Control::Stop {
                    cancelled = true;
                    break;
                }
            }
            if cancelled {
                break;
            }
            let (val_loss, val_accuracy) = match self.val {
                Some(v) if !v.is_empty() => {
                    let (l, a) = score(&stepper.predict(self.tables, v)?, &v.labels);
                    (Some(l), Some(a))
                }
                _ => (None, None),
            };
            let stats = EpochStats {
                epoch,
                train_loss: (total / self.train.len() as f64) as f32,
                val_loss,
                val_accuracy,
                seconds: t0.elapsed().as_secs_f64(),
            };
            let improved = match (val_loss, state.best_val) {
                (Some(v), Some(b)) => v < b,
                (Some(_), None) => true,
                (None, _) => true,
            };
            let current = stepper.weights();
            if improved {
                best = current.clone();
                state.best_val = val_loss;
                state.best_epoch = epoch;
                state.stale = 0;
            } else {
                state.stale += 1;
            }
            state.epoch = epoch;
            state.history.push(stats.clone());
            if let Some(dir) = self.checkpoint_dir {
                self.save_checkpoint(dir, &current, &best, &stepper, &state)?;
            }
            let stop = progress(&Progress::Epoch(stats)) == Control::Stop;
            if stop {
                cancelled = true;
                break;
            }
            if let (Some(p), Some(_)) = (cfg.patience, self.val)
                && state.stale >= p
            {
                stopped_early = true;
                break;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        if self.val.is_none() && !cancelled {
            best = stepper.weights();
        }
        let report = TrainReport {
            history: state.history,
            best_epoch: state.best_epoch,
            stopped_early,
            cancelled,
            samples_per_second: samples as f64 / seconds.max(1e-9),
            seconds,
        };
        Ok((best, report))
    }

    fn save_checkpoint(
        &self,
        dir: &Path,
        last: &PalWeights,
        best: &PalWeights,
        stepper: &Stepper,
        state: &ResumeState,
    ) -> Result<()> {
        use pal_format::write_atomic;
        use pal_math::weights::weights_to_bytes;
        write_atomic(&dir.join(LAST_FILE), &weights_to_bytes(last)?)?;
        write_atomic(&dir.join(BEST_FILE), &weights_to_bytes(best)?)?;
        stepper.save_optimizer(dir)?;
        let text = serde_json::to_string_pretty(state).expect("state serialises");
        // The state file is written last: it is what marks the checkpoint as complete.
        write_atomic(&dir.join(STATE_FILE), text.as_bytes())
    }
}
