//! The app's page (Leptos): status, the ranking for a user or the visitor, the gallery, and
//! the A/B questions with the visitor's weights. State and policy are in `bundle`/`policy`;
//! fetching is in `api`.

use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;
use pal_infer::Scorer;

use crate::api::{self, Bundle};
use crate::bundle::{ItemView, query_param};
use crate::policy::{Answer, CANDIDATES, Model, Pair};

/// Everything loaded once: the bundle and the scorer (weights inside).
pub struct Loaded {
    bundle: Bundle,
    scorer: Scorer,
}

impl Loaded {
    fn model(&self) -> Model<'_> {
        Model {
            weights: self.scorer.weights(),
            items: &self.bundle.items,
            prompts: self.bundle.prompts.as_ref(),
            pools: &self.bundle.pools,
        }
    }

    fn users(&self) -> Vec<String> {
        self.bundle.manifest.user_ids()
    }

    /// An item as a picture or a text (falls back to its id).
    fn show_item(&self, id: &str) -> AnyView {
        match self.bundle.gallery.item(id) {
            ItemView::Image(url) => {
                view! { <img src=url alt=id.to_string() title=id.to_string() /> }.into_any()
            }
            ItemView::Text(text) => view! { <span class="text">{text}</span> }.into_any(),
            ItemView::Id(id) => view! { <code>{id}</code> }.into_any(),
        }
    }

    fn prompt_text(&self, p: usize) -> String {
        self.bundle
            .gallery
            .prompt_text(self.bundle.prompts.as_ref(), p)
    }
}

/// What ranks, in plain words: a software WebGPU adapter (SwiftShader) is named as such.
fn backend_label(scorer: &Scorer) -> &'static str {
    match scorer {
        Scorer::Gpu(g) if g.adapter_info.device_type == "Cpu" => "WebGPU (software adapter)",
        Scorer::Gpu(_) => "WebGPU",
        Scorer::Cpu(_) => "CPU (wasm)",
    }
}

/// The answers line: no confidence is claimed before the first answer.
fn answers_line(n: usize, spread: f32) -> String {
    match n {
        0 => "0 answers · answer a question to start".into(),
        1 => format!("1 answer · confidence {:.0}%", 100.0 * (1.0 - spread)),
        n => format!("{n} answers · confidence {:.0}%", 100.0 * (1.0 - spread)),
    }
}

/// `random(m)`: an index below `m` from the browser's generator.
fn random(m: usize) -> usize {
    ((js_sys::Math::random() * m as f64) as usize).min(m.saturating_sub(1))
}

