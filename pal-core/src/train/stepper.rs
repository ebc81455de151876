//! The running state of the training engine a run chose — burn's autodiff (any model, any
//! device) or the fused CPU engine (PAL-A and PAL-B without dropout) — behind one interface.

use std::path::{Path, PathBuf};

use burn::module::{Module, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};

use pal_cpu::Precision;
use pal_format::dataset::Encoded;

use super::config::TrainConfig;
use super::tables::{Tables, predict};
use crate::error::{PalError, Result};
use crate::fused::FusedTrainer;
use crate::model::{Group, PalModel};
use crate::reference::PalWeights;

/// burn AdamW optimizers, one per trained group.
pub(crate) struct Optimizers {
    groups: Vec<(Group, Vec<ParamId>, ModuleOptimizer)>,
}

impl Optimizers {
    fn new(model: &PalModel, cfg: &TrainConfig) -> Self {
        let groups = cfg
            .groups
            .iter()
            .map(|&g| {
                let opt = AdamWConfig::new()
                    .with_weight_decay(cfg.weight_decay.get(g) as f32)
                    .init();
                (g, model.group_ids(g), opt)
            })
            .collect();
        Self { groups }
    }

    fn path(dir: &Path, g: Group) -> PathBuf {
        dir.join(format!("optim-{g:?}.bpk").to_lowercase())
    }
}

const FUSED_STATE: &str = "optim-fused.safetensors";

/// The trained groups with their learning rate and weight decay.
fn fused_groups(cfg: &TrainConfig) -> Vec<(Group, f64, f64)> {
    cfg.groups
        .iter()
        .map(|&g| (g, cfg.lr.get(g), cfg.weight_decay.get(g)))
        .collect()
}

/// A model being trained, with its optimizer state.
pub(crate) enum Stepper {
    Burn(Box<BurnState>),
    Fused(Box<FusedTrainer>),
}

/// burn's model and optimizers.
pub(crate) struct BurnState {
    /// `None` only while an optimizer step owns the model.
    model: Option<PalModel>,
    optims: Optimizers,
}

impl Stepper {
    /// Starts training `init` with `cfg` on `tables` (whose device burn uses).
    pub fn new(init: &PalWeights, cfg: &TrainConfig, tables: &Tables) -> Result<Self> {
        if cfg.engine.is_fused(cfg.device, &init.config)? {
            let fused = FusedTrainer::new(init, &fused_groups(cfg), cfg.precision)?;
            return Ok(Stepper::Fused(Box::new(fused)));
        }
        if cfg.precision != Precision::F32 {
            return Err(PalError::Config {
                field: "precision",
                reason: format!(
                    "{} products run only on the fused CPU engine; this run uses burn (use `--engine fused` on the CPU, or `--precision f32`)",
                    cfg.precision
                ),
            });
        }
        let model = PalModel::from_weights(init, &tables.device().clone().autodiff());
        let optims = Optimizers::new(&model, cfg);
        Ok(Stepper::Burn(Box::new(BurnState {
            model: Some(model),
            optims,
        })))
    }

    /// Replaces the weights (resume), keeping the optimizer state.
    pub fn set_weights(
        &mut self,
        w: &PalWeights,
        cfg: &TrainConfig,
        tables: &Tables,
    ) -> Result<()> {
        match self {
            Stepper::Burn(b) => {
                b.model = Some(PalModel::from_weights(
                    w,
                    &tables.device().clone().autodiff(),
                ));
            }
            Stepper::Fused(f) => {
                **f = FusedTrainer::new(w, &fused_groups(cfg), cfg.precision)?;
            }
        }
        Ok(())
    }

    /// One optimizer step on the comparisons `idx` of `enc`; returns the batch loss (a
    /// non-finite loss is returned before any update).
    pub fn step(
        &mut self,
        cfg: &TrainConfig,
        tables: &Tables,
        enc: &Encoded,
        idx: &[usize],
    ) -> Result<f32> {
        match self {
            Stepper::Fused(f) => f.step(tables.host(), enc, idx),
            Stepper::Burn(b) => {
                let m = b.model.take().expect("model present between steps");
                let mut loss = m.loss(&tables.batch(enc, idx));
                if let Some(p) = m.residual_penalty(enc.len()) {
                    loss = loss + p;
                }
                let value = loss.clone().into_scalar::<f32>();
                if !value.is_finite() {
                    b.model = Some(m);
                    return Ok(value);
                }
                let mut grads = loss.backward();
                let mut m = m;
                for (g, ids, opt) in &mut b.optims.groups {
                    let gp = GradientsParams::from_params(&mut grads, &m, ids);
                    m = opt.step(cfg.lr.get(*g), m, gp);
                }
                b.model = Some(m);
                Ok(value)
            }
        }
    }

    /// The current weights.
    pub fn weights(&self) -> PalWeights {
        match self {
            Stepper::Fused(f) => f.weights(),
            Stepper::Burn(b) => b
                .model
                .as_ref()
                .expect("model present")
                .valid()
                .to_weights(),
        }
    }

    /// Log-odds of every comparison of `enc` with the current weights.
    pub fn predict(&mut self, tables: &Tables, enc: &Encoded) -> Result<Vec<f32>> {
        match self {
            Stepper::Fused(f) => {
                let all: Vec<usize> = (0..enc.len()).collect();
                let mut out = Vec::with_capacity(enc.len());
                for chunk in all.chunks(4096) {
                    out.extend(f.logits(tables.host(), enc, chunk)?);
                }
                Ok(out)
            }
            Stepper::Burn(b) => Ok(predict(
                &b.model.as_ref().expect("model present").valid(),
                tables,
                enc,
            )),
        }
    }

    /// Saves the optimizer state into checkpoint directory `dir`.
    pub fn save_optimizer(&self, dir: &Path) -> Result<()> {
        match self {
            Stepper::Fused(f) => {
                let path = dir.join(FUSED_STATE);
                pal_format::write_atomic(&path, &f.save_state(&path)?)
            }
            Stepper::Burn(b) => {
                for (g, _, opt) in &b.optims.groups {
                    let path = Optimizers::path(dir, *g);
                    opt.save(&path).map_err(|e| {
                        PalError::file(&path, format!("saving optimizer state: {e:?}"))
                    })?;
                }
                Ok(())
            }
        }
    }

    /// Restores the optimizer state saved by [`Stepper::save_optimizer`].
    pub fn load_optimizer(&mut self, dir: &Path) -> Result<()> {
        match self {
            Stepper::Fused(f) => {
                let path = dir.join(FUSED_STATE);
                let bytes = std::fs::read(&path).map_err(|e| PalError::io(&path, e))?;
                f.load_state(&bytes, &path)
            }
            Stepper::Burn(b) => {
                let groups = std::mem::take(&mut b.optims.groups);
                b.optims.groups = groups
                    .into_iter()
                    .map(|(g, ids, opt)| {
                        let path = Optimizers::path(dir, g);
                        let opt = opt.load(&path).map_err(|e| {
                            PalError::file(&path, format!("loading optimizer state: {e:?}"))
                        })?;
                        Ok((g, ids, opt))
                    })
                    .collect::<Result<_>>()?;
                Ok(())
            }
        }
    }
}
