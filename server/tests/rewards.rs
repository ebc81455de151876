//! The reward routes (`/models/{id}/rewards`, `/rerank`, `/get_reward`, `/get_reward` mounted):
//! rewards equal `/rank`'s scores for the dataset's own items, OpenRLHF's body gives the same
//! rewards in request order with and without `prompts`/`labels`, who may ask is `/rank`'s rule,
//! and bad input is a JSON 4xx with nothing stored — on SQLite and PostgreSQL. With the `embed`
//! feature and the MiniLM asset, the same checks run on texts embedded by the server.

mod inproc;

use axum::http::{Method, StatusCode};
use inproc::{Api, TOKEN, assert_err, trained_model, visitor};
use serde_json::{Value, json};

/// POST with `auth` as the bearer credential (if any).
async fn post(api: &Api, path: &str, body: Value, auth: Option<&str>) -> (StatusCode, Value) {
    api.with_bearer(Method::POST, path, Some(body), auth).await
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// `/rank`'s scores of `items` for `user` under `prompt`, in the order of `items`.
async fn rank_scores(
    api: &Api,
    model: &str,
    user: &str,
    prompt: &str,
    items: &[String],
) -> Vec<f32> {
    let body =
        json!({"model": model, "user": user, "prompt": prompt, "items": items, "k": items.len()});
    let (s, r) = post(api, "/rank", body, Some(TOKEN)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    items
        .iter()
        .map(|id| {
            let hit = r["ranking"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["item"] == *id);
            hit.unwrap()["score"].as_f64().unwrap() as f32
        })
        .collect()
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-4, "{what}[{i}]: {x} vs {y}");
    }
}

