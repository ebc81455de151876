//! The app's components and its loading of the bundle.

use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;
use pal_infer::{Backend, Engine};
use pal_math::personalise::{Personaliser, Question};
use pal_math::weights::weights_from_bytes;
use pal_math::{EmbeddingStore, ModelConfig, Variant};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// Everything loaded once: the engine (weights inside), gallery, prompts and users.
pub struct Loaded {
    model_id: String,
    engine: Engine,
    items: EmbeddingStore,
    prompts: Option<EmbeddingStore>,
    users: Vec<String>,
    /// What items and prompts are (texts, image URLs) when the dataset ships `content.json`.
    content: serde_json::Value,
}

impl Loaded {
    /// An item as a picture or a text (falls back to its id).
    fn show_item(&self, id: &str) -> AnyView {
        let c = &self.content["items"][id];
        if let Some(url) = c["image"].as_str() {
            view! { <img src=url.to_string() alt=id.to_string() title=id.to_string() /> }.into_any()
        } else if let Some(text) = c["text"].as_str() {
            view! { <span class="text">{text.to_string()}</span> }.into_any()
        } else {
            view! { <code>{id.to_string()}</code> }.into_any()
        }
    }

    /// A prompt's text, else its id.
    fn prompt_text(&self, p: usize) -> String {
        let Some(id) = self.prompts.as_ref().map(|s| s.ids()[p].clone()) else {
            return "—".into();
        };
        self.content["prompts"][&id]
            .as_str()
            .map_or(id, str::to_string)
    }
}

/// One A/B answer of the visitor.
#[derive(Clone, Copy)]
struct Answer {
    prompt: usize,
    left: usize,
    right: usize,
    chose_left: bool,
}

fn js_err(e: wasm_bindgen::JsValue) -> String {
    format!("{e:?}")
}

