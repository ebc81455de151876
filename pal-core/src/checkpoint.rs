//! Model files: a directory with `model.json` (config, user ids, metadata) and
//! `weights.safetensors` (named plain tensors), written so a crash never leaves a half model.
//!
//! Tensor names: `item_map.{layer}.weight` `[in, out]`, `item_map.{layer}.bias` `[out]`,
//! `prompt_maps.{k}.{layer}.weight|bias` (PAL-B), `prototypes` `[K, dim]` (PAL-A),
//! `user_logits` `[users, K]`, `log_scale` `[1]`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::{PalError, Result};
use crate::reference::{Head, Linear, Mlp, PalWeights, softmax};

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

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(|e| PalError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| PalError::io(path, e))
}

fn named_tensors(w: &PalWeights) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = Vec::new();
    let mut mlp = |prefix: &str, m: &Mlp| {
        for (i, l) in m.layers.iter().enumerate() {
            out.push((
                format!("{prefix}.{i}.weight"),
                vec![l.d_in, l.d_out],
                l.weight.clone(),
            ));
            out.push((format!("{prefix}.{i}.bias"), vec![l.d_out], l.bias.clone()));
        }
    };
    mlp("item_map", &w.item_map);
    let protos = match &w.head {
        Head::PromptMaps(maps) => {
            maps.iter()
                .enumerate()
                .for_each(|(k, m)| mlp(&format!("prompt_maps.{k}"), m));
            None
        }
        Head::Prototypes(p) => Some(p),
    };
    if let Some(p) = protos {
        out.push(("prototypes".into(), vec![p.len(), p[0].len()], p.concat()));
    }
    let k = w.config.k;
    out.push((
        "user_logits".into(),
        vec![w.user_logits.len(), k],
        w.user_logits.concat(),
    ));
    out.push(("log_scale".into(), vec![1], vec![w.log_scale]));
    out
}

/// Serialises weights to safetensors bytes.
pub fn weights_to_bytes(w: &PalWeights) -> Result<Vec<u8>> {
    let tensors = named_tensors(w);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| PalError::Data(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None).map_err(|e| PalError::Data(e.to_string()))
}

/// Reads weights for `config` from safetensors bytes, checking every shape.
pub fn weights_from_bytes(
    config: &ModelConfig,
    n_users: usize,
    bytes: &[u8],
    path: &Path,
) -> Result<PalWeights> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| PalError::file(path, format!("not a safetensors file: {e}")))?;
    let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        let v = st
            .tensor(name)
            .map_err(|_| PalError::file(path, format!("missing tensor `{name}`")))?;
        if v.dtype() != Dtype::F32 || v.shape() != shape {
            return Err(PalError::file(
                path,
                format!(
                    "tensor `{name}`: expected F32 {shape:?}, found {:?} {:?}",
                    v.dtype(),
                    v.shape()
                ),
            ));
        }
        let vals: Vec<f32> = v
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if vals.iter().any(|x| !x.is_finite()) {
            return Err(PalError::file(
                path,
                format!("tensor `{name}` has non-finite values"),
            ));
        }
        Ok(vals)
    };
    let mlp = |prefix: &str, d_in: usize| -> Result<Mlp> {
        let widths = config.widths(d_in);
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                Ok(Linear {
                    d_in: w[0],
                    d_out: w[1],
                    weight: get(&format!("{prefix}.{i}.weight"), &[w[0], w[1]])?,
                    bias: get(&format!("{prefix}.{i}.bias"), &[w[1]])?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Mlp { layers })
    };
    let k = config.k;
    let dim = config.prototype_dim();
    let head = match config.variant {
        crate::Variant::B => Head::PromptMaps(
            (0..k)
                .map(|i| mlp(&format!("prompt_maps.{i}"), dim))
                .collect::<Result<_>>()?,
        ),
        crate::Variant::A => {
            let p = get("prototypes", &[k, dim])?;
            Head::Prototypes(p.chunks(dim).map(<[f32]>::to_vec).collect())
        }
    };
    let logits = get("user_logits", &[n_users, k])?;
    Ok(PalWeights {
        config: config.clone(),
        item_map: mlp("item_map", config.d_item)?,
        head,
        user_logits: logits.chunks(k).map(<[f32]>::to_vec).collect(),
        log_scale: get("log_scale", &[1])?[0],
    })
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
