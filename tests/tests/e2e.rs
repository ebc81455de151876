//! The real `pal serve` binary on 127.0.0.1: upload a synthetic dataset over HTTP, train while
//! streaming progress, adapt a new user, rank, restart and find everything persisted; and a
//! kill -9 in the middle of training that resumes from the checkpoint with no half-written model.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use pal_core::EmbeddingStore;
use serde_json::{Value, json};

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(data: &Path) -> Self {
        let mut child = Command::new(common::pal_bin())
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            // Datasets are written beside the store, in the test's temporary directory.
            .arg("--import-root")
            .arg(data.parent().expect("store has a parent"))
            .env_remove("DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("pal serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .rsplit("http://")
            .next()
            .expect("listening line")
            .to_string();
        Self { child, addr }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
        common::call(&self.addr, method, path, body)
    }

    fn json(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        common::json(&self.addr, method, path, body)
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

fn synth(dir: &Path) {
    let ok = Command::new(common::pal_bin())
        .args([
            "synth",
            "-q",
            "--users",
            "20",
            "--unseen-users",
            "2",
            "--out",
        ])
        .arg(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn store_json(path: &Path) -> Value {
    let s = EmbeddingStore::load(path).unwrap();
    let rows: Vec<Vec<f32>> = (0..s.len()).map(|i| s.row(i).to_vec()).collect();
    json!({"ids": s.ids(), "embeddings": rows})
}

fn jsonl(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    Value::Array(
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

/// The synthetic dataset as an inline upload body.
fn upload_body(dir: &Path) -> Value {
    json!({
        "name": "synthetic",
        "items": store_json(&dir.join("items.safetensors")),
        "prompts": store_json(&dir.join("prompts.safetensors")),
        "comparisons": {
            "train": jsonl(&dir.join("train.jsonl")),
            "val": jsonl(&dir.join("val.jsonl")),
            "test": jsonl(&dir.join("test.jsonl")),
        },
    })
}

fn wait_status(srv: &Server, job: &str, want: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let j = srv.json("GET", &format!("/jobs/{job}"), None);
        if j["status"] == want {
            return j;
        }
        assert!(
            !["failed", "cancelled", "succeeded"].contains(&j["status"].as_str().unwrap()),
            "job ended as {j}"
        );
        assert!(t0.elapsed() < Duration::from_secs(120), "job stuck: {j}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn upload_train_stream_adapt_rank_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("synth");
    synth(&data);
    let store = tmp.path().join("server");
    let srv = Server::start(&store);
    let ds = srv.json("POST", "/datasets", Some(&upload_body(&data)));
    assert_eq!(ds["n_comparisons"], 20 * (50 + 10 + 25));
    let spec = json!({"dataset": ds["id"], "model": {"variant": "b", "layers": 1},
        "train": {"epochs": 25, "patience": null}});
    let job = srv.json("POST", "/jobs", Some(&spec));
    let id = job["id"].as_str().unwrap().to_string();
    let (status, events) = srv.call("GET", &format!("/jobs/{id}/events"), None);
    assert_eq!(status, 200);
    assert!(events.contains("event: done"), "{events}");
    let epochs = events
        .lines()
        .filter(|l| l.starts_with("event: epoch"))
        .count();
    assert!(epochs >= 1, "no progress streamed: {events}");
    let job = wait_status(&srv, &id, "succeeded");
    let model = job["model_id"].as_str().unwrap().to_string();
    // A new user from 10 of their comparisons.
    let pairs: Vec<Value> = jsonl(&data.join("unseen_train.jsonl"))
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["user"] == "new0")
        .take(10)
        .cloned()
        .collect();
    let added = srv.json(
        "POST",
        &format!("/models/{model}/users/adapt"),
        Some(&json!({"pairs": pairs})),
    );
    assert_eq!(added[0]["id"], "new0");
    let rank = json!({"model": model, "user": "new0", "prompt": "prompt0", "k": 5});
    let before = srv.json("POST", "/rank", Some(&rank));
    let weights = srv.json("GET", &format!("/models/{model}/users/new0"), None);
    srv.kill();

    let srv = Server::start(&store);
    let datasets = srv.json("GET", "/datasets", None);
    assert_eq!(datasets[0]["id"], ds["id"]);
    assert_eq!(
        srv.json("GET", &format!("/jobs/{id}"), None)["status"],
        "succeeded"
    );
    assert_eq!(
        srv.json("GET", &format!("/models/{model}/users/new0"), None),
        weights
    );
    assert_eq!(srv.json("POST", "/rank", Some(&rank)), before);
    srv.kill();
}

#[test]
fn kill_9_during_training_resumes_from_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("synth");
    synth(&data);
    let store = tmp.path().join("server");
    let srv = Server::start(&store);
    let ds = srv.json(
        "POST",
        "/datasets",
        Some(&json!({"name": "s", "path": data})),
    );
    // Small batches make epochs slow enough to be killed in the middle.
    let spec = json!({"dataset": ds["id"], "model": {"variant": "b", "layers": 1},
        "train": {"epochs": 30, "batch_size": 2, "patience": null}});
    let id = srv.json("POST", "/jobs", Some(&spec))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t0 = Instant::now();
    loop {
        let j = srv.json("GET", &format!("/jobs/{id}"), None);
        if j["progress"]["epoch"].as_u64().unwrap_or(0) >= 3 {
            assert_eq!(j["status"], "running");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no progress: {j}");
        std::thread::sleep(Duration::from_millis(20));
    }
    srv.kill(); // SIGKILL
    let models = store.join("models");
    let leftovers: Vec<_> = std::fs::read_dir(&models).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "a model appeared before training finished: {leftovers:?}"
    );
    assert!(
        store
            .join("jobs")
            .join(&id)
            .join("checkpoint/state.json")
            .exists()
    );

    let srv = Server::start(&store);
    let (status, events) = srv.call("GET", &format!("/jobs/{id}/events"), None);
    assert_eq!(status, 200);
    let first_epoch: u64 = events
        .lines()
        .find_map(|l| {
            let v: Value = serde_json::from_str(l.strip_prefix("data: ")?).ok()?;
            (v["event"] == "epoch").then(|| v["epoch"].as_u64().unwrap())
        })
        .expect("epoch events after restart");
    assert!(
        first_epoch >= 4,
        "restarted from scratch (first epoch {first_epoch})"
    );
    let job = wait_status(&srv, &id, "succeeded");
    let model = job["model_id"].as_str().unwrap();
    let m = srv.json("GET", &format!("/models/{model}"), None);
    assert_eq!(m["users"], 20);
    let r = srv.json(
        "POST",
        "/rank",
        Some(&json!({"model": model, "user": "user3", "prompt": "prompt1"})),
    );
    assert_eq!(r["ranking"].as_array().unwrap().len(), 10);
    let names: Vec<String> = std::fs::read_dir(&models)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec![model.to_string()],
        "partial or stray model dirs"
    );
    assert_eq!(
        srv.json("GET", "/datasets", None).as_array().unwrap().len(),
        1
    );
    srv.kill();
}
