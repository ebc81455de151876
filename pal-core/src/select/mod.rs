//! Model selection by k-fold cross-validation on the seen users' comparisons: the number of
//! prototypes K, the residual strength λ and the number of epochs are chosen together, by the
//! validation log-loss averaged over folds and then over epochs' curves, so a tiny validation
//! split cannot stop training at a lucky epoch. With residuals, the penalty for *new* users'
//! residuals is chosen too, by training without a third of the respondents and fitting them as
//! new users from n = 1, 2, 5, 10 of their pairs. The chosen model is then refitted on every
//! comparison for the chosen number of epochs.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::{PalError, Result};
use crate::pipeline::{EncodedSplits, fit_encoded};
use crate::train::{Control, Progress, TrainConfig, TrainReport};

mod candidate;
mod new_user;
mod runs;

pub use candidate::Candidate;
pub use new_user::NewUserCandidate;
use new_user::{best_new_user, new_user_prior};
use pal_format::comparison::Comparison;
use pal_format::dataset::Dataset;
use pal_format::model_dir::TrainedModel;
pub use runs::{OnSelect, SelectEvent};
use runs::{Runs, finished};

/// The grid and the folds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelectConfig {
    /// Candidate numbers of prototypes.
    pub ks: Vec<usize>,
    /// Candidate residual strengths (`None`: no residuals).
    pub residuals: Vec<Option<f32>>,
    /// Folds over each user's comparisons (users with fewer stay in every training fold).
    pub folds: usize,
    /// Training runs at least this many optimizer steps (small datasets get more epochs).
    pub min_steps: usize,
    /// No run trains more epochs than this (a server's limit).
    pub max_epochs: usize,
}

impl Default for SelectConfig {
    fn default() -> Self {
        Self {
            ks: vec![1, 2, 4],
            residuals: vec![None, Some(3.0), Some(1.0), Some(0.3)],
            folds: 3,
            min_steps: 4000,
            max_epochs: 2000,
        }
    }
}

impl SelectConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| {
            Err(PalError::Config {
                field,
                reason: reason.into(),
            })
        };
        if self.ks.is_empty() || self.residuals.is_empty() {
            return bad("k", "model selection needs at least one candidate");
        }
        if self.folds < 2 {
            return bad("folds", "cross-validation needs at least 2 folds");
        }
        Ok(())
    }

    /// Epochs a run on `n` comparisons gets: `epochs`, or more to reach `min_steps`, at most
    /// `max_epochs`.
    pub fn epochs_for(&self, n: usize, batch_size: usize, epochs: usize) -> usize {
        let steps_per_epoch = n.div_ceil(batch_size.max(1)).max(1);
        epochs
            .max(self.min_steps.div_ceil(steps_per_epoch))
            .min(self.max_epochs.max(1))
    }

    /// Training runs the search makes for maps of `layers` layers (with the new-user prior's,
    /// when residuals may be chosen): what a progress bar counts.
    pub fn fits(&self, layers: usize) -> usize {
        let grid = self.ks.len() * self.residuals.len();
        let linear = if layers > 1 { self.residuals.len() } else { 0 };
        let prior = if self.residuals.iter().any(Option::is_some) {
            self.folds
        } else {
            0
        };
        (grid + linear) * self.folds + prior
    }
}

/// The whole search: every candidate and the chosen one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub folds: usize,
    pub candidates: Vec<Candidate>,
    pub chosen: usize,
    /// The new-user residual penalties tried (residual models only) and the chosen one.
    #[serde(default)]
    pub new_user: Vec<NewUserCandidate>,
    #[serde(default)]
    pub new_user_residual: Option<f32>,
}

impl Selection {
    pub fn best(&self) -> &Candidate {
        &self.candidates[self.chosen]
    }

    /// The chosen candidate's model config on top of `base`.
    pub fn config(&self, base: &ModelConfig) -> ModelConfig {
        let c = self.best();
        ModelConfig {
            k: c.k,
            residual: c.residual,
            layers: if c.layers == 0 { base.layers } else { c.layers },
            new_user_residual: self.new_user_residual.filter(|_| c.residual.is_some()),
            ..base.clone()
        }
    }

