//! PAL-B's head on a batch, forward and hand-derived backward: user weights `w = softmax(θ_u)`,
//! user point `U = Σ_k w_k g_k(c)`, rewards `s·cos(f(x), U)`, Bradley–Terry log-loss and the
//! optional norm bound, with gradients for f's and the g_k's outputs, θ and the raw scale.

use rayon::prelude::*;

use crate::config::NormBound;
use crate::reference::{COS_EPS, MAX_SCALE, dot, sigmoid, softplus};

/// What the head needs from a forward pass of the maps.
pub(crate) struct HeadInput<'a> {
    /// Batch users' logits θ, `[B, K]` (gathered).
    pub theta: &'a [f32],
    /// `g_k(prompts)`, K slices of `[B, d]`.
    pub g: Vec<&'a [f32]>,
    /// `f([left; right])`, `[2B, d]`.
    pub f: &'a [f32],
    pub log_scale: f32,
    pub d: usize,
}

/// Gradients produced by [`backward`].
pub(crate) struct HeadGrads<'a> {
    /// `[2B, d]`, for f's output.
    pub df: &'a mut [f32],
    /// K buffers of `[B, d]`, for the g_k's outputs.
    pub dg: &'a mut [Vec<f32>],
    /// `[B, K]`, for the gathered θ rows.
    pub dtheta: &'a mut [f32],
}

/// `out = softmax(theta)` without allocating.
pub(super) fn softmax(theta: &[f32], out: &mut [f32]) {
    let m = theta.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for (o, &t) in out.iter_mut().zip(theta) {
        *o = (t - m).exp();
        sum += *o;
    }
    out.iter_mut().for_each(|o| *o /= sum);
}

/// One row's forward quantities.
struct Row {
    nu: f32,
    cos_l: f32,
    cos_r: f32,
    den_l: f32,
    den_r: f32,
    nl: f32,
    nr: f32,
}

fn row_forward(inp: &HeadInput<'_>, b: usize, w: &mut [f32], u: &mut [f32]) -> Row {
    let (d, k) = (inp.d, w.len());
    let n = inp.f.len() / (2 * d);
    softmax(&inp.theta[b * k..(b + 1) * k], w);
    u.fill(0.0);
    for (j, g) in inp.g.iter().enumerate() {
        let gb = &g[b * d..(b + 1) * d];
        u.iter_mut().zip(gb).for_each(|(u, g)| *u += w[j] * g);
    }
    let fl = &inp.f[b * d..(b + 1) * d];
    let fr = &inp.f[(n + b) * d..(n + b + 1) * d];
    let (nu, nl, nr) = (dot(u, u).sqrt(), dot(fl, fl).sqrt(), dot(fr, fr).sqrt());
    let den_l = nl.max(COS_EPS) * nu.max(COS_EPS);
    let den_r = nr.max(COS_EPS) * nu.max(COS_EPS);
    Row {
        nu,
        cos_l: dot(fl, u) / den_l,
        cos_r: dot(fr, u) / den_r,
        den_l,
        den_r,
        nl,
        nr,
    }
}

fn scale(log_scale: f32) -> f32 {
    log_scale.exp().min(MAX_SCALE)
}

/// Log-odds of "left preferred", `[B]`.
pub(crate) fn logits(inp: &HeadInput<'_>, k: usize, out: &mut [f32]) {
    let s = scale(inp.log_scale);
    out.par_iter_mut().enumerate().for_each_init(
        || (vec![0.0; k], vec![0.0; inp.d]),
        |(w, u), (b, z)| {
            let r = row_forward(inp, b, w, u);
            *z = s * (r.cos_l - r.cos_r);
        },
    );
}

