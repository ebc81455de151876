//! PAL inference for ranking: item features f(x), the user's point and rewards for many items,
//! on the GPU through our WGSL kernels (WebGPU in the browser, Vulkan natively) or on the CPU
//! with [`pal_math::reference`] when no adapter exists. Both paths give the same scores, and
//! [`top_k`] is the one tie-break (equal scores: lower index first) every ranker uses.

pub mod cpu;
pub mod error;
pub mod gpu;
pub mod shaders;

pub use error::InferError;

use pal_math::{PalWeights, UserPref};

/// Which path computed a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A GPU adapter, with its name and API (e.g. "llvmpipe (Vulkan)").
    Gpu(String),
    /// The plain-Rust reference on the CPU.
    Cpu,
}

/// Scores items for users of one model; GPU when available, CPU otherwise.
pub enum Scorer {
    Gpu(Box<gpu::GpuScorer>),
    Cpu(cpu::CpuScorer),
}

impl Scorer {
    /// Tries a GPU adapter first; falls back to the CPU path.
    pub async fn new(weights: PalWeights) -> Self {
        match gpu::GpuScorer::new(&weights).await {
            Ok(g) => Scorer::Gpu(Box::new(g)),
            Err(_) => Scorer::Cpu(cpu::CpuScorer::new(weights)),
        }
    }

    /// The CPU path only.
    pub fn cpu(weights: PalWeights) -> Self {
        Scorer::Cpu(cpu::CpuScorer::new(weights))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Scorer::Gpu(g) => Backend::Gpu(g.adapter_name.clone()),
            Scorer::Cpu(_) => Backend::Cpu,
        }
    }

    pub fn weights(&self) -> &PalWeights {
        match self {
            Scorer::Gpu(g) => &g.weights,
            Scorer::Cpu(c) => &c.weights,
        }
    }

    /// Rewards of `n` items (row-major `[n, d_item]`) for a user (simplex weights, plus a
    /// residual on residual models) and a prompt embedding (ignored by PAL-A).
    pub async fn scores<'a>(
        &self,
        user: impl Into<UserPref<'a>>,
        prompt: &[f32],
        items: &[f32],
    ) -> Result<Vec<f32>, InferError> {
        let user = user.into();
        check_inputs(self.weights(), user, prompt, items)?;
        match self {
            Scorer::Gpu(g) => g.scores(user, prompt, items).await,
            Scorer::Cpu(c) => Ok(c.scores(user, prompt, items)),
        }
    }
}

fn check_inputs(
    weights: &PalWeights,
    user: UserPref<'_>,
    prompt: &[f32],
    items: &[f32],
) -> Result<(), InferError> {
    let c = &weights.config;
    if user.weights.len() != c.k {
        return Err(InferError::Shape {
            what: "weights",
            expected: c.k,
            found: user.weights.len(),
        });
    }
    if let Some(r) = user.residual
        && (c.residual.is_none() || r.len() != c.d)
    {
        return Err(InferError::Shape {
            what: "residual",
            expected: if c.residual.is_some() { c.d } else { 0 },
            found: r.len(),
        });
    }
    if c.variant == pal_math::Variant::B && prompt.len() != c.d_prompt {
        return Err(InferError::Shape {
            what: "prompt",
            expected: c.d_prompt,
            found: prompt.len(),
        });
    }
    if !items.len().is_multiple_of(c.d_item) {
        return Err(InferError::Shape {
            what: "items",
            expected: items.len().div_ceil(c.d_item) * c.d_item,
            found: items.len(),
        });
    }
    Ok(())
}

impl Scorer {
    /// Scores `items` and returns the top `k` (index, score), best first; on the GPU the sort
    /// runs in `topk.wgsl`.
    pub async fn rank<'a>(
        &self,
        user: impl Into<UserPref<'a>>,
        prompt: &[f32],
        items: &[f32],
        k: usize,
    ) -> Result<Vec<(usize, f32)>, InferError> {
        let scores = self.scores(user, prompt, items).await?;
        match self {
            Scorer::Gpu(g) => g.top_k(&scores, k).await,
            Scorer::Cpu(_) => Ok(top_k(&scores, k)),
        }
    }
}

/// Indices of the `k` highest scores, best first (ties by index).
pub fn top_k(scores: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i, scores[i])).collect()
}
