//! Loaded models: weights, their dataset's embeddings and cached item features f(x), and
//! ranking through pal-infer's CPU path (`ItemFeatures` + `top_k`, the one tie-break).
//! `AppState::model` loads them under the model's lock into the LRU cache.

use std::collections::HashMap;
use std::path::Path;

use pal_core::reference::UserPref;
use pal_core::{Dataset, Variant};
use pal_format::http::Ranked;
use pal_format::model_dir::TrainedModel;
use pal_infer::cpu::ItemFeatures;

use crate::db::{ModelRow, StoredUser};
use crate::error::{ApiError, shorten};

/// The count of users learned by the training job, as the model's files record it.
pub fn recorded_trained_users(model: &TrainedModel) -> Option<usize> {
    let n = model.meta["trained_users"].as_u64()? as usize;
    Some(n.min(model.users.len()))
}

/// A model ready to score: f(x) of every dataset item is computed once at load.
pub struct LoadedModel {
    pub row: ModelRow,
    pub model: TrainedModel,
    pub dataset: Dataset,
    pub features: ItemFeatures,
    /// Users learned by the training job (the first ones); their weights are read-only.
    pub trained_users: usize,
    /// The population's mixture: the mean simplex weights of the users in the model's files
    /// (uniform when it has none), for rewards that name no user.
    pub mixture: Vec<f32>,
}

impl LoadedModel {
    /// Reads a model directory and its dataset and maps every item once (blocking file work).
    /// `trained_users` is the count the model records, if it records one.
    pub fn read(row: ModelRow, model_dir: &Path, data_dir: &Path) -> Result<Self, ApiError> {
        let model = TrainedModel::load(model_dir)?;
        let dataset = Dataset::load(data_dir)?;
        let features = ItemFeatures::new(&model.weights, dataset.items.data());
        // Unrecorded (models from before the count): `AppState::model` asks the database.
        let trained_users = recorded_trained_users(&model).unwrap_or(model.users.len());
        Ok(Self {
            row,
            mixture: model.weights.population_weights(),
            model,
            dataset,
            features,
            trained_users,
        })
    }

    /// The model files' revision (the ETag of its user weights).
    pub fn revision(&self) -> u64 {
        crate::bundle::revision(&self.model)
    }

    /// A user of the model's files as a stored user: logits, residual (residual models) and
    /// the given `revision`; `None` for users that are database rows (or unknown).
    pub fn stored_user(&self, user: &str, revision: u64) -> Option<StoredUser> {
        let i = self.model.user_index(user)?;
        let w = &self.model.weights;
        Some(StoredUser {
            logits: w.user_logits[i].clone(),
            residual: w.residual(i).map(<[f32]>::to_vec),
            revision,
        })
    }

    /// Why an A/B answer cannot be one of this model's comparisons, as `(field, problem)`:
    /// label not 0/1, unknown or equal items, a missing (PAL-B) or unknown prompt.
    pub fn pair_problem(
        &self,
        prompt: Option<&str>,
        left: &str,
        right: &str,
        label: u8,
    ) -> Option<(&'static str, String)> {
        let items = &self.dataset.items;
        if label > 1 {
            return Some(("label", "must be 0 or 1".into()));
        }
        for (f, id) in [("left", left), ("right", right)] {
            if items.position(id).is_none() {
                return Some((f, format!("unknown item `{}`", shorten(id))));
            }
        }
        if left == right {
            return Some(("right", "same item as left".into()));
        }
        let needs_prompt = self.model.weights.config.variant == Variant::B;
        match (prompt, self.dataset.prompts.as_ref()) {
            (None, _) if needs_prompt => Some((
                "prompt",
                "missing (PAL-B models compare items under a prompt)".into(),
            )),
            (Some(p), Some(s)) if s.position(p).is_none() => {
                Some(("prompt", format!("unknown prompt `{}`", shorten(p))))
            }
            _ => None,
        }
    }

    /// Rewards of new rows (row-major, the items' width) for a user under a prompt's row
    /// (empty on PAL-A): the same arithmetic as ranking the dataset's own items.
    pub fn score_rows(&self, user: UserPref<'_>, prompt: &[f32], rows: &[f32]) -> Vec<f32> {
        let weights = &self.model.weights;
        self.features_of(rows).scores(weights, user, prompt, None)
    }

    /// f(x) of new rows (row-major, the items' width), to score for several users or prompts.
    pub fn features_of(&self, rows: &[f32]) -> ItemFeatures {
        ItemFeatures::new(&self.model.weights, rows)
    }

    /// Scores `items` (default: every dataset item) for weights `w` and returns the top `k`,
    /// best first; equal scores keep the earlier item (dataset order, or the order given).
    pub fn rank(
        &self,
        user: UserPref<'_>,
        prompt: Option<&str>,
        items: Option<&[String]>,
        k: usize,
    ) -> Result<Vec<Ranked>, ApiError> {
        let weights = &self.model.weights;
        let prompt_vec: &[f32] = match (weights.config.variant, prompt) {
            (Variant::A, _) => &[],
            (Variant::B, None) => {
                return Err(ApiError::invalid(
                    "field `prompt`: PAL-B models rank for a prompt id",
                ));
            }
            (Variant::B, Some(p)) => self
                .dataset
                .prompts
                .as_ref()
                .and_then(|s| s.get(p))
                .ok_or_else(|| {
                    ApiError::invalid(format!("field `prompt`: unknown prompt `{}`", shorten(p)))
                })?,
        };
        let store = &self.dataset.items;
        let rows: Option<Vec<usize>> = match items {
            None => None,
            Some(ids) => {
                let mut seen = HashMap::with_capacity(ids.len());
                let rows = ids
                    .iter()
                    .enumerate()
                    .map(|(n, id)| {
                        let i = store.position(id).ok_or_else(|| {
                            ApiError::invalid(format!(
                                "field `items[{n}]`: unknown item `{}`",
                                shorten(id)
                            ))
                        })?;
                        if let Some(first) = seen.insert(i, n) {
                            return Err(ApiError::invalid(format!(
                                "field `items[{n}]`: the same item as `items[{first}]`"
                            )));
                        }
                        Ok(i)
                    })
                    .collect::<Result<Vec<_>, ApiError>>()?;
                Some(rows)
            }
        };
        let scores = self
            .features
            .scores(weights, user, prompt_vec, rows.as_deref());
        Ok(pal_infer::top_k(&scores, k)
            .into_iter()
            .map(|(n, score)| Ranked {
                item: store.ids()[rows.as_ref().map_or(n, |r| r[n])].clone(),
                score,
            })
            .collect())
    }
}