/// The bundle and a scorer for it: WebGPU unless `?cpu=1` (the CPU path computes the same scores).
async fn load() -> Result<Loaded, String> {
    let bundle = api::load_bundle().await?;
    let weights = bundle.weights.clone();
    let scorer = if query_param(&api::search(), "cpu").is_some() {
        Scorer::cpu(weights)
    } else {
        Scorer::new(weights).await
    };
    Ok(Loaded { bundle, scorer })
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
    // The prompt the visitor picked (questions then stay under it), if any.
    let (chosen, set_chosen) = signal(None::<usize>);
    let (ranking, set_ranking) = signal(Vec::<(String, f32)>::new());
    let (answers, set_answers) = signal(Vec::<Answer>::new());
    let (mine, set_mine) = signal(Vec::<f32>::new());
    let (spread, set_spread) = signal(1.0f32);
    let (question, set_question) = signal(None::<Pair>);

    // `?selftest=1` / `?bench=1`: kernel parity and timing in this browser, shown in `#check`.
    let (check, set_check) = signal(String::new());
    let search = api::search();
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
                let backend = backend_label(&l.scorer);
                set_status.set(format!(
                    "model {} · {} users · {} items · {backend}",
                    l.bundle.model_id,
                    l.users().len(),
                    l.bundle.items.len()
                ));
                loaded.set_value(Some(Rc::new(l)));
                set_ready.set(true);
            }
            Err(e) => set_status.set(format!("error: {e}")),
        }
    });

    // The visitor's posterior and next question follow their answers.
    Effect::new(move |_| {
        let (a, picked) = (answers.get(), chosen.get());
        if !ready.get() {
            return;
        }
        if let Some(l) = loaded.get_value() {
            let model = l.model();
            let candidates = model.candidates_under(picked, CANDIDATES, &mut random);
            let post = model.posterior(&a, &candidates);
            set_mine.set(post.mean);
            set_spread.set(post.spread);
            set_question.set(post.next);
        }
    });

    // Re-rank whenever the user, prompt or the visitor's weights change.
    Effect::new(move |_| {
        let (u, p, m) = (user.get(), prompt.get(), mine.get());
        if !ready.get() {
            return;
        }
        let Some(l) = loaded.get_value() else { return };
        let w = match l.users().iter().position(|x| *x == u) {
            Some(i) => l.scorer.weights().user_weights(i),
            None => m,
        };
        spawn_local(async move {
            if w.is_empty() {
                return;
            }
            match l
                .scorer
                .rank(&w, &l.model().prompt_vec(p), l.bundle.items.data(), 10)
                .await
            {
                Ok(top) => set_ranking.set(
                    top.into_iter()
                        .map(|(i, v)| (l.bundle.items.ids()[i].clone(), v))
                        .collect(),
                ),
                Err(e) => set_status.set(format!("error: {e}")),
            }
        });
    });

    let answer = move |chose_left: bool| {
        if let Some(pair) = question.get_untracked() {
            set_user.set(String::new());
            set_prompt.set(pair.prompt);
            set_answers.update(|v| v.push(Answer { pair, chose_left }));
        }
    };
    // ← answers "left", → answers "right".
    let keys = window_event_listener(leptos::ev::keydown, move |ev| match ev.key().as_str() {
        "ArrowLeft" => answer(true),
        "ArrowRight" => answer(false),
        _ => {}
    });
    on_cleanup(move || keys.remove());
    let item_view = move |i: usize| {
        loaded
            .get_value()
            .map(|l| l.show_item(&l.bundle.items.ids()[i]))
    };
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
        let weights = mine.get_untracked();
        spawn_local(async move {
            match api::save_weights(&l.bundle.model_id, "visitor", weights).await {
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
                             loaded.get_value().map(|l| l.users().into_iter().map(|u| {
                            view! { <option value=u.clone()>{u.clone()}</option> }
                        }).collect_view())
                        }}
                    </select>
                </label>
                <span>" prompt " <b id="prompt">{move || prompt_name(prompt.get())}</b></span>
                {move || {
                    ready.get();
                    let l = loaded.get_value()?;
                    let n = l.bundle.prompts.as_ref()?.len();
                    let options = (0..n)
                        .map(|p| view! { <option value=p.to_string()>{l.prompt_text(p)}</option> })
                        .collect_view();
                    Some(view! {
                        <label>" · choose "
                            <select id="prompt-select" on:change=move |ev| {
                                let v = event_target_value(&ev);
                                let p = v.parse::<usize>().ok();
                                set_chosen.set(p);
                                if let Some(p) = p {
                                    set_prompt.set(p);
                                }
                            }>
                                <option value="">"any prompt (the questions pick)"</option>
                                {options}
                            </select>
                        </label>
                    })
                }}
                <ol id="ranking">
                    {move || ranking.get().into_iter().map(|(id, s)| view! { <li><code>{id}</code>" "{format!("{s:.3}")}</li> }).collect_view()}
                </ol>
                <div id="gallery">{gallery}</div>
            </section>
            <section id="personalise">
                <h2>"Personalise me"</h2>
                <p>{move || answers_line(answers.get().len(), spread.get())}</p>
                {move || question.get().map(|q| view! {
                    <p>"For prompt " <b>{prompt_name(q.prompt)}</b> ", which do you prefer? (← / → keys work too)"</p>
                    <button id="left" on:click=move |_| answer(true)>{item_view(q.left)}</button>
                    " or "
                    <button id="right" on:click=move |_| answer(false)>{item_view(q.right)}</button>
                })}
                <div>"Your weights over the " {move || mine.get().len()} " prototypes:"</div>
                <div>{move || weight_bars(mine.get())}</div>
                <p><button id="save" on:click=save>"Save my weights"</button>" (nothing leaves your browser until you press it)"</p>
            </section>
        </main>
    }
}
