//! all-MiniLM-L6-v2 sentence embeddings: BERT (candle-transformers) + WordPiece (`tokenizers`),
//! masked mean pooling over tokens, L2-normalised, 384-d.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

use crate::EmbedError;

/// Longest input in tokens (the sentence-transformers setting for this model); longer texts are cut.
pub const MAX_TOKENS: usize = 256;

/// A loaded sentence-transformers BERT model.
pub struct TextEncoder {
    model: BertModel,
    tokenizer: Tokenizer,
    dim: usize,
    id: String,
}

impl TextEncoder {
    /// Loads `model.safetensors`, `config.json` and `tokenizer.json` from a sentence-transformers folder.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let need = |name: &str| {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(EmbedError::MissingFile(p))
            }
        };
        let (weights, config, tok) = (
            need("model.safetensors")?,
            need("config.json")?,
            need("tokenizer.json")?,
        );
        let cfg_text = std::fs::read_to_string(&config).map_err(|e| EmbedError::io(&config, e))?;
        let cfg: Config = serde_json::from_str(&cfg_text).map_err(|e| EmbedError::Input {
            path: config.clone(),
            reason: e.to_string(),
        })?;
        let mut tokenizer = Tokenizer::from_file(&tok).map_err(|e| EmbedError::Input {
            path: tok.clone(),
            reason: e.to_string(),
        })?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| EmbedError::Input {
                path: tok.clone(),
                reason: e.to_string(),
            })?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        let read = |p: &Path| std::fs::read(p).map_err(|e| EmbedError::io(p, e));
        let id = format!(
            "bert/mean/l2/{}",
            crate::digest(&[&read(&weights)?, &read(&tok)?, cfg_text.as_bytes()])
        );
        // SAFETY: the file is memory-mapped read-only and not modified while the model lives.
        #[allow(unsafe_code)]
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &Device::Cpu)? };
        let model = BertModel::load(vb, &cfg)?;
        Ok(Self {
            model,
            tokenizer,
            dim: cfg.hidden_size,
            id,
        })
    }

    /// Identifies these model files in the embedding cache.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Width of the embeddings.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Embeds one batch of texts; each row is unit length.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(vec![]);
        }
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let (b, len) = (enc.len(), enc[0].get_ids().len());
        let ids: Vec<u32> = enc.iter().flat_map(|e| e.get_ids().to_vec()).collect();
        let mask: Vec<u32> = enc
            .iter()
            .flat_map(|e| e.get_attention_mask().to_vec())
            .collect();
        let ids = Tensor::from_vec(ids, (b, len), &Device::Cpu)?;
        let mask = Tensor::from_vec(mask, (b, len), &Device::Cpu)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?; // [b, len, dim]
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // [b, len, 1]
        let summed = hidden.broadcast_mul(&m)?.sum(1)?; // [b, dim]
        let count = m.sum(1)?.clamp(1e-9f32, f32::MAX)?; // [b, 1]
        let mean = summed.broadcast_div(&count)?;
        let norm = mean
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }
}
