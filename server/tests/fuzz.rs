//! A property test over the whole HTTP API: seeded random requests to every route (valid bodies
//! with random mutations, random JSON, bytes that are not JSON, hostile path segments, random
//! methods and headers). Every answer must be a declared status (no 5xx but 503), every error
//! JSON `{error, detail}` without server paths, no handler may panic, `/health` stays ok and
//! the process RSS stays bounded. `PAL_FUZZ_CASES` sets the number of requests (CI runs a
//! slice; `cargo xtask fuzz` runs 10,000), `PAL_FUZZ_SEED` the seed.

mod inproc;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use inproc::{Api, TOKEN, trained_model, upload};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

const NASTY: &[&str] = &[
    "",
    " ",
    "..",
    "../../etc/passwd",
    "..%2F..%2Fpal.db",
    "%00",
    "a\u{0}b",
    "a\nb",
    "\u{202e}rtl",
    "😀",
    "x.png",
    ".hidden.png",
    "images/x.png",
    "/etc/shadow",
    "/proc/self/environ",
    "NaN",
    "-1",
    "1e999",
    "null",
    "true",
    "' OR 1=1 --",
    "<script>",
    "%",
    "%%",
    "a/b",
    "\\\\server",
];

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn nasty_string(rng: &mut StdRng) -> String {
    match rng.random_range(0..4) {
        0 => NASTY[rng.random_range(0..NASTY.len())].to_string(),
        1 => "x".repeat(rng.random_range(0..600)),
        2 => (0..rng.random_range(1..20))
            .map(|_| char::from_u32(rng.random_range(1..0x2_0000)).unwrap_or('?'))
            .collect(),
        _ => format!("id{}", rng.random_range(0..50)),
    }
}

fn random_json(rng: &mut StdRng, depth: usize, known: &[String]) -> Value {
    match rng.random_range(0..10) {
        0 => Value::Null,
        1 => Value::Bool(rng.random_bool(0.5)),
        2 => json!(rng.random_range(-3i64..400)),
        3 => [
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1e308),
            json!(-0.0),
            json!(1e-300),
            json!(9_007_199_254_740_993u64),
            json!(4_294_967_296u64),
        ][rng.random_range(0..7)]
        .clone(),
        4 => Value::String(nasty_string(rng)),
        5 if depth < 3 => Value::Array(
            (0..rng.random_range(0..5))
                .map(|_| random_json(rng, depth + 1, known))
                .collect(),
        ),
        6 if depth < 3 => {
            let mut m = Map::new();
            for _ in 0..rng.random_range(0..4) {
                m.insert(nasty_string(rng), random_json(rng, depth + 1, known));
            }
            Value::Object(m)
        }
        7 if !known.is_empty() => Value::String(known[rng.random_range(0..known.len())].clone()),
        _ => json!(rng.random::<f64>() * 2.0 - 0.5),
    }
}

/// Replaces, removes or adds nodes of `v` at random.
fn mutate(v: &mut Value, rng: &mut StdRng, known: &[String]) {
    match v {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                match rng.random_range(0..12) {
                    0 => {
                        m.remove(&k);
                    }
                    1 => {
                        m.insert(k, random_json(rng, 1, known));
                    }
                    _ => mutate(m.get_mut(&k).expect("key"), rng, known),
                }
            }
            if rng.random_range(0..10) == 0 {
                m.insert(nasty_string(rng), random_json(rng, 1, known));
            }
        }
        Value::Array(a) => {
            for x in a.iter_mut().take(8) {
                if rng.random_range(0..15) == 0 {
                    *x = random_json(rng, 1, known);
                } else {
                    mutate(x, rng, known);
                }
            }
        }
        _ => {
            if rng.random_range(0..6) == 0 {
                *v = random_json(rng, 1, known);
            }
        }
    }
}

/// Percent-encodes a path segment (everything but unreserved characters).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

struct World {
    dataset: String,
    model: String,
    job: String,
    import_dir: String,
    known: Vec<String>,
}