    /// The search as a Markdown table.
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "Model selection ({}-fold cross-validation on the seen users' comparisons):\n\n",
            self.folds
        );
        s += "| K | residual λ | layers | epochs | CV log-loss | CV accuracy | |\n|---:|---:|---:|---:|---:|---:|---|\n";
        for (i, c) in self.candidates.iter().enumerate() {
            let lambda = c.residual.map_or("none".into(), |l| l.to_string());
            s += &format!(
                "| {} | {lambda} | {} | {} | {:.3} | {:.1}% | {} |\n",
                c.k,
                c.layers,
                c.epochs,
                c.cv_log_loss,
                100.0 * c.cv_accuracy,
                if i == self.chosen { "chosen" } else { "" }
            );
        }
        if !self.new_user.is_empty() {
            s += "\nNew users' residual penalty (a third of the respondents held out, fitted from n = 1, 2, 5, 10 pairs):\n\n";
            s += "| λ for new users | log-loss | accuracy | |\n|---:|---:|---:|---|\n";
            for c in &self.new_user {
                s += &format!(
                    "| {} | {:.3} | {:.1}% | {} |\n",
                    c.residual,
                    c.log_loss,
                    100.0 * c.accuracy,
                    if Some(c.residual) == self.new_user_residual {
                        "chosen"
                    } else {
                        ""
                    }
                );
            }
        }
        s
    }
}

/// Fold of each row: each user's rows in turn (`None` for users with fewer rows than folds,
/// who stay in every training fold).
pub fn fold_of_rows(rows: &[Comparison], folds: usize) -> Vec<Option<usize>> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    rows.iter()
        .for_each(|c| *count.entry(c.user.as_str()).or_default() += 1);
    let mut seen: HashMap<&str, usize> = HashMap::new();
    rows.iter()
        .map(|c| {
            let i = seen.entry(c.user.as_str()).or_default();
            *i += 1;
            (count[c.user.as_str()] >= folds).then_some((*i - 1) % folds)
        })
        .collect()
}

/// One fold's training and validation comparisons.
struct Fold {
    train: Vec<Comparison>,
    val: Vec<Comparison>,
}

/// Cross-validates one config: the epoch with the lowest mean validation loss over the folds.
fn cross_validate(
    data: &Dataset,
    cfg: &ModelConfig,
    train: &TrainConfig,
    folds: &[Fold],
    epochs: usize,
    runs: &mut Runs,
) -> Result<Candidate> {
    // Per epoch: summed validation loss and correct answers over folds.
    let mut loss: Vec<f64> = Vec::new();
    let mut correct: Vec<f64> = Vec::new();
    let mut total = 0usize;
    for (f, Fold { train: tr, val: va }) in folds.iter().enumerate() {
        runs.start(&format!(
            "{}, {} layers, fold {}/{}",
            cfg.name(),
            cfg.layers,
            f + 1,
            folds.len()
        ))?;
        let tcfg = TrainConfig {
            epochs,
            patience: None,
            ..train.clone()
        };
        let splits = EncodedSplits::from_rows(data, tr, Some(va))?;
        let (_, report) = fit_encoded(data, cfg, &tcfg, splits, None, &mut |p| runs.epoch(p))?;
        finished(&report)?;
        let n = va.len();
        total += n;
        if report.history.len() != epochs {
            return Err(PalError::Data(format!(
                "cross-validation fold {} stopped after {} of {epochs} epochs",
                f + 1,
                report.history.len()
            )));
        }
        loss.resize(epochs, 0.0);
        correct.resize(epochs, 0.0);
        for (e, s) in report.history.iter().enumerate() {
            loss[e] += s.val_loss.unwrap_or(f32::NAN) as f64 * n as f64;
            correct[e] += s.val_accuracy.unwrap_or(0.0) as f64 * n as f64;
        }
    }
    let (best, l) = loss
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .min_by(|a, b| a.1.total_cmp(b.1))
        .ok_or_else(|| PalError::Data("cross-validation losses are not finite".into()))?;
    Ok(Candidate {
        k: cfg.k,
        residual: cfg.residual,
        layers: cfg.layers,
        epochs: best + 1,
        cv_log_loss: (l / total as f64) as f32,
        cv_accuracy: (correct[best] / total as f64) as f32,
    })
}

/// A grid candidate: its score from `done` when an earlier, interrupted search finished it
/// (the runs it would take are counted as done), else cross-validated now and reported.
fn scored(
    data: &Dataset,
    cfg: &ModelConfig,
    train: &TrainConfig,
    folds: &[Fold],
    epochs: usize,
    done: &[Candidate],
    runs: &mut Runs,
) -> Result<Candidate> {
    if let Some(c) = done
        .iter()
        .find(|c| c.k == cfg.k && c.residual == cfg.residual && c.layers == cfg.layers)
    {
        runs.skip(folds.len());
        return Ok(c.clone());
    }
    let c = cross_validate(data, cfg, train, folds, epochs, runs)?;
    runs.scored(&c)?;
    Ok(c)
}

