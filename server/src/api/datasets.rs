//! `/datasets`: upload comparisons + embeddings (or import a server-side dataset directory).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use pal_core::dataset::{Dataset, ITEMS_FILE, PROMPTS_FILE, Split};
use pal_core::{Comparison, EmbeddingStore};
use pal_data::{CONTENT_FILE, Content, ItemContent};
use serde::Deserialize;

use super::Body;
use crate::db::{DatasetRow, now};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreUpload {
    ids: Vec<String>,
    embeddings: Vec<Vec<f32>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SplitsUpload {
    train: Vec<Comparison>,
    val: Vec<Comparison>,
    test: Vec<Comparison>,
    unseen_train: Vec<Comparison>,
    unseen_test: Vec<Comparison>,
}

/// Either inline data (`items`, optional `prompts`, `comparisons`) or a server-side `path`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetUpload {
    name: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    items: Option<StoreUpload>,
    #[serde(default)]
    prompts: Option<StoreUpload>,
    #[serde(default)]
    comparisons: SplitsUpload,
}

fn store(field: &str, up: StoreUpload) -> Result<EmbeddingStore, ApiError> {
    if up.ids.len() != up.embeddings.len() {
        return Err(ApiError::invalid(format!(
            "field `{field}`: {} ids but {} embeddings",
            up.ids.len(),
            up.embeddings.len()
        )));
    }
    let dim = up.embeddings.first().map_or(0, Vec::len);
    if let Some((i, row)) = up
        .embeddings
        .iter()
        .enumerate()
        .find(|(_, r)| r.len() != dim || dim == 0)
    {
        return Err(ApiError::invalid(format!(
            "field `{field}.embeddings[{i}]`: expected {dim} values, found {}",
            row.len()
        )));
    }
    let data = up.embeddings.concat();
    EmbeddingStore::new(up.ids, dim, data)
        .map_err(|e| ApiError::invalid(format!("field `{field}`: {e}")))
}