async fn embeddings_and_auth(url: Option<String>) {
    let api = Api::with(url, |c| {
        c.limits.max_responses = 8;
        c.limits.max_response_bytes = 100;
    })
    .await;
    let (_, model) = trained_model(&api).await;
    let path = format!("/models/{model}/rewards");
    // The inline dataset: item i is [i/10 − 1, 1], prompt p0 is [1, 0].
    let ids: Vec<String> = (0..8).map(|i| format!("i{i}")).collect();
    let rows: Vec<Vec<f32>> = (0..8).map(|i| vec![i as f32 / 10.0 - 1.0, 1.0]).collect();
    for user in ["u0", "u1"] {
        let body =
            json!({"user": user, "prompt_embedding": [1.0, 0.0], "response_embeddings": rows});
        let (s, r) = post(&api, &path, body, Some(TOKEN)).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert!(r["encoder"].is_null(), "{r}");
        let want = rank_scores(&api, &model, user, "p0", &ids).await;
        assert_close(&floats(&r["rewards"]), &want, user);
    }
    // Explicit weights and the population's mixture are open; stored users are not.
    let body =
        json!({"weights": [0.5, 0.5], "prompt_embedding": [1.0, 0.0], "response_embeddings": rows});
    let (s, r) = post(&api, &path, body, None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, r) = post(
        &api,
        &path,
        json!({"prompt_embedding": [1.0, 0.0], "response_embeddings": rows}),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let mix = floats(&r["weights"]);
    assert!((mix.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{r}");
    let stored = json!({"user": "u0", "prompt_embedding": [1.0, 0.0], "response_embeddings": rows});
    assert_err(
        post(&api, &path, stored.clone(), None).await,
        StatusCode::UNAUTHORIZED,
        "Authorization",
    );
    assert_err(
        post(&api, &path, stored, Some("wrong")).await,
        StatusCode::FORBIDDEN,
        "admin token",
    );
    let unknown =
        json!({"user": "nobody", "prompt_embedding": [1.0, 0.0], "response_embeddings": rows});
    assert_err(
        post(&api, &path, unknown, Some(TOKEN)).await,
        StatusCode::NOT_FOUND,
        "nobody",
    );
    let (v, secret) = visitor(&api, &model, [10, 0, 0, 1]).await;
    let theirs = json!({"user": v, "prompt_embedding": [1.0, 0.0], "response_embeddings": rows});
    assert_err(
        post(&api, &path, theirs.clone(), None).await,
        StatusCode::UNAUTHORIZED,
        "secret",
    );
    // With their secret: 404 until they save weights, then their rewards.
    assert_err(
        post(&api, &path, theirs.clone(), Some(&secret)).await,
        StatusCode::NOT_FOUND,
        "no weights",
    );
    let put = format!("/models/{model}/users/{v}");
    let headers = [("authorization", format!("Bearer {secret}"))];
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (s, _, b) = api
        .request(
            Method::PUT,
            &put,
            Some(json!({"weights": [0.9, 0.1]}).to_string()),
            &h,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let (s, r) = post(&api, &path, theirs, Some(&secret)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_close(&floats(&r["weights"]), &[0.9, 0.1], "the visitor's weights");

    // Bad input: a JSON 4xx naming the field, before any work.
    let cases = [
        (
            json!({"prompt_embedding": [1.0, 0.0], "response_embeddings": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`response_embeddings`: empty",
        ),
        (
            json!({"prompt_embedding": [1.0, 0.0], "response_embeddings": vec![vec![0.0, 1.0]; 9]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "the limit is 8",
        ),
        (
            json!({"prompt_embedding": [1.0, 0.0], "response_embeddings": [[0.0, 1.0, 2.0]]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`response_embeddings[0]`: 3 values",
        ),
        (
            json!({"prompt_embedding": [1.0], "response_embeddings": [[0.0, 1.0]]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`prompt_embedding[0]`",
        ),
        (
            json!({"response_embeddings": [[0.0, 1.0]]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "field `prompt`: missing",
        ),
        (
            json!({"prompt": "p", "responses": ["ok", " "]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`responses[1]`: empty",
        ),
        (
            json!({"prompt": "p", "responses": vec!["a"; 9]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "the limit is 8",
        ),
        (
            json!({"prompt": "p", "responses": ["x".repeat(101)]}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "`responses[0]`: 101 bytes",
        ),
        (
            json!({"prompt": "p", "responses": ["a"], "response_embeddings": [[0.0, 1.0]]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "exactly one of",
        ),
        (
            json!({"weights": [2.0, -1.0], "prompt": "p", "responses": ["a"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`weights`",
        ),
        (
            json!({"prompt": "p", "responses": ["a"], "extra": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "extra",
        ),
    ];
    for (body, status, fragment) in cases {
        assert_err(post(&api, &path, body, Some(TOKEN)).await, status, fragment);
    }
    // The inline dataset's items are 2-d numbers: no encoder made them (or none is built in).
    let texts = post(
        &api,
        &path,
        json!({"prompt": "p", "responses": ["a cat"]}),
        None,
    )
    .await;
    assert_eq!(texts.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", texts.1);
    let d = texts.1["detail"].as_str().unwrap();
    assert!(d.contains("cannot") || d.contains("built without"), "{d}");
    let gr = format!("/models/{model}/get_reward");
    let openrlhf = [
        (
            json!({"query": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`query`: empty",
        ),
        (
            json!({"query": ["a b"], "prompts": ["a", "b"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`prompts`: 2 entries for 1",
        ),
        (
            json!({"query": ["a b"], "prompts": ["c"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "does not contain `prompts[0]`",
        ),
        (
            json!({"query": ["plain text"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "split markers",
        ),
        (
            json!({"query": ["a b"], "prompts": ["a b"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "its response is empty",
        ),
        (
            json!({"query": ["a b"], "prompts": ["a"], "labels": [3]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`labels[0]`",
        ),
        (
            json!({"query": vec!["a b"; 9]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "the limit is 8",
        ),
        (
            json!({"query": ["a b"], "prompts": ["a"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "cannot",
        ),
    ];
    for (body, status, fragment) in openrlhf {
        let got = post(&api, &gr, body, None).await;
        if fragment == "cannot" {
            let d = got.1["detail"].as_str().unwrap_or_default().to_string();
            assert!(
                got.0 == status && (d.contains("cannot") || d.contains("built without")),
                "{got:?}"
            );
        } else {
            assert_err(got, status, fragment);
        }
    }
    let rr = format!("/models/{model}/rerank");
    assert_err(
        post(&api, &rr, json!({"query": "q", "documents": []}), None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "`documents`: empty",
    );
    assert_err(
        post(
            &api,
            &rr,
            json!({"query": "q", "documents": ["a"], "top_n": 0}),
            None,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "`top_n`",
    );
    assert_err(
        post(&api, "/get_reward", json!({"query": ["a b"]}), None).await,
        StatusCode::NOT_FOUND,
        "--reward-model",
    );
    assert_err(
        post(
            &api,
            "/models/nope/rewards",
            json!({"response_embeddings": [[0.0, 1.0]]}),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "nope",
    );
    // Nothing was stored: the model's users are the trained ones and the visitor's one row.
    let (_, users) = api.get(&format!("/models/{model}/users")).await;
    assert_eq!(users.as_array().unwrap().len(), 6, "{users}");
    let (_, h) = api.get("/health").await;
    assert_eq!(h["status"], "ok", "{h}");
    let (_, m) = api.raw(Method::GET, "/metrics", None, false).await;
    let m = String::from_utf8(m).unwrap();
    assert!(
        m.contains("pal_embed_passes_total ") && m.contains("pal_embed_prompts_remembered "),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewards_of_embeddings_equal_rank_and_bad_input_is_refused_on_sqlite() {
    embeddings_and_auth(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewards_of_embeddings_equal_rank_and_bad_input_is_refused_on_postgres() {
    let Some((url, base)) = inproc::fresh_postgres().await else {
        return;
    };
    embeddings_and_auth(Some(url.clone())).await;
    inproc::drop_postgres(&url, &base).await;
}

#[cfg(feature = "embed")]
#[path = "rewards/texts.rs"]
mod texts;
