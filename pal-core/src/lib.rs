//! PAL: personalised reward models (PAL-A ideal-point, PAL-B reward form) over frozen embeddings.
//!
//! - [`reference`]: the plain-Rust forward math, the executable spec.
//! - [`model`]: the same model as a burn module for batched training.
//! - [`data`], [`store`], [`dataset`]: comparisons (JSONL), embeddings (safetensors), splits.
//! - [`train`], [`fewshot`], [`eval`], [`baseline`]: joint training, new users, metrics, baselines.
//! - [`synth`]: the paper's synthetic setting with saved ground truth.
//! - [`checkpoint`]: model files and browser bundles.
//! - [`engine`], [`fused`]: burn or the fused CPU engine (hand-derived backward pass, gemm,
//!   one-pass AdamW) behind one training interface.

pub mod model;
pub use pal_math::{config, error, reference, store};

pub use config::{IdealPoint, Link, ModelConfig, NormBound, Variant};
pub use error::{PalError, Result};
pub use reference::PalWeights;
pub mod checkpoint;
pub mod data;
pub mod dataset;
pub mod device;
pub mod engine;
pub mod fused;
pub mod train;

pub use checkpoint::TrainedModel;
pub use data::Comparison;
pub use dataset::{Dataset, Encoded, Split};
pub use store::EmbeddingStore;
pub use train::{Control, Progress, TrainConfig, TrainReport, Trainer};
pub mod baseline;
pub mod experiment;
pub mod pipeline;
pub mod synth;
