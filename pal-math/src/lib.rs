//! PAL's single source of truth for the model math, with no ML framework: configs, the
//! reference forward pass, and weight files. Burn training (`pal-core`) and the WGSL engine
//! (`pal-infer`) are both tested against it; it builds for `wasm32-unknown-unknown`.

pub mod config;
pub mod error;
pub mod reference;
pub mod weights;

pub use config::{IdealPoint, Link, ModelConfig, NormBound, Variant};
pub use error::{PalError, Result};
pub use reference::PalWeights;
pub mod personalise;
