//! Model directories: `model.json` (config, user ids, metadata) and `weights.safetensors`
//! (named plain tensors, see [`pal_math::weights`]), written so a crash never leaves a half model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use pal_math::config::ModelConfig;
use pal_math::reference::PalWeights;
use pal_math::weights::{weights_from_bytes, weights_to_bytes};
use pal_math::{PalError, Result};

pub const MODEL_JSON: &str = "model.json";
/// `model.json`'s version: 2 since PAL-B residual points carry the logit scale (`s·m̂ + δ`,
/// rewards `⟨f̂(x), u⟩`); version-1 PAL-B residual models meant `m̂ + δ` under a cosine.
pub const MODEL_VERSION: u32 = 2;
pub const WEIGHTS_FILE: &str = "weights.safetensors";

/// A trained model: weights plus the ids of the users whose logits it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedModel {
    pub weights: PalWeights,
    pub users: Vec<String>,
    /// Free-form provenance (training config, metrics).
    pub meta: serde_json::Value,
}

/// A user removed from a model by [`TrainedModel::take_users`].
#[derive(Debug, Clone, PartialEq)]
pub struct TakenUser {
    pub id: String,
    pub logits: Vec<f32>,
    pub residual: Option<Vec<f32>>,
}

/// `model.json` as stored.
#[derive(Serialize, Deserialize)]
struct ModelJson {
    format: String,
    version: u32,
    config: ModelConfig,
    users: Vec<String>,
    #[serde(default)]
    meta: serde_json::Value,
}

/// Refuses a `model.json` or bundle manifest `version` this pal cannot score as written: a
/// newer one, or a version-1 PAL-B model with residuals (the old `s·cos(f(x), m̂ + δ)` form).
pub(crate) fn check_version(version: u32, config: &ModelConfig, origin: &Path) -> Result<()> {
    if version > MODEL_VERSION {
        return Err(PalError::file(
            origin,
            format!("version {version} is newer than this pal reads ({MODEL_VERSION})"),
        ));
    }
    if version < 2 && config.residual.is_some() && config.variant == pal_math::config::Variant::B {
        return Err(PalError::file(
            origin,
            "a version-1 PAL-B model with residuals scores with the old residual form; \
             retrain it with this pal",
        ));
    }
    Ok(())
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

    /// Removes the users `take` picks and returns them in order, each with their logits and
    /// (on residual models) residual; the other users keep their order and rows.
    pub fn take_users(&mut self, mut take: impl FnMut(&str) -> bool) -> Vec<TakenUser> {
        let w = &mut self.weights;
        let residuals = w.user_residuals.len() == self.users.len();
        let mut taken = Vec::new();
        let (mut users, mut logits, mut res) = (Vec::new(), Vec::new(), Vec::new());
        let old_res = std::mem::take(&mut w.user_residuals);
        let mut old_res = old_res.into_iter();
        for (u, l) in self.users.drain(..).zip(w.user_logits.drain(..)) {
            let r = if residuals { old_res.next() } else { None };
            if take(&u) {
                taken.push(TakenUser {
                    id: u,
                    logits: l,
                    residual: r,
                });
            } else {
                users.push(u);
                logits.push(l);
                res.extend(r);
            }
        }
        self.users = users;
        w.user_logits = logits;
        w.user_residuals = if residuals { res } else { old_res.collect() };
        taken
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

    /// Writes `model.json` and `weights.safetensors` into an existing `dir` in place (a
    /// bundle's copy; [`save`](Self::save) is the atomic way to replace a model).
    pub fn write_files(&self, dir: &Path) -> Result<()> {
        let json = ModelJson {
            format: "pal-model".into(),
            version: MODEL_VERSION,
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
        check_version(json.version, &json.config, &path)?;
        json.config.validate()?;
        let path = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&path).map_err(|e| PalError::io(&path, e))?;
        let weights = weights_from_bytes(&json.config, json.users.len(), &bytes, &path)?;
        Ok(Self::new(weights, json.users, json.meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Saves a model, rewrites its `model.json` version to `version`, and loads it again.
    fn reload_as(config: ModelConfig, version: u32) -> Result<TrainedModel> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        let weights = PalWeights::init(&config, 2, 7);
        TrainedModel::new(
            weights,
            vec!["a".into(), "b".into()],
            serde_json::Value::Null,
        )
        .save(&path)?;
        let json = path.join(MODEL_JSON);
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        v["version"] = version.into();
        std::fs::write(&json, v.to_string()).unwrap();
        TrainedModel::load(&path)
    }

    #[test]
    fn taken_users_leave_with_their_rows() {
        for residual in [None, Some(1.0)] {
            let config = ModelConfig {
                residual,
                ..ModelConfig::pal_b(4, 4, 3, 2)
            };
            let weights = PalWeights::init(&config, 4, 3);
            let ids: Vec<String> = ["a", "vb", "c", "vd"].map(String::from).to_vec();
            let mut m = TrainedModel::new(weights.clone(), ids, serde_json::Value::Null);
            let taken = m.take_users(|u| u.starts_with('v'));
            assert_eq!(m.users, ["a", "c"]);
            assert_eq!(
                m.weights.user_logits,
                [0, 2].map(|i| weights.user_logits[i].clone())
            );
            assert_eq!(taken.len(), 2);
            assert_eq!(taken[1].id, "vd");
            assert_eq!(taken[1].logits, weights.user_logits[3]);
            assert_eq!(taken[1].residual.as_deref(), weights.residual(3));
            assert_eq!(
                m.weights.user_residuals.len(),
                if residual.is_some() { 2 } else { 0 }
            );
            if residual.is_some() {
                assert_eq!(m.weights.residual(1), weights.residual(2));
            }
        }
    }

    #[test]
    fn old_residual_models_are_refused_and_others_still_load() {
        let plain = ModelConfig::pal_b(4, 4, 3, 2);
        let residual = ModelConfig {
            residual: Some(1.0),
            ..plain.clone()
        };
        assert!(reload_as(plain.clone(), 1).is_ok());
        assert!(reload_as(residual.clone(), MODEL_VERSION).is_ok());
        let e = reload_as(residual, 1).unwrap_err().to_string();
        assert!(e.contains("version-1") && e.contains("retrain"), "{e}");
        let e = reload_as(plain, MODEL_VERSION + 1).unwrap_err().to_string();
        assert!(e.contains("newer"), "{e}");
    }
}
