//! What the app loads from `pal serve`: which model (the `?model=` parameter, else the newest),
//! the bundle's files at the manifest's revision, and the gallery's content (item pictures or
//! texts, prompt texts). Plain Rust over `pal_format`'s typed readers, tested natively.

use std::path::Path;

use pal_format::BundleManifest;
use pal_format::content::{Content, ItemContent};
use pal_format::http::ModelRef;
use pal_math::EmbeddingStore;

/// A `key=value` parameter of a URL query string (`?a=1&b=2`).
pub fn query_param(search: &str, key: &str) -> Option<String> {
    search
        .trim_start_matches('?')
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
}

/// The newest model of a `GET /models` answer (the list is oldest first).
pub fn newest_model(models_json: &[u8]) -> Result<String, String> {
    let models: Vec<ModelRef> =
        serde_json::from_slice(models_json).map_err(|e| format!("/models: {e}"))?;
    models
        .last()
        .map(|m| m.id.clone())
        .ok_or_else(|| "no trained model on this server yet: train one first (see README)".into())
}

/// URLs of a bundle's files, all of the manifest's revision (a write in between makes a new
/// revision, so the files always belong together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFiles {
    pub weights: String,
    pub items: String,
    pub prompts: Option<String>,
    pub content: Option<String>,
    pub candidates: Option<String>,
}

/// Parses the manifest of model `model` and names the files to fetch.
pub fn files(model: &str, manifest_json: &[u8]) -> Result<(BundleManifest, BundleFiles), String> {
    let m = BundleManifest::parse(manifest_json, Path::new("manifest.json"))
        .map_err(|e| e.to_string())?;
    let items = m
        .items_file
        .as_deref()
        .ok_or("the bundle has no item embeddings (`items_file`): export it with --items")?;
    let url = |name: &str| m.file_url(model, name);
    let files = BundleFiles {
        weights: url(&m.weights_file),
        items: url(items),
        prompts: m.prompts_file.as_deref().map(url),
        content: m.content_file.as_deref().map(url),
        candidates: m.candidates_file.as_deref().map(url),
    };
    Ok((m, files))
}

/// How an item is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemView {
    /// A picture at this URL.
    Image(String),
    Text(String),
    /// No content: the id itself.
    Id(String),
}

/// The gallery's content: what items and prompts are.
#[derive(Debug, Clone, Default)]
pub struct Gallery {
    pub content: Content,
}

impl Gallery {
    /// Parses `content.json` (absent: every item shows as its id).
    pub fn parse(content_json: Option<&[u8]>) -> Result<Self, String> {
        let content = match content_json {
            Some(b) => Content::parse(b, Path::new("content.json")).map_err(|e| e.to_string())?,
            None => Content::default(),
        };
        Ok(Self { content })
    }

    pub fn item(&self, id: &str) -> ItemView {
        match self.content.items.get(id) {
            Some(ItemContent::Image(url)) => ItemView::Image(url.clone()),
            Some(ItemContent::Text(t)) => ItemView::Text(t.clone()),
            None => ItemView::Id(id.to_string()),
        }
    }

    /// Prompt row `p`'s text as the page shows it, [`short_label`]ed (its id when there is no
    /// text; "—" for PAL-A without prompts).
    pub fn prompt_text(&self, prompts: Option<&EmbeddingStore>, p: usize) -> String {
        match prompts.and_then(|s| s.ids().get(p)) {
            Some(id) => short_label(self.content.prompt_text(id)),
            None => "—".into(),
        }
    }
}

/// Longest prompt shown whole, in characters.
const LABEL_CHARS: usize = 120;

