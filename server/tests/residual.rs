//! Residual models on the server (issue #12): a job with `"residual": λ` trains personal
//! residuals, and `/rank` for a stored user adds that user's residual δ to the mixture: the
//! scores equal the CPU reference with δ, and differ from the same simplex weights without it.

mod inproc;

use axum::http::StatusCode;
use inproc::{Api, upload, wait_for_job};
use pal_core::reference::UserPref;
use pal_infer::cpu::CpuScorer;
use serde_json::{Value, json};

/// Item id → score from a `/rank` answer.
fn scores(r: &Value) -> Vec<(String, f32)> {
    let mut v: Vec<(String, f32)> = r["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["item"].as_str().unwrap().to_string(),
                e["score"].as_f64().unwrap() as f32,
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_users_rank_with_their_residual() {
    let api = Api::new(None).await;
    let body = upload();
    let (s, ds) = api.post("/datasets", body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{ds}");
    let spec = json!({"dataset": ds["id"], "model": {"variant": "b", "k": 2, "d": 4, "layers": 1,
        "residual": 0.001}, "train": {"epochs": 30, "batch_size": 32}});
    let (s, job) = api.post("/jobs", spec).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let job = wait_for_job(&api, job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let model_id = job["model_id"].as_str().unwrap();

    let model =
        pal_core::TrainedModel::load(&api.dir.path().join("models").join(model_id)).unwrap();
    let u0 = model.users.iter().position(|u| u == "u0").unwrap();
    let delta = model
        .weights
        .residual(u0)
        .expect("a residual model stores δ");
    assert!(
        delta.iter().any(|v| v.abs() > 1e-4),
        "training left δ at zero: {delta:?}"
    );
    let w = model.weights.user_weights(u0);

    let all = |who: Value| json!({"model": model_id, "user": who, "prompt": "p0", "k": 20});
    let (s, by_user) = api.post("/rank", all(json!("u0"))).await;
    assert_eq!(s, StatusCode::OK, "{by_user}");
    let (s, by_weights) = api
        .post(
            "/rank",
            json!({"model": model_id, "weights": w, "prompt": "p0", "k": 20}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{by_weights}");

    // The reference, with and without δ, on the uploaded embeddings.
    let ids: Vec<String> = body["items"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let items: Vec<f32> = body["items"]["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();
    let scorer = CpuScorer::new(model.weights.clone());
    let pref = UserPref {
        weights: &w,
        residual: Some(delta),
    };
    let mut want: Vec<(String, f32)> = ids
        .iter()
        .cloned()
        .zip(scorer.scores(pref, &[1.0, 0.0], &items))
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let got = scores(&by_user);
    assert_eq!(got.len(), want.len());
    for ((gi, g), (wi, r)) in got.iter().zip(&want) {
        assert_eq!(gi, wi);
        assert!(
            (g - r).abs() <= 1e-4 * r.abs().max(1.0),
            "{gi}: served {g}, reference with δ {r}"
        );
    }
    let without = scores(&by_weights);
    let moved = got
        .iter()
        .zip(&without)
        .map(|(a, b)| (a.1 - b.1).abs())
        .fold(0.0f32, f32::max);
    assert!(
        moved > 1e-4,
        "the stored user's ranking ignores δ (largest score change {moved})"
    );
}
