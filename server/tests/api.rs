//! Every route in-process (`Router` + `oneshot`), good and bad input, on SQLite and — when
//! `PAL_TEST_POSTGRES_URL` is set (CI sets it) — the same scenario on a fresh Postgres database.

mod inproc;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use inproc::{Api, assert_err, upload, wait_for_job};
use serde_json::{Value, json};

async fn scenario(api: Api) {
    // Health, metrics, OpenAPI, the app page.
    let (s, h) = api.get("/health").await;
    assert_eq!((s, h["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, m) = api.raw(Method::GET, "/metrics", None, false).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        String::from_utf8(m)
            .unwrap()
            .contains("pal_http_requests_total")
    );
    let (s, spec) = api.get("/openapi.json").await;
    assert_eq!(
        (s, spec["openapi"].as_str()),
        (StatusCode::OK, Some("3.0.3"))
    );
    let (s, page) = api.raw(Method::GET, "/", None, false).await;
    assert_eq!(s, StatusCode::OK);
    assert!(String::from_utf8(page).unwrap().contains("<html"));
    assert_err(
        api.get("/nope").await,
        StatusCode::NOT_FOUND,
        "no such route",
    );

    // Datasets: auth, malformed JSON, bad shapes, bad ids, then a good upload.
    let (s, b) = api
        .raw(Method::POST, "/datasets", Some(upload().to_string()), false)
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "{}",
        String::from_utf8_lossy(&b)
    );
    let (s, b) = api
        .raw(Method::POST, "/datasets", Some("{not json".into()), true)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        serde_json::from_slice::<Value>(&b).unwrap()["error"],
        "bad_json"
    );
    let mut bad = upload();
    bad["items"]["embeddings"][3] = json!([1.0]);
    assert_err(
        api.post("/datasets", bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "items.embeddings[3]",
    );
    let mut bad = upload();
    bad["comparisons"]["train"][5]["label"] = json!(2);
    assert_err(
        api.post("/datasets", bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "comparisons.train[5].label",
    );
    let mut bad = upload();
    bad["comparisons"]["test"][0]["left"] = json!("nope");
    assert_err(
        api.post("/datasets", bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "comparisons.test[0].left`: unknown item",
    );
    assert_err(
        api.post("/datasets", json!({"name": "x"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "`items`",
    );
    let big =
        json!({"name": "x", "items": {"ids": ["a"], "embeddings": [vec![0.5f32; 1_200_000]]}});
    let (s, _) = api.post("/datasets", big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, ds) = api.post("/datasets", upload()).await;
    assert_eq!(s, StatusCode::CREATED, "{ds}");
    let ds_id = ds["id"].as_str().unwrap().to_string();
    assert_eq!(ds["n_items"], 20);
    let (_, list) = api.get("/datasets").await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == ds_id.as_str())
    );
    assert_eq!(
        api.get(&format!("/datasets/{ds_id}")).await.1["name"],
        "tiny"
    );
    assert_err(
        api.get("/datasets/missing").await,
        StatusCode::NOT_FOUND,
        "dataset `missing`",
    );

    // Jobs: validation, then train, stream, and inspect.
    assert_err(
        api.post("/jobs", json!({"dataset": "missing"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "`dataset`",
    );
    assert_err(
        api.post("/jobs", json!({"dataset": ds_id, "model": {"k": 0}}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "`k`",
    );
    // The content prior compares items with prompts: a PAL-B term.
    assert_err(
        api.post(
            "/jobs",
            json!({"dataset": ds_id, "model": {"variant": "a", "content_prior": true}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "`content_prior`",
    );
    assert_err(
        api.post(
            "/jobs",
            json!({"dataset": ds_id, "model": {"residual": -1.0}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "`residual`",
    );
    // bf16 products are a fused-engine feature; an unknown precision names the field too.
    assert_err(
        api.post(
            "/jobs",
            json!({"dataset": ds_id, "train": {"precision": "bf16", "engine": "burn"}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "precision",
    );
    assert_err(
        api.post(
            "/jobs",
            json!({"dataset": ds_id, "train": {"precision": "fp8"}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "precision",
    );
    assert_err(
        api.post("/jobs", json!({"dataset": ds_id, "train": {"epochs": 0}}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "epochs",
    );
    assert_err(
        api.post(
            "/jobs",
            json!({"dataset": ds_id, "model": {"dropout": 0.1},
                "train": {"engine": "fused"}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "engine",
    );
    let (s, b) = api
        .raw(
            Method::POST,
            "/jobs",
            Some(json!({"dataset": ds_id, "bogus": 1}).to_string()),
            true,
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        String::from_utf8_lossy(&b)
    );
    let spec = json!({"dataset": ds_id, "name": "tiny-b",
        "model": {"variant": "b", "k": 2, "d": 4, "layers": 1},
        "train": {"epochs": 40, "batch_size": 32, "patience": 40}});
    let (s, job) = api.post("/jobs", spec.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let job_id = job["id"].as_str().unwrap().to_string();
    let (s, events) = api
        .raw(Method::GET, &format!("/jobs/{job_id}/events"), None, false)
        .await;
    assert_eq!(s, StatusCode::OK);
    let events = String::from_utf8(events).unwrap();
    assert!(events.starts_with("event: status"), "{events}");
    assert!(events.contains("event: epoch") || events.contains("\"status\":\"succeeded\""));
    assert!(events.contains("event: done"), "{events}");
    let job = wait_for_job(&api, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["progress"]["epochs"], 40);
    let (_, jobs) = api.get("/jobs").await;
    assert!(
        jobs.as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == job_id.as_str())
    );
    assert_err(
        api.get("/jobs/missing").await,
        StatusCode::NOT_FOUND,
        "job `missing`",
    );
    assert_err(
        api.post(&format!("/jobs/{job_id}/cancel"), json!({})).await,
        StatusCode::CONFLICT,
        "already succeeded",
    );
    // A long job cancelled while it runs.
    let mut long = spec.clone();
    long["train"]["epochs"] = json!(100_000);
    let (_, lj) = api.post("/jobs", long).await;
    let lj_id = lj["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, _) = api.post(&format!("/jobs/{lj_id}/cancel"), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(wait_for_job(&api, &lj_id).await["status"], "cancelled");

    // Models.
    let model_id = job["model_id"].as_str().unwrap().to_string();
    let (_, models) = api.get("/models").await;
    assert!(
        models
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == model_id.as_str())
    );
    let (s, m) = api.get(&format!("/models/{model_id}")).await;
    assert_eq!((s, m["users"].as_u64()), (StatusCode::OK, Some(6)));
    assert!(m["metrics"]["test_accuracy"].as_f64().unwrap() > 0.8, "{m}");
    assert_err(
        api.get("/models/missing").await,
        StatusCode::NOT_FOUND,
        "model `missing`",
    );
    let (s, manifest) = api.get(&format!("/models/{model_id}/bundle")).await;
    assert_eq!(
        (s, manifest["format"].as_str()),
        (StatusCode::OK, Some("pal-bundle"))
    );
    let (s, w) = api
        .raw(
            Method::GET,
            &format!("/models/{model_id}/files/weights.safetensors"),
            None,
            false,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(w.len() > 100);
    // manifest, model, weights, items, prompts, and the per-prompt question candidates.
    assert_eq!(manifest["files"].as_array().unwrap().len(), 6, "{manifest}");
    let (s, c) = api
        .get(&format!("/models/{model_id}/files/candidates.json"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        c["prompts"].as_object().is_some_and(|p| !p.is_empty()),
        "{c}"
    );
    let (s, p) = api
        .raw(
            Method::GET,
            &format!("/models/{model_id}/files/prompts.safetensors"),
            None,
            false,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let prompts =
        pal_core::EmbeddingStore::from_bytes(&p, std::path::Path::new("prompts")).unwrap();
    assert_eq!(prompts.ids(), ["p0"]);
    assert_err(
        api.get(&format!("/models/{model_id}/files/..%2Fpal.db"))
            .await,
        StatusCode::NOT_FOUND,
        "bundle file",
    );

    // Users: list, get, set, adapt.
    let (_, users) = api.get(&format!("/models/{model_id}/users")).await;
    assert_eq!(users.as_array().unwrap().len(), 6);
    let (s, u0) = api.get(&format!("/models/{model_id}/users/u0")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(u0["weights"].as_array().unwrap().len(), 2);
    assert_err(
        api.get(&format!("/models/{model_id}/users/zz")).await,
        StatusCode::NOT_FOUND,
        "user `zz`",
    );
    assert_err(
        api.call(
            Method::PUT,
            &format!("/models/{model_id}/users/zz"),
            Some(json!({"weights": [0.9, 0.3]})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "sum to 1",
    );
    let (s, set) = api
        .call(
            Method::PUT,
            &format!("/models/{model_id}/users/manual"),
            Some(json!({"weights": [0.25, 0.75]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{set}");
    let (_, back) = api.get(&format!("/models/{model_id}/users/manual")).await;
    assert!((back["weights"][1].as_f64().unwrap() - 0.75).abs() < 1e-4);
    let pairs: Vec<Value> = upload()["comparisons"]["train"].as_array().unwrap()[..30]
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c["user"] = json!("visitor");
            c
        })
        .collect();
    let (s, added) = api
        .post(
            &format!("/models/{model_id}/users/adapt"),
            json!({"pairs": pairs}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{added}");
    assert_eq!(added[0]["id"], "visitor");
    assert_err(
        api.post(
            &format!("/models/{model_id}/users/adapt"),
            json!({"pairs": pairs}),
        )
        .await,
        StatusCode::CONFLICT,
        "already exists",
    );
    assert_err(
        api.post(
            &format!("/models/{model_id}/users/adapt"),
            json!({"pairs": []}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "`pairs`",
    );

    // Ranking: the visitor copies u0's comparisons, so their top item matches u0's.
    let rank = |who: &str| json!({"model": model_id, "user": who, "prompt": "p0", "k": 5});
    let (s, _) = api
        .raw(Method::POST, "/rank", Some(rank("u0").to_string()), false)
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "ranking by user id needs the token"
    );
    let (s, r0) = api.post("/rank", rank("u0")).await;
    assert_eq!(s, StatusCode::OK, "{r0}");
    assert_eq!(r0["ranking"].as_array().unwrap().len(), 5);
    let (_, rv) = api.post("/rank", rank("visitor")).await;
    let (_, r1) = api.post("/rank", rank("u1")).await;
    assert_eq!(rv["ranking"][0]["item"], r0["ranking"][0]["item"]);
    assert_ne!(
        r1["ranking"][0]["item"], r0["ranking"][0]["item"],
        "opposite group, same top item"
    );
    let (s, rw) = api
        .post("/rank", json!({"model": model_id, "weights": [0.5, 0.5], "prompt": "p0", "items": ["i1", "i2"]}))
        .await;
    assert_eq!(
        (s, rw["ranking"].as_array().unwrap().len()),
        (StatusCode::OK, 2)
    );
    assert_err(
        api.post("/rank", json!({"model": model_id, "prompt": "p0"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "exactly one",
    );
    assert_err(
        api.post("/rank", json!({"model": "nope", "user": "u0"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "`model`",
    );
    assert_err(
        api.post("/rank", json!({"model": model_id, "user": "u0"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "`prompt`",
    );
    assert_err(
        api.post(
            "/rank",
            json!({"model": model_id, "user": "u0", "prompt": "p0", "items": ["zz"]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "items[0]",
    );
    assert_err(
        api.post(
            "/rank",
            json!({"model": model_id, "user": "ghost", "prompt": "p0"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "ghost",
    );
    let (_, m) = api.raw(Method::GET, "/metrics", None, false).await;
    assert!(
        String::from_utf8(m)
            .unwrap()
            .contains("pal_jobs{status=\"succeeded\"} 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_on_sqlite() {
    scenario(Api::new(None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_on_postgres() {
    let Some((url, base)) = inproc::fresh_postgres().await else {
        return;
    };
    scenario(Api::new(Some(url.clone())).await).await;
    inproc::drop_postgres(&url, &base).await;
}

#[test]
fn openapi_documents_exactly_the_routes() {
    let spec: Value = serde_json::from_str(pal_server::api::OPENAPI).unwrap();
    let mut documented: Vec<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    let mut routes: Vec<(String, String)> = pal_server::api::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    routes.sort();
    assert_eq!(documented, routes);
    // Error messages keep route paths whole: every route's first segment is a known root.
    for (_, path) in &routes {
        let first = path.trim_start_matches('/').split('/').next().unwrap();
        assert!(
            first.is_empty() || pal_server::error::ROUTE_ROOTS.contains(&first),
            "{path}: add `{first}` to error::ROUTE_ROOTS"
        );
    }
}

/// A dataset directory with `content.json` (a text and an image) imports by path; its images are
/// served, names that leave the folder are refused, and a bad content file is a 422 naming the item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataset_content_imports_and_images_are_served() {
    let api = Api::new(None).await;
    let src = tempfile::tempdir().unwrap();
    inproc::synth_dir(src.path());
    std::fs::create_dir_all(src.path().join("images")).unwrap();
    let png = src.path().join("images/item1.png");
    image::RgbImage::from_pixel(4, 4, image::Rgb([200, 10, 10]))
        .save(&png)
        .unwrap();
    let content = json!({"items": {"item0": {"text": "a short summary"}, "item1": {"image": "images/item1.png"}},
        "prompts": {"p0": "a prompt"}});
    std::fs::write(src.path().join("content.json"), content.to_string()).unwrap();
    let (s, ds) = api
        .post(
            "/datasets",
            json!({"name": "with content", "path": src.path()}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{ds}");
    let id = ds["id"].as_str().unwrap();
    let (s, bytes) = api
        .raw(
            Method::GET,
            &format!("/datasets/{id}/images/item1.png"),
            None,
            false,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(bytes, std::fs::read(&png).unwrap());
    for bad in ["..%2Fpal.db", "item1.exe", ".hidden.png", "missing.png"] {
        assert_err(
            api.get(&format!("/datasets/{id}/images/{bad}")).await,
            StatusCode::NOT_FOUND,
            "image",
        );
    }
    let bad = json!({"items": {"item2": {"image": "../../etc/passwd"}}});
    std::fs::write(src.path().join("content.json"), bad.to_string()).unwrap();
    assert_err(
        api.post(
            "/datasets",
            json!({"name": "bad content", "path": src.path()}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "item `item2`",
    );
    let (_, all) = api.get("/datasets").await;
    assert_eq!(
        all.as_array().unwrap().len(),
        1,
        "the refused import stored nothing"
    );
}

/// Every documented route is answered by the router itself (never "no such route" or 405), and
/// every answer carries a request id: the client's own when it is plain, else a fresh one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_serves_every_documented_route_with_request_ids() {
    let api = Api::new(None).await;
    let spec: Value = serde_json::from_str(pal_server::api::OPENAPI).unwrap();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{id}", "nope")
            .replace("{name}", "x.jpg")
            .replace("{user}", "u");
        for method in ops.as_object().unwrap().keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let auth = format!("Bearer {}", inproc::TOKEN);
            let (status, headers, body) = api
                .request(m, &concrete, Some("{}".into()), &[("authorization", &auth)])
                .await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            let v = inproc::parse(&body);
            assert_ne!(v["detail"], "no such route", "{method} {path}");
            let id = headers["x-request-id"].to_str().unwrap();
            assert_eq!(id.len(), 32, "{method} {path}: {id}");
        }
    }
    let (_, h, _) = api
        .request(Method::GET, "/health", None, &[("x-request-id", "abc-123")])
        .await;
    assert_eq!(h["x-request-id"], "abc-123");
    let (_, h, _) = api
        .request(
            Method::GET,
            "/nowhere",
            None,
            &[("x-request-id", "bad id; <script>")],
        )
        .await;
    assert_eq!(h["x-request-id"].len(), 32);
}
