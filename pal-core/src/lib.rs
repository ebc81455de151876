//! PAL: personalised reward models (PAL-A ideal-point, PAL-B reward form) over frozen embeddings.
//!
//! - [`reference`]: the plain-Rust forward math, the executable spec.
//! - [`model`]: the same model as a burn module for batched training.
//! - file formats (comparisons, dataset layout, model directories, bundles) live in `pal-format`;
//!   the common types are re-exported here.
//! - [`train`], [`pipeline`], [`baseline`], [`experiment`], [`relevance`]: joint training, new
//!   users, metrics (relevance of rankings too), baselines.
//! - [`synth`]: the paper's synthetic setting with saved ground truth.
//! - [`fused`]: the fused CPU engine (hand-derived backward pass, gemm, one-pass AdamW); burn or
//!   fused is chosen per run ([`train::Engine`]) behind one training interface.

pub mod baseline;
pub mod bestofn;
pub mod coldstart;
pub mod device;
pub mod experiment;
pub mod fused;
pub mod kchoice;
pub mod model;
pub mod pipeline;
pub mod relevance;
pub mod select;
pub mod synth;
pub mod train;

pub use pal_math::{config, error, reference, store};

pub use config::{IdealPoint, Link, ModelConfig, NormBound, Variant};
pub use error::{PalError, Result};
pub use pal_cpu::Precision;
pub use pal_format::{Comparison, Dataset, Encoded, Split, TrainedModel};
pub use reference::PalWeights;
pub use store::EmbeddingStore;
pub use train::{Control, Progress, TrainConfig, TrainReport, Trainer};
