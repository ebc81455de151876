//! The CPU path: the reference math itself, one item at a time, and cached item features f(x)
//! for galleries ranked again and again (the server, and re-ranking as a visitor answers): once
//! f(x) and 1/‖f(x)‖ are cached, a ranking costs the user's point and one pass of d
//! multiply-adds per item, in eight independent partial sums that compile to SIMD (wasm
//! `simd128`, SSE/AVX). With the content prior, the unit item rows are kept too and each ranking
//! adds one D-long dot per item for `cos(x, c)`. Held to the reference within 1e-5
//! (`tests/parity.rs`).

use pal_math::reference::{COS_EPS, DIST_EPS};
use pal_math::{PalWeights, UserPref, Variant};

/// Scores with [`pal_math::reference`].
pub struct CpuScorer {
    pub weights: PalWeights,
}

impl CpuScorer {
    pub fn new(weights: PalWeights) -> Self {
        Self { weights }
    }

    /// Rewards of row-major `items` for a user (simplex weights, and a residual on residual
    /// models) and a prompt (ignored by PAL-A).
    pub fn scores<'a>(
        &self,
        user: impl Into<UserPref<'a>>,
        prompt: &[f32],
        items: &[f32],
    ) -> Vec<f32> {
        let point = self.weights.pref_point(user.into(), prompt);
        items
            .chunks_exact(self.weights.config.d_item)
            .map(|x| self.weights.reward_at(&point, x) + self.weights.prior_term(prompt, x))
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
    /// With the content prior: `x / max(‖x‖, COS_EPS)` per item, row-major `[n, d_item]`.
    unit_items: Vec<f32>,
}

/// `1 / max(‖v‖, COS_EPS)`, the reference cosine's norm floor.
fn inv_norm(v: &[f32]) -> f32 {
    1.0 / dot8(v, v).sqrt().max(COS_EPS)
}

/// `v / max(‖v‖, COS_EPS)`.
fn unit(v: &[f32]) -> impl Iterator<Item = f32> + '_ {
    let inv = inv_norm(v);
    v.iter().map(move |x| x * inv)
}

impl ItemFeatures {
    /// Maps every row of row-major `items` (`[n, d_item]`) through the weights' item map: in
    /// the browser one row at a time (the reference), natively as batched f32 products on the
    /// process's CPU kernels ([`ItemFeatures::with_products`]).
    pub fn new(weights: &PalWeights, items: &[f32]) -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let path = pal_cpu::chosen().unwrap_or_else(|_| pal_cpu::Path::best());
            let products = pal_cpu::Products::on(path, pal_cpu::Precision::F32).unwrap_or_default();
            Self::with_products(weights, items, products)
        }
        #[cfg(target_arch = "wasm32")]
        {
            let dim = weights.config.d;
            let mut features = Vec::with_capacity(items.len() / weights.config.d_item.max(1) * dim);
            for x in items.chunks_exact(weights.config.d_item) {
                features.extend(weights.item_map.forward(x));
            }
            Self::from_features(weights, features, items)
        }
    }

    /// f(x) of every row as one product per layer on `products` (f32, or bf16 inputs with f32
    /// sums) and `pal_cpu`'s vectorised GELU (within 2e-6 of the reference's). Held to the
    /// reference by `tests/parity.rs`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_products(weights: &PalWeights, items: &[f32], products: pal_cpu::Products) -> Self {
        let n = items.len() / weights.config.d_item.max(1);
        let layers = &weights.item_map.layers;
        let mut h = items[..n * weights.config.d_item].to_vec();
        for (i, l) in layers.iter().enumerate() {
            let mut out: Vec<f32> = l.bias.iter().copied().cycle().take(n * l.d_out).collect();
            let (x, w) = (
                pal_cpu::View::rows(&h, l.d_in),
                pal_cpu::View::rows(&l.weight, l.d_out),
            );
            products.product(n, l.d_out, l.d_in, x, w, &mut out, true);
            if i + 1 < layers.len() {
                pal_cpu::gelu_in_place(products.path(), &mut out);
            }
            h = out;
        }
        Self::from_features(weights, h, items)
    }

    /// Features of `items` computed elsewhere (e.g. [`crate::gpu::GpuScorer::features`]),
    /// row-major `[n, d]`; `items` are the embeddings they were computed from.
    pub fn from_features(weights: &PalWeights, features: Vec<f32>, items: &[f32]) -> Self {
        let dim = weights.config.d;
        let inv_norms = features.chunks_exact(dim.max(1)).map(inv_norm).collect();
        let unit_items = if weights.config.content_prior {
            items
                .chunks_exact(weights.config.d_item)
                .flat_map(unit)
                .collect()
        } else {
            vec![]
        };
        Self {
            features,
            dim,
            inv_norms,
            unit_items,
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

    fn score(&self, weights: &PalWeights, at: &Point, i: usize) -> f32 {
        let fx = &self.features[i * self.dim..(i + 1) * self.dim];
        match weights.config.variant {
            Variant::A => -(sq_dist8(fx, &at.point) + DIST_EPS).sqrt(),
            Variant::B => {
                let personal = match at.inv_u {
                    Some(inv_u) => {
                        weights.scale() * (dot8(fx, &at.point) * self.inv_norms[i] * inv_u)
                    }
                    None => dot8(fx, &at.point) * self.inv_norms[i],
                };
                if at.unit_prompt.is_empty() {
                    personal
                } else {
                    let d = at.unit_prompt.len();
                    let x = &self.unit_items[i * d..(i + 1) * d];
                    personal + weights.prior.at(dot8(x, &at.unit_prompt))
                }
            }
        }
    }

    /// Rewards of the items at `rows` (every item when `None`), in that order, for a user
    /// (simplex weights, plus a residual on residual models) and a prompt; `weights` must be the
    /// ones the features were made with.
    pub fn scores<'a>(
        &self,
        weights: &PalWeights,
        user: impl Into<UserPref<'a>>,
        prompt: &[f32],
        rows: Option<&[usize]>,
    ) -> Vec<f32> {
        let point = weights.pref_point(user.into(), prompt);
        // PAL-B `s·cos(f(x), u)`; a residual model's point carries s: `⟨f(x), u⟩ / ‖f(x)‖`.
        let inv_u = weights.config.residual.is_none().then(|| inv_norm(&point));
        let at = Point {
            inv_u,
            point,
            unit_prompt: if weights.config.content_prior {
                unit(prompt).collect()
            } else {
                vec![]
            },
        };
        match rows {
            None => (0..self.len())
                .map(|i| self.score(weights, &at, i))
                .collect(),
            Some(rows) => rows.iter().map(|&i| self.score(weights, &at, i)).collect(),
        }
    }
}

/// What one ranking needs besides the cached rows: the user's point, `1/‖point‖` (none on
/// residual models, whose point carries s), and with the content prior the unit prompt.
struct Point {
    point: Vec<f32>,
    inv_u: Option<f32>,
    unit_prompt: Vec<f32>,
}