fn template(route: &str, w: &World, rng: &mut StdRng) -> Value {
    let pair = json!({"user": format!("fz{}", rng.random_range(0..1000)), "prompt": "p0", "left": "i1", "right": "i2", "label": 1});
    match route {
        "/datasets" => {
            if rng.random_bool(0.3) {
                json!({"name": "fz", "path": w.import_dir})
            } else {
                upload()
            }
        }
        "/jobs" => {
            json!({"dataset": w.dataset, "model": {"variant": "b", "k": 2, "d": 4, "layers": 1},
            "train": {"epochs": 3, "batch_size": 64}})
        }
        "/models/{id}/users/adapt" => json!({"pairs": [pair], "fewshot": {"epochs": 20}}),
        "/models/{id}/users/{user}" => json!({"weights": [0.5, 0.5]}),
        "/rank" => {
            json!({"model": w.model, "user": "u1", "prompt": "p0", "k": 3, "items": ["i1", "i2"]})
        }
        _ => json!({}),
    }
}

fn fill(path: &str, w: &World, rng: &mut StdRng) -> String {
    let mut out = String::new();
    for part in path.split('/').skip(1) {
        out.push('/');
        let valid = rng.random_bool(0.6);
        let value = match part {
            "{id}" if valid => [w.dataset.as_str(), w.model.as_str(), w.job.as_str()]
                [rng.random_range(0..3)]
            .to_string(),
            "{user}" if valid => ["u0", "u1", "visitor", "new"][rng.random_range(0..4)].to_string(),
            "{name}" if valid => [
                "weights.safetensors",
                "manifest.json",
                "items.safetensors",
                "x.png",
            ][rng.random_range(0..4)]
            .to_string(),
            p if p.starts_with('{') => nasty_string(rng),
            p => p.to_string(),
        };
        out += &segment(&value);
    }
    if rng.random_range(0..8) == 0 {
        out += &format!(
            "?rev={}&{}={}",
            random_json(rng, 3, &[]),
            segment(&nasty_string(rng)),
            segment(&nasty_string(rng))
        );
    }
    out
}

