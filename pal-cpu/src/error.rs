//! The crate's one error type: a kernel path that was asked for but cannot run here.

/// Why a kernel path cannot be used; each message names the setting and what is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuError {
    #[error(
        "PAL_CPU_KERNELS={value:?} is not a kernel path (expected one of: generic, avx2, avx512)"
    )]
    UnknownPath { value: String },
    #[error(
        "PAL_CPU_KERNELS=amx: this build has no AMX kernels (they were never run on an AMX machine, so they are not shipped); use avx512 or avx2"
    )]
    AmxNotBuilt,
    #[error("the {path} kernels need the CPU flag {flag}, which this CPU ({model}) lacks")]
    MissingFlag {
        path: &'static str,
        flag: &'static str,
        model: String,
    },
    #[error("precision {value:?} is not one of: f32, bf16")]
    UnknownPrecision { value: String },
}
