//! bf16 rounding: an f32 with its mantissa cut to 8 bits, round-to-nearest-even, as the CPU's
//! `vcvtneps2bf16` does. A product of two bf16 values is exact in f32, so "bf16 products with
//! f32 accumulation" differ from f32 only by the rounding of the inputs.

/// The bf16 bits of `x` (round to nearest, ties to even; NaN stays NaN).
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16;
    let quiet_nan = (bits >> 16) | 0x40;
    // A select, not a branch, so packing loops vectorise.
    (if x.is_nan() { quiet_nan } else { rounded }) as u16
}

/// The f32 that bf16 `bits` stands for (exact).
#[inline(always)]
pub fn from_bf16(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// `x` rounded to the nearest bf16 value, as an f32.
#[inline(always)]
pub fn round_bf16(x: f32) -> f32 {
    from_bf16(to_bf16(x))
}

/// Two bf16 values in one 32-bit lane, `lo` in the low half: the pair `vdpbf16ps` multiplies.
#[inline(always)]
pub(crate) fn pair(lo: f32, hi: f32) -> u32 {
    to_bf16(lo) as u32 | (to_bf16(hi) as u32) << 16
}

/// The documented error bound of a bf16 product `Σ_k a_k b_k` against exact arithmetic:
/// each input rounds with relative error ≤ 2⁻⁸ (8 significant bits), so each term with
/// ≤ 2⁻⁷ + 2⁻¹⁶; the f32 sum
/// adds ≤ k·2⁻²⁴ of `Σ|a_k b_k|`. Returns the bound for a term sum `abs_sum = Σ|a_k b_k|`.
pub fn bf16_bound(k: usize, abs_sum: f64) -> f64 {
    (2f64.powi(-7) + 2f64.powi(-16) + k as f64 * 2f64.powi(-24)) * abs_sum * 1.01 + 1e-30
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3F80);
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: ties go to the even mantissa (1.0).
        assert_eq!(round_bf16(1.0 + 2f32.powi(-8)), 1.0);
        assert_eq!(
            round_bf16(1.0 + 3.0 * 2f32.powi(-8)),
            1.0 + 2.0 * 2f32.powi(-7)
        );
        assert_eq!(round_bf16(-2.5), -2.5);
        assert!(round_bf16(f32::NAN).is_nan());
        assert_eq!(round_bf16(f32::INFINITY), f32::INFINITY);
        for i in 0..10_000 {
            let x = (i as f32 * 0.731).sin() * 1e3;
            assert!((round_bf16(x) - x).abs() <= x.abs() * 2f32.powi(-8));
        }
    }
}
