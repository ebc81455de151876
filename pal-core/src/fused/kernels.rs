//! The fused step's building blocks: row-major products and GELU on [`pal_cpu`] (the kernel
//! path and precision the trainer was built with), and row-parallel helpers.

use pal_cpu::{Products, View};
use rayon::prelude::*;

/// Element-wise passes split into chunks of this many values across threads.
pub(crate) const CHUNK: usize = 1 << 14;

/// `out[n, d_out] = x[n, d_in] · w[d_in, d_out] + bias` (all row-major).
pub(crate) fn linear(p: Products, x: &[f32], w: &[f32], bias: &[f32], out: &mut [f32]) {
    let (d_in, d_out) = (w.len() / bias.len(), bias.len());
    let n = x.len() / d_in;
    out.par_chunks_mut(CHUNK.div_ceil(d_out) * d_out)
        .for_each(|rows| rows.chunks_mut(d_out).for_each(|r| r.copy_from_slice(bias)));
    p.product(
        n,
        d_out,
        d_in,
        View::rows(x, d_in),
        View::rows(w, d_out),
        out,
        true,
    );
}

/// `out[n, d_out] = x[n, d_in] · w[d_in, d_out]` (overwrites `out`).
pub(crate) fn matmul(p: Products, x: &[f32], w: &[f32], out: &mut [f32], d_in: usize) {
    let d_out = w.len() / d_in;
    p.product(
        x.len() / d_in,
        d_out,
        d_in,
        View::rows(x, d_in),
        View::rows(w, d_out),
        out,
        false,
    );
}

/// `dw[d_in, d_out] = xᵀ · dz` for `x[n, d_in]`, `dz[n, d_out]` (overwrites `dw`).
pub(crate) fn weight_grad(p: Products, x: &[f32], dz: &[f32], dw: &mut [f32], d_in: usize) {
    let d_out = dw.len() / d_in;
    let n = x.len() / d_in;
    p.product(
        d_in,
        d_out,
        n,
        View::transposed(x, d_in),
        View::rows(dz, d_out),
        dw,
        false,
    );
}

/// `dx[n, d_in] = dz[n, d_out] · wᵀ` for `w[d_in, d_out]` (overwrites `dx`).
pub(crate) fn input_grad(p: Products, dz: &[f32], w: &[f32], dx: &mut [f32], d_out: usize) {
    let d_in = w.len() / d_out;
    let n = dz.len() / d_out;
    p.product(
        n,
        d_in,
        d_out,
        View::rows(dz, d_out),
        View::transposed(w, d_out),
        dx,
        false,
    );
}

/// Column sums of `dz[n, d]` into `db[d]` (overwrites `db`).
pub(crate) fn bias_grad(dz: &[f32], db: &mut [f32]) {
    let d = db.len();
    // Fixed chunks summed in order, so the result does not depend on thread scheduling.
    let partial: Vec<Vec<f32>> = dz
        .par_chunks(CHUNK.div_ceil(d) * d)
        .map(|rows| {
            let mut acc = vec![0.0f32; d];
            for r in rows.chunks(d) {
                acc.iter_mut().zip(r).for_each(|(a, v)| *a += v);
            }
            acc
        })
        .collect();
    db.fill(0.0);
    for p in &partial {
        db.iter_mut().zip(p).for_each(|(x, y)| *x += y);
    }
}

/// `h = gelu(z)` element-wise (exact erf form), on the trainer's vector width.
pub(crate) fn gelu(p: Products, z: &[f32], h: &mut [f32]) {
    pal_cpu::gelu(p.path(), z, h);
}

/// `g ← g · gelu'(z)` element-wise.
pub(crate) fn gelu_backward(p: Products, z: &[f32], g: &mut [f32]) {
    pal_cpu::gelu_backward(p.path(), z, g);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_matches_the_reference_on_every_path() {
        let z: Vec<f32> = (-4000..=4000).map(|i| i as f32 / 500.0).collect();
        for path in pal_cpu::Path::ALL {
            let Ok(p) = Products::on(path, pal_cpu::Precision::F32) else {
                eprintln!("SKIPPED gelu on {path}: the CPU lacks its flags");
                continue;
            };
            let mut h = vec![0.0; z.len()];
            gelu(p, &z, &mut h);
            let mut g = vec![1.0; z.len()];
            gelu_backward(p, &z, &mut g);
            check_gelu(&z, &h, &g);
        }
    }

    fn check_gelu(z: &[f32], h: &[f32], g: &[f32]) {
        for ((&z, &h), &g) in z.iter().zip(h).zip(g) {
            let want = pal_math::reference::gelu(z);
            assert!((h - want).abs() < 2e-6, "gelu({z}) = {h}, expected {want}");
            let eps = 1e-3;
            let fd = (pal_math::reference::gelu(z + eps) - pal_math::reference::gelu(z - eps))
                / (2.0 * eps);
            assert!(
                (g - fd).abs() < 2e-3,
                "gelu'({z}) = {g}, finite difference {fd}"
            );
        }
    }

    #[test]
    fn products_match_plain_loops() {
        let (n, d_in, d_out) = (300, 70, 90);
        let v = |len: usize, s: f32| (0..len).map(|i| ((i as f32) * s).sin()).collect::<Vec<_>>();
        let (x, w, b, dz) = (
            v(n * d_in, 0.37),
            v(d_in * d_out, 0.11),
            v(d_out, 0.5),
            v(n * d_out, 0.23),
        );
        let p = Products::default();
        let mut y = vec![0.0; n * d_out];
        linear(p, &x, &w, &b, &mut y);
        let mut dw = vec![0.0; d_in * d_out];
        weight_grad(p, &x, &dz, &mut dw, d_in);
        let mut dx = vec![0.0; n * d_in];
        input_grad(p, &dz, &w, &mut dx, d_out);
        let mut db = vec![0.0; d_out];
        bias_grad(&dz, &mut db);
        let close = |a: f32, b: f64| (a as f64 - b).abs() < 1e-3 * (1.0 + b.abs());
        for r in 0..n {
            for j in 0..d_out {
                let s: f64 = (0..d_in)
                    .map(|i| (x[r * d_in + i] * w[i * d_out + j]) as f64)
                    .sum();
                assert!(close(y[r * d_out + j], s + b[j] as f64));
            }
            for i in 0..d_in {
                let s: f64 = (0..d_out)
                    .map(|j| (dz[r * d_out + j] * w[i * d_out + j]) as f64)
                    .sum();
                assert!(close(dx[r * d_in + i], s));
            }
        }
        for i in 0..d_in {
            for j in 0..d_out {
                let s: f64 = (0..n)
                    .map(|r| (x[r * d_in + i] * dz[r * d_out + j]) as f64)
                    .sum();
                assert!(close(dw[i * d_out + j], s));
            }
        }
        for j in 0..d_out {
            let s: f64 = (0..n).map(|r| dz[r * d_out + j] as f64).sum();
            assert!(close(db[j], s));
        }
    }
}
