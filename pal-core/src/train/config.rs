//! What a training run is told and what it reports: optimizer settings per parameter group,
//! the run's config, per-epoch statistics, progress events and the caller's control.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::device::ComputeDevice;
use crate::error::{PalError, Result};
use crate::fused;
use crate::model::Group;
use pal_cpu::Precision;
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
    /// The products' input format on the fused engine: f32, or bf16 with f32 sums, f32
    /// master weights and f32 optimizer state. bf16 needs the fused engine.
    pub precision: Precision,
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
            precision: Precision::F32,
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
        if self.precision == Precision::Bf16
            && (self.engine == Engine::Burn || self.device != crate::device::ComputeDevice::Cpu)
        {
            return bad(
                "precision",
                "bf16 products run only on the fused CPU engine; use engine auto or fused on device cpu, or precision f32",
            );
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

/// The training engine, chosen once in `TrainConfig` (`--engine auto|burn|fused`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// Fused where it applies (CPU device, no dropout), burn otherwise.
    #[default]
    Auto,
    /// burn autodiff on the configured device.
    Burn,
    /// The fused CPU engine ([`crate::fused`]); an error where it does not apply.
    Fused,
}

impl Engine {
    /// Whether a run with this engine, `device` and model uses the fused engine.
    pub fn is_fused(self, device: ComputeDevice, model: &crate::ModelConfig) -> Result<bool> {
        let why = if device != ComputeDevice::Cpu {
            Some("the fused engine runs on the CPU; use `--device cpu` or `--engine burn`")
        } else {
            fused::unsupported(model)
        };
        match (self, why) {
            (Engine::Burn, _) => Ok(false),
            (Engine::Auto, why) => Ok(why.is_none()),
            (Engine::Fused, None) => Ok(true),
            (Engine::Fused, Some(why)) => Err(PalError::Config {
                field: "engine",
                reason: why.into(),
            }),
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Auto => "auto",
            Engine::Burn => "burn",
            Engine::Fused => "fused",
        })
    }
}

impl FromStr for Engine {
    type Err = PalError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Engine::Auto),
            "burn" => Ok(Engine::Burn),
            "fused" => Ok(Engine::Fused),
            other => Err(PalError::Config {
                field: "engine",
                reason: format!("unknown engine {other:?}: use auto, burn or fused"),
            }),
        }
    }
}
