//! Embedding into an [`EmbeddingStore`] with a content-hash cache: an item whose text or file bytes
//! (and encoder) are unchanged keeps its stored row instead of being embedded again.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use pal_math::EmbeddingStore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{EmbedError, ImageEncoder, TextEncoder};

/// One thing to embed, with the id it will have in the store.
#[derive(Debug, Clone)]
pub enum EmbedInput {
    Text { id: String, text: String },
    Image { id: String, path: PathBuf },
}

impl EmbedInput {
    pub fn id(&self) -> &str {
        match self {
            Self::Text { id, .. } | Self::Image { id, .. } => id,
        }
    }

    fn hash(&self, model: &str) -> Result<String, EmbedError> {
        let mut h = Sha256::new();
        h.update(model.as_bytes());
        match self {
            Self::Text { text, .. } => h.update(text.as_bytes()),
            Self::Image { path, .. } => {
                h.update(std::fs::read(path).map_err(|e| EmbedError::io(path, e))?)
            }
        }
        Ok(format!("{:x}", h.finalize()))
    }
}

/// An encoder that can embed a batch of inputs of its kind.
pub enum Embedder {
    Text(Box<TextEncoder>),
    Image(ImageEncoder),
}

impl Embedder {
    /// Identifies the encoder and its files in the cache (another model invalidates every row).
    pub fn model_id(&self) -> &str {
        match self {
            Self::Text(t) => t.id(),
            Self::Image(i) => i.id(),
        }
    }

    pub fn dim(&self) -> usize {
        match self {
            Self::Text(t) => t.dim(),
            Self::Image(_) => crate::image::FEATURE_DIM,
        }
    }

    fn embed(&self, batch: &[&EmbedInput]) -> Result<Vec<Vec<f32>>, EmbedError> {
        match self {
            Self::Text(t) => {
                let texts = batch
                    .iter()
                    .map(|i| match i {
                        EmbedInput::Text { text, .. } => Ok(text.as_str()),
                        EmbedInput::Image { id, .. } => Err(EmbedError::Item {
                            id: id.clone(),
                            reason: "an image given to the text encoder".into(),
                        }),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                t.embed(&texts)
            }
            Self::Image(enc) => batch
                .iter()
                .map(|i| match i {
                    EmbedInput::Image { path, .. } => enc.embed_file(path),
                    EmbedInput::Text { id, .. } => Err(EmbedError::Item {
                        id: id.clone(),
                        reason: "a text given to the image encoder".into(),
                    }),
                })
                .collect(),
        }
    }
}

/// What one run did.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedReport {
    pub items: usize,
    pub embedded: usize,
    pub reused: usize,
    pub dim: usize,
    pub seconds: f64,
    /// Newly embedded items per second (0 when nothing was embedded).
    pub items_per_second: f64,
}

#[derive(Serialize, Deserialize, Default)]
struct Sidecar {
    model: String,
    hashes: BTreeMap<String, String>,
}

fn sidecar_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".cache.json");
    PathBuf::from(s)
}

/// Embeds `inputs` into the store at `out` (created or replaced atomically), reusing unchanged rows.
/// `progress(done, total)` is called after each batch of newly embedded items.
pub fn embed_into_store(
    embedder: &Embedder,
    inputs: &[EmbedInput],
    out: &Path,
    batch: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EmbedReport, EmbedError> {
    let mut seen = HashSet::new();
    for i in inputs {
        if i.id().is_empty() {
            return Err(EmbedError::Item {
                id: String::new(),
                reason: "empty id".into(),
            });
        }
        if !seen.insert(i.id()) {
            return Err(EmbedError::Item {
                id: i.id().into(),
                reason: "duplicate id".into(),
            });
        }
    }
    let model = embedder.model_id();
    let hashes = inputs
        .iter()
        .map(|i| i.hash(model))
        .collect::<Result<Vec<_>, _>>()?;
    let (old, old_side) = previous(out, model, embedder.dim());
    let start = Instant::now();
    let mut rows: Vec<Option<Vec<f32>>> = inputs
        .iter()
        .zip(&hashes)
        .map(|(i, h)| {
            let same = old_side.hashes.get(i.id()) == Some(h);
            old.as_ref()
                .filter(|_| same)
                .and_then(|s| s.get(i.id()))
                .map(<[f32]>::to_vec)
        })
        .collect();
    let todo: Vec<usize> = (0..inputs.len()).filter(|&i| rows[i].is_none()).collect();
    let mut done = 0;
    for chunk in todo.chunks(batch.max(1)) {
        let items: Vec<&EmbedInput> = chunk.iter().map(|&i| &inputs[i]).collect();
        for (&i, v) in chunk.iter().zip(embedder.embed(&items)?) {
            rows[i] = Some(v);
        }
        done += chunk.len();
        progress(done, todo.len());
    }
    let seconds = start.elapsed().as_secs_f64();
    let data: Vec<f32> = rows
        .into_iter()
        .flat_map(|r| r.unwrap_or_default())
        .collect();
    let ids = inputs.iter().map(|i| i.id().to_string()).collect();
    EmbeddingStore::new(ids, embedder.dim(), data)?.save(out)?;
    let side = Sidecar {
        model: model.into(),
        hashes: inputs
            .iter()
            .zip(hashes)
            .map(|(i, h)| (i.id().to_string(), h))
            .collect(),
    };
    let side_path = sidecar_path(out);
    let json = serde_json::to_vec_pretty(&side).map_err(|e| EmbedError::Format(e.to_string()))?;
    pal_math::write_atomic(&side_path, &json)?;
    Ok(EmbedReport {
        items: inputs.len(),
        embedded: todo.len(),
        reused: inputs.len() - todo.len(),
        dim: embedder.dim(),
        seconds,
        items_per_second: if todo.is_empty() {
            0.0
        } else {
            todo.len() as f64 / seconds.max(1e-9)
        },
    })
}

/// The previous store and its hashes when they were made by the same encoder; otherwise nothing.
fn previous(out: &Path, model: &str, dim: usize) -> (Option<EmbeddingStore>, Sidecar) {
    let side: Option<Sidecar> = std::fs::read(sidecar_path(out))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    match (side, EmbeddingStore::load(out).ok()) {
        (Some(side), Some(store)) if side.model == model && store.dim() == dim => {
            (Some(store), side)
        }
        _ => (None, Sidecar::default()),
    }
}
