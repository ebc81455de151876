//! Frozen encoders that turn texts and images into the embeddings PAL trains on, with a content-hash
//! cache so unchanged items are never embedded twice, and the pinned registry assets they load.

pub mod assets;
pub mod cache;
pub mod image;
pub mod text;
pub mod torch_legacy;

use std::path::{Path, PathBuf};

pub use assets::Asset;
pub use cache::{EmbedInput, EmbedReport, Embedder, embed_into_store};
pub use image::ImageEncoder;
pub use text::TextEncoder;

/// Errors from loading encoders and embedding inputs.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: missing (run `cargo xtask assets` to fetch the pinned encoders and data)")]
    MissingFile(PathBuf),
    #[error("{path}: {reason}")]
    Input { path: PathBuf, reason: String },
    #[error("input `{id}`: {reason}")]
    Item { id: String, reason: String },
    #[error("{0}")]
    Format(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Pal(#[from] pal_math::PalError),
}

/// Short sha256 of some bytes: identifies an encoder's files in the embedding cache, so a
/// different model (`--model`) never reuses another model's rows.
pub(crate) fn digest(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    format!("{:x}", h.finalize())[..16].to_string()
}

impl EmbedError {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}
