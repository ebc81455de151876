//! The CPU path: the reference math itself, one item at a time, and cached item features f(x)
//! for galleries ranked again and again (the server, and re-ranking as a visitor answers): once
//! f(x) and 1/‖f(x)‖ are cached, a ranking costs the user's point and one pass of d
//! multiply-adds per item, in eight independent partial sums that compile to SIMD (wasm
//! `simd128`, SSE/AVX). Held to the reference within 1e-5 (`tests/parity.rs`).

use pal_math::reference::{COS_EPS, DIST_EPS};
use pal_math::{PalWeights, Variant};

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

/// `Σ term(a_i, b_i)` in eight partial sums, combined in a fixed order (the same bits on every
/// machine); independent lanes let the compiler use SIMD.
#[inline(always)]
fn sum8(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += term(x[l], y[l]);
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += term(*x, *y);
    }
    s
}

/// `Σ a_i b_i`.
pub fn dot8(a: &[f32], b: &[f32]) -> f32 {
    sum8(a, b, |x, y| x * y)
}

/// `‖a − b‖²`.
pub fn sq_dist8(a: &[f32], b: &[f32]) -> f32 {
    sum8(a, b, |x, y| (x - y) * (x - y))
}

/// f(x) of every item of a gallery, computed once (here, or on the GPU); ranking then only
/// builds the user's point.
#[derive(Debug, Clone)]
pub struct ItemFeatures {
    features: Vec<f32>,
    dim: usize,
    /// `1 / max(‖f(x)‖, COS_EPS)` per item (PAL-B's cosine).
    inv_norms: Vec<f32>,
}

impl ItemFeatures {
    /// Maps every row of row-major `items` (`[n, d_item]`) through the weights' item map.
    pub fn new(weights: &PalWeights, items: &[f32]) -> Self {
        let dim = weights.config.d;
        let mut features = Vec::with_capacity(items.len() / weights.config.d_item.max(1) * dim);
        for x in items.chunks_exact(weights.config.d_item) {
            features.extend(weights.item_map.forward(x));
        }
        Self::from_features(features, dim)
    }

    /// Features computed elsewhere (e.g. [`crate::gpu::GpuScorer::features`]), row-major `[n, dim]`.
    pub fn from_features(features: Vec<f32>, dim: usize) -> Self {
        let inv_norms = features
            .chunks_exact(dim.max(1))
            .map(|f| 1.0 / dot8(f, f).sqrt().max(COS_EPS))
            .collect();
        Self {
            features,
            dim,
            inv_norms,
        }
    }

    pub fn len(&self) -> usize {
        self.features.len() / self.dim.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// The cached f(x) rows, row-major `[n, d]`.
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    fn score(&self, weights: &PalWeights, point: &[f32], inv_u: f32, i: usize) -> f32 {
        let fx = &self.features[i * self.dim..(i + 1) * self.dim];
        match weights.config.variant {
            Variant::A => -(sq_dist8(fx, point) + DIST_EPS).sqrt(),
            Variant::B => weights.scale() * (dot8(fx, point) * self.inv_norms[i] * inv_u),
        }
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
        let inv_u = 1.0 / dot8(&point, &point).sqrt().max(COS_EPS);
        match rows {
            None => (0..self.len())
                .map(|i| self.score(weights, &point, inv_u, i))
                .collect(),
            Some(rows) => rows
                .iter()
                .map(|&i| self.score(weights, &point, inv_u, i))
                .collect(),
        }
    }
}
