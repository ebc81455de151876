//! Which CPU this is and which kernel path runs on it: detected once per process, overridable
//! with `PAL_CPU_KERNELS=generic|avx2|avx512` so every path can be tested on one machine.

use std::sync::OnceLock;

use crate::error::CpuError;

/// A family of product kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Path {
    /// The `gemm` crate's portable kernels (no AVX2 or not x86).
    Generic,
    /// The `gemm` crate's AVX2/FMA kernels: what every x86 machine ran before this crate.
    Avx2,
    /// Our AVX-512 microkernels: f32 FMA, and bf16 pairs with `vdpbf16ps` where the CPU has
    /// AVX512-BF16.
    Avx512,
}

impl Path {
    pub const ALL: [Path; 3] = [Path::Generic, Path::Avx2, Path::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Path::Generic => "generic",
            Path::Avx2 => "avx2",
            Path::Avx512 => "avx512",
        }
    }

    /// The CPU flags this path cannot run without.
    pub fn required_flags(self) -> &'static [&'static str] {
        match self {
            Path::Generic => &[],
            Path::Avx2 => &["avx2", "fma"],
            Path::Avx512 => &["avx512f"],
        }
    }

    /// Parses a `PAL_CPU_KERNELS` value.
    pub fn parse(value: &str) -> Result<Path, CpuError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "generic" => Ok(Path::Generic),
            "avx2" => Ok(Path::Avx2),
            "avx512" => Ok(Path::Avx512),
            "amx" => Err(CpuError::AmxNotBuilt),
            _ => Err(CpuError::UnknownPath {
                value: value.to_string(),
            }),
        }
    }

    /// `Ok` when this CPU has every flag the path needs, else the first missing one.
    pub fn check(self) -> Result<(), CpuError> {
        match self
            .required_flags()
            .iter()
            .find(|f| !cpu().flags.contains(f))
        {
            None => Ok(()),
            Some(flag) => Err(CpuError::MissingFlag {
                path: self.name(),
                flag,
                model: cpu().model.clone(),
            }),
        }
    }

    /// Whether bf16 products on this path use the CPU's bf16 dot-product instruction (else the
    /// inputs are rounded to bf16 and multiplied in f32: the same numbers, no speed-up).
    pub fn native_bf16(self) -> bool {
        self == Path::Avx512 && cpu().has("avx512bf16")
    }

    /// The fastest path this CPU runs.
    pub fn best() -> Path {
        [Path::Avx512, Path::Avx2]
            .into_iter()
            .find(|p| p.check().is_ok())
            .unwrap_or(Path::Generic)
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The path every product of this process runs on: `PAL_CPU_KERNELS` when set (an error when
/// it names a path this CPU cannot run), else [`Path::best`]. Decided on first use.
pub fn chosen() -> Result<Path, CpuError> {
    static CHOSEN: OnceLock<Result<Path, CpuError>> = OnceLock::new();
    CHOSEN
        .get_or_init(|| match std::env::var("PAL_CPU_KERNELS") {
            Ok(v) if !v.trim().is_empty() => {
                let p = Path::parse(&v)?;
                p.check().map(|()| p)
            }
            _ => Ok(Path::best()),
        })
        .clone()
}

/// This CPU: its model name and the flags the kernels care about.
#[derive(Debug, Clone)]
pub struct Cpu {
    pub model: String,
    /// The flags from [`FLAGS`] this CPU has (AMX as CPUID reports it).
    pub flags: Vec<&'static str>,
}

/// Every flag [`Cpu::flags`] may list.
pub const FLAGS: [&str; 10] = [
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512bf16",
    "avx512fp16",
    "amx-tile",
    "amx-bf16",
    "amx-int8",
];

impl Cpu {
    pub fn has(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }

    /// The flags from [`FLAGS`] this CPU lacks.
    pub fn missing(&self) -> Vec<&'static str> {
        FLAGS.into_iter().filter(|f| !self.has(f)).collect()
    }
}

/// This CPU, read once.
pub fn cpu() -> &'static Cpu {
    static CPU: OnceLock<Cpu> = OnceLock::new();
    CPU.get_or_init(|| Cpu {
        model: model_name(),
        flags: FLAGS.into_iter().filter(|f| detect(f)).collect(),
    })
}

#[cfg(target_arch = "x86_64")]
fn detect(flag: &str) -> bool {
    use std::arch::x86_64::__cpuid_count;
    // AMX has no stable `is_x86_feature_detected!` name yet: CPUID leaf 7, EDX bits 22/24/25.
    let amx = |bit: u32| __cpuid_count(7, 0).edx >> bit & 1 == 1;
    match flag {
        "avx2" => is_x86_feature_detected!("avx2"),
        "fma" => is_x86_feature_detected!("fma"),
        "avx512f" => is_x86_feature_detected!("avx512f"),
        "avx512bw" => is_x86_feature_detected!("avx512bw"),
        "avx512vl" => is_x86_feature_detected!("avx512vl"),
        "avx512bf16" => is_x86_feature_detected!("avx512bf16"),
        "avx512fp16" => is_x86_feature_detected!("avx512fp16"),
        "amx-bf16" => amx(22),
        "amx-tile" => amx(24),
        "amx-int8" => amx(25),
        _ => false,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect(_flag: &str) -> bool {
    false
}

/// The model name: `/proc/cpuinfo` where there is one, else the CPUID brand string.
fn model_name() -> String {
    let from_proc = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    });
    from_proc.unwrap_or_else(brand)
}

#[cfg(target_arch = "x86_64")]
fn brand() -> String {
    use std::arch::x86_64::__cpuid;
    if __cpuid(0x8000_0000).eax < 0x8000_0004 {
        return "unknown x86-64".into();
    }
    let bytes: Vec<u8> = (0x8000_0002u32..=0x8000_0004)
        .flat_map(|leaf| {
            let r = __cpuid(leaf);
            [r.eax, r.ebx, r.ecx, r.edx]
                .into_iter()
                .flat_map(u32::to_le_bytes)
        })
        .collect();
    String::from_utf8_lossy(&bytes)
        .trim_matches(['\0', ' '])
        .to_string()
}

#[cfg(not(target_arch = "x86_64"))]
fn brand() -> String {
    std::env::consts::ARCH.to_string()
}
