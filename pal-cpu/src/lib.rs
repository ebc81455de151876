//! Matrix products on the CPU for PAL's fused engine and scorers, with the kernel path chosen
//! once per process ([`chosen`]; `PAL_CPU_KERNELS=generic|avx2|avx512` overrides it) and the
//! precision chosen per caller ([`Precision`]): f32, or bf16 inputs with f32 accumulation.
//!
//! | path | f32 | bf16 |
//! |---|---|---|
//! | `generic`, `avx2` | the `gemm` crate | inputs rounded to bf16, then `gemm` |
//! | `avx512` | our 14×32 FMA microkernel | `vdpbf16ps` (AVX512-BF16), else rounded inputs on the f32 kernel |
//!
//! Every path is held to plain f64 loops by `tests/parity.rs`: f32 to 1e-5 relative, bf16 to
//! [`bf16_bound`].

mod activation;
mod bf16;
mod blocked;
mod detect;
mod error;
mod generic;
mod scratch;
mod view;

#[cfg(target_arch = "x86_64")]
mod avx512;

pub use activation::{gelu, gelu_backward, gelu_in_place};
pub use bf16::{bf16_bound, from_bf16, round_bf16, to_bf16};
pub use detect::{Cpu, FLAGS, Path, chosen, cpu};
pub use error::CpuError;
pub use view::View;

/// Below this many multiply-adds a product runs on one thread. Measured with `step_profile`
/// (B=256, D=384, d=128, K=4, 2 cores): 2^20 gives 45–50k samples/s, burn's 192³ 30–33k.
const PARALLEL_MACS: usize = 1 << 20;

/// The number format of a product's inputs; sums and outputs are always f32.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// Inputs rounded to bf16 (8-bit mantissa), products exact, sums in f32.
    Bf16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    pub fn parse(value: &str) -> Result<Self, CpuError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(CpuError::UnknownPrecision {
                value: value.to_string(),
            }),
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = CpuError;
    fn from_str(s: &str) -> Result<Self, CpuError> {
        Precision::parse(s)
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Runs `f` inside a function compiled for `path`'s vector width, so element-wise loops that
/// LLVM inlines into it use 512-bit (avx512) or 256-bit (avx2) registers; the same numbers on
/// every path (element-wise arithmetic does not depend on the width). `path` must be one this
/// CPU has ([`Path::check`]; a [`Products`] only holds such paths).
#[allow(unsafe_code)]
pub fn vectorized<R>(path: Path, f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    match path {
        // SAFETY: the path was checked against the CPU's flags when it was chosen.
        Path::Avx512 if path.check().is_ok() => return unsafe { simd::avx512(f) },
        Path::Avx2 if path.check().is_ok() => return unsafe { simd::avx2(f) },
        _ => {}
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    //! Scopes compiled with more vector features than the crate's baseline.

    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    pub(crate) unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
}

/// How products run: a kernel path this CPU has, and a precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Products {
    path: Path,
    precision: Precision,
    /// bf16 on the f32 kernels with rounded inputs even where the CPU has `vdpbf16ps`.
    rounded_bf16: bool,
}

impl Default for Products {
    /// f32 on [`Path::best`] (ignores `PAL_CPU_KERNELS`; use [`Products::new`] to honour it).
    fn default() -> Self {
        Self {
            path: Path::best(),
            precision: Precision::F32,
            rounded_bf16: false,
        }
    }
}

impl Products {
    /// The process's chosen path ([`chosen`]) at `precision`.
    pub fn new(precision: Precision) -> Result<Self, CpuError> {
        Ok(Self {
            path: chosen()?,
            precision,
            rounded_bf16: false,
        })
    }

    /// A given path, when this CPU has it.
    pub fn on(path: Path, precision: Precision) -> Result<Self, CpuError> {
        path.check()?;
        Ok(Self {
            path,
            precision,
            rounded_bf16: false,
        })
    }

    /// bf16 by rounding the inputs onto the f32 kernels even where the CPU has AVX512-BF16:
    /// what a CPU without it runs (e.g. Skylake-X), so tests cover that kernel on any machine.
    pub fn with_rounded_bf16(self) -> Self {
        Self {
            rounded_bf16: true,
            ..self
        }
    }

    /// Whether bf16 products run on `vdpbf16ps`.
    fn native_bf16(&self) -> bool {
        self.path.native_bf16() && !self.rounded_bf16
    }

    pub fn path(&self) -> Path {
        self.path
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// What runs, in words: e.g. `avx512 bf16 (vdpbf16ps)`.
    pub fn describe(&self) -> String {
        let how = match (self.path, self.precision) {
            (Path::Avx512, Precision::Bf16) if self.native_bf16() => " (vdpbf16ps)",
            (_, Precision::Bf16) => " (inputs rounded, f32 kernels)",
            _ => "",
        };
        format!("{} {}{how}", self.path, self.precision)
    }

    /// `out[m, n] (row-major) = (out if add) + a[m, k] · b[k, n]`.
    ///
    /// # Panics
    /// When `a`, `b` or `out` is too short for the shape (a caller's bug).
    #[allow(clippy::too_many_arguments)]
    pub fn product(
        &self,
        m: usize,
        n: usize,
        k: usize,
        a: View<'_>,
        b: View<'_>,
        out: &mut [f32],
        add: bool,
    ) {
        let parallel = m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MACS;
        #[cfg(target_arch = "x86_64")]
        if self.path == Path::Avx512 {
            let threads = if parallel {
                rayon::current_num_threads()
            } else {
                1
            };
            match self.precision {
                Precision::F32 => {
                    blocked::run::<avx512::F32>(m, n, k, a, b, out, add, threads);
                }
                Precision::Bf16 if self.native_bf16() => {
                    blocked::run::<avx512::Bf16>(m, n, k, a, b, out, add, threads);
                }
                Precision::Bf16 => {
                    blocked::run::<avx512::Bf16Rounded>(m, n, k, a, b, out, add, threads);
                }
            }
            return;
        }
        match self.precision {
            Precision::F32 => generic::product(m, n, k, a, b, out, add, parallel),
            Precision::Bf16 => generic::product_bf16(m, n, k, a, b, out, add, parallel),
        }
    }
}
