//! The browser-test harness: `pal serve` and chromedriver as child processes, a headless
//! Chromium session per profile (WebGPU on), waiting for page text, training a model over
//! HTTP, reading the shown ranking and comparing it with the server's, and answering the app's
//! A/B questions as a ground-truth group would.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use pal_core::{Dataset, TrainedModel};
use pal_format::candidates::Candidates;
use serde_json::{Value, json};

/// A child process killed when dropped.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `app/dist` and chromedriver, or `None` (and a note) when either is missing outside CI.
pub fn prerequisites() -> Option<(PathBuf, PathBuf)> {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../app/dist");
    let chromedriver = PathBuf::from("/usr/bin/chromedriver");
    if !dist.join("pal_app_bg.wasm").exists() || !chromedriver.exists() {
        assert!(
            std::env::var("CI").is_err(),
            "CI must build app/dist and install chromium-driver"
        );
        eprintln!("app/dist or chromedriver missing: browser test not run");
        return None;
    }
    Some((dist, chromedriver))
}

/// `pal serve` on a free port over `store`, serving the app from `dist`, importing from
/// `root`; `extra` flags are added (e.g. `--token`). Returns the address and the process.
pub fn serve(dist: &Path, store: &Path, root: &Path, extra: &[&str]) -> (String, Kill) {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(super::pal_bin())
        .args(["serve", "--addr", &addr, "--static-dir"])
        .arg(dist)
        .arg("--data-dir")
        .arg(store)
        .arg("--import-root")
        .arg(root)
        .args(extra)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "pal serve did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (addr, Kill(child))
}

/// chromedriver on a free port; returns its port and the process.
pub fn chromedriver(path: &Path) -> (u16, Kill) {
    let port = free_port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (port, Kill(child))
}

/// A headless Chromium session with its own profile directory (its own `localStorage`).
pub async fn session(driver_port: u16, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": "/usr/bin/chromium", "args": [
            "--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
            "--window-size=900,1000", format!("--user-data-dir={}", profile.display()),
        ]}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("chromedriver session")
}

