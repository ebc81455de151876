//! Streamed dataset upload: `POST /datasets` with `Content-Type: application/x-ndjson`, one
//! record per line, read as the body arrives (no whole-body buffer, no JSON tree of it):
//!
//! ```text
//! {"dataset": {"name": "photos"}}                                  first line
//! {"item": {"id": "a", "embedding": [0.1, 0.2]}}                   every item
//! {"prompt": {"id": "p", "embedding": [0.3, 0.4]}}                 prompts (PAL-B)
//! {"comparison": {"split": "train", "user": "u", "prompt": "p", "left": "a", "right": "b", "label": 1}}
//! ```
//!
//! Limits (items, comparisons, embedding dimension, line length) are checked line by line, so a
//! hostile stream is refused when it crosses one, not after it was read.

use axum::body::Body as HttpBody;
use futures_util::StreamExt;
use pal_core::{Comparison, EmbeddingStore};
use pal_format::dataset::Split;
use serde::Deserialize;

use crate::config::Limits;
use crate::error::ApiError;

/// The content type that selects this reader.
pub const NDJSON: &str = "application/x-ndjson";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    id: String,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitComparison {
    split: Split,
    user: String,
    #[serde(default)]
    prompt: Option<String>,
    left: String,
    right: String,
    label: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum Record {
    Dataset(Header),
    Item(Row),
    Prompt(Row),
    Comparison(SplitComparison),
}

/// Rows of one embedding store as they arrive.
#[derive(Default)]
struct StoreRows {
    ids: Vec<String>,
    data: Vec<f32>,
    dim: usize,
}

impl StoreRows {
    fn push(&mut self, kind: &str, row: Row, line: usize, limits: &Limits) -> Result<(), ApiError> {
        let bad = |why: String| ApiError::invalid(format!("line {line}: {kind}: {why}"));
        if self.ids.is_empty() {
            self.dim = row.embedding.len();
        }
        if row.embedding.is_empty() || row.embedding.len() != self.dim {
            return Err(bad(format!(
                "expected an embedding of {} values, found {}",
                self.dim,
                row.embedding.len()
            )));
        }
        if self.dim > limits.max_embedding_dim {
            return Err(bad(format!(
                "embedding dimension {} exceeds the server's limit {}",
                self.dim, limits.max_embedding_dim
            )));
        }
        if row.embedding.iter().any(|v| !v.is_finite()) {
            return Err(bad("embedding values must be finite".into()));
        }
        if self.ids.len() >= limits.max_items {
            return Err(bad(format!(
                "more than {} rows (the server's limit)",
                limits.max_items
            )));
        }
        self.ids.push(row.id);
        self.data.extend(row.embedding);
        Ok(())
    }

    fn store(self, kind: &str) -> Result<Option<EmbeddingStore>, ApiError> {
        if self.ids.is_empty() {
            return Ok(None);
        }
        EmbeddingStore::new(self.ids, self.dim, self.data)
            .map(Some)
            .map_err(|e| ApiError::invalid(format!("{kind}s: {e}")))
    }
}

/// What a stream held: name, items, prompts, comparisons by split.
pub type Uploaded = (
    String,
    EmbeddingStore,
    Option<EmbeddingStore>,
    Vec<(Split, Vec<Comparison>)>,
);

/// The longest line accepted: an embedding at the dimension limit plus ids.
fn max_line(limits: &Limits) -> usize {
    limits.max_embedding_dim.saturating_mul(32) + 4 * limits.max_id_len + 1024
}

/// Reads an NDJSON upload. Errors name the line; values are the client's own.
pub async fn read(body: HttpBody, limits: &Limits) -> Result<Uploaded, ApiError> {
    let mut stream = body.into_data_stream();
    let (mut buf, mut line_no) = (Vec::new(), 0usize);
    let mut state = Parsed::default();
    loop {
        let chunk = match stream.next().await {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                // The body limit layer's error reads "length limit exceeded".
                let too_large = e.to_string().contains("length limit");
                return Err(if too_large {
                    ApiError::new(
                        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        "the request body is larger than the server's limit",
                    )
                } else {
                    ApiError::new(
                        axum::http::StatusCode::BAD_REQUEST,
                        "bad_body",
                        "the request body could not be read",
                    )
                });
            }
            None => break,
        };
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            line_no += 1;
            let line: Vec<u8> = buf.drain(..=end).collect();
            state.line(&line[..line.len() - 1], line_no, limits)?;
        }
        if buf.len() > max_line(limits) {
            return Err(ApiError::invalid(format!(
                "line {}: longer than {} bytes",
                line_no + 1,
                max_line(limits)
            )));
        }
    }
    if !buf.is_empty() {
        line_no += 1;
        state.line(&buf, line_no, limits)?;
    }
    state.finish()
}

#[derive(Default)]
struct Parsed {
    name: Option<String>,
    items: StoreRows,
    prompts: StoreRows,
    splits: Vec<Vec<Comparison>>,
    comparisons: usize,
}

impl Parsed {
    fn line(&mut self, bytes: &[u8], line: usize, limits: &Limits) -> Result<(), ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let record: Record = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::invalid(format!("line {line}: {e}")))?;
        match (record, &self.name) {
            (Record::Dataset(h), None) => {
                crate::config::check_name(&h.name, limits)?;
                self.name = Some(h.name);
            }
            (Record::Dataset(_), Some(_)) => {
                return Err(ApiError::invalid(format!(
                    "line {line}: a second `dataset` record"
                )));
            }
            (_, None) => {
                return Err(ApiError::invalid(format!(
                    "line {line}: the first record must be {{\"dataset\": {{\"name\": …}}}}"
                )));
            }
            (Record::Item(r), _) => self.items.push("item", r, line, limits)?,
            (Record::Prompt(r), _) => self.prompts.push("prompt", r, line, limits)?,
            (Record::Comparison(c), _) => {
                self.comparisons += 1;
                if self.comparisons > limits.max_comparisons {
                    return Err(ApiError::invalid(format!(
                        "line {line}: more than {} comparisons (the server's limit)",
                        limits.max_comparisons
                    )));
                }
                if self.splits.is_empty() {
                    self.splits = vec![Vec::new(); Split::ALL.len()];
                }
                let at = Split::ALL.iter().position(|s| *s == c.split).unwrap_or(0);
                self.splits[at].push(Comparison {
                    user: c.user,
                    prompt: c.prompt,
                    left: c.left,
                    right: c.right,
                    label: c.label,
                });
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Uploaded, ApiError> {
        let name = self
            .name
            .ok_or_else(|| ApiError::invalid("the stream has no `dataset` record"))?;
        let items = self
            .items
            .store("item")?
            .ok_or_else(|| ApiError::invalid("the stream has no `item` records"))?;
        let prompts = self.prompts.store("prompt")?;
        let splits = Split::ALL
            .into_iter()
            .zip(self.splits)
            .filter(|(_, rows)| !rows.is_empty())
            .collect();
        Ok((name, items, prompts, splits))
    }
}