/// Runs the grid, then the chosen K's residual strengths again with a linear map (one layer)
/// when the maps are deeper; `on` hears every run, epoch and scored candidate. Candidates in
/// `done` (handed out by an interrupted search on the same rows) are not trained again.
pub fn select(
    data: &Dataset,
    base: &ModelConfig,
    train: &TrainConfig,
    rows: &[Comparison],
    sel: &SelectConfig,
    done: &[Candidate],
    on: &mut OnSelect,
) -> Result<Selection> {
    sel.validate()?;
    let mut runs = Runs {
        done: 0,
        total: sel.fits(base.layers),
        on,
    };
    let fold = fold_of_rows(rows, sel.folds);
    let folds: Vec<Fold> = (0..sel.folds)
        .map(|f| {
            let (tr, va): (Vec<_>, Vec<_>) =
                rows.iter().zip(&fold).partition(|(_, g)| **g != Some(f));
            Fold {
                train: tr.into_iter().map(|(c, _)| c.clone()).collect(),
                val: va.into_iter().map(|(c, _)| c.clone()).collect(),
            }
        })
        .filter(|f| !f.val.is_empty())
        .collect();
    if folds.is_empty() {
        return Err(PalError::Data(format!(
            "cross-validation needs users with at least {} comparisons",
            sel.folds
        )));
    }
    // One length for every fold, so each epoch's mean covers all of them.
    let in_training = rows.len() - rows.len() / sel.folds;
    let epochs = sel.epochs_for(in_training, train.batch_size, train.epochs);
    let mut candidates = Vec::new();
    for &k in &sel.ks {
        for &residual in &sel.residuals {
            let cfg = ModelConfig {
                k,
                residual,
                ..base.clone()
            };
            candidates.push(scored(data, &cfg, train, &folds, epochs, done, &mut runs)?);
        }
    }
    if base.layers > 1 {
        // Items that are one-hot or already good features often need no deep map.
        let k = best_of(&candidates).k;
        for &residual in &sel.residuals {
            let cfg = ModelConfig {
                k,
                residual,
                layers: 1,
                ..base.clone()
            };
            candidates.push(scored(data, &cfg, train, &folds, epochs, done, &mut runs)?);
        }
    }
    let best = best_of(&candidates).clone();
    let chosen = candidates
        .iter()
        .position(|c| *c == best)
        .expect("the best is a candidate");
    let mut selection = Selection {
        folds: sel.folds,
        candidates,
        chosen,
        new_user: vec![],
        new_user_residual: None,
    };
    if selection.best().residual.is_some() {
        let cfg = selection.config(base);
        let epochs = selection.best().epochs;
        selection.new_user = new_user_prior(data, &cfg, train, rows, epochs, sel.folds, &mut runs)?;
        selection.new_user_residual = best_new_user(&selection.new_user);
    }
    Ok(selection)
}

/// The candidate with the lowest cross-validated log-loss.
fn best_of(candidates: &[Candidate]) -> &Candidate {
    candidates
        .iter()
        .min_by(|a, b| a.cv_log_loss.total_cmp(&b.cv_log_loss))
        .expect("at least one candidate")
}

/// Refits the chosen candidate on all `rows` for its number of epochs (no early stopping),
/// checkpointing into `checkpoint` when given (a rerun resumes there).
pub fn fit_selected(
    data: &Dataset,
    base: &ModelConfig,
    train: &TrainConfig,
    rows: &[Comparison],
    selection: &Selection,
    checkpoint: Option<&std::path::Path>,
    progress: &mut dyn FnMut(&Progress) -> Control,
) -> Result<(TrainedModel, TrainReport)> {
    let tcfg = TrainConfig {
        epochs: selection.best().epochs,
        patience: None,
        ..train.clone()
    };
    let splits = EncodedSplits::from_rows(data, rows, None)?;
    fit_encoded(
        data,
        &selection.config(base),
        &tcfg,
        splits,
        checkpoint,
        progress,
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A comparison of `user` (the select tests' fixture).
    pub(super) fn row(user: &str) -> Comparison {
        Comparison {
            user: user.into(),
            prompt: None,
            left: "a".into(),
            right: "b".into(),
            label: 1,
        }
    }

    #[test]
    fn folds_cycle_within_each_user_and_skip_small_users() {
        let rows: Vec<_> = ["u", "v", "u", "u", "v", "u"].map(row).to_vec();
        assert_eq!(
            fold_of_rows(&rows, 3),
            vec![Some(0), None, Some(1), Some(2), None, Some(0)]
        );
    }

    #[test]
    fn small_datasets_train_for_more_epochs() {
        let s = SelectConfig::default();
        assert_eq!(s.epochs_for(1280, 128, 60), 400);
        assert_eq!(s.epochs_for(1_000_000, 128, 60), 60);
    }
}
