//! `/datasets`: upload comparisons + embeddings inline, or import a dataset directory that lies
//! under an import root (see `crate::import`). Both are staged in a server-owned directory,
//! checked against the limits, then moved into place in one rename.

use std::collections::HashSet;
use std::path::{Path as FsPath, PathBuf};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use pal_core::{Comparison, EmbeddingStore};
use pal_format::content::{Content, ItemContent};
use pal_format::dataset::{ITEMS_FILE, PROMPTS_FILE, Split};
use serde::Deserialize;

use crate::bodies::Body;
use crate::config::{Limits, check_name, id_problem};
use crate::db::{DatasetRow, now};
use crate::error::{ApiError, shorten};
use crate::import;
use crate::state::AppState;
use crate::state::blocking;

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

fn store(field: &str, up: StoreUpload, limits: &Limits) -> Result<EmbeddingStore, ApiError> {
    if up.ids.len() != up.embeddings.len() {
        return Err(ApiError::invalid(format!(
            "field `{field}`: {} ids but {} embeddings",
            up.ids.len(),
            up.embeddings.len()
        )));
    }
    if up.ids.len() > limits.max_items {
        return Err(ApiError::invalid(format!(
            "field `{field}.ids`: {} entries; the server's limit is {}",
            up.ids.len(),
            limits.max_items
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
    if let Some(i) = up
        .embeddings
        .iter()
        .position(|r| r.iter().any(|v| !v.is_finite()))
    {
        return Err(ApiError::invalid(format!(
            "field `{field}.embeddings[{i}]`: values must be finite"
        )));
    }
    let data = up.embeddings.concat();
    EmbeddingStore::new(up.ids, dim, data)
        .map_err(|e| ApiError::invalid(format!("field `{field}`: {e}")))
}

/// Checks a store's size and ids against the limits; `field` names it in errors.
fn check_store(field: &str, s: &EmbeddingStore, limits: &Limits) -> Result<(), ApiError> {
    if s.dim() > limits.max_embedding_dim {
        return Err(ApiError::invalid(format!(
            "{field}: embedding dimension {} exceeds the server's limit {}",
            s.dim(),
            limits.max_embedding_dim
        )));
    }
    if s.len() > limits.max_items {
        return Err(ApiError::invalid(format!(
            "{field}: {} entries; the server's limit is {}",
            s.len(),
            limits.max_items
        )));
    }
    if let Some((i, why)) = s
        .ids()
        .iter()
        .enumerate()
        .find_map(|(i, id)| id_problem(id, limits.max_id_len).map(|w| (i, w)))
    {
        return Err(ApiError::invalid(format!("{field}: id number {i} {why}")));
    }
    Ok(())
}

/// Where a comparison came from, for errors: a request field or a file line.
#[derive(Clone, Copy)]
enum Origin<'a> {
    Field(&'a str),
    File(&'a str),
}

impl Origin<'_> {
    fn at(self, i: usize, field: &str) -> String {
        match self {
            Origin::Field(split) => format!("field `comparisons.{split}[{i}].{field}`"),
            Origin::File(name) => format!("{name}: comparison {}: field `{field}`", i + 1),
        }
    }
}

/// Checks every comparison against the stores, naming the first bad field (never echoing a
/// value); collects user ids into `users`.
fn check(
    origin: Origin,
    rows: &[Comparison],
    items: &EmbeddingStore,
    prompts: Option<&EmbeddingStore>,
    limits: &Limits,
    users: &mut HashSet<String>,
) -> Result<(), ApiError> {
    for (i, c) in rows.iter().enumerate() {
        let bad = |f: &str, why: &str| ApiError::invalid(format!("{}: {why}", origin.at(i, f)));
        if let Some(why) = id_problem(&c.user, limits.max_id_len) {
            return Err(bad("user", &format!("user id {why}")));
        }
        if c.label > 1 {
            return Err(bad("label", "must be 0 or 1"));
        }
        for (f, id) in [("left", &c.left), ("right", &c.right)] {
            if items.position(id).is_none() {
                return Err(bad(f, "unknown item (not in the dataset's items)"));
            }
        }
        if c.left == c.right {
            return Err(bad("right", "same item as left"));
        }
        match (prompts, &c.prompt) {
            (Some(p), Some(id)) if p.position(id).is_none() => {
                return Err(bad(
                    "prompt",
                    "unknown prompt (not in the dataset's prompts)",
                ));
            }
            (Some(_), None) => return Err(bad("prompt", "missing (dataset has prompts)")),
            _ => {}
        }
        if !users.contains(&c.user) {
            if users.len() >= limits.max_users {
                return Err(ApiError::invalid(format!(
                    "{}: more than {} distinct users (the server's limit)",
                    origin.at(i, "user"),
                    limits.max_users
                )));
            }
            users.insert(c.user.clone());
        }
    }
    Ok(())
}

/// Everything a new dataset needs, staged in a directory of the server's own.
struct Prepared {
    items: EmbeddingStore,
    prompts: Option<EmbeddingStore>,
    splits: Vec<(Split, Vec<Comparison>)>,
    content: Option<Content>,
}

impl Prepared {
    /// A dataset uploaded in the request (JSON or NDJSON), checked.
    fn uploaded(
        items: EmbeddingStore,
        prompts: Option<EmbeddingStore>,
        splits: Vec<(Split, Vec<Comparison>)>,
        limits: &Limits,
    ) -> Result<Self, ApiError> {
        let p = Self {
            items,
            prompts,
            splits,
            content: None,
        };
        validate(&p, false, limits)?;
        Ok(p)
    }
}

/// Reads an import staged by `import::stage`: stores, splits (sanitised errors), content.
fn read_staged(
    dir: &FsPath,
    staged: import::Staged,
    limits: &Limits,
) -> Result<Prepared, ApiError> {
    let pal_core::Dataset { items, prompts, .. } = pal_core::Dataset::load(dir)?;
    let mut splits = Vec::new();
    let mut total = 0;
    for s in staged.splits {
        let path = dir.join(s.file_name());
        let rows = import::read_split(&path, limits)?;
        total += rows.len();
        if total > limits.max_comparisons {
            return Err(ApiError::invalid(format!(
                "{}: the dataset has more than {} comparisons (the server's limit)",
                s.file_name(),
                limits.max_comparisons
            )));
        }
        std::fs::remove_file(&path).map_err(|e| ApiError::internal(e.to_string()))?;
        if !rows.is_empty() {
            splits.push((s, rows));
        }
    }
    Ok(Prepared {
        items,
        prompts,
        splits,
        content: staged.content,
    })
}

/// Checks a prepared dataset against the limits and its own stores.
fn validate(p: &Prepared, from_file: bool, limits: &Limits) -> Result<(), ApiError> {
    let field = |f: &str| {
        if from_file {
            f.to_string()
        } else {
            format!("field `{}`", f.trim_end_matches(".safetensors"))
        }
    };
    check_store(&field(ITEMS_FILE), &p.items, limits)?;
    if let Some(s) = &p.prompts {
        check_store(&field(PROMPTS_FILE), s, limits)?;
    }
    if !p.splits.iter().any(|(s, _)| *s == Split::Train) {
        return Err(ApiError::invalid(if from_file {
            "train.jsonl: no training comparisons".to_string()
        } else {
            "field `comparisons.train`: no training comparisons".to_string()
        }));
    }
    let total: usize = p.splits.iter().map(|(_, r)| r.len()).sum();
    if total > limits.max_comparisons {
        return Err(ApiError::invalid(format!(
            "field `comparisons`: {total} comparisons; the server's limit is {}",
            limits.max_comparisons
        )));
    }
    let mut users = HashSet::new();
    for (s, rows) in &p.splits {
        let origin = if from_file {
            Origin::File(s.file_name())
        } else {
            Origin::Field(s.file_name().trim_end_matches(".jsonl"))
        };
        check(
            origin,
            rows,
            &p.items,
            p.prompts.as_ref(),
            limits,
            &mut users,
        )?;
    }
    Ok(())
}

/// Rewrites image paths of `content` as this dataset's URLs and writes it into `dir`.
fn write_content(mut c: Content, dir: &FsPath, id: &str) -> Result<(), ApiError> {
    for item in c.items.values_mut() {
        if let ItemContent::Image(rel) = item {
            let name = rel.trim_start_matches("images/").to_string();
            *rel = format!("/datasets/{id}/images/{name}");
        }
    }
    c.write(dir)?;
    Ok(())
}

/// `POST /datasets`: JSON (inline or `path`), or NDJSON streamed line by line.
pub async fn create(
    State(state): State<AppState>,
    req: axum::extract::Request,
) -> Result<(StatusCode, Json<DatasetRow>), ApiError> {
    use axum::extract::FromRequest;
    let ndjson = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(super::upload::NDJSON.as_bytes()));
    if ndjson {
        let limits = state.config.limits.clone();
        let (name, items, prompts, splits) = super::upload::read(req.into_body(), &limits).await?;
        let p = Prepared::uploaded(items, prompts, splits, &limits)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        return persist(&state, id, name, p).await;
    }
    let Body(up) = Body::<DatasetUpload>::from_request(req, &state).await?;
    json_upload(&state, up).await
}

async fn json_upload(
    state: &AppState,
    up: DatasetUpload,
) -> Result<(StatusCode, Json<DatasetRow>), ApiError> {
    let limits = state.config.limits.clone();
    check_name(&up.name, &limits)?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let staging = state.staging_dir(&id);
    let prepared = match (up.path, up.items) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("give either `path` or `items`, not both"));
        }
        (None, None) => return Err(ApiError::invalid("field `items`: missing (or give `path`)")),
        (Some(path), None) => {
            let (roots, dir, lim) = (state.import_roots.clone(), staging.clone(), limits.clone());
            let result = blocking(state, "reading the dataset", move || {
                let staged = import::stage(&roots, &path, &dir, &lim)?;
                let p = read_staged(&dir, staged, &lim)?;
                validate(&p, true, &lim)?;
                Ok(p)
            })
            .await;
            result.inspect_err(|_| remove_later(staging.clone()))?
        }
        (None, Some(items)) => {
            let items = store("items", items, &limits)?;
            let prompts = up
                .prompts
                .map(|p| store("prompts", p, &limits))
                .transpose()?;
            let c = up.comparisons;
            let splits = Split::ALL
                .into_iter()
                .zip([c.train, c.val, c.test, c.unseen_train, c.unseen_test])
                .filter(|(_, r)| !r.is_empty())
                .collect();
            Prepared::uploaded(items, prompts, splits, &limits)?
        }
    };
    persist(state, id, up.name, prepared).await
}

