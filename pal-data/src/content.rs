//! What each item and prompt *is* (a text, or an image file), written beside the embeddings as
//! `content.json` (+ `images/`) so the server and the browser can show the gallery.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::DataError;

pub const CONTENT_FILE: &str = "content.json";

/// One item's human-readable form.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum ItemContent {
    Text(String),
    /// Path of a JPEG thumbnail relative to the dataset directory.
    Image(String),
}

/// Item and prompt content of a dataset, plus the thumbnails to write.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Content {
    pub items: BTreeMap<String, ItemContent>,
    pub prompts: BTreeMap<String, String>,
    #[serde(skip)]
    pub thumbnails: Vec<(String, image::RgbImage)>,
}

impl Content {
    pub fn write(&self, dir: &Path) -> Result<(), DataError> {
        if !self.thumbnails.is_empty() {
            std::fs::create_dir_all(dir.join("images"))
                .map_err(|e| pal_core::PalError::io(dir, e))?;
        }
        for (rel, img) in &self.thumbnails {
            let path = dir.join(rel);
            img.save_with_format(&path, image::ImageFormat::Jpeg)
                .map_err(|e| DataError::Source {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
        }
        let json = serde_json::to_vec_pretty(self).expect("content serialises");
        pal_core::checkpoint::write_atomic(&dir.join(CONTENT_FILE), &json)?;
        Ok(())
    }
}
