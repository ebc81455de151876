//! `POST /models/{id}/embed`: a typed prompt's embedding by the text encoder of the model's
//! prompts, so a browser can rank for free text locally (only the text is sent). The text is
//! checked before any work; 422 when the model's prompts were not made by an encoder pal has.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pal_core::Variant;
use pal_format::content::Content;
use pal_format::http::{EmbedRequest, Embedding};

use crate::bodies::Body;
use crate::error::ApiError;
use crate::state::{AppState, blocking};

pub async fn embed(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(req): Body<EmbedRequest>,
) -> Result<Response, ApiError> {
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
    let Ok(_permit) = state.embedder.permits.try_acquire() else {
        let mut resp = ApiError::unavailable("busy embedding other prompts; retry in a second")
            .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Ok(resp);
    };
    let (st, m2) = (state.clone(), m.clone());
    let out = blocking(&state, "embedding the prompt", move || {
        let dataset = m2.row.dataset_id.clone();
        let verdict = match st.embedder.known(&dataset) {
            Some(v) => v,
            None => {
                let content = Content::read(&m2.dataset.dir).ok();
                let prompts = m2.dataset.prompts.as_ref();
                let sample = content.as_ref().and_then(|c| {
                    c.prompts
                        .iter()
                        .find_map(|(pid, t)| Some((t.as_str(), prompts?.get(pid)?)))
                });
                st.embedder.verify(&dataset, sample)
            }
        };
        let encoder = verdict.map_err(|why| {
            ApiError::invalid(format!("this model cannot embed typed prompts: {why}"))
        })?;
        let (embedding, _) = st.embedder.embed(&text)?;
        Ok(Embedding { embedding, encoder })
    })
    .await?;
    Ok((StatusCode::OK, Json(out)).into_response())
}
