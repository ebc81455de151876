//! A residual model (issue #12) in the browser app, headless Chromium: a dataset user's ranking
//! equals the server's `/rank` for that user, which adds their trained residual δ (and differs
//! from the same weights without it); a visitor who answers gets their own residual, shown in
//! the panel. Saves a screenshot (`PAL_SCREENSHOT_RESIDUAL`, else the temp dir).
//! Needs `cargo xtask app` (app/dist) and Debian's chromium + chromium-driver; skipped without
//! them locally, required under CI.

use std::path::PathBuf;

mod common;

use common::browser::{
    answer_as, chromedriver, open_app, prerequisites, rank_rows, serve, session,
    stored_user_ranks_like_the_server, synth, train, wait_text,
};
use fantoccini::Locator;
use serde_json::{Value, json};

fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    common::json(addr, method, path, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn residual_models_rank_with_each_users_residual_in_the_browser() {
    let Some((dist, chromedriver_path)) = prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(tmp.path());
    let store = tmp.path().join("store");
    // The app lists the dataset users to rank for only when their weights are published.
    let (addr, _server) = serve(&dist, &store, tmp.path(), &["--publish-user-weights"]);
    let ds = http(
        &addr,
        "POST",
        "/datasets",
        Some(&json!({"name": "synth", "path": data})),
    );
    let spec = json!({"dataset": ds["id"], "model": {"variant": "b", "layers": 1, "residual": 0.3},
        "train": {"epochs": 60}});
    let model = train(&addr, &spec, None);

    let (wd_port, _driver) = chromedriver(&chromedriver_path);
    let c = session(wd_port, &tmp.path().join("chrome-profile")).await;
    let status = open_app(&c, &format!("http://{addr}/?model={model}")).await;
    assert!(status.contains("GPU"), "WebGPU did not run: {status}");

    // 1. user0's ranking is the server's, which adds user0's δ.
    let (prompt, server) = stored_user_ranks_like_the_server(&c, &addr, &model, "user0").await;
    // The same weights without δ score differently: the comparison above saw the residual.
    let user = http(&addr, "GET", &format!("/models/{model}/users/user0"), None);
    let plain = rank_rows(&http(
        &addr,
        "POST",
        "/rank",
        Some(&json!({"model": model, "weights": user["weights"], "prompt": prompt, "k": 10})),
    ));
    let moved = server
        .iter()
        .filter_map(|(id, s)| plain.iter().find(|p| &p.0 == id).map(|p| (p.1 - s).abs()))
        .fold(f64::INFINITY, f64::min);
    assert!(
        moved > 1e-3 || plain.iter().map(|p| &p.0).ne(server.iter().map(|p| &p.0)),
        "user0's δ changes nothing: the test would not see it"
    );

    // 2. A visitor answers 6 questions as group 1 would; the panel shows their own residual.
    c.find(Locator::Css("#user option[value='']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    answer_as(&c, &data, &[0.0, 1.0, 0.0], 0, 6).await;
    let panel = wait_text(&c, "#personalise", |t| t.contains("6 answers")).await;
    let line = wait_text(&c, "#residual", |t| t.contains("personal residual")).await;
    let size: f64 = line
        .split("at most ")
        .nth(1)
        .and_then(|t| t.split(" log-odds").next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no residual size in {line:?} ({panel})"));
    assert!(size > 0.0, "{line}");

    // The panel with the weights and the residual line in view.
    c.execute(
        "document.getElementById('residual').scrollIntoView({block: 'center'})",
        vec![],
    )
    .await
    .unwrap();
    let png = c.screenshot().await.unwrap();
    let out = std::env::var_os("PAL_SCREENSHOT_RESIDUAL")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("pal-browser-residual.png"));
    std::fs::write(&out, png).unwrap();
    eprintln!("screenshot: {}", out.display());
}
