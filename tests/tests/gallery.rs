//! The 70,000-product gallery in the browser (issue #16): `pal data fashion` builds Fashion-MNIST
//! (pixel features, category prompts), the server imports and trains it, and headless Chromium
//! ranks all 70k items, asks questions that pair two products of the prompt's category, and
//! re-ranks after every answer from the cached f(x). The timings it prints are the README's.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::browser::{
    answer, chromedriver, open_app, prerequisites, question_prompt, serve, session, train,
    wait_text,
};
use pal_format::content::Content;
use serde_json::json;

/// Milliseconds in `ranked N items in X ms`.
fn rank_ms(text: &str) -> f64 {
    text.split(" in ")
        .nth(1)
        .and_then(|t| t.trim_end_matches(" ms").parse().ok())
        .unwrap_or_else(|| panic!("no timing in `{text}`"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seventy_thousand_products_rank_and_re_rank_in_the_browser() {
    let Some((dist, driver)) = prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("fashion");
    let t0 = Instant::now();
    let built = Command::new(common::pal_bin())
        .args([
            "data",
            "fashion",
            "-q",
            "--seen-users",
            "30",
            "--unseen-users",
            "0",
        ])
        .args(["--pairs-per-user", "60", "--out"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(
        built.success(),
        "pal data fashion (needs `cargo xtask assets`)"
    );
    eprintln!("built 70k products in {:.1} s", t0.elapsed().as_secs_f64());
    let content = Content::read(&data).unwrap();
    assert_eq!(content.items.len(), 70_000);

    let (addr, _server) = serve(&dist, &tmp.path().join("store"), tmp.path(), &[]);
    let t0 = Instant::now();
    let ds = common::json(
        &addr,
        "POST",
        "/datasets",
        Some(&json!({"name": "fashion", "path": data})),
    );
    eprintln!("imported in {:.1} s", t0.elapsed().as_secs_f64());
    let spec = json!({"dataset": ds["id"], "model": {"variant": "b", "k": 3, "d": 16, "layers": 1},
        "train": {"epochs": 15}});
    let model = train(&addr, &spec, None);

    let (port, _driver) = chromedriver(&driver);
    let c = session(port, &tmp.path().join("profile")).await;
    let status = open_app(&c, &format!("http://{addr}/?model={model}&cpu=1")).await;
    assert!(status.contains("70000 items"), "{status}");
    eprintln!("{status}");
    let first = wait_text(&c, "#ranking", |t| t.lines().count() == 10).await;
    let mut shown = first.clone();
    for n in 1..=4 {
        // Each question pairs two products of the category its prompt names.
        let q = wait_text(&c, "#personalise", |t| t.contains("For prompt")).await;
        let prompt_text = question_prompt(&q);
        let prompt = content
            .prompts
            .iter()
            .find(|(_, t)| **t == prompt_text)
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| panic!("unknown prompt `{prompt_text}`"));
        let pair = c
            .execute(
                "return [...document.querySelectorAll('#left img, #right img')].map(i => i.alt);",
                vec![],
            )
            .await
            .unwrap();
        let pair: Vec<String> = serde_json::from_value(pair).unwrap();
        assert_eq!(pair.len(), 2, "{pair:?}");
        let own = &content.candidates[&prompt];
        assert!(
            pair.iter().all(|id| own.contains(id)),
            "{pair:?} are not both {prompt_text}"
        );
        answer(&c, if n % 2 == 0 { "left" } else { "right" }, n).await;
        let t0 = Instant::now();
        shown = loop {
            let now = wait_text(&c, "#ranking", |t| t.lines().count() == 10).await;
            if now != shown || t0.elapsed() > Duration::from_secs(5) {
                break now;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let timing = wait_text(&c, "#rank-time", |t| t.starts_with("ranked 70000 items")).await;
        eprintln!("after answer {n}: {timing}");
        assert!(rank_ms(&timing) < 1000.0, "{timing}");
    }
    assert_ne!(
        shown, first,
        "four answers changed the ranking of 70,000 products"
    );
    // The gallery shows the ranked products as decoded pictures.
    let decoded = c
        .execute(
            "return [...document.querySelectorAll('#gallery img')].filter(i => i.complete && i.naturalWidth == 28).length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(decoded, json!(10));
    c.close().await.unwrap();
}
