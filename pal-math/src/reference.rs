//! The executable spec: PAL-A and PAL-B forward math in plain Rust, one comparison at a time.
//!
//! Burn training and the WGSL shaders are held to these functions by parity tests. Weights are
//! row-major `[d_in, d_out]` (so `y = x W + b`), matching burn's `Linear` row layout.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal, Uniform};
use serde::{Deserialize, Serialize};

use crate::config::{IdealPoint, Link, ModelConfig, Variant};

/// Logit-scale cap from the paper: `s = min(exp(s_raw), 100)`.
pub const MAX_SCALE: f32 = 100.0;
/// Norm floor in cosine similarity, `a·b / (max(‖a‖,ε) max(‖b‖,ε))`.
pub const COS_EPS: f32 = 1e-8;
/// Added under the square root of PAL-A distances so gradients stay finite at zero.
pub const DIST_EPS: f32 = 1e-12;

/// Error function, rational approximation with |error| < 1.2e-7 (Numerical Recipes `erfcc`).
pub fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if x >= 0.0 { 1.0 - erfc } else { erfc - 1.0 }
}

/// Exact (erf) GELU: `x Φ(x)`.
pub fn gelu(x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))) as f32
}

/// Logistic sigmoid, stable for large |x|.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + exp(x))`, stable.
pub fn softplus(x: f32) -> f32 {
    if x > 20.0 { x } else { x.exp().ln_1p() }
}

/// Softmax of a slice (temperature 1).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|&v| (v - m).exp()).collect();
    let z: f32 = e.iter().sum();
    e.into_iter().map(|v| v / z).collect()
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

/// Cosine similarity with the norm floor [`COS_EPS`].
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    dot(a, b) / (norm(a).max(COS_EPS) * norm(b).max(COS_EPS))
}

/// `sqrt(‖a − b‖² + DIST_EPS)`.
pub fn distance(a: &[f32], b: &[f32]) -> f32 {
    let sq: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    (sq + DIST_EPS).sqrt()
}

/// One dense layer, `y = x W + b` with `W` row-major `[d_in, d_out]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    pub d_in: usize,
    pub d_out: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Linear {
    /// Kaiming-uniform-like init: U(−1/√d_in, 1/√d_in) for weights and bias.
    pub fn init(d_in: usize, d_out: usize, rng: &mut impl Rng) -> Self {
        let a = 1.0 / (d_in as f32).sqrt();
        let u = Uniform::new_inclusive(-a, a).expect("finite bound");
        Self {
            d_in,
            d_out,
            weight: (0..d_in * d_out).map(|_| u.sample(rng)).collect(),
            bias: (0..d_out).map(|_| u.sample(rng)).collect(),
        }
    }

    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        debug_assert_eq!(x.len(), self.d_in);
        let mut y = self.bias.clone();
        for (i, &xi) in x.iter().enumerate() {
            let row = &self.weight[i * self.d_out..(i + 1) * self.d_out];
            for (yj, wij) in y.iter_mut().zip(row) {
                *yj += xi * wij;
            }
        }
        y
    }
}

/// An MLP: linear layers with GELU between them (none after the last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mlp {
    pub layers: Vec<Linear>,
}

impl Mlp {
    pub fn init(widths: &[usize], rng: &mut impl Rng) -> Self {
        Self {
            layers: widths
                .windows(2)
                .map(|w| Linear::init(w[0], w[1], rng))
                .collect(),
        }
    }

    pub fn d_in(&self) -> usize {
        self.layers[0].d_in
    }

    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let last = self.layers.len() - 1;
        let mut h = x.to_vec();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h);
            if i < last {
                h.iter_mut().for_each(|v| *v = gelu(*v));
            }
        }
        h
    }
}

/// PAL-A prototypes or PAL-B prompt maps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Head {
    /// K prototype vectors (each `prototype_dim` long).
    Prototypes(Vec<Vec<f32>>),
    /// K prompt maps g_k.
    PromptMaps(Vec<Mlp>),
}

/// Whom a reward is for: simplex weights and, on models with residuals, a personal residual
/// `δ` (`None` = 0, the mixture alone). Plain weight slices convert into it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UserPref<'a> {
    pub weights: &'a [f32],
    pub residual: Option<&'a [f32]>,
}

