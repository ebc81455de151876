//! The in-process API harness shared by the API, hardening and fuzz tests: the router driven
//! with `oneshot`, on SQLite or (when `PAL_TEST_POSTGRES_URL` is set) a fresh Postgres database.
#![allow(dead_code)]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use pal_server::{AppState, ServeConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

pub const TOKEN: &str = "s3cret";

pub struct Api {
    pub app: Router,
    pub state: AppState,
    pub dir: tempfile::TempDir,
}

impl Api {
    pub async fn new(database_url: Option<String>) -> Self {
        Self::with(database_url, |_| {}).await
    }

    /// A server on a fresh data dir; `tune` adjusts the config (limits, roots) first.
    pub async fn with(database_url: Option<String>, tune: impl FnOnce(&mut ServeConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::open(dir, database_url, tune).await
    }

    /// A server on an existing data dir (a restart).
    pub async fn open(
        dir: tempfile::TempDir,
        database_url: Option<String>,
        tune: impl FnOnce(&mut ServeConfig),
    ) -> Self {
        let mut cfg = ServeConfig::new(dir.path());
        cfg.database_url = database_url;
        cfg.token = Some(TOKEN.into());
        cfg.max_body_bytes = 4 << 20;
        cfg.import_roots = vec![std::env::temp_dir()];
        tune(&mut cfg);
        let (app, state) = pal_server::build(cfg).await.unwrap();
        Self { app, state, dir }
    }

    /// Any request; `headers` are added as given.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        send(self.app.clone(), method, path, body, headers).await
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        token: bool,
    ) -> (StatusCode, Vec<u8>) {
        let auth = format!("Bearer {TOKEN}");
        let headers: Vec<(&str, &str)> = if token {
            vec![("authorization", auth.as_str())]
        } else {
            vec![]
        };
        let (s, _, b) = self.request(method, path, body, &headers).await;
        (s, b)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (s, b) = self
            .raw(method, path, body.map(|v| v.to_string()), true)
            .await;
        (s, parse(&b))
    }

    /// A request with an optional bearer credential; `(status, body)`.
    pub async fn with_bearer(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        bearer: Option<&str>,
    ) -> (StatusCode, Value) {
        let auth = bearer.map(|b| format!("Bearer {b}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let (s, _, b) = self
            .request(method, path, body.map(|v| v.to_string()), &headers)
            .await;
        (s, parse(&b))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
}

/// Any request to `app` (a clone of the router: tasks spawned with it run at once);
/// `headers` are added as given.
pub async fn send(
    app: Router,
    method: Method,
    path: &str,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b)),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, bytes)
}

/// A body as JSON, or as a JSON string when it is not JSON.
pub fn parse(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or(Value::String(String::from_utf8_lossy(b).into()))
}

/// An error response: right status, JSON `{error, detail}`, detail mentioning `fragment`.
pub fn assert_err(got: (StatusCode, Value), status: StatusCode, fragment: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert!(got.1["error"].is_string(), "not an error body: {}", got.1);
    let detail = got.1["detail"].as_str().unwrap();
    assert!(
        detail.contains(fragment),
        "`{detail}` does not mention `{fragment}`"
    );
}

/// A synthetic dataset directory (4 users, PAL-B shapes) at `dir`.
pub fn synth_dir(dir: &std::path::Path) {
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

/// A small inline dataset: 2 groups of users with opposite tastes over 1-d items.
pub fn upload() -> Value {
    let items: Vec<String> = (0..20).map(|i| format!("i{i}")).collect();
    let emb: Vec<Vec<f32>> = (0..20).map(|i| vec![i as f32 / 10.0 - 1.0, 1.0]).collect();
    let mut train = vec![];
    for u in 0..6 {
        for n in 0..30 {
            let (l, r) = ((n * 7) % 20, (n * 3 + 1) % 20);
            if l == r {
                continue;
            }
            let left_better = (l > r) == (u % 2 == 0);
            train.push(
                json!({"user": format!("u{u}"), "prompt": "p0", "left": format!("i{l}"),
                "right": format!("i{r}"), "label": u8::from(left_better)}),
            );
        }
    }
    json!({
        "name": "tiny",
        "items": {"ids": items, "embeddings": emb},
        "prompts": {"ids": ["p0"], "embeddings": [[1.0, 0.0]]},
        "comparisons": {"train": train.clone(), "val": train[..20], "test": train[20..60]},
    })
}

pub async fn wait_for_job(api: &Api, id: &str) -> Value {
    for _ in 0..1200 {
        let (_, job) = api.get(&format!("/jobs/{id}")).await;
        if ["succeeded", "failed", "cancelled"].contains(&job["status"].as_str().unwrap()) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} did not finish");
}

/// Uploads `upload()` and trains a small PAL-B model on it; returns (dataset id, model id).
pub async fn trained_model(api: &Api) -> (String, String) {
    let (s, ds) = api.post("/datasets", upload()).await;
    assert_eq!(s, StatusCode::CREATED, "{ds}");
    let ds_id = ds["id"].as_str().unwrap().to_string();
    let spec = json!({"dataset": ds_id, "model": {"variant": "b", "k": 2, "d": 4, "layers": 1},
        "train": {"epochs": 30, "batch_size": 32}});
    let (s, job) = api.post("/jobs", spec).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let job = wait_for_job(api, job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    (ds_id, job["model_id"].as_str().unwrap().to_string())
}

/// A fresh Postgres database URL when `PAL_TEST_POSTGRES_URL` is set (CI sets it; there it is
/// required), with the admin URL to drop it afterwards.
pub async fn fresh_postgres() -> Option<(String, String)> {
    let Ok(base) = std::env::var("PAL_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must set PAL_TEST_POSTGRES_URL"
        );
        eprintln!("PAL_TEST_POSTGRES_URL not set: Postgres scenario not run");
        return None;
    };
    use sqlx::Executor;
    sqlx::any::install_default_drivers();
    let name = format!("pal_test_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::AnyPool::connect(&base).await.unwrap();
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let url = match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("PAL_TEST_POSTGRES_URL needs a database path"),
    };
    Some((url, base))
}

/// Drops a database made by `fresh_postgres`.
pub async fn drop_postgres(url: &str, base: &str) {
    use sqlx::Executor;
    let name = url.rsplit('/').next().unwrap();
    let admin = sqlx::AnyPool::connect(base).await.unwrap();
    admin
        .execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
        .await
        .unwrap();
}

/// `POST /models/{model}/visitors` from client address `ip` (no credential); the status, the
/// body and `Retry-After`.
pub async fn new_visitor(
    api: &Api,
    model: &str,
    ip: impl Into<std::net::IpAddr>,
) -> (StatusCode, Value, Option<String>) {
    use axum::extract::connect_info::ConnectInfo;
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(format!("/models/{model}/visitors"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(std::net::SocketAddr::new(ip.into(), 40000)));
    let resp = api.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let retry = resp
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, parse(&bytes), retry)
}

/// A new visitor of `model` from `ip`: (user id, secret).
pub async fn visitor(api: &Api, model: &str, ip: impl Into<std::net::IpAddr>) -> (String, String) {
    let (s, v, _) = new_visitor(api, model, ip).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (
        v["user"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
    )
}
