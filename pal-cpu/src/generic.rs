//! The `gemm` crate's kernels (AVX2/FMA on x86, its portable ones elsewhere), and bf16 on
//! them by rounding copies of the inputs.

#![allow(unsafe_code)]

use crate::bf16::round_bf16;
use crate::view::View;

/// `out[m, n] = (out if add) + a · b`, on `gemm` with rayon when `parallel`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn product(
    m: usize,
    n: usize,
    k: usize,
    a: View<'_>,
    b: View<'_>,
    out: &mut [f32],
    add: bool,
    parallel: bool,
) {
    View::assert_product(m, n, k, &a, &b, out.len());
    // SAFETY: the assert bounds every element gemm reads or writes by its slice.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            add,
            a.data.as_ptr(),
            a.col as isize,
            a.row as isize,
            b.data.as_ptr(),
            b.col as isize,
            b.row as isize,
            if add { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            if parallel {
                gemm::Parallelism::Rayon(0)
            } else {
                gemm::Parallelism::None
            },
        );
    }
}

/// As [`product`] with both inputs rounded to bf16 first (exact products, f32 sums).
#[allow(clippy::too_many_arguments)]
pub(crate) fn product_bf16(
    m: usize,
    n: usize,
    k: usize,
    a: View<'_>,
    b: View<'_>,
    out: &mut [f32],
    add: bool,
    parallel: bool,
) {
    View::assert_product(m, n, k, &a, &b, out.len());
    let (ra, rb) = (a.to_rows(m, k, round_bf16), b.to_rows(k, n, round_bf16));
    product(
        m,
        n,
        k,
        View::rows(&ra, k),
        View::rows(&rb, n),
        out,
        add,
        parallel,
    );
}
