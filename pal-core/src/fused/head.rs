//! PAL-B's head on a batch, forward and hand-derived backward: user weights `w = softmax(θ_u)`,
//! user point `U = Σ_k w_k g_k(c)`, rewards `s·cos(f(x), U)`, Bradley–Terry log-loss and the
//! optional norm bound, with gradients for f's and the g_k's outputs, θ and the raw scale; the
//! content prior `P(cos(x_l, c)) − P(cos(x_r, c))`, `P(v) = b σ(a (v − t))`, adds to each
//! log-odds, with its gradients for b, ln a and t. With residuals the point carries the scale,
//! `U = s·M/‖M‖ + δ_u` (`M` the mixture), the rewards are `⟨f(x), U⟩ / ‖f(x)‖`, and `δ_u`
//! gets `dU`.

use rayon::prelude::*;

use crate::config::NormBound;
use crate::reference::{
    COS_EPS, ContentPrior, MAX_SCALE, MAX_SHARPNESS, cosine, dot, sigmoid, softplus,
};

/// What the head needs from a forward pass of the maps.
pub(crate) struct HeadInput<'a> {
    /// Batch users' logits θ, `[B, K]` (gathered).
    pub theta: &'a [f32],
    /// `g_k(prompts)`, K slices of `[B, d]`.
    pub g: Vec<&'a [f32]>,
    /// `f([left; right])`, `[2B, d]`.
    pub f: &'a [f32],
    pub log_scale: f32,
    /// The content prior and `(cos(x_l, c), cos(x_r, c))` per row, `[B, 2]`.
    pub prior: Option<(ContentPrior, &'a [f32])>,
    /// The batch users' residuals `δ_u`, `[B, d]` (gathered; only with residuals).
    pub residual: Option<&'a [f32]>,
    pub d: usize,
}

impl HeadInput<'_> {
    /// The factor on `cos_l − cos_r` in the log-odds: `s`, or 1 with residuals (whose point
    /// carries `s`, and whose "cosines" are `⟨f(x), U⟩ / ‖f(x)‖`).
    fn outer(&self) -> f32 {
        if self.residual.is_some() {
            1.0
        } else {
            scale(self.log_scale)
        }
    }

    /// The content prior's part of row `b`'s log-odds.
    fn prior_at(&self, b: usize) -> f32 {
        self.prior
            .map_or(0.0, |(p, cos)| p.at(cos[2 * b]) - p.at(cos[2 * b + 1]))
    }

    /// `d (P(cos_l) − P(cos_r)) / d (b, ln a, t)` of row `b`.
    fn prior_grad(&self, b: usize) -> [f32; 3] {
        let Some((p, cos)) = self.prior else {
            return [0.0; 3];
        };
        let a = p.sharpness();
        let below_cap = p.log_sharpness.exp() < MAX_SHARPNESS;
        let side = |v: f32| {
            let g = sigmoid(a * (v - p.threshold));
            let dg = g * (1.0 - g);
            let da = if below_cap {
                p.weight * dg * a * (v - p.threshold)
            } else {
                0.0
            };
            [g, da, -p.weight * dg * a]
        };
        let (l, r) = (side(cos[2 * b]), side(cos[2 * b + 1]));
        [l[0] - r[0], l[1] - r[1], l[2] - r[2]]
    }
}

/// Gradients produced by [`backward`].
pub(crate) struct HeadGrads<'a> {
    /// `[2B, d]`, for f's output.
    pub df: &'a mut [f32],
    /// K buffers of `[B, d]`, for the g_k's outputs.
    pub dg: &'a mut [Vec<f32>],
    /// `[B, K]`, for the gathered θ rows.
    pub dtheta: &'a mut [f32],
    /// `[B, d]`, for the gathered residual rows (left empty without residuals).
    pub dresidual: &'a mut Vec<f32>,
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
    /// ‖M‖ of the mixture (residual models only; 0 otherwise).
    nm: f32,
    nu: f32,
    /// `cos(f(x), U)`, or with residuals `⟨f(x), U⟩ / ‖f(x)‖`.
    cos_l: f32,
    cos_r: f32,
    den_l: f32,
    den_r: f32,
    nl: f32,
    nr: f32,
}

