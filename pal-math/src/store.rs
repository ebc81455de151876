//! Embedding store: named rows of f32 vectors in a safetensors file.
//!
//! Layout: one F32 tensor `embeddings` of shape `[N, D]`; the row ids are a JSON array of strings
//! in the file's metadata under `ids`.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{PalError, Result};

/// Rows of embeddings addressed by string id.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingStore {
    ids: Vec<String>,
    dim: usize,
    data: Vec<f32>,
    index: HashMap<String, usize>,
}

impl EmbeddingStore {
    /// Builds a store, rejecting duplicate ids, ragged rows and non-finite values.
    pub fn new(ids: Vec<String>, dim: usize, data: Vec<f32>) -> Result<Self> {
        if ids.is_empty() {
            return Err(PalError::Data("embedding store has no rows".into()));
        }
        if dim == 0 || data.len() != ids.len() * dim {
            return Err(PalError::Data(format!(
                "embedding store: {} ids × dim {dim} ≠ {} values",
                ids.len(),
                data.len()
            )));
        }
        let mut index = HashMap::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            if index.insert(id.clone(), i).is_some() {
                return Err(PalError::Data(format!("duplicate embedding id `{id}`")));
            }
            if let Some(v) = data[i * dim..(i + 1) * dim].iter().find(|v| !v.is_finite()) {
                return Err(PalError::Data(format!(
                    "embedding `{id}` contains a non-finite value ({v})"
                )));
            }
        }
        Ok(Self {
            ids,
            dim,
            data,
            index,
        })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// All rows, row-major `[N, D]`.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    pub fn get(&self, id: &str) -> Option<&[f32]> {
        self.position(id).map(|i| self.row(i))
    }

    /// Loads a store from a file; errors name the file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| PalError::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses safetensors bytes (e.g. fetched by the browser); `origin` names them in errors.
    pub fn from_bytes(bytes: &[u8], origin: &Path) -> Result<Self> {
        let bad = |reason: String| PalError::file(origin, reason);
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let view = st
            .tensor("embeddings")
            .map_err(|_| bad("no tensor named `embeddings`".into()))?;
        if view.dtype() != Dtype::F32 || view.shape().len() != 2 {
            return Err(bad(format!(
                "`embeddings` must be F32 [N, D], found {:?} {:?}",
                view.dtype(),
                view.shape()
            )));
        }
        let (n, dim) = (view.shape()[0], view.shape()[1]);
        let ids: Vec<String> = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("ids"))
            .ok_or_else(|| bad("metadata has no `ids`".into()))
            .and_then(|s| {
                serde_json::from_str(s).map_err(|e| bad(format!("metadata `ids`: {e}")))
            })?;
        if ids.len() != n {
            return Err(bad(format!("{} ids for {n} rows", ids.len())));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Self::new(ids, dim, data).map_err(|e| bad(e.to_string()))
    }

    /// Saves the store (written to a temporary file, then renamed into place).
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes: Vec<u8> = self.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = TensorView::new(Dtype::F32, vec![self.len(), self.dim], &bytes)
            .map_err(|e| PalError::file(path, e.to_string()))?;
        let meta = HashMap::from([(
            "ids".to_string(),
            serde_json::to_string(&self.ids).expect("ids serialise"),
        )]);
        let out = safetensors::serialize([("embeddings", view)], Some(meta))
            .map_err(|e| PalError::file(path, e.to_string()))?;
        crate::write_atomic(path, &out)
    }
}
