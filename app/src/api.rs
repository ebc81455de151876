//! The app's client of `pal serve` (browser only): fetching bytes, loading a model's bundle,
//! the visitor's identity in `localStorage`, and the visitor's requests (create, save and load
//! weights, contribute answers with consent, forget me), each with the visitor's secret.

use pal_format::BundleManifest;
use pal_format::candidates::Candidates;
use pal_format::http::{
    Contribute, ContributedPair, EmbedRequest, Embedding, ErrorBody, NewVisitor, SetWeights,
    UserWeights,
};
use pal_math::weights::weights_from_bytes;
use pal_math::{EmbeddingStore, PalWeights};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::bundle::{self, Gallery};
use crate::policy::{Pool, pools};
use crate::visitor::{VISITOR_KEY, newer_model};

fn js_err(e: wasm_bindgen::JsValue) -> String {
    format!("{e:?}")
}

/// A failed request: the HTTP status (0 when no answer came) and the server's reason (its
/// `{error, detail}` body's detail, when it sent one).
pub struct Failed {
    pub status: u16,
    pub url: String,
    pub detail: String,
}

impl From<Failed> for String {
    fn from(f: Failed) -> String {
        match f.status {
            0 => format!("{}: {}", f.url, f.detail),
            s => format!("{}: HTTP {s}: {}", f.url, f.detail),
        }
    }
}

/// One request; a non-2xx answer is a [`Failed`] with its status and the server's reason.
pub async fn request(
    url: &str,
    init: Option<&web_sys::RequestInit>,
) -> Result<web_sys::Response, Failed> {
    let failed = |detail: String| Failed {
        status: 0,
        url: url.to_string(),
        detail,
    };
    let window = web_sys::window().ok_or_else(|| failed("no window".into()))?;
    let promise = match init {
        Some(i) => window.fetch_with_str_and_init(url, i),
        None => window.fetch_with_str(url),
    };
    let resp: web_sys::Response = JsFuture::from(promise)
        .await
        .map_err(|e| failed(js_err(e)))?
        .dyn_into()
        .map_err(|e| failed(js_err(e)))?;
    if !resp.ok() {
        let status = resp.status();
        let detail = read_json::<ErrorBody>(resp)
            .await
            .map_or_else(|_| "no reason given".to_string(), |b| b.detail);
        return Err(Failed {
            status,
            url: url.to_string(),
            detail,
        });
    }
    Ok(resp)
}

/// [`request`] with the failure as one line.
pub async fn fetch(
    url: &str,
    init: Option<&web_sys::RequestInit>,
) -> Result<web_sys::Response, String> {
    Ok(request(url, init).await?)
}

async fn body_bytes(resp: web_sys::Response) -> Result<Vec<u8>, String> {
    let buf = JsFuture::from(resp.array_buffer().map_err(js_err)?)
        .await
        .map_err(js_err)?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

pub async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    body_bytes(fetch(url, None).await?).await
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
    /// A newer model of the same dataset, if the server has one.
    pub newer: Option<String>,
}

/// Loads `?model=ID`'s bundle, else the newest model's.
pub async fn load_bundle() -> Result<Bundle, String> {
    let models = fetch_bytes("/models").await?;
    let model_id = match bundle::query_param(&search(), "model") {
        Some(id) => id,
        None => bundle::newest_model(&models)?,
    };
    let newer = newer_model(&models, &model_id);
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
        newer,
    })
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// A value of this browser's `localStorage`.
pub fn stored(key: &str) -> Option<String> {
    storage()?.get_item(key).ok()?
}

/// Keeps a value in `localStorage` (a browser that refuses storage keeps nothing).
pub fn store(key: &str, value: &str) {
    if let Some(s) = storage() {
        let _ = s.set_item(key, value);
    }
}

/// Removes every `localStorage` key starting with `prefix`.
pub fn unstore(prefix: &str) {
    let Some(s) = storage() else { return };
    let keys: Vec<String> = (0..s.length().unwrap_or(0))
        .filter_map(|i| s.key(i).ok().flatten())
        .filter(|k| k.starts_with(prefix))
        .collect();
    for k in keys {
        let _ = s.remove_item(&k);
    }
}

/// The visitor this browser already is, if any.
pub fn known_visitor() -> Option<NewVisitor> {
    serde_json::from_str(&stored(VISITOR_KEY)?).ok()
}

