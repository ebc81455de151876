//! The app's page (Leptos): status, the ranking for a user or the visitor, the gallery, and
//! the A/B questions with the visitor's weights. State and policy are in `bundle`/`policy`;
//! fetching is in `api`.

use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, Bundle};
use crate::bundle::{ItemView, query_param};
use crate::policy::{Answer, CANDIDATES, Model, Pair};
use crate::ranker::{Force, Ranker, now_ms};
use crate::visitor::{answers_key, from_pairs, sent_key, to_pair, unsent};

/// Everything loaded once: the bundle and the ranker (weights and cached f(x) inside).
pub struct Loaded {
    bundle: Bundle,
    ranker: Ranker,
}

impl Loaded {
    fn model(&self) -> Model<'_> {
        Model {
            weights: &self.ranker.weights,
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

    /// The answers as ids (what is stored in this browser, and contributed with consent).
    fn pairs(&self, answers: &[Answer]) -> Vec<pal_format::http::ContributedPair> {
        let prompts = self.bundle.prompts.as_ref();
        answers
            .iter()
            .map(|a| to_pair(a, &self.bundle.items, prompts))
            .collect()
    }

    fn prompt_text(&self, p: usize) -> String {
        self.bundle
            .gallery
            .prompt_text(self.bundle.prompts.as_ref(), p)
    }
}

/// What a residual model fitted beyond the visitor's weights, in words: PAL-B's residual adds
/// `⟨f̂(x), δ⟩` to an item's score, so `‖δ‖` bounds how far it moves one (in log-odds).
fn residual_line(delta: &[f32]) -> String {
    let size = delta.iter().map(|v| v * v).sum::<f32>().sqrt();
    format!(
        "Beyond the prototypes, your answers add a taste of your own (personal residual: it \
         moves an item's score by at most {size:.2} log-odds; 0 = none). It ranks your list too, and stays in this browser: it is refitted \
         from your answers, not saved."
    )
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

/// The bundle and its ranker: f(x) cached on the path a warm-up picks (`?cpu=1`, `?gpu=1` force).
async fn load() -> Result<Loaded, String> {
    let bundle = api::load_bundle().await?;
    let search = api::search();
    let force = match (query_param(&search, "cpu"), query_param(&search, "gpu")) {
        (Some(_), _) => Force::Cpu,
        (None, Some(_)) => Force::Gpu,
        _ => Force::Auto,
    };
    let ranker = Ranker::new(bundle.weights.clone(), &bundle.items, force).await;
    Ok(Loaded { bundle, ranker })
}

/// Each prototype's three favourite item rows under a prompt embedding (what it prefers). They
/// depend on the prompt only, not on the visitor's weights, so answers do not recompute them.
fn favourites(l: &Loaded, prompt: &[f32]) -> Vec<Vec<usize>> {
    (0..l.ranker.weights.config.k)
        .map(|k| {
            let mut one_hot = vec![0.0; l.ranker.weights.config.k];
            one_hot[k] = 1.0;
            l.ranker
                .rank(&one_hot, None, prompt, 3)
                .into_iter()
                .map(|(i, _)| i)
                .collect()
        })
        .collect()
}

/// The visitor's weight on each prototype as a bar, beside that prototype's favourites (as
/// thumbnails or snippets).
fn weight_rows(l: Option<Rc<Loaded>>, w: Vec<f32>, likes: Vec<Vec<usize>>) -> impl IntoView {
    let rows = w
        .into_iter()
        .enumerate()
        .map(|(k, v)| {
            let likes = l.as_ref().map(|l| {
                likes
                    .get(k)
                    .into_iter()
                    .flatten()
                    .map(|&i| l.show_item(&l.bundle.items.ids()[i]))
                    .collect_view()
            });
            let width = format!("width: {:.0}px", (v * 160.0).clamp(1.0, 160.0));
            view! {
                <div class="proto">
                    <span class="label">{format!("k{} {:.2}", k + 1, v)}</span>
                    <span class="bar" style=width></span>
                    <span class="likes">"likes " {likes}</span>
                </div>
            }
        })
        .collect_view();
    view! { <div class="protos">{rows}</div> }
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
    // The visitor's own residual δ (residual models only), fitted to their answers.
    let (mine_residual, set_mine_residual) = signal(None::<Vec<f32>>);
    let (spread, set_spread) = signal(1.0f32);
    // Answers the shown posterior and question account for: set with them, so the answers line
    // never shows a new count beside the previous question.
    let (answered, set_answered) = signal(0usize);
    let (question, set_question) = signal(None::<Pair>);
    // Weights the visitor saved on the server, shown until they answer again.
    let (restored, set_restored) = signal(None::<Vec<f32>>);
    let (consent, set_consent) = signal(false);
    let (newer, set_newer) = signal(None::<String>);
    let (rank_ms, set_rank_ms) = signal(0.0f64);
    // A typed prompt and its embedding (from the server's encoder), ranked for until the
    // visitor chooses a listed prompt.
    let (typed, set_typed) = signal(None::<(String, Vec<f32>)>);
    let (draft, set_draft) = signal(String::new());
    // The prompt embedding the ranking uses: the typed one, else the prompt row's.
    let prompt_now = move || -> Vec<f32> {
        match (typed.get(), loaded.get_value()) {
            (Some((_, v)), _) => v,
            (None, Some(l)) => l.model().prompt_vec(prompt.get()),
            (None, None) => vec![],
        }
    };
    // Each prototype's favourites, recomputed only when the prompt (or the model) changes.
    let liked = Memo::new(move |_| {
        ready.get();
        let pv = prompt_now();
        loaded
            .get_value()
            .map(|l| favourites(&l, &pv))
            .unwrap_or_default()
    });

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
                set_status.set(format!(
                    "model {} · {} users · {} items · {} · f(x) cached in {:.0} ms",
                    l.bundle.model_id,
                    l.users().len(),
                    l.bundle.items.len(),
                    l.ranker.label,
                    l.ranker.features_ms
                ));
                // A returning visitor: their answers from this browser, their weights from the
                // server (with their secret).
                let model = l.bundle.model_id.clone();
                let kept: Vec<pal_format::http::ContributedPair> =
                    api::stored(&answers_key(&model))
                        .and_then(|t| serde_json::from_str(&t).ok())
                        .unwrap_or_default();
                let back = from_pairs(&kept, &l.bundle.items, l.bundle.prompts.as_ref());
                set_newer.set(l.bundle.newer.clone());
                loaded.set_value(Some(Rc::new(l)));
                if let Some(v) = api::known_visitor() {
                    match api::saved_weights(&model, &v).await {
                        Ok(w) => set_restored.set(w),
                        Err(e) => set_status.update(|s| {
                            *s += &format!(" · could not read your saved weights: {e}")
                        }),
                    }
                }
                set_answers.set(back);
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
            // The ranking shown (item rows): its top pairs join the questions once a prompt is picked.
            let top: Vec<usize> = ranking
                .get_untracked()
                .iter()
                .filter_map(|(id, _)| l.bundle.items.position(id))
                .collect();
            let candidates = model.candidates_under(picked, CANDIDATES, &mut random, &top);
            let post = model.posterior(&a, &candidates);
            match restored.get_untracked() {
                Some(w) if a.is_empty() && w.len() == post.mean.len() => set_mine.set(w),
                _ => set_mine.set(post.mean),
            }
            set_mine_residual.set(post.residual);
            set_spread.set(post.spread);
            // Before the first answer the ranking shows the prompt the question asks about.
            if let (true, None, Some(q)) = (a.is_empty(), picked, post.next) {
                set_prompt.set(q.prompt);
            }
            set_question.set(post.next);
            set_answered.set(a.len());
        }
    });

    // Re-rank whenever the user, prompt or the visitor's weights change: the user's point and
    // one pass over the cached f(x), timed.
    Effect::new(move |_| {
        let (u, m, pv) = (user.get(), mine.get(), prompt_now());
        let delta = mine_residual.get();
        if !ready.get() {
            return;
        }
        let Some(l) = loaded.get_value() else { return };
        // A dataset user ranks with their trained residual, the visitor with their fitted one.
        let (w, delta) = match l.users().iter().position(|x| *x == u) {
            Some(i) => (
                l.ranker.weights.user_weights(i),
                l.ranker.weights.residual(i).map(<[f32]>::to_vec),
            ),
            None => (m, delta),
        };
        if w.is_empty() {
            return;
        }
        let t = now_ms();
        let top = l.ranker.rank(&w, delta.as_deref(), &pv, 10);
        set_rank_ms.set(now_ms() - t);
        set_ranking.set(
            top.into_iter()
                .map(|(i, v)| (l.bundle.items.ids()[i].clone(), v))
                .collect(),
        );
    });

    let answer = move |chose_left: bool| {
        if let Some(pair) = question.get_untracked() {
            set_user.set(String::new());
            set_prompt.set(pair.prompt);
            set_answers.update(|v| v.push(Answer { pair, chose_left }));
            // Kept in this browser only (a reload restores them).
            if let Some(l) = loaded.get_value() {
                let pairs = l.pairs(&answers.get_untracked());
                if let Ok(text) = serde_json::to_string(&pairs) {
                    api::store(&answers_key(&l.bundle.model_id), &text);
                }
            }
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
    // Save: the visitor's K weights; their answers only when they ticked the consent box.
    let save = move |_| {
        let Some(l) = loaded.get_value() else { return };
        let weights = mine.get_untracked();
        let pairs = l.pairs(&answers.get_untracked());
        let share = consent.get_untracked();
        spawn_local(async move {
            let model = l.bundle.model_id.clone();
            let done = async {
                let v = api::visitor(&model).await?;
                api::save_weights(&model, &v, weights).await?;
                let mut line = format!(
                    "saved your weights as {} (your key stays in this browser)",
                    v.user
                );
                if share {
                    let sent: usize = api::stored(&sent_key(&model))
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(0);
                    let more = unsent(&pairs, sent).to_vec();
                    if !more.is_empty() {
                        api::contribute(&model, &v, more.clone()).await?;
                        api::store(&sent_key(&model), &(sent + more.len()).to_string());
                    }
                    line += &format!(" · {} answers contributed", sent + more.len());
                }
                Ok::<String, String>(line)
            };
            match done.await {
                Ok(line) => set_status.set(line),
                Err(e) => set_status.set(format!("save failed: {e}")),
            }
        });
    };
    // A typed prompt: the server embeds the text (nothing else is sent); ranking stays local.
    let type_prompt = move |_| {
        let Some(l) = loaded.get_value() else { return };
        let text = draft.get_untracked().trim().to_string();
        if text.is_empty() {
            return;
        }
        spawn_local(async move {
            match api::embed(&l.bundle.model_id, &text).await {
                Ok(v) => set_typed.set(Some((text, v))),
                Err(e) => set_status.set(format!("could not embed that prompt: {e}")),
            }
        });
    };
    // Forget me: deleted on the server and in this browser.
    let forget = move |_| {
        let Some(l) = loaded.get_value() else { return };
        spawn_local(async move {
            match api::forget(&l.bundle.model_id).await {
                Ok(()) => {
                    set_restored.set(None);
                    set_answers.set(vec![]);
                    set_status.set("forgotten: your weights, answers and key are deleted on the server and in this browser".into());
                }
                Err(e) => set_status.set(format!("forget failed: {e}")),
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
                <span>" prompt " <b id="prompt">{move || match typed.get() {
                    Some((text, _)) => text,
                    None => prompt_name(prompt.get()),
                }}</b></span>
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
                                set_typed.set(None);
                                set_draft.set(String::new());
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
                {move || {
                    ready.get();
                    loaded.get_value()?.bundle.prompts.as_ref()?;
                    Some(view! {
                        <p>
                            <label>"or type one: "
                                <input id="typed-prompt" type="text" maxlength="500" placeholder="a photo of a cat"
                                    prop:value=move || draft.get()
                                    on:input=move |ev| set_draft.set(event_target_value(&ev)) />
                            </label>
                            <button id="embed" on:click=type_prompt>"Rank for this"</button>
                            <span class="note">" (only this text is sent, to embed it; the ranking stays in your browser)"</span>
                        </p>
                    })
                }}
                <p id="rank-time" class="note">{move || {
                    // Nothing is claimed before the first ranking.
                    let n = loaded.get_value().map_or(0, |l| l.bundle.items.len());
                    (ready.get() && !ranking.get().is_empty())
                        .then(|| format!("ranked {n} items in {:.1} ms", rank_ms.get()))
                }}</p>
                <ol id="ranking">
                    {move || ranking.get().into_iter().map(|(id, s)| view! { <li><code>{id}</code>" "{format!("{s:.3}")}</li> }).collect_view()}
                </ol>
                <div id="gallery">{gallery}</div>
            </section>
            <section id="personalise">
                <h2>"Personalise me"</h2>
                <p>{move || answers_line(answered.get(), spread.get())}</p>
                {move || question.get().map(|q| view! {
                    <p>"For prompt " <b>{prompt_name(q.prompt)}</b> ", which do you prefer? (← / → keys work too)"</p>
                    <button id="left" on:click=move |_| answer(true)>{item_view(q.left)}</button>
                    " or "
                    <button id="right" on:click=move |_| answer(false)>{item_view(q.right)}</button>
                })}
                <div>{move || match mine.get().len() {
                    0 => String::new(),
                    k => format!("Your weights over the {k} prototypes (each one's favourites under this prompt beside it):"),
                }}</div>
                <div>{move || weight_rows(loaded.get_value(), mine.get(), liked.get())}</div>
                {move || mine_residual.get().map(|d| view! {
                    <p id="residual">{residual_line(&d)}</p>
                })}
                <p>
                    <button id="save" on:click=save>"Save my weights"</button>
                    " "
                    <button id="forget" on:click=forget>"Forget me"</button>
                </p>
                <p><label><input type="checkbox" id="consent" prop:checked=move || consent.get()
                    on:change=move |ev| set_consent.set(event_target_checked(&ev)) />
                    " Also send my answers, so the next model learns from them"</label></p>
                <p class="note">"Saving sends only your " {move || match mine.get().len() {
                    0 => "K".to_string(),
                    k => k.to_string(),
                }} " weights, under a random id; \
                    your answers stay in this browser unless you tick the box. \
                    Forget me deletes both, here and on the server."</p>
                {move || newer.get().map(|id| view! {
                    <p id="newer">"A newer model of this dataset exists: "
                        <a href=format!("?model={id}")>"open it"</a></p>
                })}
            </section>
        </main>
    }
}
