//! Regression tests for the hostile probe of issue #11, one function per finding, each run on
//! SQLite and (when `PAL_TEST_POSTGRES_URL` is set; CI requires it) on Postgres.

mod inproc;

use std::path::Path;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use inproc::{Api, assert_err, parse, trained_model, upload, wait_for_job};
use serde_json::{Value, json};

const SECRET: &str = "SECRET_API_KEY=hunter2";

fn synth_dir(dir: &Path) {
    let cfg = pal_core::synth::SynthConfig {
        users: 4,
        unseen_users: 0,
        ..Default::default()
    };
    pal_core::synth::generate(&cfg)
        .unwrap()
        .write(dir, &cfg)
        .unwrap();
}

async fn import(api: &Api, path: &Path) -> (StatusCode, Value) {
    api.post("/datasets", json!({"name": "probe", "path": path}))
        .await
}

/// No secret, no server path in an answer.
fn assert_clean(got: &(StatusCode, Value), root: &Path) {
    let text = got.1.to_string();
    assert!(!text.contains("hunter2"), "file contents leaked: {text}");
    let root = root.to_string_lossy();
    assert!(!text.contains(root.as_ref()), "server path leaked: {text}");
}

/// 1, 2, 9 and 10 (directory without items): path import under roots only, links never
/// followed, only regular files read, errors without contents or paths, nothing stored.
async fn path_import(url: Option<String>) {
    let root = tempfile::tempdir().unwrap();
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("secrets.env");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let api = Api::with(url, |c| c.import_roots = vec![root.path().to_path_buf()]).await;

    // 1. An image that is a link to a secret: refused, nothing served.
    let ds = root.path().join("linked-image");
    synth_dir(&ds);
    std::fs::create_dir_all(ds.join("images")).unwrap();
    std::os::unix::fs::symlink(&secret, ds.join("images/x.png")).unwrap();
    let content = json!({"items": {"item0": {"image": "images/x.png"}}});
    std::fs::write(ds.join("content.json"), content.to_string()).unwrap();
    let got = import(&api, &ds).await;
    assert_err(
        got.clone(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "images/x.png: is a symbolic link",
    );
    assert_clean(&got, root.path());
    // A linked dataset directory, a linked split, a link in the middle of the path.
    let real = root.path().join("real");
    synth_dir(&real);
    std::os::unix::fs::symlink(&real, root.path().join("alias")).unwrap();
    let got = import(&api, &root.path().join("alias")).await;
    assert_err(
        got.clone(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "symbolic link",
    );
    assert_err(
        import(&api, &root.path().join("alias/.")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "symbolic link",
    );
    let split = root.path().join("linked-split");
    synth_dir(&split);
    std::fs::remove_file(split.join("train.jsonl")).unwrap();
    std::os::unix::fs::symlink(&secret, split.join("train.jsonl")).unwrap();
    let got = import(&api, &split).await;
    assert_err(
        got.clone(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "train.jsonl: is a symbolic link",
    );
    assert_clean(&got, root.path());
    // Outside the roots: one answer, whether the directory exists or not.
    let outside = ["/etc", "/root", "/proc/self", "/definitely/not/there"];
    let mut answers = Vec::new();
    for p in outside {
        let got = api.post("/datasets", json!({"name": "x", "path": p})).await;
        assert_eq!(got.0, StatusCode::FORBIDDEN, "{p}: {}", got.1);
        answers.push(got.1["detail"].clone());
    }
    let up = format!("{}/../../etc", root.path().display());
    let got = api
        .post("/datasets", json!({"name": "x", "path": up}))
        .await;
    assert_eq!(got.0, StatusCode::FORBIDDEN, "{}", got.1);
    answers.dedup();
    assert_eq!(answers.len(), 1, "answers tell paths apart: {answers:?}");

    // 2. File contents never echoed: a secret as a split line, as a label, as an item id.
    let leaky = root.path().join("leaky");
    synth_dir(&leaky);
    for (line, want) in [
        (SECRET.to_string(), "train.jsonl:1: not a JSON object"),
        (
            r#"{"user":"u","prompt":"prompt0","left":"item0","right":"item1","label":"hunter2"}"#
                .into(),
            "train.jsonl:1",
        ),
        (
            r#"{"user":"u","prompt":"prompt0","left":"hunter2","right":"item1","label":1}"#.into(),
            "train.jsonl: comparison 1: field `left`: unknown item",
        ),
    ] {
        std::fs::write(leaky.join("train.jsonl"), format!("{line}\n")).unwrap();
        let got = import(&api, &leaky).await;
        assert_err(got.clone(), StatusCode::UNPROCESSABLE_ENTITY, want);
        assert_clean(&got, root.path());
    }

    // 9. A FIFO is refused at once, and the server keeps answering meanwhile.
    let fifo = root.path().join("fifo");
    synth_dir(&fifo);
    let made = std::process::Command::new("mkfifo")
        .arg(fifo.join("content.json"))
        .status()
        .unwrap();
    assert!(made.success());
    let got = tokio::time::timeout(Duration::from_secs(10), import(&api, &fifo))
        .await
        .expect("a FIFO must not block the import");
    assert_err(
        got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "content.json: is not a regular file",
    );
    let (s, h) = api.get("/health").await;
    assert_eq!((s, h["status"].as_str()), (StatusCode::OK, Some("ok")));

    // 10. A directory without an items file is a 422, not a 500.
    let empty = root.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_err(
        import(&api, &empty).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no items.safetensors",
    );

    // Nothing of the refused imports was stored; a good one still works.
    assert_eq!(api.get("/datasets").await.1.as_array().unwrap().len(), 0);
    let (s, ds) = import(&api, &real).await;
    assert_eq!(s, StatusCode::CREATED, "{ds}");
    let staging = std::fs::read_dir(api.dir.path().join("staging"))
        .unwrap()
        .count();
    assert_eq!(staging, 0, "staging directories left behind");

    // Without roots, path import is refused and names the flag.
    let closed = Api::with(None, |c| c.import_roots.clear()).await;
    assert_err(
        import(&closed, &real).await,
        StatusCode::FORBIDDEN,
        "--import-root",
    );
}

/// 3. Jobs over the limits are refused before they are queued; a worker that panics marks its
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

/// 4. Requests for unknown jobs keep no state; finished jobs drop their channel.
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
    let (_, head, _) = api.request(Method::GET, &path, None, &[]).await;
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

/// 6. Reading a bundle writes nothing, and reads during writes are always whole.
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
            pal_core::checkpoint::weights_from_bytes(&config, users, &w, Path::new("bundle"))
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

/// 7. A job answered `cancelled` never publishes a model.
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

/// 8. The body limit is the configured one, and every framework error is JSON.
async fn limits_and_json_errors(url: Option<String>) {
    let api = Api::new(url).await;
    // ~3 MB inline: over axum's hidden 2 MiB default, under the configured 4 MiB.
    let mut big = upload();
    let ids: Vec<String> = (0..1000).map(|i| format!("i{i}")).collect();
    let emb: Vec<Vec<f32>> = (0..1000)
        .map(|i| vec![0.123_456_7 + i as f32; 220])
        .collect();
    big["items"] = json!({"ids": ids, "embeddings": emb});
    big["prompts"] = json!({"ids": ["p0"], "embeddings": [[1.0, 0.0]]});
    let body = big.to_string();
    assert!(
        body.len() > 2 << 20 && body.len() < 4 << 20,
        "{}",
        body.len()
    );
    let (s, b) = api.raw(Method::POST, "/datasets", Some(body), true).await;
    assert_eq!(s, StatusCode::CREATED, "{}", parse(&b));
    let too_big = format!("{{\"name\": \"{}\"}}", "x".repeat(5 << 20));
    let (s, b) = api
        .raw(Method::POST, "/datasets", Some(too_big), true)
        .await;
    assert_err((s, parse(&b)), StatusCode::PAYLOAD_TOO_LARGE, "limit");
    let (s, b) = api.raw(Method::DELETE, "/datasets", None, true).await;
    assert_err((s, parse(&b)), StatusCode::METHOD_NOT_ALLOWED, "DELETE");
    let long = format!("/datasets/{}", "x".repeat(9000));
    let (s, b) = api.raw(Method::GET, &long, None, true).await;
    assert_err((s, parse(&b)), StatusCode::URI_TOO_LONG, "8192");
}

/// 8 (large uploads): a dataset streamed as NDJSON is read line by line, with errors naming
/// the line and limits checked as lines arrive.
async fn streamed_upload(url: Option<String>) {
    let api = Api::with(url, |c| c.limits.max_items = 25).await;
    let inline = upload();
    let mut lines = vec![json!({"dataset": {"name": "streamed"}})];
    let ids = inline["items"]["ids"].as_array().unwrap();
    for (id, e) in ids
        .iter()
        .zip(inline["items"]["embeddings"].as_array().unwrap())
    {
        lines.push(json!({"item": {"id": id, "embedding": e}}));
    }
    lines.push(json!({"prompt": {"id": "p0", "embedding": [1.0, 0.0]}}));
    for split in ["train", "val", "test"] {
        for c in inline["comparisons"][split].as_array().unwrap() {
            let mut c = c.clone();
            c["split"] = json!(split);
            lines.push(json!({"comparison": c}));
        }
    }
    let ndjson = |lines: &[Value]| {
        lines
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let auth = format!("Bearer {}", inproc::TOKEN);
    let send = |body: String| {
        let auth = auth.clone();
        let api = &api;
        async move {
            let h = [
                ("authorization", auth.as_str()),
                ("content-type", "application/x-ndjson"),
            ];
            let (s, _, b) = api.request(Method::POST, "/datasets", Some(body), &h).await;
            (s, parse(&b))
        }
    };
    let (s, ds) = send(ndjson(&lines)).await;
    assert_eq!(s, StatusCode::CREATED, "{ds}");
    assert_eq!(
        (ds["n_items"].as_u64(), ds["n_prompts"].as_u64()),
        (Some(20), Some(1))
    );
    assert_eq!(
        ds["n_comparisons"].as_u64().unwrap() as usize,
        lines.len() - 22
    );
    let spec = json!({"dataset": ds["id"], "model": {"variant": "b", "k": 2, "d": 4, "layers": 1}, "train": {"epochs": 5}});
    let (_, job) = api.post("/jobs", spec).await;
    assert_eq!(
        wait_for_job(&api, job["id"].as_str().unwrap()).await["status"],
        "succeeded"
    );
    // Errors name the line.
    let mut bad = lines.clone();
    bad.swap(0, 1);
    assert_err(
        send(ndjson(&bad)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "line 1: the first record",
    );
    let mut bad = lines.clone();
    bad.insert(3, json!({"item": {"id": "odd", "embedding": [1.0]}}));
    assert_err(
        send(ndjson(&bad)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "line 4: item: expected an embedding of 2 values",
    );
    let mut bad = lines.clone();
    bad[30] = json!({"comparison": {"split": "train", "user": "u", "prompt": "p0", "left": "i1", "right": "nope", "label": 1}});
    assert_err(
        send(ndjson(&bad)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown item",
    );
    let mut bad = lines.clone();
    for n in 0..10 {
        bad.insert(
            2,
            json!({"item": {"id": format!("extra{n}"), "embedding": [0.0, 1.0]}}),
        );
    }
    assert_err(
        send(ndjson(&bad)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "more than 25 rows",
    );
    let long = format!("{{\"item\": {{\"id\": \"{}\"", "x".repeat(300_000));
    assert_err(
        send(format!("{}\n{long}", lines[0])).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "line 2: longer than",
    );
    assert_eq!(
        api.get("/datasets").await.1.as_array().unwrap().len(),
        1,
        "a refused stream stored data"
    );
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

async fn all(url: Option<String>) {
    path_import(url.clone()).await;
    job_limits(url.clone()).await;
    no_state_for_unknown_ids(url.clone()).await;
    users_and_adapt(url.clone()).await;
    bundles_are_immutable(url.clone()).await;
    cancel_is_atomic(url.clone()).await;
    limits_and_json_errors(url.clone()).await;
    streamed_upload(url.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_findings_stay_fixed_on_sqlite() {
    all(None).await;
    no_third_start(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_findings_stay_fixed_on_postgres() {
    for scenario in 0..9 {
        let Some((url, base)) = inproc::fresh_postgres().await else {
            return;
        };
        let u = Some(url.clone());
        match scenario {
            0 => path_import(u).await,
            1 => job_limits(u).await,
            2 => no_state_for_unknown_ids(u).await,
            3 => users_and_adapt(u).await,
            4 => bundles_are_immutable(u).await,
            5 => cancel_is_atomic(u).await,
            6 => limits_and_json_errors(u).await,
            7 => streamed_upload(u).await,
            _ => no_third_start(u).await,
        }
        inproc::drop_postgres(&url, &base).await;
    }
}
