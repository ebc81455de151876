//! AdamW over one contiguous parameter range in a single pass (moments, bias correction,
//! decoupled weight decay), with the same update rule and constants as burn's `AdamW`.

use rayon::prelude::*;

use super::kernels::CHUNK;

pub(crate) const BETA_1: f32 = 0.9;
pub(crate) const BETA_2: f32 = 0.999;
pub(crate) const EPSILON: f32 = 1e-5;

/// Learning rate and weight decay of one update.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rates {
    pub lr: f64,
    pub weight_decay: f64,
}

/// Applies update number `t` (1-based) to `params` from `grads`, updating moments `m`, `v`.
pub(crate) fn step(
    path: pal_cpu::Path,
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    t: u64,
    r: Rates,
) {
    let t = t.min(i32::MAX as u64) as i32;
    let (bc1, bc2) = (1.0 - BETA_1.powi(t), 1.0 - BETA_2.powi(t));
    let lr = r.lr as f32;
    let keep = (1.0 - r.lr * r.weight_decay) as f32;
    params
        .par_chunks_mut(CHUNK)
        .zip(grads.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| {
            pal_cpu::vectorized(path, || {
                for i in 0..p.len() {
                    let g = g[i];
                    m[i] = BETA_1 * m[i] + (1.0 - BETA_1) * g;
                    v[i] = BETA_2 * v[i] + (1.0 - BETA_2) * g * g;
                    let delta = (m[i] / bc1) / ((v[i] / bc2).sqrt() + EPSILON);
                    p[i] = p[i] * keep - lr * delta;
                }
            })
        });
}
