//! GELU (exact erf form) and its derivative element-wise, without library calls: a branch-free
//! `exp` and the Abramowitz–Stegun erf, so the loops vectorise at the chosen path's width.
//! Held to `pal_math::reference::gelu` by the fused engine's tests (`pal-core`).

use rayon::prelude::*;

use crate::detect::Path;

/// Element-wise passes split into chunks of this many values across threads.
const CHUNK: usize = 1 << 14;

/// `e^x` for `x ≤ 0` (clamped at −87), relative error < 2e-7, written without branches or
/// library calls so loops over it vectorise.
#[inline(always)]
fn exp_neg(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = if x < -87.0 { -87.0 } else { x };
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let bits = t.to_bits() as i32 - MAGIC.to_bits() as i32; // = n as an integer
    let r = (x - n * 0.693_145_75) - n * 1.428_606_8e-6; // x − n ln 2, in two parts
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((bits + 127) << 23) as u32)
}

/// `(Φ(z), φ(z))`: the standard normal CDF (Abramowitz–Stegun 7.1.26 erf, |error| < 1.5e-7)
/// and density, sharing one exponential.
#[inline(always)]
fn normal_cdf_pdf(z: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152,
        1.061_405_4,
    ];
    let x = z.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let e = exp_neg(-x * x);
    let t = 1.0 / (1.0 + P * x);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let erf_abs = 1.0 - poly * e;
    let erf = if z < 0.0 { -erf_abs } else { erf_abs };
    (0.5 * (1.0 + erf), e * 0.398_942_3)
}

/// `h = gelu(z)` element-wise (exact erf form).
pub fn gelu(path: Path, z: &[f32], h: &mut [f32]) {
    h.par_chunks_mut(CHUNK)
        .zip(z.par_chunks(CHUNK))
        .for_each(|(h, z)| {
            crate::vectorized(path, || {
                for (h, &z) in h.iter_mut().zip(z) {
                    *h = z * normal_cdf_pdf(z).0;
                }
            })
        });
}

/// `g ← g · gelu'(z)` element-wise.
pub fn gelu_backward(path: Path, z: &[f32], g: &mut [f32]) {
    g.par_chunks_mut(CHUNK)
        .zip(z.par_chunks(CHUNK))
        .for_each(|(g, z)| {
            crate::vectorized(path, || {
                for (g, &z) in g.iter_mut().zip(z) {
                    let (cdf, pdf) = normal_cdf_pdf(z);
                    *g *= cdf + z * pdf;
                }
            })
        });
}

/// `v ← gelu(v)` in place.
pub fn gelu_in_place(path: Path, v: &mut [f32]) {
    v.par_chunks_mut(CHUNK).for_each(|v| {
        crate::vectorized(path, || {
            for x in v.iter_mut() {
                *x *= normal_cdf_pdf(*x).0;
            }
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        for i in 0..=20_000 {
            let x = -87.0 * i as f32 / 20_000.0;
            let (a, b) = (exp_neg(x), x.exp());
            assert!((a - b).abs() <= 3e-7 * b, "exp({x}) = {a}, expected {b}");
        }
    }

    #[test]
    fn in_place_equals_out_of_place() {
        let z: Vec<f32> = (-3000..3000).map(|i| i as f32 / 400.0).collect();
        let mut h = vec![0.0; z.len()];
        gelu(Path::best(), &z, &mut h);
        let mut v = z.clone();
        gelu_in_place(Path::best(), &mut v);
        assert_eq!(h, v);
    }
}
