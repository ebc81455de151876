//! Browser bundles, written when a model is published (and when the start-up upgrade moves
//! stored users out of an old model's files), and only read by requests. Every file is immutable once visible:
//!
//! ```text
//! bundles/{model}/data/        items.safetensors, prompts.safetensors, content.json (once)
//! bundles/{model}/r{N}/        manifest.json, model.json, weights.safetensors (revision N)
//! bundles/{model}/current      "N", replaced atomically after r{N} is complete
//! ```
//!
//! A bundle is open to anyone, so it carries only what is public: item and prompt stores, the
//! model's maps and prototypes, and users' weights only when the operator publishes them
//! (`--publish-user-weights`; otherwise no user rows at all).
//!
//! A directory is assembled under a temporary name and renamed into place, so a reader sees a
//! whole revision or none. The two revisions before the current one are kept for readers that
//! fetched a manifest just before a write.

use std::path::Path;

use pal_core::Dataset;
use pal_format::Comparison;
use pal_format::bundle::MANIFEST_JSON;
use pal_format::candidates::{CANDIDATES_FILE, Candidates};
use pal_format::content::{CONTENT_FILE, Content};
use pal_format::dataset::{ITEMS_FILE, PROMPTS_FILE};
use pal_format::model_dir::{MODEL_JSON, TrainedModel, WEIGHTS_FILE};
use pal_format::write_atomic;

use crate::error::ApiError;

const CURRENT: &str = "current";
const DATA: &str = "data";
/// Files of one revision.
pub const REVISION_FILES: [&str; 3] = [MANIFEST_JSON, MODEL_JSON, WEIGHTS_FILE];
/// Files shared by every revision.
pub const DATA_FILES: [&str; 4] = [ITEMS_FILE, PROMPTS_FILE, CONTENT_FILE, CANDIDATES_FILE];

fn io(e: std::io::Error) -> ApiError {
    ApiError::internal(format!("writing a bundle: {e}"))
}

/// The revision of a model's files (`meta.revision`, 1 for models from before revisions).
pub fn revision(model: &TrainedModel) -> u64 {
    model.meta["revision"].as_u64().unwrap_or(1)
}

/// The revision the bundle currently serves, if any.
pub fn current(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join(CURRENT))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether the bundle's shared data (stores, content, candidates) is written.
pub fn has_shared_data(dir: &Path) -> bool {
    dir.join(DATA).is_dir()
}

/// The users a bundle of `model` lists: all of them when their weights are published, else
/// none.
pub fn listed_users(model: &TrainedModel, publish_users: bool) -> usize {
    if publish_users { model.users.len() } else { 0 }
}

/// How many users the current revision's manifest lists, if it reads.
pub fn current_users(dir: &Path) -> Option<usize> {
    let rev = current(dir)?;
    let file = dir.join(format!("r{rev}")).join(MANIFEST_JSON);
    let bytes = std::fs::read(&file).ok()?;
    let manifest = pal_format::BundleManifest::parse(&bytes, &file).ok()?;
    Some(manifest.users.len())
}

/// Writes revision `revision(model)` of the bundle of model `id` into `dir` and makes it current,
/// with the users' weights only when `publish_users`. The shared data is written the first time
/// only; the per-prompt question candidates are the ones `content.json` declares, else
/// inferred from `train` (the training comparisons).
pub fn write(
    dir: &Path,
    id: &str,
    model: &TrainedModel,
    data: &Dataset,
    (train, publish_users): (&[Comparison], bool),
) -> Result<(), ApiError> {
    let rev = revision(model);
    std::fs::create_dir_all(dir).map_err(io)?;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let shared = dir.join(DATA);
    if !shared.is_dir() {
        let tmp = dir.join(format!("{DATA}.partial-{tag}"));
        std::fs::create_dir_all(&tmp).map_err(io)?;
        data.items.save(&tmp.join(ITEMS_FILE))?;
        if let Some(p) = &data.prompts {
            p.save(&tmp.join(PROMPTS_FILE))?;
        }
        let content = data.dir.join(CONTENT_FILE);
        let mut declared = None;
        if content.is_file() {
            std::fs::copy(&content, tmp.join(CONTENT_FILE)).map_err(io)?;
            declared = Candidates::declared(&Content::read(&data.dir)?);
        }
        let candidates = declared.unwrap_or_else(|| Candidates::from_comparisons(train));
        if !candidates.is_empty() {
            candidates.write(&tmp)?;
        }
        std::fs::rename(&tmp, &shared).map_err(io)?;
    }
    let tmp = dir.join(format!("r{rev}.partial-{tag}"));
    let mut manifest = if publish_users {
        pal_format::bundle::export(model, &tmp)?
    } else {
        let mut public = model.clone();
        public.take_users(|_| true);
        pal_format::bundle::export(&public, &tmp)?
    };
    manifest.revision = Some(rev);
    manifest.items_file = Some(ITEMS_FILE.into());
    let mut files = vec![MANIFEST_JSON, MODEL_JSON, WEIGHTS_FILE, ITEMS_FILE];
    if shared.join(PROMPTS_FILE).is_file() {
        manifest.prompts_file = Some(PROMPTS_FILE.into());
        files.push(PROMPTS_FILE);
    }
    if shared.join(CONTENT_FILE).is_file() {
        manifest.content_file = Some(CONTENT_FILE.into());
        files.push(CONTENT_FILE);
    }
    if shared.join(CANDIDATES_FILE).is_file() {
        manifest.candidates_file = Some(CANDIDATES_FILE.into());
        files.push(CANDIDATES_FILE);
    }
    manifest.files = files.iter().map(|f| manifest.file_url(id, f)).collect();
    manifest.write(&tmp)?;
    let dst = dir.join(format!("r{rev}"));
    if dst.exists() {
        // A rewrite of the same revision (start-up repair): the old copy goes, the new one in.
        std::fs::remove_dir_all(&dst).map_err(io)?;
    }
    std::fs::rename(&tmp, &dst).map_err(io)?;
    write_atomic(&dir.join(CURRENT), rev.to_string().as_bytes())?;
    prune(dir, rev, GRACE);
    Ok(())
}

