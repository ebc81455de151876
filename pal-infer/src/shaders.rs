//! The WGSL sources (from `shaders/`, the one place they live) and `#[repr(C)]` mirrors of
//! their parameter structs.

use bytemuck::{Pod, Zeroable};

pub const LINEAR: &str = include_str!("../../shaders/linear.wgsl");
pub const MIX: &str = include_str!("../../shaders/mix.wgsl");
pub const SCORE: &str = include_str!("../../shaders/score.wgsl");
pub const TOPK: &str = include_str!("../../shaders/topk.wgsl");

/// `LinearParams` in `linear.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct LinearParams {
    pub rows: u32,
    pub d_in: u32,
    pub d_out: u32,
    pub gelu: u32,
}

/// `MixParams` in `mix.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct MixParams {
    pub k: u32,
    pub d: u32,
    /// 1: divide the mixture by its norm and multiply by `scale` (PAL-B with residuals).
    pub normalise: u32,
    /// 1: add the residual binding `delta`.
    pub residual: u32,
    /// The logit scale `s` (used with `normalise`).
    pub scale: f32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

/// `ScoreParams` in `score.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct ScoreParams {
    pub n: u32,
    pub d: u32,
    pub variant: u32,
    pub scale: f32,
    /// 1 with the content prior.
    pub prior: u32,
    /// Raw item / prompt dimension (the prior's cosine).
    pub d_x: u32,
    pub prior_weight: f32,
    /// `a = min(exp(ln a), 100)`.
    pub prior_sharpness: f32,
    pub prior_threshold: f32,
    /// 1: PAL-B residual model, whose point carries the scale: reward `f·u / ‖f‖`.
    pub residual: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

/// `SortParams` in `topk.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct SortParams {
    pub n: u32,
    pub j: u32,
    pub k: u32,
    pub _pad: u32,
}
