//! PAL's single source of truth for the model math, with no ML framework: configs, the
//! reference forward pass, and weight files. Burn training (`pal-core`) and the WGSL engine
//! (`pal-infer`) are both tested against it; it builds for `wasm32-unknown-unknown`.

pub mod config;
pub mod error;
pub mod reference;
pub mod store;
pub mod weights;

pub use config::{IdealPoint, Link, ModelConfig, NormBound, Variant};
pub use error::{PalError, Result};
pub use reference::{PalWeights, UserPref};
pub use store::EmbeddingStore;

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(|e| PalError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| PalError::io(path, e))
}
pub mod personalise;
