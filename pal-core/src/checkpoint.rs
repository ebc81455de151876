//! Model files: a directory with `model.json` (config, user ids, metadata) and
//! `weights.safetensors` (named plain tensors, see [`pal_math::weights`]), written so a crash
//! never leaves a half model; and browser bundles.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::{PalError, Result};
use crate::reference::{PalWeights, softmax};
pub use pal_math::weights::{named_tensors, weights_from_bytes, weights_to_bytes};
pub use pal_math::write_atomic;

pub const MODEL_JSON: &str = "model.json";
pub const WEIGHTS_FILE: &str = "weights.safetensors";
pub const MANIFEST_JSON: &str = "manifest.json";

/// A trained model: weights plus the ids of the users whose logits it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedModel {
    pub weights: PalWeights,
    pub users: Vec<String>,
    /// Free-form provenance (training config, metrics).
    pub meta: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct ModelJson {
    format: String,
    version: u32,
    config: ModelConfig,
    users: Vec<String>,
    #[serde(default)]
    meta: serde_json::Value,
}

impl TrainedModel {
    pub fn new(weights: PalWeights, users: Vec<String>, meta: serde_json::Value) -> Self {
        Self {
            weights,
            users,
            meta,
        }
    }

    /// Row of a user's logits, if the model knows the user.
    pub fn user_index(&self, user: &str) -> Option<usize> {
        self.users.iter().position(|u| u == user)
    }

    /// Map from user id to row.
    pub fn user_map(&self) -> HashMap<String, usize> {
        self.users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.clone(), i))
            .collect()
    }

    /// Saves into `dir`: everything is written to `dir.partial` first, then swapped in.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let tmp = PathBuf::from(format!("{}.partial", dir.display()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| PalError::io(&tmp, e))?;
        self.write_files(&tmp)?;
        let old = PathBuf::from(format!("{}.old", dir.display()));
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&old);
            std::fs::rename(dir, &old).map_err(|e| PalError::io(dir, e))?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| PalError::io(dir, e))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    fn write_files(&self, dir: &Path) -> Result<()> {
        let json = ModelJson {
            format: "pal-model".into(),
            version: 1,
            config: self.weights.config.clone(),
            users: self.users.clone(),
            meta: self.meta.clone(),
        };
        let text = serde_json::to_string_pretty(&json).expect("model json serialises");
        let path = dir.join(MODEL_JSON);
        std::fs::write(&path, text).map_err(|e| PalError::io(&path, e))?;
        let path = dir.join(WEIGHTS_FILE);
        std::fs::write(&path, weights_to_bytes(&self.weights)?).map_err(|e| PalError::io(&path, e))
    }

    /// Loads a model directory, validating config and every tensor shape.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MODEL_JSON);
        let text = std::fs::read_to_string(&path).map_err(|e| PalError::io(&path, e))?;
        let json: ModelJson = serde_json::from_str(&text)
            .map_err(|e| PalError::file(&path, format!("invalid model.json: {e}")))?;
        if json.format != "pal-model" {
            return Err(PalError::file(
                &path,
                format!("format `{}` is not pal-model", json.format),
            ));
        }
        json.config.validate()?;
        let path = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&path).map_err(|e| PalError::io(&path, e))?;
        let weights = weights_from_bytes(&json.config, json.users.len(), &bytes, &path)?;
        Ok(Self::new(weights, json.users, json.meta))
    }

    /// Writes a browser bundle: `weights.safetensors`, `model.json` and a `manifest.json` listing
    /// tensors with shapes and each user's simplex weights.
    pub fn export_bundle(&self, dir: &Path) -> Result<serde_json::Value> {
        std::fs::create_dir_all(dir).map_err(|e| PalError::io(dir, e))?;
        self.write_files(dir)?;
        let tensors: Vec<_> = named_tensors(&self.weights)
            .into_iter()
            .map(|(name, shape, _)| serde_json::json!({"name": name, "shape": shape}))
            .collect();
        let users: Vec<_> = self
            .users
            .iter()
            .zip(&self.weights.user_logits)
            .map(|(u, l)| serde_json::json!({"id": u, "weights": softmax(l)}))
            .collect();
        let manifest = serde_json::json!({
            "format": "pal-bundle",
            "version": 1,
            "config": self.weights.config,
            "scale": self.weights.scale(),
            "weights_file": WEIGHTS_FILE,
            "tensors": tensors,
            "users": users,
        });
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        write_atomic(&dir.join(MANIFEST_JSON), text.as_bytes())?;
        Ok(manifest)
    }
}
