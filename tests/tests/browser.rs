//! The browser app end to end in headless Chromium (WebGPU on), driven by fantoccini through
//! chromedriver: it loads the app from `pal serve`, checks the ranking equals the server's
//! `/rank`, answers 10 A/B questions as a simulated user of a known group, checks the learned
//! weights point to that group and the ranking follows, saves a screenshot, and checks the WGSL
//! kernels against the reference inside the browser's WebGPU.
//! Needs `cargo xtask app` (app/dist) and Debian's chromium + chromium-driver; skipped without
//! them locally, required under CI.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::browser::{
    answer, answer_as, argmax, chromedriver, open_app, prerequisites, rank_rows, ranking, serve,
    session, shown_weights, stored_user_ranks_like_the_server, synth, train, wait_text,
};
use fantoccini::Locator;
use serde_json::{Value, json};

fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    common::json(addr, method, path, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_ranks_like_the_server_and_personalises_a_visitor() {
    let Some((dist, chromedriver_path)) = prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(tmp.path());
    let pal = &common::pal_bin();
    let store = tmp.path().join("store");
    // The app lists the dataset users to rank for only when their weights are published.
    let (addr, _server) = serve(&dist, &store, tmp.path(), &["--publish-user-weights"]);
    let ds = http(
        &addr,
        "POST",
        "/datasets",
        Some(&json!({"name": "synth", "path": data})),
    );
    let spec = json!({"dataset": ds["id"], "model": {"variant": "b", "layers": 1},
        "train": {"epochs": 300, "weight_decay": {"item_map": 0.3, "head": 0.3, "users": 0.0, "scale": 0.0}}});
    let model = train(&addr, &spec, None);

    let (wd_port, _driver) = chromedriver(&chromedriver_path);
    let c = session(wd_port, &tmp.path().join("chrome-profile")).await;
    let status = open_app(&c, &format!("http://{addr}/?model={model}")).await;
    assert!(status.contains("GPU"), "WebGPU did not run: {status}");

    // 1. The ranking of a stored user equals the server's /rank.
    stored_user_ranks_like_the_server(&c, &addr, &model, "user0").await;

    // 2. A visitor of group 1 answers 10 questions as the ground truth says (each question a
    //    candidate pair of its prompt).
    let group = 1;
    let truth_w: Vec<f32> = (0..3).map(|k| f32::from(k == group)).collect();
    answer_as(&c, &data, &truth_w, 0, 10).await;
    let panel = wait_text(&c, "#personalise", |t| t.contains("10 answers")).await;
    let learned = shown_weights(&panel, 3);
    let member = http(
        &addr,
        "GET",
        &format!("/models/{model}/users/user{group}"),
        None,
    );
    let member_w: Vec<f32> = serde_json::from_value(member["weights"].clone()).unwrap();
    assert_eq!(
        argmax(&learned),
        argmax(&member_w),
        "visitor {learned:?} vs group member {member_w:?}"
    );

    // 3. The visitor's ranking follows their group.
    let before = wait_text(&c, "#ranking", |t| t.lines().count() == 10).await;
    c.find(Locator::Css("#user option[value='']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let mine = ranking(&c, &before).await;
    let prompt = wait_text(&c, "#prompt", |t| t.starts_with("prompt")).await;
    let overlap = |user: usize| {
        let r = http(
            &addr,
            "POST",
            "/rank",
            Some(
                &json!({"model": model, "user": format!("user{user}"), "prompt": prompt, "k": 10}),
            ),
        );
        rank_rows(&r)
            .iter()
            .filter(|x| mine.iter().any(|m| m.0 == x.0))
            .count()
    };
    let (same, others) = (overlap(group), [overlap(0), overlap(2)]);
    assert!(
        same >= 5 && others.iter().all(|o| *o < same),
        "top-10 overlap: own group {same}, others {others:?}"
    );

    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let shot = std::env::temp_dir().join("pal-browser-test.png");
    let out = std::env::var_os("PAL_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or(shot);
    std::fs::write(&out, png).unwrap();
    eprintln!("screenshot: {}", out.display());

    // 4. The WGSL kernels equal the reference inside this browser's WebGPU (random bundles of
    //    every form, computed by the app's `?selftest=1`).
    c.goto(&format!("http://{addr}/?selftest=1")).await.unwrap();
    let check = wait_text(&c, "#check", |t| !t.is_empty()).await;
    let err: f64 = check
        .split("max relative error ")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("selftest did not run: {check}"));
    assert!(err <= 1e-4, "{check}");
    assert!(check.contains("top-k ok"), "{check}");
    eprintln!("{check}");

    // 5. A dataset with content (real photos under colour filters): the gallery shows the ranked
    //    items as images the server serves, and the A/B question shows pictures too.
    let photos = tmp.path().join("filters");
    assert!(
        Command::new(pal)
            .args([
                "data",
                "filters",
                "-q",
                "--photos",
                "2",
                "--crops",
                "2",
                "--seen-users",
                "6",
                "--unseen-users",
                "0",
                "--pairs-per-user",
                "20",
                "--out"
            ])
            .arg(&photos)
            .status()
            .unwrap()
            .success(),
        "pal data filters (needs `cargo xtask assets`)"
    );
    let ds = http(
        &addr,
        "POST",
        "/datasets",
        Some(&json!({"name": "filters", "path": photos})),
    );
    let spec = json!({"dataset": ds["id"], "model": {"variant": "b", "k": 2, "d": 8, "layers": 1}, "train": {"epochs": 20}});
    let model = train(&addr, &spec, None);
    c.goto(&format!("http://{addr}/?model={model}"))
        .await
        .unwrap();
    wait_text(&c, "#ranking", |t| t.lines().count() == 10).await;
    let t0 = Instant::now();
    let loaded = loop {
        let n = c
            .execute(
                "return [...document.querySelectorAll('#gallery img')].filter(i => i.complete && i.naturalWidth > 0).length \
                 + 100 * document.querySelectorAll('#left img, #right img').length;",
                vec![],
            )
            .await
            .unwrap()
            .as_u64()
            .unwrap();
        if n == 210 || t0.elapsed() > Duration::from_secs(20) {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        loaded, 210,
        "10 decoded gallery images and 2 question images"
    );
    // The question pairs two versions of one photo (ids are PHOTO-CROP-FILTER): a pair a person
    // can answer, drawn from the items compared under the photo's prompt in training.
    let pair = c
        .execute(
            "return [...document.querySelectorAll('#left img, #right img')].map(i => i.alt);",
            vec![],
        )
        .await
        .unwrap();
    let pair: Vec<&str> = pair
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let photo = |id: &str| id.split('-').next().unwrap_or_default().to_string();
    assert_eq!(pair.len(), 2, "{pair:?}");
    assert_eq!(
        photo(pair[0]),
        photo(pair[1]),
        "question pairs two photos: {pair:?}"
    );
    // Typed prompts, embedded by the server's MiniLM (the encoder of this dataset's prompts)
    // and ranked in the browser: each puts its own photo's crops first (two prompts, so the
    // check cannot pass on the ranking that was already shown).
    for (typed, photo) in [
        ("an astronaut in a space suit", "astronaut-"),
        ("a photo of a cat", "chelsea-"),
    ] {
        let input = c.find(Locator::Id("typed-prompt")).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys(typed).await.unwrap();
        let before = wait_text(&c, "#ranking", |t| t.lines().count() == 10).await;
        c.find(Locator::Id("embed"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_text(&c, "#prompt", |t| t == typed).await;
        let top = ranking(&c, &before).await;
        assert!(
            top[..5].iter().all(|(id, _)| id.starts_with(photo)),
            "typed `{typed}`: top 5 {top:?}"
        );
    }
    // A visitor who picks a prompt is asked about that prompt.
    let select = c.find(Locator::Id("prompt-select")).await.unwrap();
    select.select_by_index(2).await.unwrap();
    let picked = c
        .find(Locator::Css("#prompt-select option:nth-child(3)"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    wait_text(&c, "#personalise", |t| {
        t.contains(&format!("For prompt {picked},"))
    })
    .await;
    wait_text(&c, "#prompt", |t| t == picked).await;
    // Three answers, then the whole page: the personalised ranking with each prototype's
    // favourites beside its weight (the README's screenshot).
    for n in 1..=3 {
        answer(&c, "left", n).await;
    }
    let likes = c
        .execute(
            "return document.querySelectorAll('.proto .likes img').length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        likes,
        json!(6),
        "3 favourites as thumbnails for each of the 2 prototypes"
    );
    c.set_window_size(1000, 1750).await.unwrap();
    c.execute("window.scrollTo(0, 0);", vec![]).await.unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(out.with_file_name("pal-browser-images.png"), png).unwrap();
    c.close().await.unwrap();
}
