//! Training job requests (`POST /jobs`) and their check against the server's limits, run when a
//! job is submitted and again when a stored job is requeued at start (limits may have changed).

use pal_core::config::{IdealPoint, Link, ModelConfig, NormBound, Variant};
use pal_core::kchoice::KChoice;
use pal_core::select::SelectConfig;
use pal_core::train::TrainConfig;
use serde::{Deserialize, Serialize};

use crate::config::{Limits, id_problem};
use crate::db::{ContributionCount, DatasetRow, Db};
use crate::error::ApiError;

/// The model part of a job request; embedding dims come from the dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSpec {
    pub variant: Variant,
    /// Prototypes, or `"auto"`: K ∈ {1, 2, 4} (those within the server's `max_k`), the
    /// residual strength and the epochs chosen by 3-fold cross-validation on train + val.
    pub k: KChoice,
    pub d: usize,
    pub hidden: Option<usize>,
    pub layers: usize,
    pub ideal_point: IdealPoint,
    pub link: Link,
    pub dropout: f64,
    pub norm_bound: Option<NormBound>,
    /// PAL-B content prior `b · σ(a (cos(x, c) − t))`; needs items and prompts from one encoder.
    pub content_prior: bool,
    /// Personal residuals with penalty λ (`ModelConfig::residual`); absent = none.
    pub residual: Option<f32>,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            variant: Variant::B,
            k: KChoice::Fixed(3),
            d: 16,
            hidden: None,
            layers: 3,
            ideal_point: IdealPoint::FPw,
            link: Link::Logistic,
            dropout: 0.0,
            norm_bound: None,
            content_prior: false,
            residual: None,
        }
    }
}

impl ModelSpec {
    /// The search `"k": "auto"` asks for, within the server's limits: only K ≤ `max_k`, no
    /// run longer than `max_epochs`; only `residual` when one is given.
    pub fn selection(&self, limits: &Limits) -> Option<SelectConfig> {
        (self.k == KChoice::Auto).then(|| {
            let d = SelectConfig::default();
            SelectConfig {
                ks: d
                    .ks
                    .iter()
                    .copied()
                    .filter(|&k| k <= limits.max_k)
                    .collect(),
                residuals: match self.residual {
                    Some(l) => vec![Some(l)],
                    None => d.residuals.clone(),
                },
                max_epochs: limits.max_epochs,
                ..d
            }
        })
    }

    /// The model config; with `"k": "auto"`, K = 1 until the search has chosen (`check` sizes
    /// the limits for the search's largest K).
    pub fn config(&self, d_item: usize, d_prompt: usize) -> ModelConfig {
        ModelConfig {
            variant: self.variant,
            ideal_point: self.ideal_point,
            link: self.link,
            d_item,
            d_prompt: if self.variant == Variant::B {
                d_prompt
            } else {
                0
            },
            d: self.d,
            hidden: self.hidden.unwrap_or(self.d),
            layers: self.layers,
            k: self.k.fixed().unwrap_or(1),
            dropout: self.dropout,
            norm_bound: self.norm_bound,
            content_prior: self.content_prior,
            residual: self.residual,
            new_user_residual: None,
        }
    }
}

/// A training job request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub dataset: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub model: ModelSpec,
    #[serde(default)]
    pub train: TrainConfig,
    /// Train also on the answers visitors contributed to models of this dataset before the job
    /// was created; they become seen users of the new model.
    #[serde(default)]
    pub include_contributions: bool,
}

/// Widths of an MLP with `layers` linear layers from `d_in` to `d_out` through `hidden`.
fn widths(d_in: u128, hidden: u128, d_out: u128, layers: usize) -> Vec<u128> {
    let mut w = vec![d_in];
    w.extend(std::iter::repeat_n(hidden, layers.saturating_sub(1)));
    w.push(d_out);
    w
}

fn mlp_params(w: &[u128]) -> u128 {
    w.windows(2)
        .map(|p| p[0].saturating_mul(p[1]).saturating_add(p[1]))
        .fold(0, u128::saturating_add)
}