async fn fetch(
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

async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let resp = fetch(url, None).await?;
    let buf = JsFuture::from(resp.array_buffer().map_err(js_err)?)
        .await
        .map_err(js_err)?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

async fn fetch_json(url: &str) -> Result<serde_json::Value, String> {
    let bytes = fetch_bytes(url).await?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{url}: {e}"))
}

/// The model to show: `?model=ID`, else the newest; `?cpu=1` forces the CPU path.
async fn load() -> Result<Loaded, String> {
    let search = web_sys::window()
        .and_then(|w| w.location().search().ok())
        .unwrap_or_default();
    let param = |key: &str| {
        search
            .trim_start_matches('?')
            .split('&')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
    };
    // `?cpu=1` skips WebGPU (the CPU path computes the same scores).
    let force_cpu = param("cpu").is_some();
    let model_id = match param("model") {
        Some(id) => id,
        None => {
            let models = fetch_json("/models").await?;
            models
                .as_array()
                .and_then(|m| m.last())
                .and_then(|m| m["id"].as_str())
                .ok_or("no trained model on this server yet: train one first (see README)")?
                .to_string()
        }
    };
    let manifest = fetch_json(&format!("/models/{model_id}/bundle")).await?;
    let config: ModelConfig =
        serde_json::from_value(manifest["config"].clone()).map_err(|e| e.to_string())?;
    let users: Vec<String> = manifest["users"]
        .as_array()
        .map(|u| {
            u.iter()
                .filter_map(|v| v["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    // Every file of the revision the manifest describes (a write in between makes a new one).
    let rev = manifest["revision"].as_u64().unwrap_or(1);
    let file = |name: &str| format!("/models/{model_id}/files/{name}?rev={rev}");
    let origin = std::path::Path::new("bundle");
    let weights = weights_from_bytes(
        &config,
        users.len(),
        &fetch_bytes(&file("weights.safetensors")).await?,
        origin,
    )
    .map_err(|e| e.to_string())?;
    let items = EmbeddingStore::from_bytes(&fetch_bytes(&file("items.safetensors")).await?, origin)
        .map_err(|e| e.to_string())?;
    let prompts = match manifest.get("prompts_file") {
        Some(_) => Some(
            EmbeddingStore::from_bytes(&fetch_bytes(&file("prompts.safetensors")).await?, origin)
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let content = match manifest.get("content_file") {
        Some(_) => fetch_json(&file("content.json")).await?,
        None => serde_json::Value::Null,
    };
    Ok(Loaded {
        content,
        model_id,
        engine: if force_cpu {
            Engine::cpu(weights)
        } else {
            Engine::new(weights).await
        },
        items,
        prompts,
        users,
    })
}

fn prompt_vec(l: &Loaded, p: usize) -> Vec<f32> {
    match (&l.prompts, l.engine.weights().config.variant) {
        (Some(s), Variant::B) => s.row(p).to_vec(),
        _ => vec![],
    }
}

/// Posterior over the visitor's weights from their answers so far.
fn posterior(l: &Loaded, answers: &[Answer]) -> (Vec<f32>, f32, Option<(usize, usize, usize)>) {
    let w = l.engine.weights();
    let mut post = Personaliser::new(w, 300, 7);
    let question = |a: &Answer| {
        Question::new(
            w,
            &prompt_vec(l, a.prompt),
            l.items.row(a.left),
            l.items.row(a.right),
        )
    };
    for a in answers {
        post.observe(&question(a), a.chose_left);
    }
    // Candidates for the next question: random pairs, the most informative one wins.
    let n = l.items.len();
    let np = l.prompts.as_ref().map_or(1, EmbeddingStore::len);
    let rnd = |m: usize| ((js_sys::Math::random() * m as f64) as usize).min(m - 1);
    let cands: Vec<(usize, usize, usize)> = (0..40)
        .map(|_| (rnd(np), rnd(n), rnd(n)))
        .filter(|(_, a, b)| a != b)
        .collect();
    let qs: Vec<Question> = cands
        .iter()
        .map(|&(p, a, b)| {
            question(&Answer {
                prompt: p,
                left: a,
                right: b,
                chose_left: true,
            })
        })
        .collect();
    let next = post.best_question(&qs).map(|i| cands[i]);
    (post.mean(), post.spread(), next)
}

fn weight_bars(w: Vec<f32>) -> impl IntoView {
    let bars = w
        .into_iter()
        .enumerate()
        .map(|(k, v)| {
            let h = (v * 100.0).clamp(0.0, 100.0);
            view! {
                <g>
                    <rect x=format!("{}", 10 + k * 50) y=format!("{}", 110.0 - h) width="36" height=format!("{h}") fill="#1f77b4"></rect>
                    <text x=format!("{}", 12 + k * 50) y="128" font-size="12">{format!("k{} {:.2}", k + 1, v)}</text>
                </g>
            }
        })
        .collect_view();
    view! { <svg class="weights" width="260" height="135">{bars}</svg> }
}

#[component]
pub fn App() -> impl IntoView {
    let loaded: StoredValue<Option<Rc<Loaded>>, LocalStorage> = StoredValue::new_local(None);
    let (status, set_status) = signal(String::from("loading the model bundle…"));
    let (ready, set_ready) = signal(false);
    let (user, set_user) = signal(String::new());
    let (prompt, set_prompt) = signal(0usize);
    let (ranking, set_ranking) = signal(Vec::<(String, f32)>::new());
    let (answers, set_answers) = signal(Vec::<Answer>::new());
    let (mine, set_mine) = signal(Vec::<f32>::new());
    let (spread, set_spread) = signal(1.0f32);
    let (question, set_question) = signal(None::<(usize, usize, usize)>);

    // `?selftest=1` / `?bench=1`: kernel parity and timing in this browser, shown in `#check`.
    let (check, set_check) = signal(String::new());
    let search = web_sys::window()
        .and_then(|w| w.location().search().ok())
        .unwrap_or_default();
    if search.contains("selftest") || search.contains("bench") {
        let bench = search.contains("bench");
        spawn_local(async move {
            let r = if bench {
                crate::check::bench().await
            } else {
                crate::check::selftest().await
            };
            set_check.set(r.unwrap_or_else(|e| format!("check failed: {e}")));
        });
    }
    spawn_local(async move {
        match load().await {
            Ok(l) => {
                let backend = match l.engine.backend() {
                    Backend::Gpu(name) => format!("GPU: {name}"),
                    Backend::Cpu => "CPU path (reference math)".to_string(),
                };
                set_status.set(format!(
                    "model {} · {} users · {} items · {backend}",
                    l.model_id,
                    l.users.len(),
                    l.items.len()
                ));
                loaded.set_value(Some(Rc::new(l)));
                set_ready.set(true);
            }
            Err(e) => set_status.set(format!("error: {e}")),
        }
    });

    // The visitor's posterior and next question follow their answers.
    Effect::new(move |_| {
        let a = answers.get();
        if !ready.get() {
            return;
        }
        if let Some(l) = loaded.get_value() {
            let (mean, s, next) = posterior(&l, &a);
            set_mine.set(mean);
            set_spread.set(s);
            set_question.set(next);
        }
    });

    // Re-rank whenever the user, prompt or the visitor's weights change.
    Effect::new(move |_| {
        let (u, p, m) = (user.get(), prompt.get(), mine.get());
        if !ready.get() {
            return;
        }
        let Some(l) = loaded.get_value() else { return };
        let w = match l.users.iter().position(|x| *x == u) {
            Some(i) => l.engine.weights().user_weights(i),
            None => m,
        };
        spawn_local(async move {
            if w.is_empty() {
                return;
            }
            match l
                .engine
                .rank(&w, &prompt_vec(&l, p), l.items.data(), 10)
                .await
            {
                Ok(top) => set_ranking.set(
                    top.into_iter()
                        .map(|(i, v)| (l.items.ids()[i].clone(), v))
                        .collect(),
                ),
                Err(e) => set_status.set(format!("error: {e}")),
            }
        });
    });

    let answer = move |chose_left: bool| {
        if let Some((p, a, b)) = question.get_untracked() {
            set_user.set(String::new());
            set_prompt.set(p);
            set_answers.update(|v| {
                v.push(Answer {
                    prompt: p,
                    left: a,
                    right: b,
                    chose_left,
                })
            });
        }
    };
    let item_view = move |i: usize| loaded.get_value().map(|l| l.show_item(&l.items.ids()[i]));
    let prompt_name = move |p: usize| {
        ready.get();
        loaded
            .get_value()
            .map(|l| l.prompt_text(p))
            .unwrap_or_else(|| "—".into())
    };
    let gallery = move || {
        // Read the signal first so the gallery re-renders with every ranking.
        let top = ranking.get();
        let l = loaded.get_value()?;
        Some(
            top.into_iter()
                .map(|(id, s)| view! { <figure>{l.show_item(&id)}<figcaption>{format!("{s:.3}")}</figcaption></figure> })
                .collect_view(),
        )
    };
    let save = move |_| {
        let Some(l) = loaded.get_value() else { return };
        let body = serde_json::json!({"weights": mine.get_untracked()}).to_string();
        spawn_local(async move {
            let init = web_sys::RequestInit::new();
            init.set_method("PUT");
            init.set_body(&wasm_bindgen::JsValue::from_str(&body));
            let headers = web_sys::Headers::new().unwrap();
            let _ = headers.set("Content-Type", "application/json");
            let url = format!("/models/{}/users/visitor", l.model_id);
            // Overwriting a saved user needs its current ETag (the server refuses blind writes).
            if let Ok(resp) = fetch(&url, None).await
                && let Ok(Some(tag)) = resp.headers().get("etag")
            {
                let _ = headers.set("If-Match", &tag);
            }
            init.set_headers(&headers);
            match fetch(&url, Some(&init)).await {
                Ok(_) => set_status.set("saved your weights as user `visitor`".into()),
                Err(e) => set_status.set(format!("save failed: {e}")),
            }
        });
    };

    view! {
        <main>
            <h1>"pal — personalised ranking"</h1>
            <p id="status">{move || status.get()}</p>
            <p id="check">{move || check.get()}</p>
            <section>
                <label>"Rank for "
                    <select id="user" prop:value=move || user.get() on:change=move |ev| set_user.set(event_target_value(&ev))>
                        <option value="">"you (personalised)"</option>
                        {move || {
                            ready.get();
                             loaded.get_value().map(|l| l.users.iter().map(|u| {
                            view! { <option value=u.clone()>{u.clone()}</option> }
                        }).collect_view())
                        }}
                    </select>
                </label>
                <span>" prompt " <b id="prompt">{move || prompt_name(prompt.get())}</b></span>
                <ol id="ranking">
                    {move || ranking.get().into_iter().map(|(id, s)| view! { <li><code>{id}</code>" "{format!("{s:.3}")}</li> }).collect_view()}
                </ol>
                <div id="gallery">{gallery}</div>
            </section>
            <section id="personalise">
                <h2>"Personalise me"</h2>
                <p>{move || format!("{} answers · confidence {:.0}%", answers.get().len(), 100.0 * (1.0 - spread.get()))}</p>
                {move || question.get().map(|(p, a, b)| view! {
                    <p>"For prompt " <b>{prompt_name(p)}</b> ", which do you prefer?"</p>
                    <button id="left" on:click=move |_| answer(true)>{item_view(a)}</button>
                    " or "
                    <button id="right" on:click=move |_| answer(false)>{item_view(b)}</button>
                })}
                <div>"Your weights over the " {move || mine.get().len()} " prototypes:"</div>
                <div>{move || weight_bars(mine.get())}</div>
                <p><button id="save" on:click=save>"Save my weights"</button>" (nothing leaves your browser until you press it)"</p>
            </section>
        </main>
    }
}
