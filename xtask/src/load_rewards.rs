//! `cargo xtask load --rewards`: pal as a remote reward model under load. A `summaries` model is
//! served by `pal serve --reward-model`; 64 keep-alive clients post OpenRLHF bodies of 8
//! (prompt + response) queries with user labels to `/get_reward` for 30 s. Reported: rewards/s,
//! latency p50/p99, errors (any is a failure), the server's peak RSS, and the ratio of served
//! rewards/s to the encoder's own offline batch throughput (`pal embed --batch 64` on the same
//! texts, same run, same machine): how much of the encoder the HTTP path leaves unused.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::load::{start_server, train_on_server};
use crate::loadgen::{Shared, client, percentile};

const PER_REQUEST: usize = 8;

/// Peak and current resident memory of a process, in MiB (Linux `/proc`).
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// A paper's prompt text and its summaries.
type Paper = (String, Vec<String>);

/// The papers of the dataset's content (each prompt's declared candidates), and its users' ids
/// (pal-format's readers).
fn texts(data: &Path) -> Result<(Vec<Paper>, Vec<String>)> {
    use pal_format::ItemContent;
    let content = pal_format::Content::read(data)?;
    let mut papers = vec![];
    for (pid, ids) in &content.candidates {
        let mine: Vec<String> = ids
            .iter()
            .filter_map(|id| match content.items.get(id) {
                Some(ItemContent::Text(t)) => Some(t.clone()),
                _ => None,
            })
            .collect();
        if let (Some(prompt), false) = (content.prompts.get(pid), mine.is_empty()) {
            papers.push((prompt.clone(), mine));
        }
    }
    let rows = pal_format::comparison::read_jsonl(&data.join("train.jsonl"))?;
    let users = pal_format::dataset::user_ids(&rows);
    Ok((papers, users))
}

/// The encoder's offline batch throughput on `texts` (texts/s), by `pal embed --batch 64`.
fn offline(pal: &Path, out: &Path, texts: &[String]) -> Result<f64> {
    let input = out.join("offline.jsonl");
    let lines: String = texts
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{}\n", json!({"id": format!("t{i}"), "text": t})))
        .collect();
    std::fs::write(&input, lines)?;
    let store = out.join("offline.safetensors");
    let _ = std::fs::remove_file(&store);
    let _ = std::fs::remove_file(out.join("offline.safetensors.cache.json"));
    let o = std::process::Command::new(pal)
        .args([
            "--json",
            "-q",
            "embed",
            "--encoder",
            "text",
            "--batch",
            "64",
            "--input",
        ])
        .arg(&input)
        .arg("--out")
        .arg(&store)
        .output()?;
    if !o.status.success() {
        bail!("pal embed: {}", String::from_utf8_lossy(&o.stderr));
    }
    let r: Value = serde_json::from_slice(&o.stdout)?;
    r["report"]["items_per_second"]
        .as_f64()
        .context("items_per_second")
}

pub fn run(pal: &Path, root: &Path, clients: usize, seconds: u64) -> Result<()> {
    let out = root.join("runs").join("load-rewards");
    let data = out.join("summaries");
    if !data.join("content.json").exists() {
        crate::cmd::step("building `summaries` (60 papers, MiniLM) for the reward benchmark");
        let d = data.to_str().context("path")?;
        crate::cmd::run(crate::cmd::pal(
            pal,
            &["data", "summaries", "-q", "--out", d, "--papers", "60"],
        ))?;
    }
    let (papers, users) = texts(&data)?;
    let store = out.join("server");
    let _ = std::fs::remove_dir_all(&store);
    let (mut server, addr) = start_server(pal, "127.0.0.1:0", &store, &out, None, &[])?;
    let model = json!({"variant": "b", "k": 2, "d": 32, "layers": 1, "content_prior": true});
    let trained = train_on_server(&addr, "summaries", &data, model, json!({"epochs": 30}));
    let _ = server.kill();
    let _ = server.wait();
    let id = trained?;
    let (mut server, addr) = start_server(
        pal,
        "127.0.0.1:0",
        &store,
        &out,
        None,
        &["--reward-model", &id],
    )?;
    let pid = server.id();
    let result = (|| -> Result<()> {
        crate::cmd::step(&format!(
            "load --rewards: {clients} clients × {seconds}s of POST /get_reward ({PER_REQUEST} queries each, OpenRLHF's body) on {addr}"
        ));
        let (papers, users) = (Arc::new(papers.clone()), Arc::new(users.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicUsize::new(0));
        let shared: Shared = Arc::default();
        let started = Instant::now();
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                let (papers, users, failed) = (papers.clone(), users.clone(), failed.clone());
                client(&addr, "get_reward", &stop, &shared, move |conn, tally, n| {
                    let (prompt, mine) = &papers[(c * 7 + n as usize) % papers.len()];
                    let pick = |j: usize| mine[(n as usize + j) % mine.len()].as_str();
                    let query: Vec<String> = (0..PER_REQUEST).map(|j| format!("{prompt}\n{}", pick(j))).collect();
                    let label: Vec<&str> = (0..PER_REQUEST).map(|j| users[(c + j) % users.len()].as_str()).collect();
                    let body = json!({"query": query, "prompts": vec![prompt; PER_REQUEST], "labels": label});
                    let t = Instant::now();
                    let r = conn.send("POST", "/get_reward", Some(&body), "")?;
                    tally.check("get_reward", t, &r, &[200]);
                    if r.status != 200 {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
        }
        let wall = started.elapsed().as_secs_f64();
        let (peak, now) = rss_mib(pid);
        let mut tallies = shared.lock().expect("tallies");
        let mut lat: Vec<Duration> = tallies
            .iter_mut()
            .flat_map(|(_, t)| t.lat.drain(..))
            .collect();
        let errors: Vec<String> = tallies.iter().flat_map(|(_, t)| t.errors.clone()).collect();
        lat.sort();
        let failed = failed.load(Ordering::Relaxed);
        let ok = lat.len() - failed;
        let served = (ok * PER_REQUEST) as f64 / wall;
        let all: Vec<String> = papers.iter().flat_map(|(_, m)| m.clone()).collect();
        let encoder = offline(pal, &out, &all)?;
        println!(
            "POST /get_reward, {clients} clients × {PER_REQUEST} queries, {wall:.1} s: {ok} requests ok, {} errors, \
             {served:.1} rewards/s, latency p50 {:.0} ms, p99 {:.0} ms; server RSS peak {peak:.0} MiB (now {now:.0}); \
             the encoder offline (pal embed --batch 64, same texts): {encoder:.1} texts/s; served / offline = {:.2}",
            failed,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            served / encoder
        );
        if failed > 0 {
            bail!("{failed} failed requests, e.g. {}", errors.join("; "));
        }
        Ok(())
    })();
    let _ = server.kill();
    let _ = server.wait();
    result
}
