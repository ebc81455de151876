//! Where training runs: the CPU (burn flex, always built), or a GPU through burn's wgpu backend
//! (cargo feature `wgpu`) or CUDA backend (cargo feature `cuda`). Asking for a backend this build
//! does not have is a typed error naming the feature to enable.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{PalError, Result};

/// A training device, chosen once in `TrainConfig` (`--device cpu|wgpu|cuda[:N]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComputeDevice {
    /// burn's `flex` CPU backend.
    #[default]
    Cpu,
    /// The default adapter of burn's wgpu backend (Vulkan, Metal, DX12 or WebGPU).
    Wgpu,
    /// CUDA device N through burn-cuda.
    Cuda(usize),
}

impl ComputeDevice {
    /// The burn device, or an error when this build lacks the backend.
    pub fn burn(self) -> Result<Device> {
        let missing = |feature: &str| PalError::Config {
            field: "device",
            reason: format!(
                "this build has no {feature} backend: rebuild with `--features {feature}`"
            ),
        };
        match self {
            ComputeDevice::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            ComputeDevice::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(not(feature = "wgpu"))]
            ComputeDevice::Wgpu => Err(missing("wgpu")),
            #[cfg(feature = "cuda")]
            ComputeDevice::Cuda(i) => Ok(Device::cuda(i)),
            #[cfg(not(feature = "cuda"))]
            ComputeDevice::Cuda(_) => Err(missing("cuda")),
        }
    }
}

impl fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComputeDevice::Cpu => write!(f, "cpu"),
            ComputeDevice::Wgpu => write!(f, "wgpu"),
            ComputeDevice::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for ComputeDevice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "wgpu" => Ok(Self::Wgpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(i)) => Ok(Self::Cuda(i)),
                _ => Err(format!(
                    "`{s}` is not a device: use cpu, wgpu, cuda or cuda:N"
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prints_and_refuses_missing_backends() {
        for s in ["cpu", "wgpu", "cuda:2"] {
            assert_eq!(s.parse::<ComputeDevice>().unwrap().to_string(), s);
        }
        assert_eq!("cuda".parse::<ComputeDevice>(), Ok(ComputeDevice::Cuda(0)));
        assert!("gpu".parse::<ComputeDevice>().is_err());
        assert!(ComputeDevice::Cpu.burn().is_ok());
        #[cfg(not(feature = "wgpu"))]
        assert!(
            ComputeDevice::Wgpu
                .burn()
                .unwrap_err()
                .to_string()
                .contains("--features wgpu")
        );
        #[cfg(not(feature = "cuda"))]
        assert!(
            ComputeDevice::Cuda(0)
                .burn()
                .unwrap_err()
                .to_string()
                .contains("`device`")
        );
    }
}
