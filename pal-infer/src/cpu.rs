//! The CPU path: the reference math itself, one item at a time.

use pal_math::PalWeights;

/// Scores with [`pal_math::reference`].
pub struct CpuEngine {
    pub weights: PalWeights,
}

impl CpuEngine {
    pub fn new(weights: PalWeights) -> Self {
        Self { weights }
    }

    pub fn scores(&self, w: &[f32], prompt: &[f32], items: &[f32]) -> Vec<f32> {
        let point = self.weights.user_point(w, prompt);
        items
            .chunks_exact(self.weights.config.d_item)
            .map(|x| self.weights.reward_at(&point, x))
            .collect()
    }
}