/// Trainable parameters and estimated training memory in bytes (weights, gradients and AdamW's
/// two moments, plus forward and backward activations of one batch). Saturating: never
/// overflows, whatever the request says.
pub fn estimate(cfg: &ModelConfig, users: usize, batch: usize) -> (u128, u128) {
    let (d_item, d, hidden) = (cfg.d_item as u128, cfg.d as u128, cfg.hidden as u128);
    let k = cfg.k as u128;
    let item = widths(d_item, hidden, d, cfg.layers);
    let head_widths = widths(cfg.d_prompt as u128, hidden, d, cfg.layers);
    let head = match cfg.variant {
        Variant::B => k.saturating_mul(mlp_params(&head_widths)),
        Variant::A => k.saturating_mul(if cfg.ideal_point == IdealPoint::FPw {
            d_item
        } else {
            d
        }),
    };
    let residuals = if cfg.residual.is_some() { d } else { 0 };
    let params = mlp_params(&item)
        .saturating_add(head)
        .saturating_add((users as u128).saturating_mul(k.saturating_add(residuals)))
        .saturating_add(1);
    let per_row = item.iter().fold(0u128, |a, b| a.saturating_add(*b));
    let head_rows = match cfg.variant {
        Variant::B => k.saturating_mul(head_widths.iter().fold(0, |a, b| a.saturating_add(*b))),
        Variant::A => k.saturating_mul(per_row),
    };
    let activations = (batch as u128)
        .saturating_mul(per_row.saturating_mul(2).saturating_add(head_rows))
        .saturating_mul(2 * 4);
    (
        params,
        params.saturating_mul(16).saturating_add(activations),
    )
}

/// Checks a job against the dataset as stored and the limits, counting the contributions it
/// would include (those made up to `created_at` by visitors who still exist) as users and
/// comparisons: run when a job is submitted, when a worker starts it and when it is requeued.
pub async fn check_stored(
    db: &Db,
    spec: &JobSpec,
    ds: &DatasetRow,
    created_at: i64,
    limits: &Limits,
) -> Result<ModelConfig, ApiError> {
    let users = db
        .count_users(&ds.id, pal_format::dataset::Split::Train)
        .await?;
    let extra = if spec.include_contributions {
        db.count_dataset_contributions(&ds.id, created_at).await?
    } else {
        ContributionCount::default()
    };
    check_contributions(ds, users, extra, limits)?;
    check(spec, ds, users + extra.visitors, limits)
}

/// Refuses a job whose contributions would take the model past the user limit or the dataset
/// past the comparison limit (a 422 naming `include_contributions`).
pub fn check_contributions(
    ds: &DatasetRow,
    users: usize,
    extra: ContributionCount,
    limits: &Limits,
) -> Result<(), ApiError> {
    let (users, rows) = (
        users.saturating_add(extra.visitors),
        (ds.n_comparisons.max(0) as usize).saturating_add(extra.rows),
    );
    if users > limits.max_users {
        return Err(ApiError::invalid(format!(
            "field `include_contributions`: {} contributing visitors would give the model {users} \
             users, over the server's limit {}",
            extra.visitors, limits.max_users
        )));
    }
    if rows > limits.max_comparisons {
        return Err(ApiError::invalid(format!(
            "field `include_contributions`: {} contributed comparisons would give {rows}, over \
             the server's limit {}",
            extra.rows, limits.max_comparisons
        )));
    }
    Ok(())
}