impl<'a> From<&'a [f32]> for UserPref<'a> {
    fn from(weights: &'a [f32]) -> Self {
        Self {
            weights,
            residual: None,
        }
    }
}

impl<'a> From<&'a Vec<f32>> for UserPref<'a> {
    fn from(weights: &'a Vec<f32>) -> Self {
        weights.as_slice().into()
    }
}

impl<'a, const N: usize> From<&'a [f32; N]> for UserPref<'a> {
    fn from(weights: &'a [f32; N]) -> Self {
        weights.as_slice().into()
    }
}

/// All weights of a PAL model, plus its config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PalWeights {
    pub config: ModelConfig,
    pub item_map: Mlp,
    pub head: Head,
    /// Per-user unconstrained logits θ_i (each K long).
    pub user_logits: Vec<Vec<f32>>,
    /// Raw logit scale; `s = min(exp(log_scale), 100)`.
    pub log_scale: f32,
    /// The content prior (used only when `config.content_prior`).
    #[serde(default)]
    pub prior: ContentPrior,
    /// Per-user residuals `δ_i` (each `d` long; empty unless `config.residual`).
    #[serde(default)]
    pub user_residuals: Vec<Vec<f32>>,
}

/// Cap of the content prior's sharpness, `a = min(exp(log_sharpness), 100)`.
pub const MAX_SHARPNESS: f32 = 100.0;

/// The content prior `b · σ(a · (cos(x, c) − t))` on the frozen item and prompt embeddings, the
/// same for every user: a learned, saturating "does this item belong to this prompt" gate. It
/// saturates on both sides, so items of the prompt differ little in it (their order is left to
/// the personal term) while unrelated items are pushed down by about `b`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ContentPrior {
    /// `b`: how much belonging to the prompt is worth.
    pub weight: f32,
    /// `ln a`: how sharply the gate switches around the threshold.
    pub log_sharpness: f32,
    /// `t`: the cosine at which the gate is half open.
    pub threshold: f32,
}

impl ContentPrior {
    /// The prior's values as stored (`content_prior` tensor order).
    pub fn to_array(self) -> [f32; 3] {
        [self.weight, self.log_sharpness, self.threshold]
    }

    /// Reads the first three values of `v` in [`ContentPrior::to_array`]'s order.
    pub fn from_slice(v: &[f32]) -> Self {
        Self {
            weight: v[0],
            log_sharpness: v[1],
            threshold: v[2],
        }
    }

    /// A starting point: as strong as the personal term's initial scale, half open at cos 0.3,
    /// switching over about ±0.2.
    pub fn initial() -> Self {
        Self {
            weight: 1.0 / 0.07,
            log_sharpness: 10f32.ln(),
            threshold: 0.3,
        }
    }

    /// The sharpness `a = min(exp(log_sharpness), 100)`.
    pub fn sharpness(&self) -> f32 {
        self.log_sharpness.exp().min(MAX_SHARPNESS)
    }

    /// `b · σ(a · (cos − t))` for an item–prompt cosine.
    pub fn at(&self, cos: f32) -> f32 {
        self.weight * sigmoid(self.sharpness() * (cos - self.threshold))
    }
}

