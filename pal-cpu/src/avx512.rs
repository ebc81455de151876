//! The AVX-512 microkernels, 14 × 32 tiles: f32 with one FMA per (row, 16 columns, k), and bf16
//! with `vdpbf16ps`, which multiplies pairs of bf16 along k and adds both products into an f32
//! lane (AVX512-BF16). 28 accumulators, two B vectors and a broadcast fit the 32 registers.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use crate::bf16;
use crate::blocked::Micro;

const MR: usize = 14;
const NR: usize = 32;

/// f32 inputs, f32 products.
pub(crate) struct F32;

/// bf16 inputs (rounded on packing) on the f32 kernel: the bf16 numbers on a CPU without
/// AVX512-BF16.
pub(crate) struct Bf16Rounded;

/// bf16 pairs on `vdpbf16ps`.
pub(crate) struct Bf16;

/// Stores the accumulators at `out` (row stride `ldc`), adding what is there when `add`.
#[target_feature(enable = "avx512f")]
unsafe fn store(c: &[__m512; 2 * MR], out: *mut f32, ldc: usize, add: bool) {
    for (i, v) in c.iter().enumerate() {
        // SAFETY: the caller guarantees an MR × NR tile at `out` with row stride `ldc`.
        unsafe {
            let p = out.add((i / 2) * ldc + (i % 2) * 16);
            let v = if add {
                _mm512_add_ps(*v, _mm512_loadu_ps(p))
            } else {
                *v
            };
            _mm512_storeu_ps(p, v);
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn tile_f32(
    groups: usize,
    a: *const f32,
    b: *const f32,
    out: *mut f32,
    ldc: usize,
    add: bool,
) {
    let mut c = [_mm512_setzero_ps(); 2 * MR];
    for q in 0..groups {
        // SAFETY (whole function): the caller guarantees `groups · MR` values at `a`,
        // `groups · NR` at `b`, and an MR × NR tile at `out` (row stride `ldc`).
        let (b0, b1) = unsafe {
            (
                _mm512_loadu_ps(b.add(q * NR)),
                _mm512_loadu_ps(b.add(q * NR + 16)),
            )
        };
        for i in 0..MR {
            let x = _mm512_set1_ps(unsafe { *a.add(q * MR + i) });
            c[2 * i] = _mm512_fmadd_ps(x, b0, c[2 * i]);
            c[2 * i + 1] = _mm512_fmadd_ps(x, b1, c[2 * i + 1]);
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { store(&c, out, ldc, add) };
}

#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile_bf16(
    groups: usize,
    a: *const u32,
    b: *const u32,
    out: *mut f32,
    ldc: usize,
    add: bool,
) {
    let mut c = [_mm512_setzero_ps(); 2 * MR];
    for q in 0..groups {
        // SAFETY (whole function): as in `tile_f32`; `__m512i` and `__m512bh` are both 64
        // bytes of packed lanes, so the transmutes only retype.
        let (b0, b1): (__m512bh, __m512bh) = unsafe {
            (
                std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(b.add(q * NR).cast())),
                std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                    b.add(q * NR + 16).cast(),
                )),
            )
        };
        for i in 0..MR {
            let x: __m512bh = unsafe {
                std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(
                    *a.add(q * MR + i) as i32
                ))
            };
            c[2 * i] = _mm512_dpbf16_ps(c[2 * i], x, b0);
            c[2 * i + 1] = _mm512_dpbf16_ps(c[2 * i + 1], x, b1);
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { store(&c, out, ldc, add) };
}

/// The f32 kernel's `Micro` impl for a marker type, packing each value with `$pack`.
macro_rules! f32_kernel {
    ($kind:ty, $pack:expr) => {
        impl Micro for $kind {
            type Packed = f32;
            const MR: usize = MR;
            const NR: usize = NR;
            const G: usize = 1;
            const KC: usize = 384;
            const NC: usize = 2048;
            const MC: usize = 14 * 24;

            #[inline(always)]
            fn pack(lo: f32, _hi: f32) -> f32 {
                $pack(lo)
            }

            unsafe fn tile(
                groups: usize,
                a: *const f32,
                b: *const f32,
                out: *mut f32,
                ldc: usize,
                add: bool,
            ) {
                // SAFETY: forwarded from the caller.
                unsafe { tile_f32(groups, a, b, out, ldc, add) }
            }
        }
    };
}

f32_kernel!(F32, std::convert::identity);
f32_kernel!(Bf16Rounded, bf16::round_bf16);

impl Micro for Bf16 {
    type Packed = u32;
    const MR: usize = MR;
    const NR: usize = NR;
    const G: usize = 2;
    const KC: usize = 768;
    const NC: usize = 2048;
    const MC: usize = 14 * 24;

    #[inline(always)]
    fn pack(lo: f32, hi: f32) -> u32 {
        bf16::pair(lo, hi)
    }

    fn pack_along(line: &[f32], w: usize, dst: &mut [u32]) {
        // SAFETY: this kernel is only chosen where the CPU has AVX512-BF16.
        unsafe { pack_along_bf16(line, w, dst) }
    }

    fn pack_across(lo: &[f32], hi: Option<&[f32]>, dst: &mut [u32]) {
        // SAFETY: as above.
        unsafe { pack_across_bf16(lo, hi, dst) }
    }

    unsafe fn tile(
        groups: usize,
        a: *const u32,
        b: *const u32,
        out: *mut f32,
        ldc: usize,
        add: bool,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { tile_bf16(groups, a, b, out, ldc, add) }
    }
}

/// [`Micro::pack_along`] for bf16 pairs: 32 contiguous k at a time with `vcvtne2ps2bf16`, whose
/// 32 bf16 results in order are exactly 16 (even k, odd k) pairs; the tail value by value.
#[target_feature(enable = "avx512f,avx512bf16")]
fn pack_along_bf16(line: &[f32], w: usize, dst: &mut [u32]) {
    let chunks = line.chunks_exact(32);
    let tail = chunks.remainder();
    let mut q = 0;
    let mut lanes = [0u32; 16];
    for c in chunks {
        // SAFETY: `c` holds 32 values; `lanes` 16 u32 (64 bytes).
        unsafe {
            let v = _mm512_cvtne2ps_pbh(
                _mm512_loadu_ps(c.as_ptr().add(16)),
                _mm512_loadu_ps(c.as_ptr()),
            );
            _mm512_storeu_si512(
                lanes.as_mut_ptr().cast(),
                std::mem::transmute::<__m512bh, __m512i>(v),
            );
        }
        for (i, &p) in lanes.iter().enumerate() {
            dst[(q + i) * w] = p;
        }
        q += 16;
    }
    for (i, p) in tail.chunks(2).enumerate() {
        dst[(q + i) * w] = bf16::pair(p[0], p.get(1).copied().unwrap_or(0.0));
    }
}

/// 16 f32 rounded to bf16, each in the low half of a 32-bit lane.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
fn widen(v: __m512) -> __m512i {
    // SAFETY: `__m256bh` and `__m256i` are both 32 bytes of packed lanes.
    _mm512_cvtepu16_epi32(unsafe {
        std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v))
    })
}

/// [`Micro::pack_across`] for bf16 pairs: 16 lines at a time, both k rounded with
/// `vcvtneps2bf16` and interleaved into 32-bit lanes (even k low, odd k high).
#[target_feature(enable = "avx512f,avx512bf16")]
fn pack_across_bf16(lo: &[f32], hi: Option<&[f32]>, dst: &mut [u32]) {
    let n = dst.len();
    assert!(
        lo.len() >= n && hi.is_none_or(|h| h.len() >= n),
        "pack lengths"
    );
    let full = n - n % 16;
    for j in (0..full).step_by(16) {
        // SAFETY: `lo`, `hi` and `dst` hold at least `n ≥ j + 16` values.
        unsafe {
            let low = widen(_mm512_loadu_ps(lo.as_ptr().add(j)));
            let high = match hi {
                Some(hi) => _mm512_slli_epi32::<16>(widen(_mm512_loadu_ps(hi.as_ptr().add(j)))),
                None => _mm512_setzero_si512(),
            };
            _mm512_storeu_si512(dst.as_mut_ptr().add(j).cast(), _mm512_or_si512(low, high));
        }
    }
    for j in full..n {
        dst[j] = bf16::pair(lo[j], hi.map_or(0.0, |h| h[j]));
    }
}
