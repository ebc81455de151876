//! One-command comparison on a dataset: PAL vs BTL vs per-user baseline (and the ground truth
//! when the dataset has one), seen accuracy and few-shot accuracy vs shots, as a table.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::baseline::{PerUserConfig, PerUserModel};
use crate::bestofn::{BestOfN, best_of_n};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::pipeline::{
    FewShotConfig, ShotPoint, evaluate, first_n_per_user, fit, min_pairs_per_user, pooled,
    shots_curve,
};
use crate::select::{SelectConfig, Selection, fit_selected, select};
use crate::train::{Control, Progress, TrainConfig, TrainReport};
use pal_format::dataset::{Dataset, Split};
use pal_format::model_dir::TrainedModel;

/// What to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentConfig {
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub fewshot: FewShotConfig,
    pub shots: Vec<usize>,
    /// Choose K, the residual strength and the epochs by cross-validation (`--k auto`) instead
    /// of training `model` with early stopping on the val split.
    #[serde(default)]
    pub selection: Option<SelectConfig>,
}

/// One method's seen-user results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodRow {
    pub method: String,
    pub params: Option<usize>,
    pub seen_accuracy: f32,
    pub seen_log_loss: f32,
    /// Expected calibration error on the seen users' test pairs.
    #[serde(default)]
    pub seen_ece: f32,
}

/// Everything the experiment measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentReport {
    pub dataset: String,
    pub rows: Vec<MethodRow>,
    pub pal_shots: Vec<ShotPoint>,
    pub per_user_shots: Vec<ShotPoint>,
    pub truth_shots: Vec<ShotPoint>,
    /// Mean total-variation distance between learned and true user weights, under the best
    /// matching of prototypes (0 = exact recovery, 1 = disjoint); synthetic data only.
    pub weight_recovery_tv: Option<f32>,
    /// Share of the prompt's own items (its declared candidates) in each seen user's top 5 over
    /// every item, PAL-B on datasets that declare candidates (`crate::relevance`).
    #[serde(default)]
    pub relevance_at_5: Option<f32>,
    pub training: TrainReport,
    /// The cross-validated model selection, when it ran.
    #[serde(default)]
    pub selection: Option<Selection>,
    /// The BTL model on the new users' held-out pairs (it needs no comparisons of theirs).
    #[serde(default)]
    pub btl_unseen: Option<ShotPoint>,
    /// New users with no comparisons, their parameters predicted from their covariates
    /// (`crate::coldstart`), when the dataset has `user_features.json`.
    #[serde(default)]
    pub cold_start: Option<ShotPoint>,
    /// Best-of-n picks by personalised rewards vs BTL's, scored by each user's group's
    /// utility, for datasets whose builder knows it (`tastes.json`; `crate::bestofn`).
    #[serde(default)]
    pub best_of_n: Vec<BestOfN>,
}

/// All permutations of `0..k` (k is small).
fn permutations(k: usize) -> Vec<Vec<usize>> {
    if k == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(k - 1) {
        for pos in 0..=p.len() {
            let mut q = p.clone();
            q.insert(pos, k - 1);
            out.push(q);
        }
    }
    out
}

/// Mean TV distance between the learned and true weights of shared users, minimised over
/// relabellings of the prototypes; `None` when K differs or is above 6.
pub fn weight_recovery(model: &TrainedModel, truth: &TrainedModel) -> Option<f32> {
    let k = model.weights.config.k;
    if k != truth.weights.config.k || k > 6 {
        return None;
    }
    let pairs: Vec<(Vec<f32>, Vec<f32>)> = model
        .users
        .iter()
        .enumerate()
        .filter_map(|(i, u)| {
            let j = truth.user_index(u)?;
            Some((model.weights.user_weights(i), truth.weights.user_weights(j)))
        })
        .collect();
    if pairs.is_empty() {
        return None;
    }
    permutations(k)
        .iter()
        .map(|perm| {
            let total: f32 = pairs
                .iter()
                .map(|(w, t)| 0.5 * (0..k).map(|c| (w[perm[c]] - t[c]).abs()).sum::<f32>())
                .sum();
            total / pairs.len() as f32
        })
        .reduce(f32::min)
}