impl PalWeights {
    /// Seeded initialisation: MLPs uniform, θ ~ N(0, 1), prototypes ~ N(0, 1/dim), s = 1/0.07.
    pub fn init(config: &ModelConfig, n_users: usize, seed: u64) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let item_map = Mlp::init(&config.widths(config.d_item), &mut rng);
        let dim = config.prototype_dim();
        let head = match config.variant {
            Variant::A => {
                let n = Normal::new(0.0, 1.0 / (dim as f32).sqrt()).expect("finite std");
                Head::Prototypes(
                    (0..config.k)
                        .map(|_| (0..dim).map(|_| n.sample(&mut rng)).collect())
                        .collect(),
                )
            }
            Variant::B => Head::PromptMaps(
                (0..config.k)
                    .map(|_| Mlp::init(&config.widths(dim), &mut rng))
                    .collect(),
            ),
        };
        let normal = Normal::new(0.0f32, 1.0).expect("finite std");
        let user_logits = (0..n_users)
            .map(|_| (0..config.k).map(|_| normal.sample(&mut rng)).collect())
            .collect();
        Self {
            config: config.clone(),
            item_map,
            head,
            user_logits,
            log_scale: (1.0f32 / 0.07).ln(),
            prior: if config.content_prior {
                ContentPrior::initial()
            } else {
                ContentPrior::default()
            },
            user_residuals: if config.residual.is_some() {
                vec![vec![0.0; config.d]; n_users]
            } else {
                vec![]
            },
        }
    }

    /// A known user's residual `δ_i`, when the model has residuals.
    pub fn residual(&self, user: usize) -> Option<&[f32]> {
        self.user_residuals.get(user).map(Vec::as_slice)
    }

    /// The penalty strength for fitting a *new* user's residual: the Gaussian prior
    /// `δ ~ N(0, σ² I)` fitted to the known users' residuals (`σ² = Σ‖δ_i‖² / (users · d)`,
    /// penalty `1 / (2σ²)`), never weaker than the training `λ`. The training `λ` suits users with
    /// as many comparisons as the seen ones; a new user with a handful needs the prior the seen
    /// users' spread implies, or a few answers swing the residual far off. `None` without residuals.
    pub fn new_user_residual_strength(&self) -> Option<f32> {
        let lambda = self.config.residual?;
        let n = (self.user_residuals.len() * self.config.d) as f64;
        let sq: f64 = self
            .user_residuals
            .iter()
            .flatten()
            .map(|&v| (v as f64) * (v as f64))
            .sum();
        if n == 0.0 || sq <= 0.0 {
            return Some(lambda);
        }
        let fitted = (n / (2.0 * sq)) as f32;
        Some(if fitted.is_finite() {
            fitted.max(lambda)
        } else {
            lambda
        })
    }

    /// The residual penalty `λ Σ_i ‖δ_i‖² / n`: added to a mean loss over `n` comparisons it
    /// makes the objective the summed loss plus `λ Σ ‖δ_i‖²`, whatever the batch size.
    pub fn residual_penalty(&self, n_comparisons: usize) -> f32 {
        let Some(lambda) = self.config.residual else {
            return 0.0;
        };
        let sq: f32 = self.user_residuals.iter().flatten().map(|v| v * v).sum();
        lambda * sq / n_comparisons.max(1) as f32
    }

    /// The logit scale `s = min(exp(s_raw), 100)`.
    pub fn scale(&self) -> f32 {
        self.log_scale.exp().min(MAX_SCALE)
    }

    /// Simplex weights `softmax(θ_i)` of a known user.
    pub fn user_weights(&self, user: usize) -> Vec<f32> {
        softmax(&self.user_logits[user])
    }

    /// The population's mixture: the mean of the known users' simplex weights (uniform over K
    /// without users); the taste a reward for nobody in particular is scored with.
    pub fn population_weights(&self) -> Vec<f32> {
        let k = self.config.k;
        if self.user_logits.is_empty() {
            return vec![1.0 / k as f32; k];
        }
        let mut sum = vec![0f64; k];
        for l in &self.user_logits {
            for (s, w) in sum.iter_mut().zip(softmax(l)) {
                *s += f64::from(w);
            }
        }
        let n = self.user_logits.len() as f64;
        sum.iter().map(|s| (s / n) as f32).collect()
    }

    /// The user's point in preference space: PAL-A ideal point `a` or PAL-B `u(c) = Σ w_k g_k(c)`
    /// (with residuals, PAL-B's mixture is normalised and scaled: see
    /// [`PalWeights::user_point_with`]).
    pub fn user_point(&self, weights: &[f32], prompt: &[f32]) -> Vec<f32> {
        self.user_point_with(weights, None, prompt)
    }

    /// A known user's point: their simplex weights and their residual.
    pub fn known_user_point(&self, user: usize, prompt: &[f32]) -> Vec<f32> {
        self.user_point_with(&self.user_weights(user), self.residual(user), prompt)
    }

    /// The point of a [`UserPref`].
    pub fn pref_point(&self, pref: UserPref<'_>, prompt: &[f32]) -> Vec<f32> {
        self.user_point_with(pref.weights, pref.residual, prompt)
    }

    /// The point for simplex weights plus a residual: PAL-A `a + δ`; PAL-B `s·m/‖m‖ + δ` with
    /// `m = Σ w_k g_k(c)` and the norm floored at [`COS_EPS`] when the model has residuals.
    /// PAL-B's residual reward is then `⟨f(x)/‖f(x)‖, s·m̂ + δ⟩ = s·cos(f(x), m) + ⟨f̂(x), δ⟩`:
    /// at `δ = 0` the plain PAL-B reward, and `δ` moves an item's reward linearly, in logits,
    /// so its penalty `λ‖δ‖²` does not weaken as the learned scale `s` grows.
    pub fn user_point_with(
        &self,
        weights: &[f32],
        residual: Option<&[f32]>,
        prompt: &[f32],
    ) -> Vec<f32> {
        self.point_from_mixture(self.mixture(weights, prompt), residual)
    }

    /// The point from the shared part ([`PalWeights::user_point_with`]'s `m` or `a`, computed by
    /// a caller that caches the prompt maps) and a residual: on residual models PAL-B's `m` is
    /// normalised and scaled by `s`, then `δ` is added.
    pub fn point_from_mixture(&self, mut point: Vec<f32>, residual: Option<&[f32]>) -> Vec<f32> {
        if self.config.residual.is_some() {
            if self.config.variant == Variant::B {
                let n = norm(&point).max(COS_EPS);
                let s = self.scale();
                point.iter_mut().for_each(|v| *v *= s / n);
            }
            if let Some(r) = residual {
                point.iter_mut().zip(r).for_each(|(p, r)| *p += r);
            }
        }
        point
    }

    /// The shared part of a point: PAL-A `f(Σ w p)` or `Σ w p`, PAL-B `Σ w_k g_k(c)`.
    fn mixture(&self, weights: &[f32], prompt: &[f32]) -> Vec<f32> {
        match &self.head {
            Head::Prototypes(protos) => {
                let mut mix = vec![0.0; protos[0].len()];
                for (w, p) in weights.iter().zip(protos) {
                    mix.iter_mut().zip(p).for_each(|(m, v)| *m += w * v);
                }
                match self.config.ideal_point {
                    IdealPoint::FPw => self.item_map.forward(&mix),
                    IdealPoint::Pw => mix,
                }
            }
            Head::PromptMaps(maps) => {
                let mut u = vec![0.0; self.config.d];
                for (w, g) in weights.iter().zip(maps) {
                    u.iter_mut()
                        .zip(g.forward(prompt))
                        .for_each(|(m, v)| *m += w * v);
                }
                u
            }
        }
    }

    /// Reward of an item for a user point: PAL-A `−‖f(x) − a‖`, PAL-B `s · cos(f(x), u)`, or
    /// on residual models (whose points carry `s`) `⟨f(x), u⟩ / ‖f(x)‖`.
    pub fn reward_at(&self, point: &[f32], item: &[f32]) -> f32 {
        self.reward_of_features(point, &self.item_map.forward(item))
    }

    /// Reward from an item's mapped features `f(x)` (lets callers cache `f` over many users).
    pub fn reward_of_features(&self, point: &[f32], fx: &[f32]) -> f32 {
        match self.config.variant {
            Variant::A => -distance(fx, point),
            Variant::B if self.config.residual.is_some() => dot(fx, point) / norm(fx).max(COS_EPS),
            Variant::B => self.scale() * cosine(fx, point),
        }
    }

    /// The content prior `b · σ(a · (cos(x, c) − t))` on the raw embeddings; 0 unless
    /// `config.content_prior`.
    /// It is the same for every user, so callers ranking for many users compute it once.
    pub fn prior_term(&self, prompt: &[f32], item: &[f32]) -> f32 {
        if self.config.content_prior {
            self.prior.at(cosine(item, prompt))
        } else {
            0.0
        }
    }

    /// Reward `r(c, x)` for simplex weights `w` (prompt ignored by PAL-A): the personal term
    /// plus the content prior.
    pub fn reward(&self, weights: &[f32], prompt: &[f32], item: &[f32]) -> f32 {
        self.reward_at(&self.user_point(weights, prompt), item) + self.prior_term(prompt, item)
    }

    /// `r_l − r_r` at a user point, the content prior included.
    fn reward_diff(&self, point: &[f32], prompt: &[f32], left: &[f32], right: &[f32]) -> f32 {
        self.reward_at(point, left) - self.reward_at(point, right) + self.prior_term(prompt, left)
            - self.prior_term(prompt, right)
    }

    /// Log-odds that `left` is preferred: PAL-B `r_l − r_r`, PAL-A `s (r_l − r_r)`.
    pub fn logit(&self, weights: &[f32], prompt: &[f32], left: &[f32], right: &[f32]) -> f32 {
        self.logit_at(&self.user_point(weights, prompt), prompt, left, right)
    }

    /// [`PalWeights::logit`] at a user point (e.g. [`PalWeights::known_user_point`]).
    pub fn logit_at(&self, point: &[f32], prompt: &[f32], left: &[f32], right: &[f32]) -> f32 {
        self.logit_of_diff(self.reward_diff(point, prompt, left, right))
    }

    /// Log-odds from a reward difference `r_l − r_r`: PAL-B `diff`, PAL-A `s · diff`.
    pub fn logit_of_diff(&self, diff: f32) -> f32 {
        match self.config.variant {
            Variant::A => self.scale() * diff,
            Variant::B => diff,
        }
    }

    /// `P(left ≻ right)`.
    pub fn prob_left(&self, weights: &[f32], prompt: &[f32], left: &[f32], right: &[f32]) -> f32 {
        sigmoid(self.logit(weights, prompt, left, right))
    }

    /// Training loss of one comparison (`label` 1 = left preferred), norm bound included.
    pub fn loss(
        &self,
        weights: &[f32],
        prompt: &[f32],
        left: &[f32],
        right: &[f32],
        label: u8,
    ) -> f32 {
        self.loss_at(
            &self.user_point(weights, prompt),
            prompt,
            left,
            right,
            label,
        )
    }

    /// [`PalWeights::loss`] at a user point (the residual penalty is
    /// [`PalWeights::residual_penalty`], added once per batch).
    pub fn loss_at(
        &self,
        point: &[f32],
        prompt: &[f32],
        left: &[f32],
        right: &[f32],
        label: u8,
    ) -> f32 {
        let diff = self.reward_diff(point, prompt, left, right);
        let y = if label == 1 { 1.0 } else { -1.0 };
        let base = match (self.config.variant, self.config.link) {
            (Variant::A, Link::Hinge) => (1.0 - y * diff).max(0.0),
            (Variant::A, Link::Logistic) => softplus(-y * self.scale() * diff),
            (Variant::B, _) => softplus(-y * diff),
        };
        let bound = self
            .config
            .norm_bound
            .map_or(0.0, |nb| nb.lambda * (norm(point) - nb.beta).max(0.0));
        base + bound
    }

    /// Number of learned parameters (users included).
    pub fn num_params(&self) -> usize {
        let mlp = |m: &Mlp| {
            m.layers
                .iter()
                .map(|l| l.weight.len() + l.bias.len())
                .sum::<usize>()
        };
        let head: usize = match &self.head {
            Head::Prototypes(p) => p.iter().map(Vec::len).sum(),
            Head::PromptMaps(g) => g.iter().map(mlp).sum(),
        };
        let prior = if self.config.content_prior { 3 } else { 0 };
        let residuals: usize = self.user_residuals.iter().map(Vec::len).sum();
        mlp(&self.item_map) + head + self.user_logits.len() * self.config.k + 1 + prior + residuals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_population_mixture_is_the_mean_of_the_users_simplex_weights() {
        let config = ModelConfig::pal_b(4, 3, 2, 2);
        let mut w = PalWeights::init(&config, 0, 1);
        assert_eq!(w.population_weights(), vec![0.5, 0.5]);
        w.user_logits = vec![vec![0.0, 0.0], vec![(3f32).ln(), 0.0]];
        let mix = w.population_weights();
        assert!(
            (mix[0] - 0.625).abs() < 1e-6 && (mix[1] - 0.375).abs() < 1e-6,
            "{mix:?}"
        );
    }
}
