//! The app's client of `pal serve` (browser only): fetching bytes and typed JSON, loading a
//! model's bundle, and saving the visitor's weights with `If-Match`.

use pal_format::BundleManifest;
use pal_format::candidates::Candidates;
use pal_format::http::{SetWeights, UserWeights};
use pal_math::weights::weights_from_bytes;
use pal_math::{EmbeddingStore, PalWeights};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::bundle::{self, Gallery};
use crate::policy::{Pool, pools};

fn js_err(e: wasm_bindgen::JsValue) -> String {
    format!("{e:?}")
}

/// One request; a non-2xx answer is an error naming the URL and status.
pub async fn fetch(
    url: &str,
    init: Option<&web_sys::RequestInit>,
) -> Result<web_sys::Response, String> {
    let window = web_sys::window().ok_or("no window")?;
    let promise = match init {
        Some(i) => window.fetch_with_str_and_init(url, i),
        None => window.fetch_with_str(url),
    };
    let resp: web_sys::Response = JsFuture::from(promise)
        .await
        .map_err(js_err)?
        .dyn_into()
        .map_err(js_err)?;
    if !resp.ok() {
        return Err(format!("{url}: HTTP {}", resp.status()));
    }
    Ok(resp)
}

pub async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let resp = fetch(url, None).await?;
    let buf = JsFuture::from(resp.array_buffer().map_err(js_err)?)
        .await
        .map_err(js_err)?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

/// The page's query string (`?model=…&cpu=1`).
pub fn search() -> String {
    web_sys::window()
        .and_then(|w| w.location().search().ok())
        .unwrap_or_default()
}

/// Everything a model's bundle holds, read through the typed readers.
pub struct Bundle {
    pub model_id: String,
    pub manifest: BundleManifest,
    pub weights: PalWeights,
    pub items: EmbeddingStore,
    pub prompts: Option<EmbeddingStore>,
    pub gallery: Gallery,
    /// Per prompt, the item rows compared under it (questions pair two of them).
    pub pools: Vec<Pool>,
}

/// Loads `?model=ID`'s bundle, else the newest model's.
pub async fn load_bundle() -> Result<Bundle, String> {
    let model_id = match bundle::query_param(&search(), "model") {
        Some(id) => id,
        None => bundle::newest_model(&fetch_bytes("/models").await?)?,
    };
    let manifest_json = fetch_bytes(&format!("/models/{model_id}/bundle")).await?;
    let (manifest, files) = bundle::files(&model_id, &manifest_json)?;
    let origin = std::path::Path::new("bundle");
    let weights = weights_from_bytes(
        &manifest.config,
        manifest.users.len(),
        &fetch_bytes(&files.weights).await?,
        origin,
    )
    .map_err(|e| e.to_string())?;
    let items = EmbeddingStore::from_bytes(&fetch_bytes(&files.items).await?, origin)
        .map_err(|e| e.to_string())?;
    let prompts = match &files.prompts {
        Some(url) => Some(
            EmbeddingStore::from_bytes(&fetch_bytes(url).await?, origin)
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let content = match &files.content {
        Some(url) => Some(fetch_bytes(url).await?),
        None => None,
    };
    let pools = match &files.candidates {
        Some(url) => {
            let bytes = fetch_bytes(url).await?;
            let c = Candidates::parse(&bytes, std::path::Path::new("candidates.json"))
                .map_err(|e| e.to_string())?;
            pools(&c, &items, prompts.as_ref())
        }
        None => vec![],
    };
    Ok(Bundle {
        model_id,
        manifest,
        weights,
        items,
        prompts,
        gallery: Gallery::parse(content.as_deref())?,
        pools,
    })
}

/// Saves `weights` as `user` of `model`: reads the user's ETag first (overwriting needs it).
pub async fn save_weights(
    model: &str,
    user: &str,
    weights: Vec<f32>,
) -> Result<UserWeights, String> {
    let body = serde_json::to_string(&SetWeights { weights }).map_err(|e| e.to_string())?;
    let init = web_sys::RequestInit::new();
    init.set_method("PUT");
    init.set_body(&wasm_bindgen::JsValue::from_str(&body));
    let headers = web_sys::Headers::new().map_err(js_err)?;
    headers
        .set("Content-Type", "application/json")
        .map_err(js_err)?;
    let url = format!("/models/{model}/users/{user}");
    if let Ok(resp) = fetch(&url, None).await
        && let Ok(Some(tag)) = resp.headers().get("etag")
    {
        headers.set("If-Match", &tag).map_err(js_err)?;
    }
    init.set_headers(&headers);
    let resp = fetch(&url, Some(&init)).await?;
    let buf = JsFuture::from(resp.array_buffer().map_err(js_err)?)
        .await
        .map_err(js_err)?;
    serde_json::from_slice(&js_sys::Uint8Array::new(&buf).to_vec()).map_err(|e| e.to_string())
}
