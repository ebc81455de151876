//! pal as a remote reward model, end to end on a real `summaries` dataset (12 papers, MiniLM):
//! `pal score` gives the rewards of the dataset's own texts that the model gives their stored
//! embeddings; `pal serve --reward-model` answers an HTTP client written to OpenRLHF's documented
//! protocol (`request_api_wrapper`: POST JSON, retries, `rewards` in the answer) at the URL
//! OpenRLHF's `--remote_rm_url` takes, with and without `prompts`/`labels`, in request order and
//! equal to `/rank`'s scores for those items.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::browser::{Kill, free_port};
use common::{call, json, pal_bin};
use pal_format::content::{Content, ItemContent};
use serde_json::{Value, json};

fn pal(args: &[&str]) -> String {
    let out = Command::new(pal_bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "pal {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn serve(store: &Path, root: &Path, extra: &[&str]) -> (String, Kill) {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Kill(
        Command::new(pal_bin())
            .args(["serve", "--addr", &addr, "--data-dir"])
            .arg(store)
            .arg("--import-root")
            .arg(root)
            .args(extra)
            .env_remove("DATABASE_URL")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..300 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            return (addr, child);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("pal serve did not start");
}

/// OpenRLHF's `request_api_wrapper`, as its sources document it: POST the JSON with
/// `Content-Type: application/json`, up to 5 tries, fail on a non-2xx status, read `rewards`.
fn openrlhf_rewards(addr: &str, path: &str, data: &Value) -> Vec<f64> {
    for _ in 0..5 {
        let (status, body) = call(addr, "POST", path, Some(data));
        if !(200..300).contains(&status) {
            eprintln!("request error {status}: {body}");
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let answer: Value = serde_json::from_str(&body).unwrap();
        let rewards = answer.get("rewards").expect("rewards not in the response");
        return rewards
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
    }
    panic!("5 tries failed");
}

fn close(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-4, "{what}[{i}]: {x} vs {y}");
    }
}

#[test]
fn pal_serves_rewards_to_an_openrlhf_client_and_pal_score_agrees_with_the_model() {
    if pal_embed::Asset::named("minilm")
        .and_then(|a| a.path())
        .is_err()
    {
        assert!(std::env::var("CI").is_err(), "CI must fetch the assets");
        eprintln!("MiniLM asset missing: reward serving not tested end to end");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("sum");
    let d = data.to_str().unwrap();
    pal(&[
        "-q",
        "data",
        "summaries",
        "--out",
        d,
        "--papers",
        "12",
        "--seen-users",
        "20",
    ]);
    let model = tmp.path().join("m");
    let m = model.to_str().unwrap();
    pal(&[
        "-q", "train", "--data", d, "--out", m, "--k", "2", "--d", "16", "--layers", "1",
    ]);
    let content = Content::read(&data).unwrap();
    let (paper, prompt) = content.prompts.iter().next().unwrap();
    let ids: Vec<String> = content
        .items
        .keys()
        .filter(|i| i.starts_with(paper.as_str()))
        .cloned()
        .collect();
    let texts: Vec<String> = ids
        .iter()
        .map(|i| match &content.items[i] {
            ItemContent::Text(t) => t.clone(),
            ItemContent::Image(_) => unreachable!(),
        })
        .collect();
    let lines: String = texts
        .iter()
        .map(|t| format!("{}\n", Value::from(t.as_str())))
        .collect();
    let responses = tmp.path().join("responses.jsonl");
    std::fs::write(&responses, lines).unwrap();

    // `pal score` of the texts = the model's rewards of their stored embeddings.
    let trained = pal_format::TrainedModel::load(&model).unwrap();
    let user = trained.users[0].clone();
    let r = responses.to_str().unwrap();
    let out = pal(&[
        "score",
        "--model",
        m,
        "--user",
        &user,
        "--prompt",
        prompt,
        "--responses",
        r,
    ]);
    let scored: Vec<f64> = out
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["index"], i);
            v["reward"].as_f64().unwrap()
        })
        .collect();
    let ds = pal_format::Dataset::load(&data).unwrap();
    let rows: Vec<f32> = ids
        .iter()
        .flat_map(|i| ds.items.get(i).unwrap().to_vec())
        .collect();
    let w = &trained.weights;
    let p = ds.prompts.as_ref().unwrap().get(paper).unwrap();
    let i = trained.user_index(&user).unwrap();
    let want =
        pal_infer::cpu::ItemFeatures::new(w, &rows).scores(w, &w.user_weights(i)[..], p, None);
    let want: Vec<f64> = want.into_iter().map(f64::from).collect();
    close(&scored, &want, "pal score vs the stored embeddings");

    // The server: import, train, then restart mounting the model at /get_reward.
    let store = tmp.path().join("store");
    let (addr, server) = serve(&store, tmp.path(), &[]);
    let ds_id = json(
        &addr,
        "POST",
        "/datasets",
        Some(&json!({"name": "sum", "path": d})),
    )["id"]
        .clone();
    let spec = json!({"dataset": ds_id, "model": {"variant": "b", "k": 2, "d": 16, "layers": 1, "content_prior": true},
        "train": {"epochs": 30}});
    let job = json(&addr, "POST", "/jobs", Some(&spec));
    let model_id = loop {
        let j = json(
            &addr,
            "GET",
            &format!("/jobs/{}", job["id"].as_str().unwrap()),
            None,
        );
        match j["status"].as_str().unwrap() {
            "succeeded" => break j["model_id"].as_str().unwrap().to_string(),
            "failed" | "cancelled" => panic!("{j}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    drop(server);
    let (addr, _server) = serve(&store, tmp.path(), &["--reward-model", &model_id]);
    let rank = json(
        &addr,
        "POST",
        "/rank",
        Some(&json!({"model": model_id, "user": user, "prompt": paper,
        "items": ids, "k": ids.len()})),
    );
    let by_rank: Vec<f64> = ids
        .iter()
        .map(|id| {
            let hit = rank["ranking"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["item"] == *id)
                .unwrap();
            hit["score"].as_f64().unwrap()
        })
        .collect();
    let n = texts.len();
    let queries: Vec<String> = texts.iter().map(|t| format!("{prompt}\n{t}")).collect();
    let with_all = json!({"query": queries, "prompts": vec![prompt; n], "labels": vec![&user; n]});
    close(
        &openrlhf_rewards(&addr, "/get_reward", &with_all),
        &by_rank,
        "/get_reward vs /rank",
    );
    let chat: Vec<String> = texts
        .iter()
        .map(|t| {
            format!("<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n{t}<|im_end|>")
        })
        .collect();
    let templated = json!({"query": chat, "labels": vec![&user; n]});
    close(
        &openrlhf_rewards(&addr, "/get_reward", &templated),
        &by_rank,
        "a ChatML query without prompts",
    );
    // Older OpenRLHF sends only `query`: the population's mixture, as /rewards gives it.
    let mix = json(
        &addr,
        "POST",
        &format!("/models/{model_id}/rewards"),
        Some(&json!({"prompt": prompt, "responses": texts})),
    );
    let mix: Vec<f64> = mix["rewards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    close(
        &openrlhf_rewards(&addr, "/get_reward", &json!({"query": chat})),
        &mix,
        "query only",
    );
    // Reversed order, reversed answers.
    let mut rev = chat.clone();
    rev.reverse();
    let mut back = openrlhf_rewards(
        &addr,
        "/get_reward",
        &json!({"query": rev, "labels": vec![&user; n]}),
    );
    back.reverse();
    close(&back, &by_rank, "request order");
}
