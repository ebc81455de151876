//! Regression tests for the hostile probe of issue #11 — jobs, users and models (items 3, 4, 5,
//! 6, 7, 10): limits before queueing, supervised workers, no state for unknown ids, bounded and
//! versioned weight writes, immutable bundles, atomic cancel. Each runs on SQLite and (when
//! `PAL_TEST_POSTGRES_URL` is set; CI requires it) on Postgres.

mod inproc;

use std::path::Path;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use inproc::{Api, assert_err, parse, trained_model, upload, wait_for_job};
use serde_json::{Value, json};

/// Finding 3: Jobs over the limits are refused before they are queued; a worker that panics marks its
/// job failed and the queue moves on.
async fn job_limits(url: Option<String>) {
    let api = Api::new(url.clone()).await;
    let (ds, _) = trained_model(&api).await;
    let huge = u64::MAX;
    for (extra, field) in [
        (json!({"model": {"d": 1_000_000}}), "model.d"),
        (json!({"model": {"hidden": huge}}), "model.hidden"),
        (
            json!({"model": {"d": 4096, "hidden": 8192, "layers": 8, "k": 64}}),
            "parameters",
        ),
        (
            json!({"train": {"epochs": 1_000_000_000u64}}),
            "train.epochs",
        ),
        (json!({"train": {"batch_size": huge}}), "train.batch_size"),
    ] {
        let mut spec = json!({"dataset": ds});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        assert_err(
            api.post("/jobs", spec).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            field,
        );
    }
    let (_, jobs) = api.get("/jobs").await;
    assert_eq!(
        jobs.as_array().unwrap().len(),
        1,
        "a refused job was stored"
    );

    // With the limits lifted by the operator, a job whose allocation overflows panics in the
    // worker: it is marked failed and the next job still runs.
    let open = Api::with(url, |c| {
        c.limits.max_d = usize::MAX;
        c.limits.max_hidden = usize::MAX;
        c.limits.max_params = u64::MAX;
        c.limits.max_train_memory = u64::MAX;
    })
    .await;
    let (ds, _) = trained_model(&open).await;
    let bad =
        json!({"dataset": ds, "model": {"variant": "b", "k": 2, "d": 1u64 << 60, "layers": 1}});
    let (s, job) = open.post("/jobs", bad).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let job = wait_for_job(&open, job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"].as_str().unwrap().contains("training worker"),
        "{job}"
    );
    trained_model(&open).await;
    let (s, h) = open.get("/health").await;
    assert_eq!(
        (s, h["workers_alive"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{h}"
    );
}

/// Finding 4: Requests for unknown jobs keep no state; finished jobs drop their channel.
async fn no_state_for_unknown_ids(url: Option<String>) {
    let api = Api::new(url).await;
    trained_model(&api).await;
    for i in 0..2000 {
        let (s, _) = api.get(&format!("/jobs/nope{i}/events")).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let (_, m) = api.raw(Method::GET, "/metrics", None, false).await;
    let m = String::from_utf8(m).unwrap();
    assert!(m.contains("pal_jobs_live 0\n"), "{m}");
}

/// 5 and 10: adapt is bounded and validated; weight writes are versioned and never lost.
async fn users_and_adapt(url: Option<String>) {
    let api = Api::new(url).await;
    let (_, model) = trained_model(&api).await;
    let adapt = format!("/models/{model}/users/adapt");
    let pair =
        |user: &str| json!({"user": user, "prompt": "p0", "left": "i1", "right": "i2", "label": 1});
    let bad_cfg = json!({"pairs": [pair("n1")], "fewshot": {"epochs": 1_000_000_000u64}});
    assert_err(
        api.post(&adapt, bad_cfg).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "fewshot.epochs",
    );
    let many: Vec<Value> = (0..10_001).map(|_| pair("n1")).collect();
    assert_err(
        api.post(&adapt, json!({"pairs": many})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "`pairs`",
    );
    for (p, want) in [
        (pair(""), "pairs[0].user`: user id must not be empty"),
        (
            json!({"user": "n1", "prompt": "p0", "left": "i1", "right": "i1", "label": 1}),
            "same item",
        ),
        (
            json!({"user": "n1", "left": "i1", "right": "i2", "label": 1}),
            "pairs[0].prompt`: missing",
        ),
        (
            json!({"user": "n1", "prompt": "p0", "left": "i1", "right": "i2", "label": 2}),
            "0 or 1",
        ),
    ] {
        assert_err(
            api.post(&adapt, json!({"pairs": [p]})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            want,
        );
    }
    // Bad user ids on PUT.
    let w = json!({"weights": [0.5, 0.5]});
    let long = "x".repeat(300);
    for (user, want) in [
        ("%20", "white space"),
        ("a%0Ab", "control"),
        (long.as_str(), "limit is 256"),
    ] {
        let got = api
            .call(
                Method::PUT,
                &format!("/models/{model}/users/{user}"),
                Some(w.clone()),
            )
            .await;
        assert_err(got, StatusCode::UNPROCESSABLE_ENTITY, want);
    }
    // Trained users are read-only.
    let got = api
        .call(
            Method::PUT,
            &format!("/models/{model}/users/u0"),
            Some(w.clone()),
        )
        .await;
    assert_err(got, StatusCode::CONFLICT, "read-only");
    // Create, then overwrite only with the current ETag.
    let path = format!("/models/{model}/users/manual");
    let (s, created) = api.call(Method::PUT, &path, Some(w.clone())).await;
    assert_eq!(s, StatusCode::OK, "{created}");
    let got = api.call(Method::PUT, &path, Some(w.clone())).await;
    assert_err(got, StatusCode::PRECONDITION_REQUIRED, "If-Match");
    let auth = format!("Bearer {}", inproc::TOKEN);
    let put = |tag: String| {
        let (path, auth) = (path.clone(), auth.clone());
        let api = &api;
        async move {
            let h = [("authorization", auth.as_str()), ("if-match", tag.as_str())];
            let body = Some(json!({"weights": [0.9, 0.1]}).to_string());
            let (s, hd, b) = api.request(Method::PUT, &path, body, &h).await;
            (
                s,
                hd.get("etag").map(|v| v.to_str().unwrap().to_string()),
                parse(&b),
            )
        }
    };
    let (_, head, _) = api
        .request(
            Method::GET,
            &path,
            None,
            &[("authorization", auth.as_str())],
        )
        .await;
    let tag = head.get("etag").unwrap().to_str().unwrap().to_string();
    let (s, new_tag, body) = put(tag.clone()).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_ne!(new_tag.unwrap(), tag);
    let (s, _, body) = put(tag).await;
    assert_err(
        (s, body),
        StatusCode::PRECONDITION_FAILED,
        "changed since revision",
    );
    let (s, _, body) = put("garbage".into()).await;
    assert_err(
        (s, body),
        StatusCode::UNPROCESSABLE_ENTITY,
        "header `If-Match`",
    );
    // An adapt and a PUT at the same time: both land.
    for round in 0..3 {
        let fit = json!({"pairs": (0..30).map(|n| json!({"user": format!("fit{round}"), "prompt": "p0",
            "left": format!("i{}", n % 20), "right": format!("i{}", (n + 7) % 20), "label": n % 2})).collect::<Vec<_>>(),
            "fewshot": {"epochs": 2000}});
        let other = format!("/models/{model}/users/put{round}");
        let (a, b) = tokio::join!(
            api.post(&adapt, fit),
            api.call(Method::PUT, &other, Some(w.clone()))
        );
        assert_eq!(a.0, StatusCode::CREATED, "{}", a.1);
        assert_eq!(b.0, StatusCode::OK, "{}", b.1);
        for user in [format!("fit{round}"), format!("put{round}")] {
            let (s, _) = api.get(&format!("/models/{model}/users/{user}")).await;
            assert_eq!(s, StatusCode::OK, "user {user} was lost");
        }
    }
    // /rank refuses duplicated items.
    let r = json!({"model": model, "user": "u0", "prompt": "p0", "items": ["i1", "i2", "i1"]});
    assert_err(
        api.post("/rank", r).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "items[2]`: the same item as `items[0]`",
    );
}

/// Finding 6: Reading a bundle writes nothing, and reads during writes are always whole.
async fn bundles_are_immutable(url: Option<String>) {
    let api = Api::new(url).await;
    let (_, model) = trained_model(&api).await;
    let dir = api.dir.path().join("bundles").join(&model);
    let snapshot = |dir: &Path| {
        let mut v: Vec<(String, std::time::SystemTime)> = walk(dir);
        v.sort();
        v
    };
    let before = snapshot(&dir);
    for _ in 0..20 {
        assert_eq!(
            api.get(&format!("/models/{model}/bundle")).await.0,
            StatusCode::OK
        );
        let (s, _) = api
            .raw(
                Method::GET,
                &format!("/models/{model}/files/weights.safetensors"),
                None,
                false,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    assert_eq!(before, snapshot(&dir), "a read wrote files");
    for bad in ["abc", "-1", "99999999999999999999999"] {
        let path = format!("/models/{model}/files/weights.safetensors?rev={bad}");
        let (s, b) = api.raw(Method::GET, &path, None, false).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "rev={bad}");
        assert!(parse(&b)["error"].is_string(), "rev={bad}: {}", parse(&b));
    }
    let path = format!("/models/{model}/files/weights.safetensors?rev=7");
    let (s, _) = api.raw(Method::GET, &path, None, false).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a revision that never existed");
    // Writers add users while readers fetch manifest + pinned weights.
    let writer = async {
        for n in 0..8 {
            let (s, b) = api
                .call(
                    Method::PUT,
                    &format!("/models/{model}/users/w{n}"),
                    Some(json!({"weights": [0.3, 0.7]})),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }
    };
    let reader = async {
        for _ in 0..40 {
            let (s, manifest) = api.get(&format!("/models/{model}/bundle")).await;
            assert_eq!(s, StatusCode::OK, "{manifest}");
            let rev = manifest["revision"].as_u64().unwrap();
            let (s, w) = api
                .raw(
                    Method::GET,
                    &format!("/models/{model}/files/weights.safetensors?rev={rev}"),
                    None,
                    false,
                )
                .await;
            assert_eq!(s, StatusCode::OK);
            let config: pal_core::ModelConfig =
                serde_json::from_value(manifest["config"].clone()).unwrap();
            let users = manifest["users"].as_array().unwrap().len();
            pal_math::weights::weights_from_bytes(&config, users, &w, Path::new("bundle"))
                .expect("weights of the revision the manifest names");
        }
    };
    tokio::join!(writer, reader);
}

fn walk(dir: &Path) -> Vec<(String, std::time::SystemTime)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = e.metadata().unwrap();
        if meta.is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push((e.path().display().to_string(), meta.modified().unwrap()));
        }
    }
    out
}

/// Finding 7: A job answered `cancelled` never publishes a model.
async fn cancel_is_atomic(url: Option<String>) {
    let api = Api::new(url).await;
    let (s, ds) = api.post("/datasets", upload()).await;
    assert_eq!(s, StatusCode::CREATED);
    let spec = json!({"dataset": ds["id"], "model": {"variant": "b", "k": 2, "d": 4, "layers": 1},
        "train": {"epochs": 3, "batch_size": 64}});
    let mut cancelled = Vec::new();
    for n in 0..24 {
        let (_, job) = api.post("/jobs", spec.clone()).await;
        let id = job["id"].as_str().unwrap().to_string();
        if n % 3 == 1 {
            tokio::time::sleep(Duration::from_millis(5 * n)).await;
        }
        let (s, c) = api.post(&format!("/jobs/{id}/cancel"), json!({})).await;
        match s {
            StatusCode::OK => {
                assert_eq!(c["status"], "cancelled", "{c}");
                cancelled.push(id);
            }
            StatusCode::CONFLICT => {}
            other => panic!("cancel answered {other}: {c}"),
        }
    }
    assert!(!cancelled.is_empty());
    for id in &cancelled {
        let job = wait_for_job(&api, id).await;
        assert_eq!(job["status"], "cancelled", "{job}");
        assert!(job["model_id"].is_null(), "{job}");
        assert_eq!(
            api.get(&format!("/models/{id}")).await.0,
            StatusCode::NOT_FOUND
        );
    }
}

/// 3 (start-up): a job the server died on twice is not started a third time.
async fn no_third_start(url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let db_url = url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.path().join("pal.db").display()));
    let db = pal_server::db::Db::connect(&db_url).await.unwrap();
    let now = pal_server::db::now();
    let job = pal_server::db::JobRow {
        id: "crashy".into(),
        dataset_id: "gone".into(),
        status: "running".into(),
        spec: json!({"dataset": "gone"}),
        progress: None,
        error: None,
        model_id: None,
        created_at: now,
        updated_at: now,
        attempts: 2,
    };
    db.insert_job(&job).await.unwrap();
    drop(db);
    let api = Api::open(dir, url, |_| {}).await;
    let (_, j) = api.get("/jobs/crashy").await;
    assert_eq!(j["status"], "failed", "{j}");
    assert!(
        j["error"].as_str().unwrap().contains("not started again"),
        "{j}"
    );
    trained_model(&api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_users_and_models_on_sqlite() {
    job_limits(None).await;
    no_state_for_unknown_ids(None).await;
    users_and_adapt(None).await;
    bundles_are_immutable(None).await;
    cancel_is_atomic(None).await;
    no_third_start(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_users_and_models_on_postgres() {
    for scenario in 0..6 {
        let Some((url, base)) = inproc::fresh_postgres().await else {
            return;
        };
        let u = Some(url.clone());
        match scenario {
            0 => job_limits(u).await,
            1 => no_state_for_unknown_ids(u).await,
            2 => users_and_adapt(u).await,
            3 => bundles_are_immutable(u).await,
            4 => cancel_is_atomic(u).await,
            _ => no_third_start(u).await,
        }
        inproc::drop_postgres(&url, &base).await;
    }
}