/// A prompt as a visitor reads it: a short one whole; a long one (a paper's "title. abstract")
/// as its first sentence when that is short enough, else its first [`LABEL_CHARS`] characters,
/// with "…".
pub fn short_label(text: &str) -> String {
    if text.chars().count() <= LABEL_CHARS {
        return text.to_string();
    }
    match text.find(". ") {
        Some(end) if text[..end].chars().count() < LABEL_CHARS => format!("{}.", &text[..end]),
        _ => format!("{}…", text.chars().take(LABEL_CHARS).collect::<String>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pal_format::TrainedModel;
    use pal_math::{ModelConfig, PalWeights};

    fn manifest(revision: Option<u64>, items: bool) -> Vec<u8> {
        let cfg = ModelConfig::pal_b(4, 3, 5, 2);
        let model = TrainedModel::new(
            PalWeights::init(&cfg, 2, 0),
            vec!["a".into(), "b".into()],
            serde_json::json!({}),
        );
        let mut m = BundleManifest::of(&model);
        m.revision = revision;
        m.items_file = items.then(|| "items.safetensors".into());
        m.prompts_file = Some("prompts.safetensors".into());
        m.to_bytes()
    }

    #[test]
    fn files_all_belong_to_the_manifests_revision() {
        let (m, f) = files("m1", &manifest(Some(7), true)).unwrap();
        assert_eq!(m.user_ids(), ["a", "b"]);
        assert_eq!(f.weights, "/models/m1/files/weights.safetensors?rev=7");
        assert_eq!(f.items, "/models/m1/files/items.safetensors?rev=7");
        assert_eq!(
            f.prompts.as_deref(),
            Some("/models/m1/files/prompts.safetensors?rev=7")
        );
        assert_eq!(f.content, None);
        assert_eq!(f.candidates, None);
        let e = files("m1", &manifest(Some(7), false)).unwrap_err();
        assert!(e.contains("items_file"), "{e}");
        let e = files("m1", b"{\"format\": \"zip\"}").unwrap_err();
        assert!(
            e.starts_with("manifest.json: invalid bundle manifest"),
            "{e}"
        );
    }

    #[test]
    fn the_newest_model_and_query_parameters() {
        let list = br#"[{"id": "old", "name": "x"}, {"id": "new", "name": "y"}]"#;
        assert_eq!(newest_model(list).unwrap(), "new");
        assert!(
            newest_model(b"[]")
                .unwrap_err()
                .contains("no trained model")
        );
        assert_eq!(
            query_param("?cpu=1&model=m2", "model").as_deref(),
            Some("m2")
        );
        assert_eq!(query_param("?model=m2", "cpu"), None);
    }

    #[test]
    fn gallery_shows_pictures_texts_or_ids() {
        let g = Gallery::parse(Some(
            br#"{"items": {"a": {"image": "/datasets/d/images/a.jpg"}, "b": {"text": "hi"}},
                 "prompts": {"p0": "a cat"}}"#,
        ))
        .unwrap();
        assert_eq!(
            g.item("a"),
            ItemView::Image("/datasets/d/images/a.jpg".into())
        );
        assert_eq!(g.item("b"), ItemView::Text("hi".into()));
        assert_eq!(g.item("c"), ItemView::Id("c".into()));
        let store = EmbeddingStore::new(vec!["p0".into(), "p1".into()], 1, vec![0.0, 1.0]).unwrap();
        assert_eq!(g.prompt_text(Some(&store), 0), "a cat");
        assert_eq!(g.prompt_text(Some(&store), 1), "p1");
        assert_eq!(g.prompt_text(None, 0), "—");
    }

    #[test]
    fn long_prompts_show_their_title_or_first_characters() {
        assert_eq!(short_label("a photo of a cat"), "a photo of a cat");
        let paper = format!(
            "Sliding Selector Network. {}",
            "Long documents. ".repeat(20)
        );
        assert_eq!(short_label(&paper), "Sliding Selector Network.");
        let run_on = "é".repeat(300);
        let label = short_label(&run_on);
        assert_eq!(label.chars().count(), LABEL_CHARS + 1);
        assert!(label.ends_with('…'));
        assert!(Gallery::parse(Some(b"[1]")).is_err());
        assert_eq!(
            Gallery::parse(None).unwrap().item("z"),
            ItemView::Id("z".into())
        );
    }
}
