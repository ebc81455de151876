//! `POST /models/{id}/embed` refuses bad input before any work: empty or oversized text,
//! unknown fields, unknown models, and models whose prompts no encoder of pal made (the inline
//! test dataset's 2-d prompts) — each a JSON 4xx, the server healthy after. The positive case
//! (MiniLM prompts, a typed prompt ranking the right photos) is in `tests/tests/browser.rs`.

mod inproc;

use axum::http::{Method, StatusCode};
use inproc::{Api, assert_err, trained_model};
use serde_json::json;

async fn refuses_bad_text_and_foreign_prompts(url: Option<String>) {
    let api = Api::with(url, |c| c.limits.max_prompt_bytes = 64).await;
    let (_, model) = trained_model(&api).await;
    let path = format!("/models/{model}/embed");
    // Open: no token needed (it stores nothing).
    let post = |body: serde_json::Value| {
        let path = path.clone();
        let api = &api;
        async move {
            let (s, b) = api
                .raw(Method::POST, &path, Some(body.to_string()), false)
                .await;
            (s, inproc::parse(&b))
        }
    };
    assert_err(
        post(json!({"text": "  "})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "field `text`: empty",
    );
    assert_err(
        post(json!({"text": "x".repeat(65)})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the limit is 64",
    );
    let (s, e) = post(json!({"text": "a cat", "extra": 1})).await;
    assert!(s.is_client_error() && e["error"].is_string(), "{s} {e}");
    let (s, e) = api
        .raw(
            Method::POST,
            "/models/nope/embed",
            Some(json!({"text": "a cat"}).to_string()),
            false,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{}", String::from_utf8_lossy(&e));
    // The inline dataset's prompts are 2-d numbers: no encoder of pal made them (or this
    // server was built without one) — 422 either way, with the reason.
    let got = post(json!({"text": "a cat"})).await;
    assert_eq!(got.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", got.1);
    let detail = got.1["detail"].as_str().unwrap();
    assert!(
        detail.contains("cannot embed typed prompts") || detail.contains("built without"),
        "{detail}"
    );
    let (_, h) = api.get("/health").await;
    assert_eq!(h["status"], "ok", "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_refuses_bad_input_on_sqlite() {
    refuses_bad_text_and_foreign_prompts(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_refuses_bad_input_on_postgres() {
    let Some((url, base)) = inproc::fresh_postgres().await else {
        return;
    };
    refuses_bad_text_and_foreign_prompts(Some(url.clone())).await;
    inproc::drop_postgres(&url, &base).await;
}
