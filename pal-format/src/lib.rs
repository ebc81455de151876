//! pal's file formats, each with its one writer and its one reader: the dataset directory and its
//! splits ([`dataset`]), comparison JSONL ([`comparison`]), model directories ([`model_dir`]),
//! the browser bundle manifest ([`bundle`]), the per-prompt question candidates ([`candidates`]), item/prompt content ([`content`]), users' covariates ([`user_features`]) and the HTTP
//! bodies the server and the app share ([`http`]), the reward-serving bodies ([`rewards`]) and simulated groups' tastes ([`taste`]).
//!
//! No ML framework and no encoder: the CLI, the server, the data builders and the browser app
//! all read and write these formats through this crate (it builds for `wasm32`).

pub mod bundle;
pub mod candidates;
pub mod comparison;
pub mod content;
pub mod dataset;
pub mod http;
pub mod model_dir;
pub mod rewards;
pub mod taste;
pub mod user_features;

pub use bundle::{BundleManifest, BundleUser, TensorInfo};
pub use comparison::Comparison;
pub use content::{Content, ItemContent};
pub use dataset::{Dataset, Encoded, Split};
pub use model_dir::TrainedModel;
pub use pal_math::{PalError, Result, write_atomic};
pub use user_features::UserFeatures;