/// Row `b`'s forward pass; `u` gets the point and, with residuals, `m` the unit mixture.
fn row_forward(inp: &HeadInput<'_>, b: usize, w: &mut [f32], u: &mut [f32], m: &mut [f32]) -> Row {
    let (d, k) = (inp.d, w.len());
    let n = inp.f.len() / (2 * d);
    softmax(&inp.theta[b * k..(b + 1) * k], w);
    u.fill(0.0);
    for (j, g) in inp.g.iter().enumerate() {
        let gb = &g[b * d..(b + 1) * d];
        u.iter_mut().zip(gb).for_each(|(u, g)| *u += w[j] * g);
    }
    let mut nm = 0.0;
    if let Some(res) = inp.residual {
        nm = dot(u, u).sqrt();
        let inv = 1.0 / nm.max(COS_EPS);
        let s = scale(inp.log_scale);
        let r = &res[b * d..(b + 1) * d];
        for j in 0..d {
            m[j] = u[j] * inv;
            u[j] = s * m[j] + r[j];
        }
    }
    let fl = &inp.f[b * d..(b + 1) * d];
    let fr = &inp.f[(n + b) * d..(n + b + 1) * d];
    let (nu, nl, nr) = (dot(u, u).sqrt(), dot(fl, fl).sqrt(), dot(fr, fr).sqrt());
    // With residuals U is not normalised: its length is the user's confidence.
    let nu_den = if inp.residual.is_some() {
        1.0
    } else {
        nu.max(COS_EPS)
    };
    let den_l = nl.max(COS_EPS) * nu_den;
    let den_r = nr.max(COS_EPS) * nu_den;
    Row {
        nm,
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
    let s = inp.outer();
    out.par_iter_mut().enumerate().for_each_init(
        || (vec![0.0; k], vec![0.0; inp.d], vec![0.0; inp.d]),
        |(w, u, m), (b, z)| {
            let r = row_forward(inp, b, w, u, m);
            *z = s * (r.cos_l - r.cos_r) + inp.prior_at(b);
        },
    );
}

/// What [`backward`] returns besides the gradients it fills.
pub(crate) struct HeadOut {
    pub loss: f32,
    /// d loss / d log_scale.
    pub dlog_scale: f32,
    /// d loss / d (b, ln a, t) of the content prior (0 without it).
    pub dprior: [f32; 3],
}

/// `(cos(x_l, c), cos(x_r, c))` per row, from the gathered `[left; right]` items (`[2B, D]`) and
/// prompts (`[B, D]`): the content prior's input, fixed for a comparison.
pub(crate) fn prior_sims(items: &[f32], prompts: &[f32], dim: usize, out: &mut Vec<f32>) {
    let n = prompts.len() / dim;
    out.resize(2 * n, 0.0);
    out.par_chunks_mut(2).enumerate().for_each(|(b, o)| {
        let c = &prompts[b * dim..(b + 1) * dim];
        let l = &items[b * dim..(b + 1) * dim];
        let r = &items[(n + b) * dim..(n + b + 1) * dim];
        o[0] = cosine(l, c);
        o[1] = cosine(r, c);
    });
}

/// Mean loss of the batch; fills `grads` and returns the loss and the scalars' gradients.
pub(crate) fn backward(
    inp: &HeadInput<'_>,
    labels: &[f32],
    norm_bound: Option<NormBound>,
    grads: HeadGrads<'_>,
) -> HeadOut {
    let (d, k) = (inp.d, grads.dg.len());
    let n = labels.len();
    let s = scale(inp.log_scale);
    let ds_dlog = if inp.log_scale.exp() < MAX_SCALE {
        s
    } else {
        0.0
    };
    let inv_n = 1.0 / n as f32;
    let (res, sz) = (inp.residual.is_some(), inp.outer());
    let (dfl, dfr) = grads.df.split_at_mut(n * d);
    let mut du = vec![0.0f32; n * d];
    let mut ws = vec![0.0f32; n * k];
    grads.dresidual.resize(n * d, 0.0);
    // Per row: loss term, d loss / d s and d loss / d (b, ln a, t).
    let rows: Vec<(f32, f32, [f32; 3])> = du
        .par_chunks_mut(d)
        .zip(dfl.par_chunks_mut(d))
        .zip(dfr.par_chunks_mut(d))
        .zip(ws.par_chunks_mut(k))
        .zip(grads.dresidual.par_chunks_mut(d))
        .enumerate()
        .map_init(
            || (vec![0.0; d], vec![0.0; d]),
            |(u, m), (b, ((((du, dfl), dfr), w), dres))| {
                let r = row_forward(inp, b, w, u, m);
                let y = 2.0 * labels[b] - 1.0;
                let z = sz * (r.cos_l - r.cos_r) + inp.prior_at(b);
                let mut loss = softplus(-y * z);
                let dz = (sigmoid(z) - labels[b]) * inv_n;
                let (al, ar) = (dz * sz, -dz * sz);
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
                    if r.nu > COS_EPS && !res {
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
                // d loss / d s: through the rewards, or with residuals through U = s·m̂ + δ.
                let mut ds = dz * (r.cos_l - r.cos_r);
                if res {
                    // dδ = dU; ds = ⟨m̂, dU⟩; dM = s (dU − m̂ ⟨m̂, dU⟩) / ‖M‖ (below the norm
                    // floor the normalisation is a fixed scale).
                    dres.copy_from_slice(du);
                    ds = dot(m, du);
                    let proj = if r.nm > COS_EPS { ds } else { 0.0 };
                    let inv = s / r.nm.max(COS_EPS);
                    for j in 0..d {
                        du[j] = (dres[j] - m[j] * proj) * inv;
                    }
                }
                let dp = inp.prior_grad(b).map(|g| dz * g);
                (loss, ds, dp)
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
    HeadOut {
        loss: loss as f32,
        dlog_scale: ds * ds_dlog,
        dprior: rows.iter().fold([0.0; 3], |acc, r| {
            [acc[0] + r.2[0], acc[1] + r.2[1], acc[2] + r.2[2]]
        }),
    }
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