/// How long a superseded revision stays readable at least: a browser that read its manifest
/// fetches the files it names within this time, however many writes come in between.
const GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes abandoned partial directories, and revisions older than `rev - 2` once they have
/// been superseded (revision `n + 1` written) for longer than `grace`.
fn prune(dir: &Path, rev: u64, grace: std::time::Duration) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let superseded_long_ago = |n: u64| {
        std::fs::metadata(dir.join(format!("r{}", n + 1)))
            .and_then(|m| m.modified())
            .map_or(true, |t| t.elapsed().is_ok_and(|age| age >= grace))
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let old = name
            .strip_prefix('r')
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n + 2 < rev && superseded_long_ago(n));
        if old || name.contains(".partial-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Where file `name` of the bundle lives: shared data, or revision `rev` (default: current).
/// `None` for names outside the bundle or a revision that is gone.
pub fn file_path(dir: &Path, name: &str, rev: Option<u64>) -> Option<std::path::PathBuf> {
    if DATA_FILES.contains(&name) {
        return Some(dir.join(DATA).join(name));
    }
    if !REVISION_FILES.contains(&name) {
        return None;
    }
    let rev = rev.or_else(|| current(dir))?;
    Some(dir.join(format!("r{rev}")).join(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pal_core::config::ModelConfig;
    use pal_core::reference::PalWeights;

    #[test]
    fn revisions_are_immutable_and_pruned() {
        let src = tempfile::tempdir().unwrap();
        let items =
            pal_core::EmbeddingStore::new(vec!["a".into(), "b".into()], 2, vec![0.0; 4]).unwrap();
        items.save(&src.path().join(ITEMS_FILE)).unwrap();
        let data = Dataset::load(src.path()).unwrap();
        let cfg = ModelConfig {
            variant: pal_core::Variant::A,
            ..ModelConfig::pal_b(2, 0, 2, 2)
        };
        let mut model = TrainedModel::new(
            PalWeights::init(&cfg, 1, 0),
            vec!["u".into()],
            serde_json::json!({}),
        );
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("m");
        for rev in 1..=5u64 {
            model.meta["revision"] = rev.into();
            write(&dir, "m", &model, &data, (&[], true)).unwrap();
            assert_eq!(current(&dir), Some(rev));
        }
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(file_path(&dir, MANIFEST_JSON, None).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest["revision"], 5);
        assert!(file_path(&dir, WEIGHTS_FILE, Some(3)).unwrap().is_file());
        // Within the grace time every revision stays readable…
        assert!(file_path(&dir, WEIGHTS_FILE, Some(1)).unwrap().is_file());
        // …after it, those older than the last three go.
        prune(&dir, 5, std::time::Duration::ZERO);
        assert!(!file_path(&dir, WEIGHTS_FILE, Some(2)).unwrap().exists());
        assert!(file_path(&dir, WEIGHTS_FILE, Some(3)).unwrap().is_file());
        assert!(file_path(&dir, ITEMS_FILE, None).unwrap().is_file());
        assert!(file_path(&dir, "../pal.db", None).is_none());
        assert_eq!(current_users(&dir), Some(1));
        // Unpublished, the revision lists no user and its weights hold no user row.
        model.meta["revision"] = 6.into();
        write(&dir, "m", &model, &data, (&[], false)).unwrap();
        assert_eq!(current_users(&dir), Some(0));
        let bytes = std::fs::read(file_path(&dir, WEIGHTS_FILE, None).unwrap()).unwrap();
        let w = pal_math::weights::weights_from_bytes(&cfg, 0, &bytes, Path::new("w")).unwrap();
        assert!(w.user_logits.is_empty());
        assert_eq!(w.item_map, model.weights.item_map);
    }
}
