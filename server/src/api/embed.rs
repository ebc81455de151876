//! `POST /models/{id}/embed`: a typed prompt's embedding by the text encoder of the model's
//! prompts, so a browser can rank for free text locally (only the text is sent). The text is
//! checked before any work; 422 when the model's prompts were not made by an encoder pal has.
//! [`encoder_of`] is that check, for prompts or items, shared with the reward routes.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use pal_core::Variant;
use pal_format::content::Content;
use pal_format::http::{EmbedRequest, Embedding};

use crate::bodies::Body;
use crate::embed::{Sample, Side};
use crate::error::ApiError;
use crate::models::LoadedModel;
use crate::state::{AppState, blocking};

/// The first text of `side` in the dataset's content that has a stored row, or why none.
fn sample<'a>(content: Option<&'a Content>, m: &'a LoadedModel, side: Side) -> Sample<'a> {
    let no_texts = || {
        format!(
            "its dataset has no {} texts (content.json) to check the encoder against",
            side.one()
        )
    };
    let content = content.ok_or_else(no_texts)?;
    match side {
        Side::Prompts => {
            let store = m.dataset.prompts.as_ref().ok_or_else(no_texts)?;
            content.prompt_text_sample(store).ok_or_else(no_texts)
        }
        Side::Items => match content.item_text_sample(&m.dataset.items) {
            Some(t) => Ok(t),
            None if !content.items.is_empty() => {
                Err("its items are images: texts cannot be scored against them".into())
            }
            None => Err(no_texts()),
        },
    }
}

/// The encoder that made the model's `side` (checked once per dataset), or 422 naming why no
/// encoder of this server did.
pub async fn encoder_of(
    state: &AppState,
    m: &Arc<LoadedModel>,
    side: Side,
) -> Result<String, ApiError> {
    let dataset = m.row.dataset_id.clone();
    let verdict = match state.embedder.known(&dataset, side) {
        Some(v) => v,
        None => {
            // One check per dataset and side, however many first requests arrive at once.
            let lock = state.embedder.check_lock(&dataset, side);
            let _held = lock.lock().await;
            match state.embedder.known(&dataset, side) {
                Some(v) => v,
                None => {
                    let (st, m) = (state.clone(), m.clone());
                    blocking(state, "checking the text encoder", move || {
                        let content = Content::read(&m.dataset.dir).ok();
                        st.embedder
                            .verify(&dataset, side, sample(content.as_ref(), &m, side))
                    })
                    .await?
                }
            }
        }
    };
    verdict.map_err(|why| match side {
        Side::Prompts => ApiError::invalid(format!("this model cannot embed typed prompts: {why}")),
        Side::Items => ApiError::invalid(format!("this model cannot score texts: {why}")),
    })
}

pub async fn embed(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(req): Body<EmbedRequest>,
) -> Result<Json<Embedding>, ApiError> {
    let max = state.config.limits.max_prompt_bytes;
    let text = req.text.trim().to_string();
    if text.is_empty() {
        return Err(ApiError::invalid("field `text`: empty"));
    }
    if text.len() > max {
        return Err(ApiError::invalid(format!(
            "field `text`: {} bytes; the limit is {max}",
            text.len()
        )));
    }
    let m = state.model(&id).await?;
    if m.model.weights.config.variant != Variant::B || m.dataset.prompts.is_none() {
        return Err(ApiError::invalid(
            "this model ranks without prompts (PAL-A): nothing to embed",
        ));
    }
    let encoder = encoder_of(&state, &m, Side::Prompts).await?;
    let (mut rows, _) = state
        .embedder
        .embed_with_prompts(&[&text], Vec::new())
        .await?;
    let embedding = rows.pop().unwrap_or_default();
    Ok(Json(Embedding { embedding, encoder }))
}
