//! PAL-A's head on a batch, forward and hand-derived backward: rewards `−√(‖f(x) − a‖² + ε)` at
//! the user's ideal point `a`, log-odds `s·(r_l − r_r)`, hinge or logistic loss and the optional
//! norm bound, with gradients for f's outputs, the ideal points and the raw scale.

use rayon::prelude::*;

use crate::config::{Link, NormBound};
use crate::reference::{MAX_SCALE, distance, sigmoid, softplus};

/// What the head needs from a forward pass.
pub(crate) struct IdealInput<'a> {
    /// `f([left; right])`, `[2B, d]`.
    pub f: &'a [f32],
    /// Ideal points `a`, `[B, d]`.
    pub points: &'a [f32],
    pub log_scale: f32,
    pub link: Link,
    pub d: usize,
}

fn rows<'a>(inp: &IdealInput<'a>, b: usize) -> (&'a [f32], &'a [f32], &'a [f32]) {
    let (d, n) = (inp.d, inp.points.len() / inp.d);
    (
        &inp.f[b * d..(b + 1) * d],
        &inp.f[(n + b) * d..(n + b + 1) * d],
        &inp.points[b * d..(b + 1) * d],
    )
}

/// Log-odds of "left preferred", `[B]`.
pub(crate) fn logits(inp: &IdealInput<'_>, out: &mut [f32]) {
    let s = inp.log_scale.exp().min(MAX_SCALE);
    out.par_iter_mut().enumerate().for_each(|(b, z)| {
        let (fl, fr, a) = rows(inp, b);
        *z = s * (distance(fr, a) - distance(fl, a));
    });
}

/// Mean loss of the batch; fills `df` (`[2B, d]`) and `dpoints` (`[B, d]`) and returns
/// `(loss, d loss / d log_scale)`.
pub(crate) fn backward(
    inp: &IdealInput<'_>,
    labels: &[f32],
    norm_bound: Option<NormBound>,
    df: &mut [f32],
    dpoints: &mut [f32],
) -> (f32, f32) {
    let (d, n) = (inp.d, labels.len());
    let s = inp.log_scale.exp().min(MAX_SCALE);
    let ds_dlog = if inp.log_scale.exp() < MAX_SCALE {
        s
    } else {
        0.0
    };
    let inv_n = 1.0 / n as f32;
    let (dfl, dfr) = df.split_at_mut(n * d);
    let per_row: Vec<(f32, f32)> = dpoints
        .par_chunks_mut(d)
        .zip(dfl.par_chunks_mut(d))
        .zip(dfr.par_chunks_mut(d))
        .enumerate()
        .map(|(b, ((da, dfl), dfr))| {
            let (fl, fr, a) = rows(inp, b);
            let (dl, dr) = (distance(fl, a), distance(fr, a));
            let diff = dr - dl; // r_l − r_r with r = −distance
            let y = 2.0 * labels[b] - 1.0;
            // d loss / d diff, the loss term and d loss / d s.
            let (g, mut loss, gs) = match inp.link {
                Link::Hinge => {
                    let margin = 1.0 - y * diff;
                    if margin > 0.0 {
                        (-y * inv_n, margin, 0.0)
                    } else {
                        (0.0, 0.0, 0.0)
                    }
                }
                Link::Logistic => {
                    let z = s * diff;
                    let dz = (sigmoid(z) - labels[b]) * inv_n;
                    (dz * s, softplus(-y * z), dz * diff)
                }
            };
            // diff = dist_r − dist_l; d dist(x, a)/d x = (x − a)/dist = −d dist/d a.
            for j in 0..d {
                let (ul, ur) = ((fl[j] - a[j]) / dl, (fr[j] - a[j]) / dr);
                dfl[j] = -g * ul;
                dfr[j] = g * ur;
                da[j] = g * (ul - ur);
            }
            if let Some(nb) = norm_bound {
                let na = a.iter().map(|v| v * v).sum::<f32>().sqrt();
                if na > nb.beta {
                    loss += nb.lambda * (na - nb.beta);
                    let c = nb.lambda * inv_n / na;
                    da.iter_mut().zip(a).for_each(|(g, v)| *g += c * v);
                }
            }
            (loss, gs)
        })
        .collect();
    let loss = per_row.iter().map(|r| r.0 as f64).sum::<f64>() * inv_n as f64;
    let ds: f32 = per_row.iter().map(|r| r.1).sum();
    (loss as f32, ds * ds_dlog)
}
