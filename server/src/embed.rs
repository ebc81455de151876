//! Typed prompts: the text encoder (all-MiniLM-L6-v2, `pal_embed`), loaded once on first use,
//! and the proof that a dataset's prompts were made by it — its first prompt text, embedded
//! again, must give its stored embedding (cosine ≥ 0.999) — remembered per dataset. Without the
//! `embed` feature every request says so. At most two texts are embedded at once.

use std::collections::HashMap;
use std::sync::Mutex;

use pal_core::reference::cosine;
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Why a model cannot embed typed prompts, or the encoder's name.
pub type Verdict = Result<String, String>;

pub struct TextEmbedder {
    #[cfg(feature = "embed")]
    encoder: std::sync::OnceLock<Result<pal_embed::TextEncoder, String>>,
    /// Dataset id → verdict (checked once per dataset).
    verified: Mutex<HashMap<String, Verdict>>,
    pub permits: Semaphore,
}

impl Default for TextEmbedder {
    fn default() -> Self {
        Self {
            #[cfg(feature = "embed")]
            encoder: std::sync::OnceLock::new(),
            verified: Mutex::default(),
            permits: Semaphore::new(2),
        }
    }
}

impl TextEmbedder {
    /// The verdict remembered for a dataset, if any.
    pub fn known(&self, dataset: &str) -> Option<Verdict> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(dataset)
            .cloned()
    }

    fn remember(&self, dataset: &str, v: Verdict) -> Verdict {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(dataset.to_string(), v.clone());
        v
    }

    /// Checks (blocking work) that `prompt_text` embeds to `stored`, i.e. that the dataset's
    /// prompts came from this server's encoder; remembers the verdict for `dataset`.
    pub fn verify(&self, dataset: &str, sample: Option<(&str, &[f32])>) -> Verdict {
        let verdict = match sample {
            None => Err(
                "its dataset has no prompt texts (content.json) to check the encoder against"
                    .into(),
            ),
            Some((text, stored)) => match self.embed(text) {
                Err(e) => Err(e.detail),
                Ok((v, name)) if v.len() == stored.len() && cosine(&v, stored) >= 0.999 => Ok(name),
                Ok((_, name)) => Err(format!(
                    "its prompts were not made by {name}, the text encoder pal has"
                )),
            },
        };
        self.remember(dataset, verdict)
    }

    /// Embeds one text (blocking work): the unit-length embedding and the encoder's name.
    #[cfg(feature = "embed")]
    pub fn embed(&self, text: &str) -> Result<(Vec<f32>, String), ApiError> {
        let enc = self.encoder.get_or_init(|| {
            let dir = pal_embed::Asset::named("minilm")
                .and_then(|a| a.path())
                .map_err(|_| {
                    "this server has no text encoder (run `cargo xtask assets` where it runs)"
                        .to_string()
                })?;
            pal_embed::TextEncoder::load(&dir).map_err(|e| format!("loading the text encoder: {e}"))
        });
        let enc = enc.as_ref().map_err(|e| ApiError::invalid(e.clone()))?;
        let mut rows = enc
            .embed(&[text])
            .map_err(|e| ApiError::internal(format!("embedding a prompt: {e}")))?;
        let v = rows
            .pop()
            .ok_or_else(|| ApiError::internal("the encoder gave no row"))?;
        Ok((v, "all-MiniLM-L6-v2".to_string()))
    }

    #[cfg(not(feature = "embed"))]
    pub fn embed(&self, _text: &str) -> Result<(Vec<f32>, String), ApiError> {
        Err(ApiError::invalid(
            "this server was built without text embedding (cargo feature `embed`)",
        ))
    }
}