/// The text of `css` once `pred` holds (90 s at most).
pub async fn wait_text(c: &Client, css: &str, pred: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            let t = e.text().await.unwrap_or_default();
            if pred(&t) {
                return t;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "timed out waiting for `{css}`"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Opens `url` and waits for the status line (the model loaded, or an error); returns it.
pub async fn open_app(c: &Client, url: &str) -> String {
    c.goto(url).await.unwrap();
    wait_text(c, "#status", |t| {
        t.starts_with("model") || t.starts_with("error")
    })
    .await
}

/// How the panel counts `n` answers ("1 answer · …", "2 answers · …").
pub fn answers_said(n: usize) -> String {
    if n == 1 {
        "1 answer ".to_string()
    } else {
        format!("{n} answers")
    }
}

/// Clicks `#left` or `#right` and waits until the panel counts answer number `n`.
pub async fn answer(c: &Client, side: &str, n: usize) {
    c.find(Locator::Id(side))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let said = answers_said(n);
    wait_text(c, "#personalise", |t| t.contains(&said)).await;
}

/// The prompt text of the question in the panel ("For prompt X, which …").
pub fn question_prompt(panel: &str) -> String {
    panel
        .split("For prompt ")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .unwrap_or_else(|| panic!("no question in `{panel}`"))
        .trim()
        .to_string()
}

/// Runs a training job on the server (with the admin token, if any) and returns the model id.
pub fn train(addr: &str, spec: &Value, token: Option<&str>) -> String {
    let job = super::json_as(addr, "POST", "/jobs", Some(spec), token);
    let id = job["id"].as_str().unwrap().to_string();
    loop {
        let j = super::json_as(addr, "GET", &format!("/jobs/{id}"), None, token);
        if j["status"] == "succeeded" {
            return j["model_id"].as_str().unwrap().to_string();
        }
        assert!(j["status"] != "failed", "{j}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The visitor's weights as the page's weight bars show them (`k1 0.42` …).
pub fn shown_weights(panel: &str, k: usize) -> Vec<f32> {
    (1..=k)
        .map(|k| {
            let tag = format!("k{k} ");
            let at = panel.find(&tag).unwrap() + tag.len();
            panel[at..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

/// Answers `n` questions as ground-truth weights `truth_w` of the synthetic data in `data`
/// (which generated it), checking that each question is a candidate pair of its prompt; the
/// panel must show `start` answers first.
pub async fn answer_as(c: &Client, data: &Path, truth_w: &[f32], start: usize, n: usize) {
    let ds = Dataset::load(data).unwrap();
    let truth = TrainedModel::load(&data.join("truth")).unwrap();
    let prompts = ds.prompts.as_ref().unwrap();
    let candidates = Candidates::from_comparisons(&ds.read(pal_core::Split::Train).unwrap());
    for n in start..start + n {
        let said = answers_said(n);
        let q = wait_text(c, "#personalise", |t| t.contains(&said)).await;
        let qp = question_prompt(&q);
        let left = c.find(Locator::Id("left")).await.unwrap();
        let right = c.find(Locator::Id("right")).await.unwrap();
        let (l, r) = (left.text().await.unwrap(), right.text().await.unwrap());
        let pool = &candidates.prompts[&qp];
        assert!(
            pool.contains(&l) && pool.contains(&r),
            "question {n}: {l} vs {r} is not a candidate pair of {qp}"
        );
        let z = truth.weights.logit(
            truth_w,
            prompts.get(&qp).unwrap(),
            ds.items.get(&l).unwrap(),
            ds.items.get(&r).unwrap(),
        );
        if z > 0.0 {
            left.click().await.unwrap()
        } else {
            right.click().await.unwrap()
        }
    }
}

pub fn argmax(v: &[f32]) -> usize {
    (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap()
}

/// A synthetic dataset from `pal synth` in `dir/synth`; returns its path.
pub fn synth(dir: &Path) -> PathBuf {
    let data = dir.join("synth");
    assert!(
        Command::new(super::pal_bin())
            .args(["synth", "-q", "--out"])
            .arg(&data)
            .status()
            .unwrap()
            .success()
    );
    data
}

/// `(item, score)` rows of the ranking list once it differs from `before` (or 15 s passed).
pub async fn ranking(c: &Client, before: &str) -> Vec<(String, f64)> {
    let t0 = Instant::now();
    let text = wait_text(c, "#ranking", |t| {
        t.lines().count() == 10 && (t != before || t0.elapsed() > Duration::from_secs(15))
    })
    .await;
    text.lines()
        .map(|l| {
            let mut parts = l.split_whitespace();
            (
                parts.next().unwrap().to_string(),
                parts.next().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// `(item, score)` rows of a `/rank` answer.
pub fn rank_rows(r: &Value) -> Vec<(String, f64)> {
    r["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["item"].as_str().unwrap().to_string(),
                x["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Picks the stored `user` in the app and checks its ranking is the server's `/rank` for that
/// user under the shown prompt; returns the prompt and the server's rows.
pub async fn stored_user_ranks_like_the_server(
    c: &Client,
    addr: &str,
    model: &str,
    user: &str,
) -> (String, Vec<(String, f64)>) {
    let before = wait_text(c, "#ranking", |t| t.lines().count() == 10).await;
    c.find(Locator::Css(&format!("#user option[value='{user}']")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let shown = ranking(c, &before).await;
    let prompt = wait_text(c, "#prompt", |t| t.starts_with("prompt")).await;
    let server = rank_rows(&super::json(
        addr,
        "POST",
        "/rank",
        Some(&json!({"model": model, "user": user, "prompt": prompt, "k": 10})),
    ));
    assert_same_ranking(&shown, &server);
    (prompt, server)
}

/// The browser shows the server's ranking: the same items in order, scores within 2e-3.
pub fn assert_same_ranking(shown: &[(String, f64)], server: &[(String, f64)]) {
    assert_eq!(
        shown.iter().map(|r| &r.0).collect::<Vec<_>>(),
        server.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    for ((_, a), (_, b)) in shown.iter().zip(server) {
        assert!((a - b).abs() < 2e-3, "browser {a} vs server {b}");
    }
}
