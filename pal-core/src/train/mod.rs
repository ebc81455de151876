//! Joint training: AdamW per parameter group (item map, head, users, scale), mini-batches,
//! early stopping on a validation split, per-epoch checkpoints and exact resume.
//!
//! | file | what it owns |
//! |---|---|
//! | `config` | `TrainConfig`, `Engine` (auto, burn, fused), `GroupRates`, `EpochStats`, `Progress`, `Control`, `TrainReport` |
//! | `tables` | `Tables` (embeddings on a device + host copies), `predict`, `score` |
//! | `stepper` | `Stepper`: the chosen engine's model + optimizer state, one step/predict/save/load interface |
//! | `trainer` | `Trainer`: the epoch loop, early stopping, checkpoints, exact resume |
//!
//! Imports run one way: `trainer` → `stepper` → `tables` → `config`.

mod config;
mod stepper;
mod tables;
mod trainer;

pub use config::{Control, Engine, EpochStats, GroupRates, Progress, TrainConfig, TrainReport};
pub use tables::{Metrics, Tables, ece, predict, score};
pub use trainer::Trainer;
