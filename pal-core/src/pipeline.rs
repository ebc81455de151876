//! High-level operations used by the CLI and server: fit on a dataset, evaluate a split,
//! fit new users few-shot, and the accuracy-vs-shots curve.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::{PalError, Result};
use crate::model::{Group, PalModel};
use crate::reference::PalWeights;
use crate::train::{
    Control, Metrics, Progress, Tables, TrainConfig, TrainReport, Trainer, predict,
};
use pal_format::comparison::Comparison;
use pal_format::dataset::{Dataset, Encoded, Split, UserIndex, index_map, user_ids};
use pal_format::model_dir::TrainedModel;

/// The CPU device used by default.
pub fn default_device() -> Device {
    Device::flex()
}

/// Checks that the dataset's embedding dims fit the model config.
pub fn check_dims(cfg: &ModelConfig, data: &Dataset) -> Result<()> {
    if data.items.dim() != cfg.d_item {
        return Err(PalError::Dim {
            what: format!("item embeddings in {}", data.dir.display()),
            expected: cfg.d_item,
            found: data.items.dim(),
        });
    }
    if cfg.variant == crate::Variant::B {
        match &data.prompts {
            None => {
                return Err(PalError::file(
                    &data.dir,
                    "PAL-B needs prompts.safetensors in the dataset",
                ));
            }
            Some(p) if p.dim() != cfg.d_prompt => {
                return Err(PalError::Dim {
                    what: format!("prompt embeddings in {}", data.dir.display()),
                    expected: cfg.d_prompt,
                    found: p.dim(),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Trains a new model on the dataset's train split (val split for early stopping if present).
pub fn fit(
    data: &Dataset,
    model_cfg: &ModelConfig,
    train_cfg: &TrainConfig,
    train_rows: &[Comparison],
    val_rows: Option<&[Comparison]>,
    checkpoint_dir: Option<&Path>,
    progress: &mut dyn FnMut(&Progress) -> Control,
) -> Result<(TrainedModel, TrainReport)> {
    model_cfg.validate()?;
    check_dims(model_cfg, data)?;
    let splits = EncodedSplits::from_rows(data, train_rows, val_rows)?;
    fit_encoded(data, model_cfg, train_cfg, splits, checkpoint_dir, progress)
}

/// A training split and optional validation split already encoded, with the model's users.
#[derive(Debug, Clone)]
pub struct EncodedSplits {
    pub users: Vec<String>,
    pub train: Encoded,
    pub val: Option<Encoded>,
}

impl EncodedSplits {
    /// Encodes rows already read; the model's users are the training rows' users.
    pub fn from_rows(
        data: &Dataset,
        train: &[Comparison],
        val: Option<&[Comparison]>,
    ) -> Result<Self> {
        let users = user_ids(train);
        let map = index_map(&users);
        Ok(Self {
            train: data.encode(train, &map, "train split")?,
            val: val
                .map(|rows| data.encode(rows, &map, "val split"))
                .transpose()?,
            users,
        })
    }

    /// Streams `train.jsonl` (and `val.jsonl` when asked and present) into indices without
    /// keeping the parsed rows: ≈ 17 bytes per comparison instead of ≈ 300.
    pub fn read(data: &Dataset, with_val: bool) -> Result<Self> {
        let mut users = UserIndex::default();
        let train = data.read_encoded(Split::Train, &mut users, true)?;
        let val = (with_val && data.has_split(Split::Val))
            .then(|| data.read_encoded(Split::Val, &mut users, false))
            .transpose()?;
        Ok(Self {
            users: users.ids,
            train,
            val,
        })
    }
}

/// [`fit`] on splits already encoded (e.g. by [`EncodedSplits::read`]).
pub fn fit_encoded(
    data: &Dataset,
    model_cfg: &ModelConfig,
    train_cfg: &TrainConfig,
    splits: EncodedSplits,
    checkpoint_dir: Option<&Path>,
    progress: &mut dyn FnMut(&Progress) -> Control,
) -> Result<(TrainedModel, TrainReport)> {
    model_cfg.validate()?;
    check_dims(model_cfg, data)?;
    let EncodedSplits { users, train, val } = splits;
    let tables = Tables::new(data, &train_cfg.device.burn()?);
    let init = PalWeights::init(model_cfg, users.len(), train_cfg.seed);
    let trainer = Trainer {
        config: train_cfg,
        tables: &tables,
        train: &train,
        val: val.as_ref(),
        checkpoint_dir,
    };
    let (weights, report) = trainer.run(init, progress)?;
    let meta = serde_json::json!({
        "train": train_cfg,
        "dataset": data.dir,
        "best_epoch": report.best_epoch,
        "history": report.history,
    });
    Ok((TrainedModel::new(weights, users, meta), report))
}

/// Accuracy of one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserScore {
    pub user: String,
    pub n: usize,
    pub accuracy: f32,
}

/// Metrics of a model on a set of comparisons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub n: usize,
    pub accuracy: f32,
    pub log_loss: f32,
    /// Expected calibration error (10 bins of P(left)).
    #[serde(default)]
    pub ece: f32,
    pub per_user: Vec<UserScore>,
}

/// Evaluates a model on comparisons; every user must be known to the model.
pub fn evaluate(
    model: &TrainedModel,
    data: &Dataset,
    rows: &[Comparison],
    context: &str,
) -> Result<EvalReport> {
    check_dims(&model.weights.config, data)?;
    if rows.is_empty() {
        return Err(PalError::Data(format!(
            "{context}: no comparisons to evaluate"
        )));
    }
    let enc = data.encode(rows, &model.user_map(), context)?;
    let device = default_device();
    let tables = Tables::new(data, &device);
    let logits = predict(
        &PalModel::from_weights(&model.weights, &device),
        &tables,
        &enc,
    );
    let Metrics {
        log_loss,
        accuracy,
        ece,
    } = Metrics::of(&logits, &enc.labels);
    let mut per: HashMap<u32, (usize, usize)> = HashMap::new();
    for ((&u, &z), &y) in enc.users.iter().zip(&logits).zip(&enc.labels) {
        let e = per.entry(u).or_default();
        e.0 += 1;
        e.1 += usize::from((z > 0.0) == (y == 1));
    }
    let mut per_user: Vec<UserScore> = per
        .into_iter()
        .map(|(u, (n, c))| UserScore {
            user: model.users[u as usize].clone(),
            n,
            accuracy: c as f32 / n as f32,
        })
        .collect();
    per_user.sort_by(|a, b| a.user.cmp(&b.user));
    Ok(EvalReport {
        n: rows.len(),
        accuracy,
        log_loss,
        ece,
        per_user,
    })
}

/// Few-shot fitting of new users: everything but the new users' logits stays frozen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FewShotConfig {
    pub epochs: usize,
    pub lr: f64,
    /// Decoupled weight decay on the logits: a pull towards uniform weights.
    pub weight_decay: f64,
    pub seed: u64,
}

impl Default for FewShotConfig {
    fn default() -> Self {
        Self {
            epochs: 150,
            lr: 0.05,
            weight_decay: 0.01,
            seed: 0,
        }
    }
}

/// Returns a model with the new users of `rows` appended (logits start at 0: uniform weights).
pub fn adapt(
    model: &TrainedModel,
    data: &Dataset,
    rows: &[Comparison],
    cfg: &FewShotConfig,
) -> Result<TrainedModel> {
    check_dims(&model.weights.config, data)?;
    if rows.is_empty() {
        return Err(PalError::Data(
            "few-shot fitting needs at least one comparison".into(),
        ));
    }
    let new_users = user_ids(rows);
    if let Some(u) = new_users.iter().find(|u| model.user_index(u).is_some()) {
        return Err(PalError::Data(format!(
            "user `{u}` is already in the model; few-shot fitting is for new users"
        )));
    }
    let enc = data.encode(rows, &index_map(&new_users), "few-shot pairs")?;
    let mut init = model.weights.clone();
    init.user_logits = vec![vec![0.0; init.config.k]; new_users.len()];
    if init.config.residual.is_some() {
        // New users' residuals start at 0, under the new-user prior when one was chosen.
        init.config.residual = init.config.new_user_residual.or(init.config.residual);
        init.user_residuals = vec![vec![0.0; init.config.d]; new_users.len()];
    }
    let mut train_cfg = TrainConfig {
        epochs: cfg.epochs,
        batch_size: enc.len(),
        patience: None,
        seed: cfg.seed,
        groups: vec![Group::Users],
        ..TrainConfig::default()
    };
    train_cfg.lr.users = cfg.lr;
    train_cfg.weight_decay.users = cfg.weight_decay;
    let tables = Tables::new(data, &default_device());
    let trainer = Trainer {
        config: &train_cfg,
        tables: &tables,
        train: &enc,
        val: None,
        checkpoint_dir: None,
    };
    let (fitted, _) = trainer.run(init, &mut |_| Control::Continue)?;
    let mut out = model.clone();
    out.weights.user_logits.extend(fitted.user_logits);
    out.weights.user_residuals.extend(fitted.user_residuals);
    out.users.extend(new_users);
    Ok(out)
}

/// The first `n` comparisons of each user, in file order.
pub fn first_n_per_user(rows: &[Comparison], n: usize) -> Vec<Comparison> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    rows.iter()
        .filter(|c| {
            let e = count.entry(c.user.as_str()).or_default();
            *e += 1;
            *e <= n
        })
        .cloned()
        .collect()
}

/// Number of distinct users in `rows`.
pub fn user_count(rows: &[Comparison]) -> usize {
    user_ids(rows).len()
}

/// Fewest comparisons any user has.
pub fn min_pairs_per_user(rows: &[Comparison]) -> usize {
    let mut count: HashMap<&str, usize> = HashMap::new();
    rows.iter()
        .for_each(|c| *count.entry(c.user.as_str()).or_default() += 1);
    count.values().copied().min().unwrap_or(0)
}

/// One point of the accuracy-vs-shots curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShotPoint {
    pub shots: usize,
    pub users: usize,
    pub accuracy: f32,
    pub log_loss: f32,
    #[serde(default)]
    pub ece: f32,
}

/// Few-shot accuracy of new users on their held-out pairs for each `n` in `shots`
/// (values above the smallest per-user pool are skipped).
pub fn shots_curve(
    model: &TrainedModel,
    data: &Dataset,
    pool: &[Comparison],
    held_out: &[Comparison],
    shots: &[usize],
    cfg: &FewShotConfig,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<ShotPoint>> {
    let max = min_pairs_per_user(pool);
    let mut out = Vec::new();
    for &n in shots.iter().filter(|&&n| n >= 1 && n <= max) {
        progress(n);
        let adapted = adapt(model, data, &first_n_per_user(pool, n), cfg)?;
        let report = evaluate(&adapted, data, held_out, Split::UnseenTest.file_name())?;
        out.push(ShotPoint {
            shots: n,
            users: user_ids(held_out).len(),
            accuracy: report.accuracy,
            log_loss: report.log_loss,
            ece: report.ece,
        });
    }
    Ok(out)
}

/// Replaces every user id by one pooled user: training on this gives the BTL baseline
/// (one shared reward model, K = 1).
pub fn pooled(rows: &[Comparison]) -> Vec<Comparison> {
    rows.iter()
        .map(|c| Comparison {
            user: POOLED_USER.into(),
            ..c.clone()
        })
        .collect()
}

/// The single user id of a pooled (BTL) model.
pub const POOLED_USER: &str = "(everyone)";