/// Events reported while an experiment runs.
pub enum Stage<'a> {
    Begin(&'a str),
    Train(&'a Progress),
}

/// Runs PAL, BTL, the per-user baseline and (if `DIR/truth` exists) the ground truth.
pub fn run(
    data: &Dataset,
    cfg: &ExperimentConfig,
    on: &mut dyn FnMut(Stage<'_>),
) -> Result<(TrainedModel, ExperimentReport)> {
    let train = data.read(Split::Train)?;
    let val = data
        .has_split(Split::Val)
        .then(|| data.read(Split::Val))
        .transpose()?;
    let test = data.read(Split::Test)?;
    let mut rows = Vec::new();

    let truth_dir = data.dir.join("truth");
    let truth = truth_dir
        .exists()
        .then(|| TrainedModel::load(&truth_dir))
        .transpose()?;
    if let Some(t) = &truth {
        let r = evaluate(t, data, &test, "test split")?;
        rows.push(MethodRow {
            method: "ground truth".into(),
            params: None,
            seen_accuracy: r.accuracy,
            seen_log_loss: r.log_loss,
            seen_ece: r.ece,
        });
    }

    let (model, training, selection) = match &cfg.selection {
        Some(sel) => {
            // Cross-validation over train + val: every seen comparison but the test split.
            let mut all = train.clone();
            all.extend(val.iter().flatten().cloned());
            let s = select(data, &cfg.model, &cfg.train, &all, sel, &[], &mut |ev| {
                if let Some(line) = ev.line() {
                    on(Stage::Begin(&line));
                }
                Control::Continue
            })?;
            on(Stage::Begin(&format!(
                "{} (chosen)",
                s.config(&cfg.model).name()
            )));
            let (m, t) = fit_selected(data, &cfg.model, &cfg.train, &all, &s, None, &mut |p| {
                on(Stage::Train(p));
                Control::Continue
            })?;
            (m, t, Some(s))
        }
        None => {
            on(Stage::Begin(&cfg.model.name()));
            let (m, t) = fit(
                data,
                &cfg.model,
                &cfg.train,
                &train,
                val.as_deref(),
                None,
                &mut |p| {
                    on(Stage::Train(p));
                    Control::Continue
                },
            )?;
            (m, t, None)
        }
    };
    let r = evaluate(&model, data, &test, "test split")?;
    rows.push(MethodRow {
        method: model.weights.config.name(),
        params: Some(model.weights.num_params()),
        seen_accuracy: r.accuracy,
        seen_log_loss: r.log_loss,
        seen_ece: r.ece,
    });

    on(Stage::Begin("BTL baseline (K=1, users pooled)"));
    let btl_cfg = ModelConfig {
        k: 1,
        residual: None,
        ..cfg.model.clone()
    };
    let (btl, _) = fit(
        data,
        &btl_cfg,
        &cfg.train,
        &pooled(&train),
        val.as_ref().map(|v| pooled(v)).as_deref(),
        None,
        &mut |p| {
            on(Stage::Train(p));
            Control::Continue
        },
    )?;
    let r = evaluate(&btl, data, &pooled(&test), "test split")?;
    rows.push(MethodRow {
        method: "BTL (one shared reward)".into(),
        params: Some(btl.weights.num_params()),
        seen_accuracy: r.accuracy,
        seen_log_loss: r.log_loss,
        seen_ece: r.ece,
    });

    on(Stage::Begin("per-user logistic baseline"));
    let pu_cfg = PerUserConfig::default();
    let pu = PerUserModel::fit(data, &train, &pu_cfg)?;
    let m = pu.score(data, &test)?;
    rows.push(MethodRow {
        method: "per-user logistic (independent)".into(),
        params: Some(pu.weights.len() * pu.dim),
        seen_accuracy: m.accuracy,
        seen_log_loss: m.log_loss,
        seen_ece: m.ece,
    });

    let (mut pal_shots, mut per_user_shots, mut truth_shots) = (vec![], vec![], vec![]);
    let (mut btl_unseen, mut cold_start) = (None, None);
    let tastes = pal_format::taste::read(&data.dir)?;
    let mut best = vec![];
    if let Some(t) = &tastes {
        let seen = best_of_n(&model, &btl, data, t, ("seen", &|_| true))?;
        best.extend(seen.into_iter().flatten());
    }
    if data.has_split(Split::UnseenTrain) && data.has_split(Split::UnseenTest) {
        let pool = data.read(Split::UnseenTrain)?;
        let held = data.read(Split::UnseenTest)?;
        let r = evaluate(&btl, data, &pooled(&held), "unseen test split")?;
        btl_unseen = Some(ShotPoint {
            shots: 0,
            users: crate::pipeline::user_count(&held),
            accuracy: r.accuracy,
            log_loss: r.log_loss,
            ece: r.ece,
        });
        if let Some(features) = pal_format::UserFeatures::read(&data.dir)? {
            on(Stage::Begin("cold start from covariates"));
            let cs = crate::coldstart::ColdStart::fit(&model, &features)?;
            let users = pal_format::dataset::user_ids(&held);
            let cold = cs.add_users(&model, &features, &users);
            let r = evaluate(&cold, data, &held, "unseen test split")?;
            cold_start = Some(ShotPoint {
                shots: 0,
                users: users.len(),
                accuracy: r.accuracy,
                log_loss: r.log_loss,
                ece: r.ece,
            });
        }
        on(Stage::Begin("few-shot new users"));
        pal_shots = shots_curve(
            &model,
            data,
            &pool,
            &held,
            &cfg.shots,
            &cfg.fewshot,
            &mut |_| {},
        )?;
        let max = min_pairs_per_user(&pool);
        let most = cfg
            .shots
            .iter()
            .copied()
            .filter(|&n| n >= 1 && n <= max)
            .max();
        if let (Some(t), Some(n)) = (&tastes, most) {
            on(Stage::Begin(&format!(
                "best-of-n for new users fitted from {n} pairs each"
            )));
            let rows = first_n_per_user(&pool, n);
            let adapted = crate::pipeline::adapt(&model, data, &rows, &cfg.fewshot)?;
            let new: HashSet<&str> = rows.iter().map(|c| c.user.as_str()).collect();
            let who = format!("new, {n} pairs");
            let picks = best_of_n(&adapted, &btl, data, t, (&who, &|u| new.contains(u)))?;
            best.extend(picks.into_iter().flatten());
        }
        for &n in cfg.shots.iter().filter(|&&n| n >= 1 && n <= max) {
            let pu = PerUserModel::fit(data, &first_n_per_user(&pool, n), &pu_cfg)?;
            let m = pu.score(data, &held)?;
            per_user_shots.push(ShotPoint {
                shots: n,
                users: pu.weights.len(),
                accuracy: m.accuracy,
                log_loss: m.log_loss,
                ece: m.ece,
            });
        }
        if let Some(t) = &truth {
            let r = evaluate(t, data, &held, "unseen test split")?;
            truth_shots.push(ShotPoint {
                shots: 0,
                users: r.per_user.len(),
                accuracy: r.accuracy,
                log_loss: r.log_loss,
                ece: r.ece,
            });
        }
    }
    let weight_recovery_tv = truth.as_ref().and_then(|t| weight_recovery(&model, t));
    let relevance_at_5 = crate::relevance::relevance_at(&model, data, 5, 2000)?;
    let report = ExperimentReport {
        dataset: data.dir.display().to_string(),
        weight_recovery_tv,
        relevance_at_5,
        rows,
        pal_shots,
        per_user_shots,
        truth_shots,
        training,
        selection,
        btl_unseen,
        cold_start,
        best_of_n: best,
    };
    Ok((model, report))
}

impl ExperimentReport {
    /// The first row whose method name starts with `prefix` (e.g. "PAL", "BTL").
    pub fn row(&self, prefix: &str) -> Option<&MethodRow> {
        self.rows.iter().find(|r| r.method.starts_with(prefix))
    }

    /// The results as Markdown tables.
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "Dataset `{}`, seen users, held-out test pairs:\n\n",
            self.dataset
        );
        s += "| method | learned params | accuracy | log-loss | ECE |\n|---|---:|---:|---:|---:|\n";
        for r in &self.rows {
            let p = r.params.map_or("—".into(), |p| p.to_string());
            s += &format!(
                "| {} | {} | {:.1}% | {:.3} | {:.3} |\n",
                r.method,
                p,
                100.0 * r.seen_accuracy,
                r.seen_log_loss,
                r.seen_ece
            );
        }
        if let Some(sel) = &self.selection {
            s += "\n";
            s += &sel.to_markdown();
        }
        if let Some(tv) = self.weight_recovery_tv {
            s += &format!(
                "\nRecovery of user weights (best prototype matching): mean total-variation distance {tv:.3} (0 = exact).\n"
            );
        }
        if let Some(r) = self.relevance_at_5 {
            s += &format!(
                "\nRelevance: {:.1}% of each seen user's top 5 (over every item) under a prompt are that prompt's own items.\n",
                100.0 * r
            );
        }
        if !self.best_of_n.is_empty() {
            s += &crate::bestofn::to_markdown(&self.best_of_n);
        }
        if !self.pal_shots.is_empty() {
            s += "\nUnseen users, accuracy on their held-out pairs after fitting from n pairs each:\n\n";
            s += "| n | PAL | per-user logistic | BTL (needs no pairs) | PAL ECE |\n|---:|---:|---:|---:|---:|\n";
            let btl = self
                .btl_unseen
                .as_ref()
                .map_or("—".into(), |b| format!("{:.1}%", 100.0 * b.accuracy));
            for (p, b) in self.pal_shots.iter().zip(&self.per_user_shots) {
                s += &format!(
                    "| {} | {:.1}% | {:.1}% | {btl} | {:.3} |\n",
                    p.shots,
                    100.0 * p.accuracy,
                    100.0 * b.accuracy,
                    p.ece
                );
            }
            if let Some(c) = &self.cold_start {
                s += &format!(
                    "| 0 (covariates only) | {:.1}% | | {btl} | {:.3} |\n",
                    100.0 * c.accuracy,
                    c.ece
                );
            }
            if let Some(t) = self.truth_shots.first() {
                s += &format!(
                    "| truth | {:.1}% | | | {:.3} |\n",
                    100.0 * t.accuracy,
                    t.ece
                );
            }
        }
        s
    }
}
