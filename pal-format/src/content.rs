//! What each item and prompt *is* (a text, or an image file), written beside the embeddings as
//! `content.json` (+ `images/`) so the server and the browser can show the gallery.

use std::collections::BTreeMap;
use std::path::Path;

use pal_math::{EmbeddingStore, PalError, Result, write_atomic};
use serde::{Deserialize, Serialize};

pub const CONTENT_FILE: &str = "content.json";

/// A text embedded again by an encoder must have at least this cosine with its stored row for
/// the encoder to count as the one that made the dataset.
pub const SAME_ENCODER_MIN_COSINE: f32 = 0.999;

/// One item's human-readable form.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum ItemContent {
    Text(String),
    /// Path of a JPEG/PNG thumbnail relative to the dataset directory (`images/NAME`), or, in a
    /// server's bundle, the image's URL.
    Image(String),
}

/// Item and prompt content of a dataset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Content {
    pub items: BTreeMap<String, ItemContent>,
    pub prompts: BTreeMap<String, String>,
    /// Per prompt, the items a person can sensibly compare under it (the versions of one photo,
    /// the summaries of one paper), when the dataset's builder knows them; the browser's
    /// questions pair two of them. Absent: inferred from the training comparisons.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub candidates: BTreeMap<String, Vec<String>>,
}

impl Content {
    /// The one writer: `dir/content.json`, atomically (images are written by whoever has them).
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(CONTENT_FILE), &self.to_bytes())
    }

    /// The content as pretty JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("content serialises")
    }

    /// The one reader. Errors give the position in the file, never its text (the server answers
    /// them to clients).
    pub fn parse(bytes: &[u8], origin: &Path) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| {
            PalError::file(
                origin,
                format!(
                    "line {}: not a valid content file (column {}; expected {{\"items\": {{ID: {{\"text\"|\"image\": …}}}}, \"prompts\": {{ID: TEXT}}}})",
                    e.line(),
                    e.column()
                ),
            )
        })
    }

    /// Reads `dir/content.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(CONTENT_FILE);
        let bytes = std::fs::read(&path).map_err(|e| PalError::io(&path, e))?;
        Self::parse(&bytes, &path)
    }

    /// The first item text with a row in `items` (the encoder check's sample), if any.
    pub fn item_text_sample<'a>(
        &'a self,
        items: &'a EmbeddingStore,
    ) -> Option<(&'a str, &'a [f32])> {
        self.items.iter().find_map(|(id, c)| match c {
            ItemContent::Text(t) => Some((t.as_str(), items.get(id)?)),
            ItemContent::Image(_) => None,
        })
    }

    /// The first prompt text with a row in `prompts`, if any.
    pub fn prompt_text_sample<'a>(
        &'a self,
        prompts: &'a EmbeddingStore,
    ) -> Option<(&'a str, &'a [f32])> {
        self.prompts
            .iter()
            .find_map(|(id, t)| Some((t.as_str(), prompts.get(id)?)))
    }

    /// A prompt's text, else its id.
    pub fn prompt_text<'a>(&'a self, id: &'a str) -> &'a str {
        self.prompts.get(id).map_or(id, String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_round_trips_and_errors_hide_the_text() {
        let mut c = Content::default();
        c.items
            .insert("a".into(), ItemContent::Text("hello".into()));
        c.items
            .insert("b".into(), ItemContent::Image("images/b.jpg".into()));
        c.prompts.insert("p".into(), "a prompt".into());
        let dir = tempfile::tempdir().unwrap();
        c.write(dir.path()).unwrap();
        assert_eq!(Content::read(dir.path()).unwrap(), c);
        assert_eq!(c.prompt_text("p"), "a prompt");
        assert_eq!(c.prompt_text("q"), "q");
        let e = Content::parse(
            br#"{"items": {"a": {"bogus": "hunter2"}}}"#,
            Path::new("content.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("content.json: line 1"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}
