//! Loaded models: weights, their dataset's embeddings and cached item features f(x), and
//! ranking with the reference math.

use std::sync::Arc;

use pal_core::checkpoint::TrainedModel;
use pal_core::reference::softmax;
use pal_core::{Dataset, Variant};

use crate::db::ModelRow;
use crate::error::ApiError;
use crate::state::AppState;

/// A model ready to score: f(x) of every dataset item is computed once at load.
pub struct LoadedModel {
    pub row: ModelRow,
    pub model: TrainedModel,
    pub dataset: Dataset,
    pub item_features: Vec<Vec<f32>>,
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
                    ApiError::invalid(format!("field `prompt`: unknown prompt `{p}`"))
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
            Some(ids) => ids
                .iter()
                .enumerate()
                .map(|(n, id)| {
                    let i = store.position(id).ok_or_else(|| {
                        ApiError::invalid(format!("field `items[{n}]`: unknown item `{id}`"))
                    })?;
                    Ok(Scored {
                        item: id.clone(),
                        score: weights.reward_of_features(&point, &self.item_features[i]),
                    })
                })
                .collect::<Result<_, ApiError>>()?,
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
    if let Some(m) = state.models.lock().expect("models lock").get(id) {
        return Ok(m.clone());
    }
    let row = state.db.model(id).await?;
    let model_dir = state.model_dir(id);
    let data_dir = state.dataset_dir(&row.dataset_id);
    let loaded = tokio::task::spawn_blocking(move || -> Result<LoadedModel, ApiError> {
        let model = TrainedModel::load(&model_dir)?;
        let dataset = Dataset::load(&data_dir)?;
        let f = &model.weights.item_map;
        let item_features = (0..dataset.items.len())
            .map(|i| f.forward(dataset.items.row(i)))
            .collect();
        Ok(LoadedModel {
            row,
            model,
            dataset,
            item_features,
        })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let loaded = Arc::new(loaded);
    state
        .models
        .lock()
        .expect("models lock")
        .insert(id.to_string(), loaded.clone());
    Ok(loaded)
}
