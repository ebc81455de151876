//! Texts into embeddings on the server: the text encoder (all-MiniLM-L6-v2, `pal_embed`), loaded
//! on first use by one batching thread ([`batch`]: concurrent requests share encoder passes,
//! a full queue answers 503), a memo of embedded prompts ([`memo`]), and the proof that a
//! dataset's items or prompts were made by this encoder — the first text of that side in its
//! `content.json`, embedded again, must give its stored row (cosine ≥ 0.999) — remembered per
//! dataset and side. Without the `embed` feature every request says so.

pub mod batch;
pub mod memo;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pal_core::reference::cosine;
use pal_format::content::SAME_ENCODER_MIN_COSINE;

use crate::error::ApiError;
use batch::{BatchConfig, BatchStats, Batcher, EncodeFn, Refused};
use memo::Memo;

/// The name of the one text encoder a server has.
pub const TEXT_ENCODER: &str = "all-MiniLM-L6-v2";

/// Why a model's texts cannot be embedded, or the encoder's name.
pub type Verdict = Result<String, String>;

/// Which embeddings of a dataset a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Items,
    Prompts,
}

impl Side {
    pub fn noun(self) -> &'static str {
        match self {
            Side::Items => "items",
            Side::Prompts => "prompts",
        }
    }

    /// One of them, as in "an item text".
    pub fn one(self) -> &'static str {
        match self {
            Side::Items => "item",
            Side::Prompts => "prompt",
        }
    }
}

/// What a dataset offers to check the encoder against: a text with its stored row, or why not.
pub type Sample<'a> = Result<(&'a str, &'a [f32]), String>;

/// Held while one dataset's side is checked.
pub type CheckLock = Arc<tokio::sync::Mutex<()>>;

pub struct TextEmbedder {
    batcher: Batcher,
    pub stats: Arc<BatchStats>,
    prompts: Memo,
    /// (dataset id, side) → verdict (checked once).
    verified: Mutex<HashMap<(String, Side), Verdict>>,
    /// (dataset id, side) → held while it is checked, so concurrent first requests check once.
    checking: Mutex<HashMap<(String, Side), CheckLock>>,
}

fn refused(r: Refused) -> ApiError {
    match r {
        Refused::Full => ApiError::unavailable("busy embedding other texts; retry in a second"),
        Refused::NoEncoder(why) => ApiError::invalid(why),
        Refused::Failed(why) => ApiError::internal(format!("embedding texts: {why}")),
    }
}

#[cfg(feature = "embed")]
fn encoder() -> EncodeFn {
    let mut loaded: Option<Result<pal_embed::TextEncoder, Refused>> = None;
    Box::new(move |texts| {
        let enc = loaded.get_or_insert_with(|| {
            let dir = pal_embed::Asset::named("minilm")
                .and_then(|a| a.path())
                .map_err(|_| {
                    Refused::NoEncoder(
                        "this server has no text encoder (run `cargo xtask assets` where it runs)"
                            .into(),
                    )
                })?;
            pal_embed::TextEncoder::load(&dir)
                .map_err(|e| Refused::NoEncoder(format!("loading the text encoder: {e}")))
        });
        let enc = enc.as_ref().map_err(Clone::clone)?;
        enc.embed(texts).map_err(|e| Refused::Failed(e.to_string()))
    })
}

#[cfg(not(feature = "embed"))]
fn encoder() -> EncodeFn {
    Box::new(|_| {
        Err(Refused::NoEncoder(
            "this server was built without text embedding (cargo feature `embed`)".into(),
        ))
    })
}

impl TextEmbedder {
    /// The batching thread (started now; the encoder loads on the first texts) and a memo of
    /// `memo` prompts.
    pub fn new(config: BatchConfig, memo: usize) -> Self {
        let stats = Arc::new(BatchStats::default());
        Self {
            batcher: Batcher::start(config, encoder(), stats.clone()),
            stats,
            prompts: Memo::new(memo),
            verified: Mutex::default(),
            checking: Mutex::default(),
        }
    }

    /// The verdict remembered for a dataset's side, if any.
    pub fn known(&self, dataset: &str, side: Side) -> Option<Verdict> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(dataset.to_string(), side))
            .cloned()
    }

    /// The lock that one check of a dataset's side holds.
    pub fn check_lock(&self, dataset: &str, side: Side) -> CheckLock {
        self.checking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((dataset.to_string(), side))
            .or_default()
            .clone()
    }

    /// Checks (blocking work) that `sample`'s text embeds to its stored row, i.e. that the
    /// dataset's `side` came from this server's encoder; remembers the verdict. A busy queue
    /// is not a verdict: it answers 503 and nothing is remembered.
    pub fn verify(&self, dataset: &str, side: Side, sample: Sample) -> Result<Verdict, ApiError> {
        let verdict = match sample {
            Err(why) => Err(why),
            Ok((text, stored)) => match self.embed_blocking(vec![text.to_string()]) {
                // Busy (503) or failing (500): no verdict on the dataset.
                Err(e) if e.status.is_server_error() => return Err(e),
                Err(e) => Err(e.detail),
                Ok(rows) => match rows.first() {
                    Some(v)
                        if v.len() == stored.len()
                            && cosine(v, stored) >= SAME_ENCODER_MIN_COSINE =>
                    {
                        Ok(TEXT_ENCODER.to_string())
                    }
                    _ => Err(format!(
                        "its {} were not made by {TEXT_ENCODER}, the text encoder pal has",
                        side.noun()
                    )),
                },
            },
        };
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((dataset.to_string(), side), verdict.clone());
        Ok(verdict)
    }

    /// Embeds texts (unit-length rows, in order) in the next batch pass.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, ApiError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let rx = self.batcher.submit(texts).map_err(refused)?;
        rx.await
            .map_err(|_| ApiError::internal("the embedding thread stopped"))?
            .map_err(refused)
    }

    /// [`Self::embed`] from blocking code.
    pub fn embed_blocking(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, ApiError> {
        let rx = self.batcher.submit(texts).map_err(refused)?;
        rx.blocking_recv()
            .map_err(|_| ApiError::internal("the embedding thread stopped"))?
            .map_err(refused)
    }

    /// Embeds `responses` and, unless remembered, `prompt`, in one batch pass: (prompt row,
    /// response rows). Prompts are remembered.
    pub async fn embed_with_prompts(
        &self,
        prompts: &[&str],
        responses: Vec<String>,
    ) -> Result<(Vec<Vec<f32>>, Vec<Vec<f32>>), ApiError> {
        let mut known: Vec<Option<Vec<f32>>> =
            prompts.iter().map(|p| self.prompts.get(p)).collect();
        let missing: Vec<usize> = (0..prompts.len()).filter(|&i| known[i].is_none()).collect();
        let n = responses.len();
        let mut texts = responses;
        texts.extend(missing.iter().map(|&i| prompts[i].to_string()));
        let mut rows = self.embed(texts).await?;
        let prompt_rows = rows.split_off(n);
        for (&i, row) in missing.iter().zip(prompt_rows) {
            self.prompts.put(prompts[i], row.clone());
            known[i] = Some(row);
        }
        let prompts = known.into_iter().map(Option::unwrap_or_default).collect();
        Ok((prompts, rows))
    }

    /// Prompts remembered now.
    pub fn memo_len(&self) -> usize {
        self.prompts.len()
    }
}
