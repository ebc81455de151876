//! Rewards of texts embedded by the server's MiniLM: a small dataset of real sentences embedded
//! by the same encoder, imported with its `content.json`, trained, then scored by text through
//! every reward route, alone and many requests at once.

use std::sync::atomic::Ordering::Relaxed;

use axum::http::StatusCode;
use pal_format::Comparison;
use pal_format::content::{Content, ItemContent};
use serde_json::{Value, json};

use super::{assert_close, floats, post, rank_scores};
use crate::inproc::{self, Api, TOKEN};

const PROMPTS: [&str; 2] = [
    "Summarise a paper on language models that follow instructions.",
    "Summarise a paper on predicting how proteins fold.",
];

fn items() -> Vec<(usize, String)> {
    let mut out = vec![];
    for (p, topic) in ["language models", "protein structure"].iter().enumerate() {
        out.push((p, format!("A study of {topic}.")));
        out.push((p, format!("New methods for {topic} are proposed.")));
        out.push((
            p,
            format!("We present a careful evaluation of {topic} on several benchmarks."),
        ));
        out.push((
            p,
            format!(
                "This paper improves {topic} with a simple training recipe and shows large gains."
            ),
        ));
        out.push((p, format!("Our work on {topic} combines three ideas, reports extensive experiments across many datasets, and releases code.")));
        out.push((p, format!("{topic}: better.")));
    }
    out
}

/// The dataset directory (embedded by MiniLM), or `None` when the asset is missing here.
fn text_dataset(dir: &std::path::Path) -> Option<()> {
    let asset = pal_embed::Asset::named("minilm").and_then(|a| a.path());
    let Ok(asset) = asset else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must fetch the MiniLM asset (cargo xtask assets)"
        );
        eprintln!("MiniLM asset missing: text rewards not tested (run `cargo xtask assets`)");
        return None;
    };
    let enc = pal_embed::TextEncoder::load(&asset).unwrap();
    let items = items();
    let texts: Vec<&str> = items.iter().map(|(_, t)| t.as_str()).collect();
    let rows = enc.embed(&texts).unwrap();
    let ids: Vec<String> = (0..items.len()).map(|i| format!("s{i}")).collect();
    let dim = rows[0].len();
    pal_math::EmbeddingStore::new(ids.clone(), dim, rows.concat())
        .unwrap()
        .save(&dir.join("items.safetensors"))
        .unwrap();
    let prows = enc.embed(&PROMPTS).unwrap();
    let pids = vec!["p0".to_string(), "p1".to_string()];
    pal_math::EmbeddingStore::new(pids.clone(), dim, prows.concat())
        .unwrap()
        .save(&dir.join("prompts.safetensors"))
        .unwrap();
    let mut content = Content::default();
    for (id, (_, t)) in ids.iter().zip(&items) {
        content
            .items
            .insert(id.clone(), ItemContent::Text(t.clone()));
    }
    for (id, t) in pids.iter().zip(PROMPTS) {
        content.prompts.insert(id.clone(), t.to_string());
    }
    content.write(dir).unwrap();
    // Users 0, 2 prefer the longer summary; 1, 3 the shorter.
    let mut train = vec![];
    for u in 0..4 {
        for (a, (pa, ta)) in items.iter().enumerate() {
            for (b, (pb, tb)) in items.iter().enumerate() {
                if pa != pb || a == b {
                    continue;
                }
                let left_longer = ta.len() > tb.len();
                train.push(Comparison {
                    user: format!("u{u}"),
                    prompt: Some(format!("p{pa}")),
                    left: ids[a].clone(),
                    right: ids[b].clone(),
                    label: u8::from(left_longer == (u % 2 == 0)),
                });
            }
        }
    }
    pal_format::comparison::write_jsonl(&dir.join("train.jsonl"), &train).unwrap();
    pal_format::comparison::write_jsonl(&dir.join("val.jsonl"), &train[..40]).unwrap();
    pal_format::comparison::write_jsonl(&dir.join("test.jsonl"), &train[40..80]).unwrap();
    Some(())
}

