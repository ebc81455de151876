//! Regression tests for the hostile probe of issue #11 — imports, errors, body and URI limits,
//! uploads (items 1, 2, 8, 9, 10); jobs and models are in `hardening_jobs.rs`. Each runs on
//! SQLite and (when `PAL_TEST_POSTGRES_URL` is set; CI requires it) on Postgres.

mod inproc;

use std::path::Path;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use inproc::{Api, assert_err, parse, synth_dir, upload, wait_for_job};
use serde_json::{Value, json};

const SECRET: &str = "SECRET_API_KEY=hunter2";

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
        (
            SECRET.to_string(),
            "train.jsonl:1: field `(json)`: not a JSON object",
        ),
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

/// Finding 8: The body limit is the configured one, and every framework error is JSON.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_errors_and_uploads_on_sqlite() {
    path_import(None).await;
    limits_and_json_errors(None).await;
    streamed_upload(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_errors_and_uploads_on_postgres() {
    for scenario in 0..3 {
        let Some((url, base)) = inproc::fresh_postgres().await else {
            return;
        };
        let u = Some(url.clone());
        match scenario {
            0 => path_import(u).await,
            1 => limits_and_json_errors(u).await,
            _ => streamed_upload(u).await,
        }
        inproc::drop_postgres(&url, &base).await;
    }
}
