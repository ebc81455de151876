//! Datasets in the paper's style built from real content: `summaries` (human-written ACL paper
//! summaries, TL;DR-style length and aspect preferences) and `filters` (CC0 photos under colour
//! filters, Pick-a-Filter-style with mixing ratio β). Preferences are simulated by documented rules,
//! as the paper does; each dataset is written in `pal_format::dataset`'s layout with a card and the
//! item content (texts, thumbnails) for the browser gallery.

pub mod fashion;
pub mod filters;
pub mod population;
pub mod psychotools;
pub mod summaries;
pub mod wallpapers;

use std::path::Path;

use pal_format::{Comparison, Split};

pub use pal_format::content::{CONTENT_FILE, Content, ItemContent};
pub use population::{Group, Population, PopulationConfig};

/// Errors from building datasets.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("invalid option `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("{path}: {reason}")]
    Source {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error(transparent)]
    Embed(#[from] pal_embed::EmbedError),
    #[error(transparent)]
    Pal(#[from] pal_math::PalError),
}

/// `Ok` when a share (a probability) lies in [0, 1], else the error naming `field`.
pub(crate) fn check_share(field: &'static str, v: f32) -> Result<(), DataError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(DataError::Config {
            field,
            reason: format!("{v} is outside [0, 1]"),
        })
    }
}

/// An index below `n` other than `at`, uniformly (`n` ≥ 2): the other photo, paper or category
/// of a relevance comparison.
pub(crate) fn other_than(rng: &mut rand::rngs::StdRng, n: usize, at: usize) -> usize {
    use rand::Rng;
    let o = rng.random_range(0..n - 1);
    if o >= at { o + 1 } else { o }
}

/// A built dataset's comparisons, card and content; its embedding stores are written (with the
/// encoder cache) by [`embed_stores`] before this is written beside them.
pub struct Built {
    pub splits: Vec<(Split, Vec<Comparison>)>,
    pub card: serde_json::Value,
    pub content: Content,
}

/// Progress of a build: (stage, done, total).
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, usize);

/// Embeds items and prompts into `dir/items.safetensors` and `dir/prompts.safetensors`, reusing
/// unchanged rows from an earlier build. Returns the encoder throughput reports (items, prompts).
pub fn embed_stores(
    dir: &Path,
    items: (&pal_embed::Embedder, &[pal_embed::EmbedInput]),
    prompts: (&pal_embed::Embedder, &[pal_embed::EmbedInput]),
    progress: Progress,
) -> Result<(pal_embed::EmbedReport, pal_embed::EmbedReport), DataError> {
    use pal_format::dataset::{ITEMS_FILE, PROMPTS_FILE};
    std::fs::create_dir_all(dir).map_err(|e| pal_math::PalError::io(dir, e))?;
    let a =
        pal_embed::embed_into_store(items.0, items.1, &dir.join(ITEMS_FILE), 32, &mut |d, t| {
            progress("embedding items", d, t)
        })?;
    let b = pal_embed::embed_into_store(
        prompts.0,
        prompts.1,
        &dir.join(PROMPTS_FILE),
        32,
        &mut |d, t| progress("embedding prompts", d, t),
    )?;
    Ok((a, b))
}

impl Built {
    /// Completes the card with the users and the encoder reports, writes everything into `out`.
    pub fn finish(
        out: &Path,
        splits: Vec<(Split, Vec<Comparison>)>,
        mut card: serde_json::Value,
        content: Content,
        population: &Population,
        embedding: (pal_embed::EmbedReport, pal_embed::EmbedReport),
    ) -> Result<Self, DataError> {
        card["users"] = population.card();
        card["embedding"] = serde_json::json!({"items": embedding.0, "prompts": embedding.1});
        Self::written(out, splits, card, content)
    }

    /// A dataset's splits, card and content, written into `out`.
    pub fn written(
        out: &Path,
        splits: Vec<(Split, Vec<Comparison>)>,
        card: serde_json::Value,
        content: Content,
    ) -> Result<Self, DataError> {
        let built = Built {
            splits,
            card,
            content,
        };
        built.write(out)?;
        Ok(built)
    }

    /// Writes splits, `card.json` (with split sizes added) and the item content into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), DataError> {
        use pal_format::dataset::CARD_FILE;
        std::fs::create_dir_all(dir).map_err(|e| pal_math::PalError::io(dir, e))?;
        for (split, rows) in &self.splits {
            pal_format::comparison::write_jsonl(&dir.join(split.file_name()), rows)?;
        }
        self.content.write(dir)?;
        let mut card = self.card.clone();
        card["sizes"] = self
            .splits
            .iter()
            .map(|(s, r)| (s.file_name().to_string(), serde_json::Value::from(r.len())))
            .collect::<serde_json::Map<_, _>>()
            .into();
        let text = serde_json::to_string_pretty(&card).expect("card serialises");
        pal_format::write_atomic(&dir.join(CARD_FILE), text.as_bytes())?;
        Ok(())
    }
}