async fn trained(api: &Api, dir: &std::path::Path) -> String {
    let (s, ds) = api
        .post("/datasets", json!({"name": "texts", "path": dir}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{ds}");
    let spec = json!({"dataset": ds["id"], "model": {"variant": "b", "k": 2, "d": 8, "layers": 1},
        "train": {"epochs": 40, "batch_size": 32}});
    let (s, job) = api.post("/jobs", spec).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let job = inproc::wait_for_job(api, job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    job["model_id"].as_str().unwrap().to_string()
}

fn chatml(prompt: &str, response: &str) -> String {
    format!(
        "<|im_start|>system\nBe helpful.<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n{response}<|im_end|>"
    )
}

async fn texts_score_as_the_dataset_items(url: Option<String>) {
    let data = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    if text_dataset(data.path()).is_none() {
        return;
    }
    let api = Api::with(url.clone(), |_| {}).await;
    let model = trained(&api, data.path()).await;
    let all: Vec<(usize, String)> = items();
    let ids: Vec<String> = (0..all.len()).map(|i| format!("s{i}")).collect();
    let texts: Vec<String> = all.iter().map(|(_, t)| t.clone()).collect();
    let path = format!("/models/{model}/rewards");
    let mut per_user = vec![];
    for user in ["u0", "u1"] {
        let body = json!({"user": user, "prompt": PROMPTS[0], "responses": texts});
        let (s, r) = post(&api, &path, body, Some(TOKEN)).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["encoder"], "all-MiniLM-L6-v2", "{r}");
        let got = floats(&r["rewards"]);
        assert_close(
            &got,
            &rank_scores(&api, &model, user, "p0", &ids).await,
            user,
        );
        per_user.push(got);
    }
    // The two groups disagree on their favourite.
    let best = |r: &[f32]| pal_infer::top_k(r, 1)[0].0;
    assert_ne!(best(&per_user[0][..6]), best(&per_user[1][..6]));

    // OpenRLHF: with prompts and labels, with a chat template and no prompts, without labels.
    let gr = format!("/models/{model}/get_reward");
    let n = 6;
    let labels: Vec<Value> = (0..n)
        .map(|i| if i % 2 == 0 { json!("u0") } else { json!("u1") })
        .collect();
    let want: Vec<f32> = (0..n).map(|i| per_user[i % 2][i]).collect();
    let queries: Vec<String> = (0..n)
        .map(|i| format!("{} {}", PROMPTS[0], texts[i]))
        .collect();
    let body = json!({"query": queries, "prompts": vec![PROMPTS[0]; n], "labels": labels});
    let (s, r) = post(&api, &gr, body, Some(TOKEN)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_close(&floats(&r["rewards"]), &want, "get_reward with prompts");
    assert_eq!(r["rewards"], r["scores"]);
    let templated: Vec<String> = (0..n).map(|i| chatml(PROMPTS[0], &texts[i])).collect();
    let (s, r) = post(
        &api,
        &gr,
        json!({"query": templated, "labels": labels}),
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_close(
        &floats(&r["rewards"]),
        &want,
        "get_reward split at the ChatML marker",
    );
    let (s, mix) = post(
        &api,
        &path,
        json!({"prompt": PROMPTS[0], "responses": &texts[..n]}),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{mix}");
    let (s, r) = post(&api, &gr, json!({"query": templated}), None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_close(
        &floats(&r["rewards"]),
        &floats(&mix["rewards"]),
        "get_reward without labels",
    );
    // A stored user's label needs the admin token here.
    let (s, r) = post(
        &api,
        &gr,
        json!({"query": templated, "labels": labels}),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{r}");

    // Rerank: best first, the same rewards.
    let rr = format!("/models/{model}/rerank");
    let body = json!({"query": PROMPTS[0], "documents": &texts[..n], "user": "u0", "top_n": 3, "return_documents": true});
    let (s, r) = post(&api, &rr, body, Some(TOKEN)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    let top = pal_infer::top_k(&per_user[0][..n], 3);
    for (got, (index, score)) in results.iter().zip(top) {
        assert_eq!(got["index"], index, "{r}");
        assert!((got["relevance_score"].as_f64().unwrap() as f32 - score).abs() < 1e-4);
        assert_eq!(got["document"]["text"], texts[index]);
    }

    // Many clients at once: every answer is the one a lone request gets, in fewer passes.
    let passes = api.state.embedder.stats.passes.load(Relaxed);
    let mut waits = vec![];
    for c in 0..16usize {
        let (app, path) = (api.app.clone(), path.clone());
        let chunk: Vec<String> = (0..4)
            .map(|j| texts[(c + j) % texts.len()].clone())
            .collect();
        let body = json!({"user": "u0", "prompt": PROMPTS[0], "responses": chunk}).to_string();
        let auth = format!("Bearer {TOKEN}");
        waits.push((
            c,
            tokio::spawn(async move {
                let h = [("authorization", auth.as_str())];
                inproc::send(app, axum::http::Method::POST, &path, Some(body), &h).await
            }),
        ));
    }
    for (c, w) in waits {
        let (s, _, b) = w.await.unwrap();
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        let got = floats(&inproc::parse(&b)["rewards"]);
        let want: Vec<f32> = (0..4).map(|j| per_user[0][(c + j) % texts.len()]).collect();
        assert_close(&got, &want, &format!("client {c}"));
    }
    let used = api.state.embedder.stats.passes.load(Relaxed) - passes;
    assert!(
        used < 16,
        "16 concurrent requests took {used} encoder passes"
    );

    // Mounted at /get_reward, open to stored users (a restart with the reward flags).
    let dir = api.dir;
    drop(api.app);
    drop(api.state);
    let mounted = Api::open(dir, url, |c| {
        c.reward.model = Some(model.clone());
        c.reward.open_users = true;
    })
    .await;
    let body = json!({"query": templated, "labels": labels});
    let (s, r) = post(&mounted, "/get_reward", body, None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_close(&floats(&r["rewards"]), &want, "the mounted /get_reward");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_score_as_the_dataset_items_on_sqlite() {
    texts_score_as_the_dataset_items(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_score_as_the_dataset_items_on_postgres() {
    let Some((url, base)) = inproc::fresh_postgres().await else {
        return;
    };
    texts_score_as_the_dataset_items(Some(url.clone())).await;
    inproc::drop_postgres(&url, &base).await;
}
