//! Every kernel path this CPU has, in f32 and bf16, against plain f64 loops: f32 within
//! 1e-5 of `Σ|a·b|`; bf16 within [`bf16_bound`] of the exact product, and within f32 rounding
//! of the exact product of the bf16-rounded inputs. A path this CPU lacks is reported as
//! skipped with the missing flag.

use pal_cpu::{Path, Precision, Products, View, bf16_bound, round_bf16};
use proptest::prelude::*;

/// The paths this CPU runs; prints the ones it skips and why.
fn paths() -> Vec<Path> {
    Path::ALL
        .into_iter()
        .filter(|p| match p.check() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("SKIPPED {p} kernels: {e}");
                false
            }
        })
        .collect()
}

fn values(len: usize, seed: f32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            ((i as f32 * 0.618 + seed).sin() * 3.7)
                .tan()
                .clamp(-20.0, 20.0)
        })
        .collect()
}

/// Checks `p` on one shape and layout.
#[allow(clippy::too_many_arguments)]
fn check(p: Products, m: usize, n: usize, k: usize, a_t: bool, b_t: bool, add: bool) {
    let (a, b) = (values(m * k, 0.3), values(k * n, 1.1));
    let av = if a_t {
        View::transposed(&a, m)
    } else {
        View::rows(&a, k)
    };
    let bv = if b_t {
        View::transposed(&b, k)
    } else {
        View::rows(&b, n)
    };
    let start = values(m * n, 2.9);
    let mut out = start.clone();
    p.product(m, n, k, av, bv, &mut out, add);
    let at = |v: &View, r: usize, c: usize| v.data[r * v.row + c * v.col];
    for r in 0..m {
        for c in 0..n {
            let base = if add { start[r * n + c] as f64 } else { 0.0 };
            let (mut exact, mut rounded, mut abs) = (base, base, base.abs());
            for i in 0..k {
                let (x, y) = (at(&av, r, i), at(&bv, i, c));
                exact += x as f64 * y as f64;
                rounded += round_bf16(x) as f64 * round_bf16(y) as f64;
                abs += (x as f64 * y as f64).abs();
            }
            let got = out[r * n + c] as f64;
            let what = format!(
                "{} m={m} n={n} k={k} a_t={a_t} b_t={b_t} add={add} at ({r},{c})",
                p.describe()
            );
            match p.precision() {
                Precision::F32 => {
                    assert!(
                        (got - exact).abs() <= 1e-5 * abs + 1e-30,
                        "{what}: {got} vs {exact}"
                    );
                }
                Precision::Bf16 => {
                    assert!(
                        (got - exact).abs() <= bf16_bound(k, abs),
                        "{what}: {got} vs {exact}"
                    );
                    let f32_err = (k as f64 + 2.0) * 2f64.powi(-23) * abs + 1e-30;
                    assert!(
                        (got - rounded).abs() <= f32_err,
                        "{what}: {got} vs {rounded} (rounded inputs)"
                    );
                }
            }
        }
    }
}

const SHAPES: [(usize, usize, usize); 12] = [
    (1, 1, 1),
    (1, 33, 7),
    (14, 32, 1),
    (15, 31, 2),
    (13, 33, 3),
    (29, 65, 257),
    (300, 70, 90),
    (40, 50, 513),
    (3, 2100, 5),
    (128, 128, 128),
    (257, 96, 131),
    (2, 600, 1025),
];

/// Every product configuration this CPU runs: each path in f32 and bf16, and bf16 by rounding
/// on the f32 kernels (what CPUs without AVX512-BF16 run).
fn configurations() -> Vec<Products> {
    paths()
        .into_iter()
        .flat_map(|path| {
            let bf16 = Products::on(path, Precision::Bf16).unwrap();
            [
                Products::on(path, Precision::F32).unwrap(),
                bf16,
                bf16.with_rounded_bf16(),
            ]
        })
        .collect()
}

#[test]
fn every_path_matches_plain_loops() {
    for p in configurations() {
        for (m, n, k) in SHAPES {
            for (a_t, b_t, add) in [
                (false, false, false),
                (true, false, true),
                (false, true, false),
                (true, true, true),
            ] {
                check(p, m, n, k, a_t, b_t, add);
            }
        }
    }
}

#[test]
fn empty_inner_dimension_clears_or_keeps() {
    for path in paths() {
        for precision in [Precision::F32, Precision::Bf16] {
            let p = Products::on(path, precision).unwrap();
            let mut out = vec![5.0; 6];
            p.product(
                2,
                3,
                0,
                View::rows(&[], 0),
                View::rows(&[], 3),
                &mut out,
                true,
            );
            assert_eq!(out, vec![5.0; 6], "{}", p.describe());
            p.product(
                2,
                3,
                0,
                View::rows(&[], 0),
                View::rows(&[], 3),
                &mut out,
                false,
            );
            assert_eq!(out, vec![0.0; 6], "{}", p.describe());
        }
    }
}

#[test]
#[should_panic(expected = "product shapes")]
fn short_inputs_are_refused() {
    let p = Products::on(Path::best(), Precision::F32).unwrap();
    let mut out = vec![0.0; 4];
    p.product(
        2,
        2,
        3,
        View::rows(&[1.0; 5], 3),
        View::rows(&[1.0; 6], 2),
        &mut out,
        false,
    );
}

#[test]
fn avx512_bf16_runs_vdpbf16ps_where_the_cpu_has_it() {
    let c = pal_cpu::cpu();
    if !c.has("avx512bf16") {
        eprintln!(
            "SKIPPED the vdpbf16ps kernel: this CPU ({}) lacks avx512bf16",
            c.model
        );
        return;
    }
    let p = Products::on(Path::Avx512, Precision::Bf16).unwrap();
    assert!(p.describe().contains("vdpbf16ps"), "{}", p.describe());
    let rounded = p.with_rounded_bf16().describe();
    assert!(rounded.contains("inputs rounded"), "{rounded}");
}

#[test]
fn amx_is_named_and_refused() {
    let e = Path::parse("amx").unwrap_err().to_string();
    assert!(e.contains("AMX"), "{e}");
    let e = Path::parse("sse9").unwrap_err().to_string();
    assert!(e.contains("sse9") && e.contains("avx512"), "{e}");
    for missing in pal_cpu::cpu().missing() {
        eprintln!("this CPU lacks {missing}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_shapes_match(m in 1usize..60, n in 1usize..80, k in 0usize..70, a_t: bool, b_t: bool, add: bool) {
        for p in configurations() {
            check(p, m, n, k, a_t, b_t, add);
        }
    }
}