/// A dataset as NDJSON records, some of them mutated.
fn ndjson(rng: &mut StdRng, known: &[String]) -> String {
    let mut lines = vec![json!({"dataset": {"name": "fz"}})];
    for i in 0..rng.random_range(0..6) {
        lines.push(json!({"item": {"id": format!("i{i}"), "embedding": [0.1, i]}}));
    }
    lines.push(json!({"prompt": {"id": "p0", "embedding": [1.0, 0.0]}}));
    for i in 0..rng.random_range(0..6) {
        lines.push(
            json!({"comparison": {"split": "train", "user": "u", "prompt": "p0",
            "left": "i0", "right": format!("i{i}"), "label": i % 2}}),
        );
    }
    for l in &mut lines {
        if rng.random_range(0..4) == 0 {
            mutate(l, rng, known);
        }
    }
    if rng.random_range(0..4) == 0 {
        let at = rng.random_range(0..lines.len());
        lines.swap(0, at);
    }
    lines
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

async fn send(api: &Api, req: Request<Body>) -> (StatusCode, String, Vec<u8>) {
    let resp = api
        .app
        .clone()
        .oneshot(req)
        .await
        .expect("infallible service");
    let status = resp.status();
    let kind = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    if kind.starts_with("text/event-stream") {
        return (status, kind, Vec::new());
    }
    let body = tokio::time::timeout(Duration::from_secs(60), resp.into_body().collect())
        .await
        .expect("body within 60 s")
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    (status, kind, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_never_break_the_server() {
    let cases: usize = std::env::var("PAL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let seed: u64 = std::env::var("PAL_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11);
    let roots = tempfile::tempdir().unwrap();
    let good = roots.path().join("good");
    inproc::synth_dir(&good);
    std::os::unix::fs::symlink("/etc/passwd", good.join("content.json")).unwrap();
    let root = roots.path().to_path_buf();
    let api = Api::with(None, move |c| {
        c.import_roots = vec![root];
        c.limits.max_epochs = 40;
        c.limits.max_adapt_work = 20_000;
        c.limits.max_d = 64;
        c.limits.max_hidden = 64;
    })
    .await;
    let data_dir = api.dir.path().to_string_lossy().into_owned();
    let (dataset, model) = trained_model(&api).await;
    let (_, job) = api
        .post("/jobs", json!({"dataset": dataset, "train": {"epochs": 1}}))
        .await;
    let world = World {
        known: vec![
            dataset.clone(),
            model.clone(),
            "u0".into(),
            "i1".into(),
            "p0".into(),
        ],
        dataset,
        model,
        job: job["id"].as_str().unwrap().to_string(),
        import_dir: Path::new(roots.path())
            .join("good")
            .to_string_lossy()
            .into_owned(),
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let routes = pal_server::api::ROUTES;
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
    ];
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let (mut rss_warm, mut rss_peak) = (0, 0);
    let t0 = Instant::now();
    for n in 0..cases {
        if n == cases / 10 {
            rss_warm = rss_kib();
        }
        let (m, template_path) = routes[rng.random_range(0..routes.len())];
        let method = if rng.random_range(0..10) == 0 {
            methods[rng.random_range(0..methods.len())].clone()
        } else {
            m.to_uppercase().parse().unwrap()
        };
        let path = if rng.random_range(0..12) == 0 {
            format!("/{}", segment(&nasty_string(&mut rng)).replace("%2F", "/"))
        } else {
            fill(template_path, &world, &mut rng)
        };
        let body: Vec<u8> = match rng.random_range(0..20) {
            0..=11 => {
                let mut v = template(template_path, &world, &mut rng);
                mutate(&mut v, &mut rng, &world.known);
                v.to_string().into_bytes()
            }
            12..=14 => random_json(&mut rng, 0, &world.known)
                .to_string()
                .into_bytes(),
            15 => (0..rng.random_range(0..200))
                .map(|_| rng.random::<u8>())
                .collect(),
            16 => Vec::new(),
            _ => template(template_path, &world, &mut rng)
                .to_string()
                .into_bytes(),
        };
        let mut req = Request::builder().method(method.clone()).uri(&path);
        match rng.random_range(0..10) {
            0 => {}
            1 => req = req.header("authorization", "Bearer wrong"),
            _ => req = req.header("authorization", format!("Bearer {TOKEN}")),
        }
        let body = match rng.random_range(0..12) {
            0 => {
                req = req.header("content-type", "application/x-ndjson");
                ndjson(&mut rng, &world.known).into_bytes()
            }
            1 => body,
            _ => {
                req = req.header("content-type", "application/json");
                body
            }
        };
        if rng.random_range(0..5) == 0 {
            req = req.header(
                "if-match",
                ["\"r1\"", "\"r2\"", "*", "garbage", ""][rng.random_range(0..5)],
            );
        }
        let Ok(req) = req.body(Body::from(body)) else {
            continue; // a URI the HTTP layer itself would refuse
        };
        let (status, kind, bytes) = send(&api, req).await;
        *statuses.entry(status.as_u16()).or_default() += 1;
        assert!(
            status.as_u16() < 500 || status == StatusCode::SERVICE_UNAVAILABLE,
            "case {n}: {method} {path} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        if status.is_client_error() && method != Method::HEAD {
            assert!(
                kind.starts_with("application/json"),
                "case {n}: {method} {path}: {status} as {kind}"
            );
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            assert!(
                v["error"].is_string() && v["detail"].is_string(),
                "case {n}: {method} {path}: {v}"
            );
            let detail = v["detail"].as_str().unwrap();
            assert!(
                !detail.contains(&data_dir),
                "case {n}: server path in `{detail}`"
            );
            assert!(
                !detail.contains("root:x:0"),
                "case {n}: file contents in `{detail}`"
            );
        }
        rss_peak = rss_peak.max(rss_kib());
    }
    let secs = t0.elapsed().as_secs_f64();
    // Stop what the fuzzer queued, then the server must be healthy.
    let (_, jobs) = api.get("/jobs").await;
    for j in jobs.as_array().unwrap() {
        if j["status"] == "queued" || j["status"] == "running" {
            api.post(
                &format!("/jobs/{}/cancel", j["id"].as_str().unwrap()),
                json!({}),
            )
            .await;
        }
    }
    let (s, h) = api.get("/health").await;
    assert_eq!(
        (s, h["status"].as_str()),
        (StatusCode::OK, Some("ok")),
        "{h}"
    );
    let rss_end = rss_kib();
    println!(
        "fuzz: {cases} requests (seed {seed}) in {secs:.1} s, statuses {statuses:?}; RSS after warm-up {} MiB, peak {} MiB, end {} MiB",
        rss_warm / 1024,
        rss_peak / 1024,
        rss_end / 1024
    );
    assert!(
        rss_end < rss_warm * 3 / 2 + 64 * 1024,
        "RSS grew from {rss_warm} KiB to {rss_end} KiB"
    );
}
