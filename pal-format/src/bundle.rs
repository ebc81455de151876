//! The browser bundle's `manifest.json`: what a model's bundle holds and where its files are.
//! [`export`] writes a bundle (the CLI's export and the server's revisions add stores and a
//! revision to its manifest); the browser app reads it with [`BundleManifest::parse`].

use std::path::Path;

use pal_math::config::ModelConfig;
use pal_math::reference::softmax;
use pal_math::weights::named_tensors;
use pal_math::{PalError, Result, write_atomic};
use serde::{Deserialize, Serialize};

use crate::model_dir::{MODEL_VERSION, TrainedModel, WEIGHTS_FILE, check_version};

pub const MANIFEST_JSON: &str = "manifest.json";
/// The value of [`BundleManifest::format`].
pub const BUNDLE_FORMAT: &str = "pal-bundle";

/// One tensor of `weights.safetensors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
}

/// One user of the model and their simplex weights (softmax of the stored logits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleUser {
    pub id: String,
    pub weights: Vec<f32>,
}

/// `manifest.json` of a browser bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleManifest {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    pub version: u32,
    pub config: ModelConfig,
    /// The PAL-B cosine scale s (1 for PAL-A).
    pub scale: f32,
    pub weights_file: String,
    pub tensors: Vec<TensorInfo>,
    /// Users in the order of the weights' user rows.
    pub users: Vec<BundleUser>,
    /// The server's bundle revision (files are fetched with `?rev=N`); absent in CLI exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// The item embedding store, when the bundle carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_file: Option<String>,
    /// The prompt embedding store (PAL-B), when the bundle carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts_file: Option<String>,
    /// `content.json` (item texts, image URLs), when the dataset has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_file: Option<String>,
    /// `candidates.json` (per prompt, the items compared under it), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates_file: Option<String>,
    /// URLs of every file of this revision (server bundles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

/// Writes a browser bundle into `dir`: `weights.safetensors`, `model.json` and a
/// `manifest.json` listing tensors and each user's simplex weights.
pub fn export(model: &TrainedModel, dir: &Path) -> Result<BundleManifest> {
    std::fs::create_dir_all(dir).map_err(|e| PalError::io(dir, e))?;
    model.write_files(dir)?;
    let manifest = BundleManifest::of(model);
    manifest.write(dir)?;
    Ok(manifest)
}

impl BundleManifest {
    /// The manifest of a model's weights and users (no stores, no revision).
    pub fn of(model: &TrainedModel) -> Self {
        Self {
            format: BUNDLE_FORMAT.into(),
            version: MODEL_VERSION,
            config: model.weights.config.clone(),
            scale: model.weights.scale(),
            weights_file: WEIGHTS_FILE.into(),
            tensors: named_tensors(&model.weights)
                .into_iter()
                .map(|(name, shape, _)| TensorInfo { name, shape })
                .collect(),
            users: model
                .users
                .iter()
                .zip(&model.weights.user_logits)
                .map(|(u, l)| BundleUser {
                    id: u.clone(),
                    weights: softmax(l),
                })
                .collect(),
            revision: None,
            items_file: None,
            prompts_file: None,
            content_file: None,
            candidates_file: None,
            files: vec![],
        }
    }

    /// The one writer: `dir/manifest.json`, atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(MANIFEST_JSON), &self.to_bytes())
    }

    /// The manifest as pretty JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("manifest serialises")
    }

    /// The one reader: parses and checks a manifest (`origin` names it in errors).
    pub fn parse(bytes: &[u8], origin: &Path) -> Result<Self> {
        let m: Self = serde_json::from_slice(bytes)
            .map_err(|e| PalError::file(origin, format!("invalid bundle manifest: {e}")))?;
        if m.format != BUNDLE_FORMAT {
            return Err(PalError::file(
                origin,
                format!("format `{}` is not {BUNDLE_FORMAT}", m.format),
            ));
        }
        check_version(m.version, &m.config, origin)?;
        m.config.validate()?;
        let k = m.config.k;
        if let Some(u) = m.users.iter().find(|u| u.weights.len() != k) {
            return Err(PalError::Dim {
                what: format!("{}: weights of user `{}`", origin.display(), u.id),
                expected: k,
                found: u.weights.len(),
            });
        }
        Ok(m)
    }

    /// Reads `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_JSON);
        let bytes = std::fs::read(&path).map_err(|e| PalError::io(&path, e))?;
        Self::parse(&bytes, &path)
    }

    /// User ids in row order.
    pub fn user_ids(&self) -> Vec<String> {
        self.users.iter().map(|u| u.id.clone()).collect()
    }

    /// The URL of a file of this revision under `/models/{model}/files/`.
    pub fn file_url(&self, model: &str, name: &str) -> String {
        format!(
            "/models/{model}/files/{name}?rev={}",
            self.revision.unwrap_or(1)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pal_math::PalWeights;

    #[test]
    fn a_written_manifest_reads_back_and_bad_ones_are_named() {
        let cfg = ModelConfig::pal_b(6, 4, 5, 3);
        let model = TrainedModel::new(
            PalWeights::init(&cfg, 2, 1),
            vec!["a".into(), "b".into()],
            serde_json::json!({}),
        );
        let dir = tempfile::tempdir().unwrap();
        let mut m = export(&model, dir.path()).unwrap();
        assert_eq!(BundleManifest::read(dir.path()).unwrap(), m);
        assert_eq!(m.user_ids(), ["a", "b"]);
        assert!((m.users[1].weights.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        m.revision = Some(3);
        assert_eq!(
            m.file_url("x", "items.safetensors"),
            "/models/x/files/items.safetensors?rev=3"
        );

        let origin = Path::new("manifest.json");
        let mut bad = m.clone();
        bad.format = "zip".into();
        let e = BundleManifest::parse(&bad.to_bytes(), origin).unwrap_err();
        assert!(e.to_string().contains("not pal-bundle"), "{e}");
        let mut bad = m.clone();
        bad.users[0].weights.pop();
        let e = BundleManifest::parse(&bad.to_bytes(), origin).unwrap_err();
        assert!(e.to_string().contains("user `a`"), "{e}");
        // A version-1 bundle of a PAL-B residual model (the old residual form) is refused; a
        // plain version-1 bundle still reads.
        let mut old = m.clone();
        old.version = 1;
        assert!(BundleManifest::parse(&old.to_bytes(), origin).is_ok());
        old.config.residual = Some(1.0);
        let e = BundleManifest::parse(&old.to_bytes(), origin).unwrap_err();
        assert!(e.to_string().contains("version-1"), "{e}");
        let e = BundleManifest::parse(b"{\"format\": 1}", origin).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("manifest.json: invalid bundle manifest"),
            "{e}"
        );
    }
}
