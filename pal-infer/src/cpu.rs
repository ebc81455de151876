//! The CPU path: the reference math itself, one item at a time, and cached item features f(x)
//! for galleries ranked again and again (the server, and re-ranking as a visitor answers).

use pal_math::PalWeights;

/// Scores with [`pal_math::reference`].
pub struct CpuScorer {
    pub weights: PalWeights,
}

impl CpuScorer {
    pub fn new(weights: PalWeights) -> Self {
        Self { weights }
    }

    /// Rewards of row-major `items` for simplex weights `w` and a prompt (ignored by PAL-A).
    pub fn scores(&self, w: &[f32], prompt: &[f32], items: &[f32]) -> Vec<f32> {
        let point = self.weights.user_point(w, prompt);
        items
            .chunks_exact(self.weights.config.d_item)
            .map(|x| self.weights.reward_at(&point, x))
            .collect()
    }
}

/// f(x) of every item of a gallery, computed once; ranking then only builds the user's point.
#[derive(Debug, Clone)]
pub struct ItemFeatures {
    features: Vec<f32>,
    dim: usize,
}

impl ItemFeatures {
    /// Maps every row of row-major `items` (`[n, d_item]`) through the weights' item map.
    pub fn new(weights: &PalWeights, items: &[f32]) -> Self {
        let dim = weights.config.d;
        let mut features = Vec::with_capacity(items.len() / weights.config.d_item.max(1) * dim);
        for x in items.chunks_exact(weights.config.d_item) {
            features.extend(weights.item_map.forward(x));
        }
        Self { features, dim }
    }

    pub fn len(&self) -> usize {
        self.features.len() / self.dim.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// Rewards of the items at `rows` (every item when `None`), in that order, for simplex
    /// weights `w` and a prompt; `weights` must be the ones the features were made with.
    pub fn scores(
        &self,
        weights: &PalWeights,
        w: &[f32],
        prompt: &[f32],
        rows: Option<&[usize]>,
    ) -> Vec<f32> {
        let point = weights.user_point(w, prompt);
        let row = |i: usize| &self.features[i * self.dim..(i + 1) * self.dim];
        match rows {
            None => (0..self.len())
                .map(|i| weights.reward_of_features(&point, row(i)))
                .collect(),
            Some(rows) => rows
                .iter()
                .map(|&i| weights.reward_of_features(&point, row(i)))
                .collect(),
        }
    }
}