/// Checks a job request against the dataset and the limits; returns the model config. Every
/// refusal is a 422 naming the field and the limit.
pub fn check(
    spec: &JobSpec,
    ds: &DatasetRow,
    users: usize,
    limits: &Limits,
) -> Result<ModelConfig, ApiError> {
    let over = |field: &str, value: usize, max: usize| {
        (value > max).then(|| {
            ApiError::invalid(format!(
                "field `{field}`: {value} exceeds the server's limit {max}"
            ))
        })
    };
    let m = &spec.model;
    let t = &spec.train;
    let hidden = m.hidden.unwrap_or(m.d);
    if let Some(e) = [
        over("model.d", m.d, limits.max_d),
        over("model.hidden", hidden, limits.max_hidden),
        over("model.layers", m.layers, limits.max_layers),
        over("model.k", m.k.fixed().unwrap_or(0), limits.max_k),
        over("train.epochs", t.epochs, limits.max_epochs),
        over("train.batch_size", t.batch_size, limits.max_batch_size),
        over("train.patience", t.patience.unwrap_or(0), limits.max_epochs),
    ]
    .into_iter()
    .flatten()
    .next()
    {
        return Err(e);
    }
    if let Some(name) = &spec.name
        && let Some(why) = id_problem(name, limits.max_id_len)
    {
        return Err(ApiError::invalid(format!("field `name`: {why}")));
    }
    if m.variant == Variant::B && ds.d_prompt == 0 {
        return Err(ApiError::invalid(
            "field `model.variant`: PAL-B needs a dataset with prompts",
        ));
    }
    let mut cfg = m.config(ds.d_item as usize, ds.d_prompt as usize);
    if let Some(sel) = m.selection(limits) {
        sel.validate().map_err(|e| {
            ApiError::invalid(format!(
                "field `model.k`: \"auto\" with this server's limits: {e}"
            ))
        })?;
        // Limits are checked against the largest model the search may train.
        cfg.k = sel.ks.iter().copied().max().unwrap_or(1);
        cfg.residual = cfg
            .residual
            .or(sel.residuals.iter().flatten().copied().reduce(f32::min));
    }
    cfg.validate()
        .map_err(|e| ApiError::invalid(format!("field `model`: {e}")))?;
    t.validate()
        .and_then(|()| t.engine.is_fused(t.device, &cfg).map(drop))
        .map_err(|e| ApiError::invalid(format!("field `train`: {e}")))?;
    // `u64::MAX` means "no limit" (the estimate itself may exceed any u64).
    let over_u64 = |v: u128, max: u64| max != u64::MAX && v > u128::from(max);
    let (params, memory) = estimate(&cfg, users, t.batch_size);
    if over_u64(params, limits.max_params) {
        return Err(ApiError::invalid(format!(
            "field `model`: {params} parameters exceed the server's limit {}",
            limits.max_params
        )));
    }
    if over_u64(memory, limits.max_train_memory) {
        return Err(ApiError::invalid(format!(
            "field `model`: training needs about {:.1} GiB (parameters, optimizer state and a batch of \
             `train.batch_size`), over the server's limit of {:.1} GiB",
            memory as f64 / f64::from(1u32 << 30),
            limits.max_train_memory as f64 / f64::from(1u32 << 30)
        )));
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds() -> DatasetRow {
        DatasetRow {
            id: "d".into(),
            name: "d".into(),
            created_at: 0,
            d_item: 384,
            d_prompt: 384,
            n_items: 10,
            n_prompts: 2,
            n_comparisons: 10,
        }
    }

    fn spec(v: serde_json::Value) -> JobSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn hostile_sizes_are_refused_before_anything_is_allocated() {
        let l = Limits::default();
        let cases = [
            (
                serde_json::json!({"dataset": "d", "model": {"d": 1_000_000}}),
                "model.d",
            ),
            (
                serde_json::json!({"dataset": "d", "model": {"hidden": u64::MAX}}),
                "model.hidden",
            ),
            (
                serde_json::json!({"dataset": "d", "train": {"epochs": 1_000_000_000}}),
                "train.epochs",
            ),
            (
                serde_json::json!({"dataset": "d", "train": {"batch_size": u64::MAX}}),
                "train.batch_size",
            ),
            (
                serde_json::json!({"dataset": "d", "model": {"d": 4096, "hidden": 8192, "layers": 8, "k": 64}}),
                "parameters",
            ),
        ];
        for (v, want) in cases {
            let e = check(&spec(v), &ds(), 10, &l).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY);
            assert!(e.detail.contains(want), "{}", e.detail);
        }
        let ok =
            spec(serde_json::json!({"dataset": "d", "model": {"k": 4, "d": 512, "layers": 3}}));
        check(&ok, &ds(), 1000, &l).unwrap();
    }

    #[test]
    fn the_estimate_matches_the_reference_parameter_count() {
        let mut cfg = ModelConfig::pal_b(12, 7, 5, 3);
        for residual in [None, Some(1.0)] {
            cfg.residual = residual;
            let w = pal_core::reference::PalWeights::init(&cfg, 4, 0);
            assert_eq!(estimate(&cfg, 4, 1).0, w.num_params() as u128);
        }
    }

    #[test]
    fn auto_k_searches_within_the_limits() {
        let mut l = Limits {
            max_k: 2,
            max_epochs: 500,
            ..Limits::default()
        };
        let s = spec(serde_json::json!({"dataset": "d", "model": {"k": "auto", "residual": 3.0}}));
        let sel = s.model.selection(&l).unwrap();
        assert_eq!(sel.ks, vec![1, 2]);
        assert_eq!(sel.residuals, vec![Some(3.0)]);
        assert_eq!(sel.epochs_for(1, 1, 1), 500);
        // Limits are checked against the largest model the search may train.
        assert_eq!(check(&s, &ds(), 10, &l).unwrap().k, 2);
        l.max_k = 0;
        let e = check(&s, &ds(), 10, &l).unwrap_err();
        assert!(e.detail.contains("model.k"), "{}", e.detail);
        let fixed = spec(serde_json::json!({"dataset": "d", "model": {"k": 2}}));
        assert!(fixed.model.selection(&l).is_none());
    }
}