/// Writes a validated dataset: files into a staging directory moved into place in one rename,
/// then the database rows (the files go again if those fail).
async fn persist(
    state: &AppState,
    id: String,
    name: String,
    prepared: Prepared,
) -> Result<(StatusCode, Json<DatasetRow>), ApiError> {
    let staging = state.staging_dir(&id);
    let row = DatasetRow {
        id: id.clone(),
        name,
        created_at: now(),
        d_item: prepared.items.dim() as i64,
        d_prompt: prepared.prompts.as_ref().map_or(0, |p| p.dim()) as i64,
        n_items: prepared.items.len() as i64,
        n_prompts: prepared.prompts.as_ref().map_or(0, |p| p.len()) as i64,
        n_comparisons: prepared.splits.iter().map(|(_, r)| r.len()).sum::<usize>() as i64,
    };
    let final_dir = state.dataset_dir(&id);
    let (stage_dir, dst, write_id) = (staging.clone(), final_dir.clone(), id.clone());
    let Prepared {
        items,
        prompts,
        splits,
        content,
    } = prepared;
    let written = blocking(state, "storing the dataset", move || {
        std::fs::create_dir_all(&stage_dir).map_err(|e| ApiError::internal(e.to_string()))?;
        items.save(&stage_dir.join(ITEMS_FILE))?;
        if let Some(p) = prompts {
            p.save(&stage_dir.join(PROMPTS_FILE))?;
        }
        if let Some(c) = content {
            write_content(c, &stage_dir, &write_id)?;
        }
        std::fs::rename(&stage_dir, &dst).map_err(|e| ApiError::internal(e.to_string()))
    })
    .await;
    if let Err(e) = written {
        remove_later(staging);
        return Err(e);
    }
    if let Err(e) = state.db.insert_dataset(&row, &splits).await {
        remove_later(final_dir);
        return Err(e);
    }
    Ok((StatusCode::CREATED, Json(row)))
}

/// Removes a directory on a blocking thread (best effort: a leftover staging dir is harmless).
fn remove_later(dir: PathBuf) {
    tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_dir_all(dir);
    });
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

/// An image of a dataset's items (JPEG or PNG), from the server's own copy.
pub async fn image(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    state.db.dataset(&id).await?;
    let name = import::image_name(&name)
        .ok_or_else(|| ApiError::not_found("image", &name))?
        .to_string();
    let path = state.dataset_dir(&id).join("images").join(&name);
    let shown = shorten(&name);
    let bytes = blocking(&state, "reading the image", move || {
        let meta =
            std::fs::symlink_metadata(&path).map_err(|_| ApiError::not_found("image", &shown))?;
        if !meta.is_file() {
            return Err(ApiError::not_found("image", &shown));
        }
        std::fs::read(&path).map_err(|_| ApiError::not_found("image", &shown))
    })
    .await?;
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
