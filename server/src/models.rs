//! Loaded models: weights, their dataset's embeddings and cached item features f(x), and
//! ranking with the reference math. Files are read under the model's lock, so a load never sees
//! a write half-done and never caches a copy older than the last write.

use std::sync::Arc;

use pal_core::checkpoint::TrainedModel;
use pal_core::dataset::Split;
use pal_core::reference::softmax;
use pal_core::{Dataset, Variant};

use crate::db::ModelRow;
use crate::error::ApiError;
use crate::state::{AppState, lock};

/// A model ready to score: f(x) of every dataset item is computed once at load.
pub struct LoadedModel {
    pub row: ModelRow,
    pub model: TrainedModel,
    pub dataset: Dataset,
    pub item_features: Vec<Vec<f32>>,
    /// Users learned by the training job (the first ones); their weights are read-only.
    pub trained_users: usize,
}

impl LoadedModel {
    /// The model files' revision (the ETag of its user weights).
    pub fn revision(&self) -> u64 {
        crate::bundle::revision(&self.model)
    }
}

/// One ranked item.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scored {
    pub item: String,
    pub score: f32,
}

impl LoadedModel {
    /// The simplex weights of a user of this model.
    pub fn user_weights(&self, user: &str) -> Result<Vec<f32>, ApiError> {
        let i = self
            .model
            .user_index(user)
            .ok_or_else(|| ApiError::not_found("user", user))?;
        Ok(softmax(&self.model.weights.user_logits[i]))
    }

    /// Scores `items` (default: every dataset item) for weights `w` and returns the top `k`.
    pub fn rank(
        &self,
        w: &[f32],
        prompt: Option<&str>,
        items: Option<&[String]>,
        k: usize,
    ) -> Result<Vec<Scored>, ApiError> {
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
                    ApiError::invalid(format!(
                        "field `prompt`: unknown prompt `{}`",
                        crate::error::shorten(p)
                    ))
                })?,
        };
        let point = weights.user_point(w, prompt_vec);
        let store = &self.dataset.items;
        let mut scored: Vec<Scored> = match items {
            None => (0..store.len())
                .map(|i| Scored {
                    item: store.ids()[i].clone(),
                    score: weights.reward_of_features(&point, &self.item_features[i]),
                })
                .collect(),
            Some(ids) => {
                let mut seen = std::collections::HashMap::with_capacity(ids.len());
                ids.iter()
                    .enumerate()
                    .map(|(n, id)| {
                        let i = store.position(id).ok_or_else(|| {
                            ApiError::invalid(format!(
                                "field `items[{n}]`: unknown item `{}`",
                                crate::error::shorten(id)
                            ))
                        })?;
                        if let Some(first) = seen.insert(i, n) {
                            return Err(ApiError::invalid(format!(
                                "field `items[{n}]`: the same item as `items[{first}]`"
                            )));
                        }
                        Ok(Scored {
                            item: id.clone(),
                            score: weights.reward_of_features(&point, &self.item_features[i]),
                        })
                    })
                    .collect::<Result<_, ApiError>>()?
            }
        };
        scored.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.item.cmp(&b.item))
        });
        scored.truncate(k);
        Ok(scored)
    }
}

/// Loads a model (and its dataset) or returns the cached one.
pub async fn load(state: &AppState, id: &str) -> Result<Arc<LoadedModel>, ApiError> {
    if let Some(m) = lock(&state.models).get(id) {
        return Ok(m);
    }
    let row = state.db.model(id).await?;
    let model_lock = state.model_lock(id);
    let _guard = model_lock.lock().await;
    if let Some(m) = lock(&state.models).get(id) {
        return Ok(m);
    }
    let model_dir = state.model_dir(id);
    let data_dir = state.dataset_dir(&row.dataset_id);
    let (model, dataset, item_features) =
        crate::api::blocking(state, "loading the model", move || {
            let model = TrainedModel::load(&model_dir)?;
            let dataset = Dataset::load(&data_dir)?;
            let f = &model.weights.item_map;
            let item_features = (0..dataset.items.len())
                .map(|i| f.forward(dataset.items.row(i)))
                .collect();
            Ok((model, dataset, item_features))
        })
        .await?;
    let trained_users = match model.meta["trained_users"].as_u64() {
        Some(n) => n as usize,
        // Models published before the count was recorded: the users of the training split.
        None => state.db.count_users(&row.dataset_id, Split::Train).await?,
    }
    .min(model.users.len());
    let loaded = LoadedModel {
        row,
        model,
        dataset,
        item_features,
        trained_users,
    };
    let loaded = Arc::new(loaded);
    lock(&state.models).insert(id, loaded.clone());
    Ok(loaded)
}
