//! The penalty for *new* users' residuals: held-out groups of respondents are fitted as new
//! users from their first 1, 2, 5 and 10 pairs by a model trained without them, under each
//! candidate penalty; the best candidate is the new-user prior the model keeps.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::runs::{Runs, finished};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::pipeline::{EncodedSplits, FewShotConfig, adapt, evaluate, fit_encoded};
use crate::train::TrainConfig;
use pal_format::comparison::Comparison;
use pal_format::dataset::Dataset;

/// One candidate penalty for new users' residuals and how held-out respondents fitted as new
/// users did with it (averaged over n = 1, 2, 5, 10 pairs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewUserCandidate {
    pub residual: f32,
    pub log_loss: f32,
    pub accuracy: f32,
}

/// The new-user penalty held-out respondents were ranked best with: the highest accuracy (what a
/// new user sees), then the lowest log-loss among candidates within 0.1 points of it.
pub(super) fn best_new_user(candidates: &[NewUserCandidate]) -> Option<f32> {
    let top = candidates
        .iter()
        .map(|c| c.accuracy)
        .fold(f32::NEG_INFINITY, f32::max);
    candidates
        .iter()
        .filter(|c| c.accuracy >= top - 1e-3)
        .min_by(|a, b| a.log_loss.total_cmp(&b.log_loss))
        .map(|c| c.residual)
}

/// Pairs per new user the new-user prior is judged at.
const NEW_USER_SHOTS: [usize; 4] = [1, 2, 5, 10];

/// Tries penalties for new users' residuals: `λ/10 … 10λ` and the Gaussian prior fitted to
/// the trained residuals (3 significant digits). Respondents are split into `folds` groups; a model trained without one
/// group fits its respondents as new users from their first n pairs and is scored on the rest.
pub(super) fn new_user_prior(
    data: &Dataset,
    cfg: &ModelConfig,
    train: &TrainConfig,
    rows: &[Comparison],
    epochs: usize,
    folds: usize,
    runs: &mut Runs,
) -> Result<Vec<NewUserCandidate>> {
    let lambda = cfg.residual.expect("a residual model");
    let users = pal_format::dataset::user_ids(rows);
    let group: HashMap<&str, usize> = users
        .iter()
        .enumerate()
        .map(|(i, u)| (u.as_str(), i % folds))
        .collect();
    let mut fixed: Vec<f32> = [0.1, 0.3, 1.0, 3.0, 10.0]
        .map(|f| round3(f * lambda))
        .to_vec();
    // Per candidate (filled in order): summed log-loss, correct answers, answers.
    let mut sums: Vec<(f64, f64, usize)> = Vec::new();
    for f in 0..folds {
        let (held, kept): (Vec<_>, Vec<_>) = rows
            .iter()
            .cloned()
            .partition(|c| group[c.user.as_str()] == f);
        if held.is_empty() || kept.is_empty() {
            continue;
        }
        runs.start(&format!(
            "{} without respondent group {}/{folds}",
            cfg.name(),
            f + 1
        ))?;
        let tcfg = TrainConfig {
            epochs,
            patience: None,
            ..train.clone()
        };
        let splits = EncodedSplits::from_rows(data, &kept, None)?;
        let (model, report) = fit_encoded(data, cfg, &tcfg, splits, None, &mut |p| runs.epoch(p))?;
        finished(&report)?;
        if f == 0
            && let Some(eb) = model.weights.new_user_residual_strength().map(round3)
            && !fixed.iter().any(|&l| (l - eb).abs() <= 1e-3 * l)
        {
            fixed.push(eb);
        }
        sums.resize(fixed.len(), (0.0, 0.0, 0));
        for (i, &l) in fixed.iter().enumerate() {
            let mut m = model.clone();
            m.weights.config.new_user_residual = Some(l);
            for n in NEW_USER_SHOTS {
                let (shots, rest) = split_first_n(&held, n);
                if shots.is_empty() || rest.is_empty() {
                    continue;
                }
                let adapted = adapt(&m, data, &shots, &FewShotConfig::default())?;
                let r = evaluate(&adapted, data, &rest, "held-out respondents")?;
                sums[i].0 += r.log_loss as f64 * r.n as f64;
                sums[i].1 += r.accuracy as f64 * r.n as f64;
                sums[i].2 += r.n;
            }
        }
    }
    Ok(fixed
        .iter()
        .zip(&sums)
        .filter(|(_, s)| s.2 > 0)
        .map(|(&residual, s)| NewUserCandidate {
            residual,
            log_loss: (s.0 / s.2 as f64) as f32,
            accuracy: (s.1 / s.2 as f64) as f32,
        })
        .collect())
}

/// `x` to three significant digits.
fn round3(x: f32) -> f32 {
    if x <= 0.0 || !x.is_finite() {
        return x;
    }
    let p = 10f32.powi(2 - x.log10().floor() as i32);
    (x * p).round() / p
}

/// The first `n` pairs of each user who has more than `n`, and their remaining pairs.
fn split_first_n(rows: &[Comparison], n: usize) -> (Vec<Comparison>, Vec<Comparison>) {
    let mut count: HashMap<&str, usize> = HashMap::new();
    rows.iter()
        .for_each(|c| *count.entry(c.user.as_str()).or_default() += 1);
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let (shots, rest): (Vec<&Comparison>, Vec<&Comparison>) = rows
        .iter()
        .filter(|c| count[c.user.as_str()] > n)
        .partition(|c| {
            let c: &Comparison = c;
            let i = seen.entry(c.user.as_str()).or_default();
            *i += 1;
            *i <= n
        });
    (
        shots.into_iter().cloned().collect(),
        rest.into_iter().cloned().collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::row;
    use super::*;

    #[test]
    fn first_n_split_keeps_only_users_with_more() {
        let rows: Vec<_> = ["u", "v", "u", "u"].map(row).to_vec();
        let (shots, rest) = split_first_n(&rows, 1);
        assert_eq!((shots.len(), rest.len()), (1, 2));
        assert!(shots.iter().chain(&rest).all(|c| c.user == "u"));
    }

    #[test]
    fn rounding_keeps_three_digits() {
        assert_eq!(round3(319.30807), 319.0);
        assert_eq!(round3(0.012345), 0.0123);
    }

    #[test]
    fn the_best_penalty_is_the_most_accurate_then_the_best_calibrated() {
        let c = |residual, log_loss, accuracy| NewUserCandidate {
            residual,
            log_loss,
            accuracy,
        };
        let cands = [
            c(1.0, 0.50, 0.70),
            c(3.0, 0.55, 0.72),
            c(10.0, 0.52, 0.7195),
        ];
        assert_eq!(best_new_user(&cands), Some(10.0));
        assert_eq!(best_new_user(&cands[..2]), Some(3.0));
        assert_eq!(best_new_user(&[]), None);
    }
}