/// Mean loss of the batch; fills `grads` and returns `(loss, d loss / d log_scale)`.
pub(crate) fn backward(
    inp: &HeadInput<'_>,
    labels: &[f32],
    norm_bound: Option<NormBound>,
    grads: HeadGrads<'_>,
) -> (f32, f32) {
    let (d, k) = (inp.d, grads.dg.len());
    let n = labels.len();
    let s = scale(inp.log_scale);
    let ds_dlog = if inp.log_scale.exp() < MAX_SCALE {
        s
    } else {
        0.0
    };
    let inv_n = 1.0 / n as f32;
    let (dfl, dfr) = grads.df.split_at_mut(n * d);
    let mut du = vec![0.0f32; n * d];
    let mut ws = vec![0.0f32; n * k];
    // Per row: loss term and d loss / d s.
    let rows: Vec<(f32, f32)> = du
        .par_chunks_mut(d)
        .zip(dfl.par_chunks_mut(d))
        .zip(dfr.par_chunks_mut(d))
        .zip(ws.par_chunks_mut(k))
        .enumerate()
        .map_init(
            || vec![0.0; d],
            |u, (b, (((du, dfl), dfr), w))| {
                let r = row_forward(inp, b, w, u);
                let y = 2.0 * labels[b] - 1.0;
                let z = s * (r.cos_l - r.cos_r);
                let mut loss = softplus(-y * z);
                let dz = (sigmoid(z) - labels[b]) * inv_n;
                let (al, ar) = (dz * s, -dz * s);
                let fl = &inp.f[b * d..(b + 1) * d];
                let fr = &inp.f[(n + b) * d..(n + b + 1) * d];
                // d cos(a, u)/d a = u / den − cos · a / |a|² (the norm floor has no gradient).
                let self_term = |c: f32, norm: f32| {
                    if norm > COS_EPS {
                        c / (norm * norm)
                    } else {
                        0.0
                    }
                };
                let (cl, cr, cu) = (
                    self_term(r.cos_l, r.nl),
                    self_term(r.cos_r, r.nr),
                    if r.nu > COS_EPS {
                        (al * r.cos_l + ar * r.cos_r) / (r.nu * r.nu)
                    } else {
                        0.0
                    },
                );
                for j in 0..d {
                    dfl[j] = al * (u[j] / r.den_l - cl * fl[j]);
                    dfr[j] = ar * (u[j] / r.den_r - cr * fr[j]);
                    du[j] = al * fl[j] / r.den_l + ar * fr[j] / r.den_r - cu * u[j];
                }
                if let Some(nb) = norm_bound
                    && r.nu > nb.beta
                {
                    loss += nb.lambda * (r.nu - nb.beta);
                    let c = nb.lambda * inv_n / r.nu;
                    du.iter_mut().zip(u.iter()).for_each(|(g, u)| *g += c * u);
                }
                (loss, dz * (r.cos_l - r.cos_r))
            },
        )
        .collect();
    // Through U = Σ_k w_k g_k: dg_k = w_k · dU, dw_k = ⟨dU, g_k⟩; then the softmax.
    let mut dw = vec![0.0f32; n * k];
    for (j, (dg, g)) in grads.dg.iter_mut().zip(&inp.g).enumerate() {
        dg.resize(n * d, 0.0);
        let dw_j: Vec<f32> = dg
            .par_chunks_mut(d)
            .zip(du.par_chunks(d))
            .enumerate()
            .map(|(b, (dg, du))| {
                let wj = ws[b * k + j];
                dg.iter_mut().zip(du).for_each(|(o, g)| *o = wj * g);
                dot(du, &g[b * d..(b + 1) * d])
            })
            .collect();
        for (b, v) in dw_j.into_iter().enumerate() {
            dw[b * k + j] = v;
        }
    }
    softmax_backward(&ws, &dw, grads.dtheta, k);
    let loss = rows.iter().map(|r| r.0 as f64).sum::<f64>() * inv_n as f64;
    let ds: f32 = rows.iter().map(|r| r.1).sum();
    (loss as f32, ds * ds_dlog)
}

/// `dθ = w ⊙ (dw − ⟨w, dw⟩)` row by row (the softmax's backward pass).
pub(crate) fn softmax_backward(w: &[f32], dw: &[f32], dtheta: &mut [f32], k: usize) {
    for ((w, g), out) in w.chunks(k).zip(dw.chunks(k)).zip(dtheta.chunks_mut(k)) {
        let mean: f32 = w.iter().zip(g).map(|(a, b)| a * b).sum();
        for j in 0..k {
            out[j] = w[j] * (g[j] - mean);
        }
    }
}