async fn read_json<T: serde::de::DeserializeOwned>(resp: web_sys::Response) -> Result<T, String> {
    serde_json::from_slice(&body_bytes(resp).await?).map_err(|e| e.to_string())
}

/// A request with `method`, the visitor's `Authorization: Bearer <secret>` when given, and a
/// JSON body when given.
fn json_init(
    method: &str,
    v: Option<&NewVisitor>,
    body: Option<String>,
) -> Result<web_sys::RequestInit, String> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    let headers = web_sys::Headers::new().map_err(js_err)?;
    if let Some(v) = v {
        headers
            .set("Authorization", &format!("Bearer {}", v.secret))
            .map_err(js_err)?;
    }
    if let Some(b) = body {
        headers
            .set("Content-Type", "application/json")
            .map_err(js_err)?;
        init.set_body(&wasm_bindgen::JsValue::from_str(&b));
    }
    init.set_headers(&headers);
    Ok(init)
}

/// This browser's visitor, created on `model` the first time (`POST /models/{id}/visitors`)
/// and kept in `localStorage`.
pub async fn visitor(model: &str) -> Result<NewVisitor, String> {
    if let Some(v) = known_visitor() {
        return Ok(v);
    }
    let init = json_init("POST", None, None)?;
    let resp = fetch(&format!("/models/{model}/visitors"), Some(&init)).await?;
    let v: NewVisitor = read_json(resp).await?;
    store(
        VISITOR_KEY,
        &serde_json::to_string(&v).map_err(|e| e.to_string())?,
    );
    Ok(v)
}

/// Saves the visitor's simplex weights on `model` (only the K weights are sent).
pub async fn save_weights(
    model: &str,
    v: &NewVisitor,
    weights: Vec<f32>,
) -> Result<UserWeights, String> {
    let body = serde_json::to_string(&SetWeights { weights }).map_err(|e| e.to_string())?;
    let init = json_init("PUT", Some(v), Some(body))?;
    let resp = fetch(&format!("/models/{model}/users/{}", v.user), Some(&init)).await?;
    read_json(resp).await
}

/// The visitor's saved weights on `model`; `None` when nothing is saved there.
pub async fn saved_weights(model: &str, v: &NewVisitor) -> Result<Option<Vec<f32>>, String> {
    let init = json_init("GET", Some(v), None)?;
    match request(&format!("/models/{model}/users/{}", v.user), Some(&init)).await {
        Ok(resp) => Ok(Some(read_json::<UserWeights>(resp).await?.weights)),
        Err(f) if f.status == 404 => Ok(None),
        Err(f) => Err(f.into()),
    }
}

/// Sends answers the visitor agreed to contribute.
pub async fn contribute(
    model: &str,
    v: &NewVisitor,
    pairs: Vec<ContributedPair>,
) -> Result<(), String> {
    let body = serde_json::to_string(&Contribute { pairs }).map_err(|e| e.to_string())?;
    let init = json_init("POST", Some(v), Some(body))?;
    fetch(
        &format!("/models/{model}/users/{}/comparisons", v.user),
        Some(&init),
    )
    .await?;
    Ok(())
}

/// A typed prompt's embedding by the server's encoder of the model's prompts (only the text is
/// sent); errors carry the server's reason.
pub async fn embed(model: &str, text: &str) -> Result<Vec<f32>, String> {
    let body = serde_json::to_string(&EmbedRequest {
        text: text.to_string(),
    })
    .map_err(|e| e.to_string())?;
    let init = json_init("POST", None, Some(body))?;
    let resp = request(&format!("/models/{model}/embed"), Some(&init))
        .await
        .map_err(|f| f.detail)?;
    Ok(read_json::<Embedding>(resp).await?.embedding)
}

/// Forget me: deletes the visitor on the server (weights and contributions too), then every
/// trace in this browser.
pub async fn forget(model: &str) -> Result<(), String> {
    if let Some(v) = known_visitor() {
        let init = json_init("DELETE", Some(&v), None)?;
        match request(&format!("/models/{model}/users/{}", v.user), Some(&init)).await {
            // Already gone on the server (e.g. forgotten from another tab): still forget here.
            Ok(_) => {}
            Err(f) if matches!(f.status, 401 | 403 | 404) => {}
            Err(f) => return Err(f.into()),
        }
    }
    unstore("pal.");
    Ok(())
}
