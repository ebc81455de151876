//! Joint training: AdamW per parameter group (item map, head, users, scale), mini-batches,
//! early stopping on a validation split, per-epoch checkpoints and exact resume.

use std::path::Path;
use std::time::Instant;

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, Encoded};
use crate::engine::{Engine, Stepper};
use crate::error::{PalError, Result};
use crate::fused::{HostTables, Rows};
use crate::model::{Batch, Group, PalModel};
use crate::reference::{PalWeights, sigmoid};

/// One value per parameter group.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroupRates {
    pub item_map: f64,
    pub head: f64,
    pub users: f64,
    pub scale: f64,
}

impl GroupRates {
    pub(crate) fn get(&self, g: Group) -> f64 {
        match g {
            Group::ItemMap => self.item_map,
            Group::Head => self.head,
            Group::Users => self.users,
            Group::Scale => self.scale,
        }
    }
}

/// Training hyper-parameters (validated by [`TrainConfig::validate`]); missing JSON fields
/// take their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: GroupRates,
    pub weight_decay: GroupRates,
    /// Stop after this many epochs without validation-loss improvement (needs a val split).
    pub patience: Option<usize>,
    pub seed: u64,
    /// Groups updated by this run (few-shot fitting trains only `Users`).
    pub groups: Vec<Group>,
    /// Where the training steps run (evaluation and few-shot fitting stay on the CPU).
    pub device: crate::device::ComputeDevice,
    /// Which implementation runs the steps (`auto`: fused on the CPU where it applies).
    pub engine: Engine,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 60,
            batch_size: 128,
            lr: GroupRates {
                item_map: 2e-3,
                head: 2e-3,
                users: 5e-2,
                scale: 1e-2,
            },
            weight_decay: GroupRates {
                item_map: 0.01,
                head: 0.01,
                users: 0.0,
                scale: 0.0,
            },
            patience: Some(10),
            seed: 0,
            groups: vec![Group::ItemMap, Group::Head, Group::Users, Group::Scale],
            device: crate::device::ComputeDevice::Cpu,
            engine: Engine::Auto,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| {
            Err(PalError::Config {
                field,
                reason: reason.into(),
            })
        };
        if self.epochs == 0 {
            return bad("epochs", "must be ≥ 1");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be ≥ 1");
        }
        for g in &self.groups {
            let (lr, wd) = (self.lr.get(*g), self.weight_decay.get(*g));
            if !lr.is_finite() || lr < 0.0 {
                return bad("lr", "learning rates must be finite and ≥ 0");
            }
            if !wd.is_finite() || !(0.0..1.0).contains(&wd) {
                return bad("weight_decay", "weight decay must be in [0, 1)");
            }
        }
        if self.patience == Some(0) {
            return bad("patience", "must be ≥ 1 when set");
        }
        if self.engine == Engine::Fused && self.device != crate::device::ComputeDevice::Cpu {
            return bad(
                "engine",
                "the fused engine runs on the CPU; use device cpu or engine burn",
            );
        }
        Ok(())
    }
}

/// Statistics of one finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    pub train_loss: f32,
    pub val_loss: Option<f32>,
    pub val_accuracy: Option<f32>,
    pub seconds: f64,
}

/// What the caller is told while training runs.
#[derive(Debug, Clone)]
pub enum Progress {
    Step {
        epoch: usize,
        step: usize,
        steps: usize,
        loss: f32,
    },
    Epoch(EpochStats),
}

/// The caller's answer to a progress report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// Summary of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub history: Vec<EpochStats>,
    pub best_epoch: usize,
    pub stopped_early: bool,
    pub cancelled: bool,
    pub samples_per_second: f64,
    pub seconds: f64,
}

/// Embedding tables on a device, gathered per batch, with host copies for the fused engine.
pub struct Tables {
    items: Tensor<2>,
    prompts: Option<Tensor<2>>,
    device: Device,
    host_items: (Vec<f32>, usize),
    host_prompts: (Vec<f32>, usize),
}

fn table(data: &[f32], dim: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(data.to_vec(), [data.len() / dim, dim]),
        device,
    )
}

fn ints(v: &[u32], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

impl Tables {
    pub fn new(data: &Dataset, device: &Device) -> Self {
        Self {
            items: table(data.items.data(), data.items.dim(), device),
            prompts: data
                .prompts
                .as_ref()
                .map(|p| table(p.data(), p.dim(), device)),
            device: device.clone(),
            host_items: (data.items.data().to_vec(), data.items.dim()),
            host_prompts: data
                .prompts
                .as_ref()
                .map_or((vec![], 1), |p| (p.data().to_vec(), p.dim())),
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The host copies of both tables.
    pub fn host(&self) -> HostTables<'_> {
        HostTables {
            items: Rows {
                data: &self.host_items.0,
                dim: self.host_items.1,
            },
            prompts: Rows {
                data: &self.host_prompts.0,
                dim: self.host_prompts.1,
            },
        }
    }

    /// The rows `idx` of `enc` as a batch.
    pub fn batch(&self, enc: &Encoded, idx: &[usize]) -> Batch {
        let pick = |v: &[u32]| ints(&idx.iter().map(|&i| v[i]).collect::<Vec<_>>(), &self.device);
        let labels: Vec<f32> = idx.iter().map(|&i| enc.labels[i] as f32).collect();
        let n = labels.len();
        Batch {
            users: pick(&enc.users),
            prompts: self
                .prompts
                .as_ref()
                .map(|p| p.clone().select(0, pick(&enc.prompts))),
            left: self.items.clone().select(0, pick(&enc.left)),
            right: self.items.clone().select(0, pick(&enc.right)),
            labels: Tensor::from_data(TensorData::new(labels, [n]), &self.device),
        }
    }
}

/// Log-odds of "left preferred" for every comparison, computed in batches without autodiff.
pub fn predict(model: &PalModel, tables: &Tables, enc: &Encoded) -> Vec<f32> {
    let mut out = Vec::with_capacity(enc.len());
    let all: Vec<usize> = (0..enc.len()).collect();
    for chunk in all.chunks(4096) {
        let logits = model.logits(&tables.batch(enc, chunk));
        out.extend(
            logits
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("float tensor"),
        );
    }
    out
}

/// Mean log-loss and accuracy of logits against labels.
pub fn score(logits: &[f32], labels: &[u8]) -> (f32, f32) {
    let n = labels.len().max(1) as f32;
    let mut loss = 0.0f64;
    let mut correct = 0usize;
    for (&z, &y) in logits.iter().zip(labels) {
        let p = sigmoid(z).clamp(1e-7, 1.0 - 1e-7) as f64;
        loss -= if y == 1 { p.ln() } else { (1.0 - p).ln() };
        correct += usize::from((z > 0.0) == (y == 1));
    }
    ((loss / n as f64) as f32, correct as f32 / n)
}

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
                    crate::checkpoint::weights_from_bytes(&init.config, n_users, &bytes, &p)
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
        use crate::checkpoint::{weights_to_bytes, write_atomic};
        write_atomic(&dir.join(LAST_FILE), &weights_to_bytes(last)?)?;
        write_atomic(&dir.join(BEST_FILE), &weights_to_bytes(best)?)?;
        stepper.save_optimizer(dir)?;
        let text = serde_json::to_string_pretty(state).expect("state serialises");
        // The state file is written last: it is what marks the checkpoint as complete.
        write_atomic(&dir.join(STATE_FILE), text.as_bytes())
    }
}