/// Checks every comparison against the stores, naming the first bad field.
fn check(
    split: &str,
    rows: &[Comparison],
    items: &EmbeddingStore,
    prompts: Option<&EmbeddingStore>,
) -> Result<(), ApiError> {
    for (i, c) in rows.iter().enumerate() {
        let at = |f: &str| format!("field `comparisons.{split}[{i}].{f}`");
        if c.user.is_empty() {
            return Err(ApiError::invalid(format!("{}: empty user id", at("user"))));
        }
        if c.label > 1 {
            return Err(ApiError::invalid(format!(
                "{}: must be 0 or 1, got {}",
                at("label"),
                c.label
            )));
        }
        for (f, id) in [("left", &c.left), ("right", &c.right)] {
            if items.position(id).is_none() {
                return Err(ApiError::invalid(format!("{}: unknown item `{id}`", at(f))));
            }
        }
        if c.left == c.right {
            return Err(ApiError::invalid(format!(
                "{}: same item as left",
                at("right")
            )));
        }
        match (prompts, &c.prompt) {
            (Some(p), Some(id)) if p.position(id).is_none() => {
                return Err(ApiError::invalid(format!(
                    "{}: unknown prompt `{id}`",
                    at("prompt")
                )));
            }
            (Some(_), None) => {
                return Err(ApiError::invalid(format!(
                    "{}: missing (dataset has prompts)",
                    at("prompt")
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

pub async fn create(
    State(state): State<AppState>,
    Body(up): Body<DatasetUpload>,
) -> Result<(StatusCode, Json<DatasetRow>), ApiError> {
    if up.name.trim().is_empty() {
        return Err(ApiError::invalid("field `name`: must not be empty"));
    }
    let mut content: Option<(Content, std::path::PathBuf)> = None;
    let (items, prompts, splits) = match (up.path, up.items) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("give either `path` or `items`, not both"));
        }
        (None, None) => return Err(ApiError::invalid("field `items`: missing (or give `path`)")),
        (Some(path), None) => {
            let p = std::path::PathBuf::from(&path);
            content = read_content(&p)?.map(|c| (c, p.clone()));
            let data = tokio::task::spawn_blocking(move || Dataset::load(&p))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))??;
            let mut splits = Vec::new();
            for s in [
                Split::Train,
                Split::Val,
                Split::Test,
                Split::UnseenTrain,
                Split::UnseenTest,
            ] {
                if data.has_split(s) {
                    splits.push((s, data.read(s)?));
                }
            }
            (data.items, data.prompts, splits)
        }
        (None, Some(items)) => {
            let items = store("items", items)?;
            let prompts = up.prompts.map(|p| store("prompts", p)).transpose()?;
            let c = up.comparisons;
            let splits = [
                (Split::Train, c.train),
                (Split::Val, c.val),
                (Split::Test, c.test),
                (Split::UnseenTrain, c.unseen_train),
                (Split::UnseenTest, c.unseen_test),
            ]
            .into_iter()
            .filter(|(_, r)| !r.is_empty())
            .collect();
            (items, prompts, splits)
        }
    };
    if !splits.iter().any(|(s, _)| *s == Split::Train) {
        return Err(ApiError::invalid(
            "field `comparisons.train`: no training comparisons",
        ));
    }
    for (s, rows) in &splits {
        check(
            s.file_name().trim_end_matches(".jsonl"),
            rows,
            &items,
            prompts.as_ref(),
        )?;
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = state.dataset_dir(&id);
    let row = DatasetRow {
        id: id.clone(),
        name: up.name,
        created_at: now(),
        d_item: items.dim() as i64,
        d_prompt: prompts.as_ref().map_or(0, |p| p.dim()) as i64,
        n_items: items.len() as i64,
        n_prompts: prompts.as_ref().map_or(0, |p| p.len()) as i64,
        n_comparisons: splits.iter().map(|(_, r)| r.len()).sum::<usize>() as i64,
    };
    let (write_dir, write_id) = (dir.clone(), id.clone());
    tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
        std::fs::create_dir_all(&write_dir).map_err(|e| ApiError::internal(e.to_string()))?;
        items.save(&write_dir.join(ITEMS_FILE))?;
        if let Some(p) = prompts {
            p.save(&write_dir.join(PROMPTS_FILE))?;
        }
        if let Some((c, src)) = content {
            copy_content(c, &src, &write_dir, &write_id)?;
        }
        Ok(())
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    if let Err(e) = state.db.insert_dataset(&row, &splits).await {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    Ok((StatusCode::CREATED, Json(row)))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<DatasetRow>>, ApiError> {
    Ok(Json(state.db.datasets().await?))
}

pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DatasetRow>, ApiError> {
    Ok(Json(state.db.dataset(&id).await?))
}

/// The dataset directory's `content.json` (texts and images of its items), if it has one.
fn read_content(dir: &std::path::Path) -> Result<Option<Content>, ApiError> {
    let path = dir.join(CONTENT_FILE);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let c: Content = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("{}: {e}", path.display())))?;
    for (id, item) in &c.items {
        if let ItemContent::Image(rel) = item
            && image_name(rel.strip_prefix("images/").unwrap_or("")).is_none()
        {
            return Err(ApiError::invalid(format!(
                "{}: item `{id}`: image `{rel}` must be images/NAME.jpg or .png",
                path.display()
            )));
        }
    }
    Ok(Some(c))
}

/// A safe image file name (no directories), or `None`.
fn image_name(name: &str) -> Option<&str> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && (name.ends_with(".jpg") || name.ends_with(".png"));
    ok.then_some(name)
}

/// Copies the images into the stored dataset and writes its `content.json` with image URLs.
fn copy_content(
    mut c: Content,
    src: &std::path::Path,
    dst: &std::path::Path,
    id: &str,
) -> Result<(), ApiError> {
    for item in c.items.values_mut() {
        if let ItemContent::Image(rel) = item {
            let name = rel.trim_start_matches("images/").to_string();
            std::fs::create_dir_all(dst.join("images"))
                .map_err(|e| ApiError::internal(e.to_string()))?;
            std::fs::copy(src.join(&*rel), dst.join("images").join(&name))
                .map_err(|e| ApiError::invalid(format!("{}: {e}", src.join(&*rel).display())))?;
            *rel = format!("/datasets/{id}/images/{name}");
        }
    }
    let json = serde_json::to_vec(&c).map_err(|e| ApiError::internal(e.to_string()))?;
    pal_core::checkpoint::write_atomic(&dst.join(CONTENT_FILE), &json)?;
    Ok(())
}

/// An image of a dataset's items (JPEG or PNG).
pub async fn image(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    state.db.dataset(&id).await?;
    let name = image_name(&name).ok_or_else(|| ApiError::not_found("image", &name))?;
    let bytes = tokio::fs::read(state.dataset_dir(&id).join("images").join(name))
        .await
        .map_err(|_| ApiError::not_found("image", name))?;
    let kind = if name.ends_with(".png") {
        "image/png"
    } else {
        "image/jpeg"
    };
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, kind),
            (axum::http::header::CACHE_CONTROL, "max-age=86400"),
        ],
        bytes,
    )
        .into_response())
}
