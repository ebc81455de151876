//! `cargo xtask load --soak SECONDS`: mixed traffic against a fresh `pal serve` on 127.0.0.1 for
//! a fixed time — `/rank` clients, training-job submission and cancellation, and visitors who
//! create users, read them (ETag), overwrite them with `If-Match`, fetch the bundle and adapt
//! new users (during warm-up; afterwards the visitor pool is fixed, so the model's data stops
//! growing and RSS measures the server rather than the data).
//! Reports requests, errors, latency percentiles and the server's RSS after warm-up and at the
//! end; fails when any request errs or RSS grows by 10% or more. Traffic goes only to loopback.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::loadgen::{Conn, Shared, client, percentile};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

pub fn run(pal: &Path, root: &Path, seconds: u64) -> Result<()> {
    let (out, data, store) = crate::load::prepare(pal, root, "soak")?;
    let (mut child, addr) = crate::load::start_server(
        pal,
        "127.0.0.1:0",
        &store,
        &out,
        None,
        &crate::soak_visitors::OPEN_VISITORS,
    )?;
    let pid = child.id();
    let result = (|| -> Result<()> {
        let b1 = json!({"variant": "b", "layers": 1});
        let model = crate::load::train_on_server(&addr, "soak", &data, b1, json!({"epochs": 20}))?;
        let ds = {
            let mut c = Conn::open(&addr)?;
            let m: Value = serde_json::from_slice(
                &c.send("GET", &format!("/models/{model}"), None, "")?.body,
            )?;
            m["dataset_id"].as_str().context("dataset id")?.to_string()
        };
        crate::cmd::step(&format!(
            "soak: {seconds}s of /rank (8 clients), job submit+cancel (1), visitors (3), new \
             visitors writing at once (4) on {addr}"
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let tallies: Shared = Arc::default();
        let mut threads = Vec::new();
        for c in 0..8u64 {
            let model = model.clone();
            threads.push(client(&addr, "rank", &stop, &tallies, move |conn, t, n| {
                let body = json!({"model": model, "user": format!("user{}", (c + n) % 60),
                    "prompt": format!("prompt{}", n % 5), "k": 10});
                let t0 = Instant::now();
                let r = conn.send("POST", "/rank", Some(&body), "")?;
                t.check("rank", t0, &r, &[200]);
                Ok(())
            }));
        }
        let spec =
            json!({"dataset": ds, "model": {"variant": "b", "layers": 1}, "train": {"epochs": 2}});
        threads.push(client(&addr, "jobs", &stop, &tallies, move |conn, t, n| {
            let t0 = Instant::now();
            let r = conn.send("POST", "/jobs", Some(&spec), "")?;
            t.check("submit job", t0, &r, &[202]);
            if n % 2 == 0 {
                let id = serde_json::from_slice::<Value>(&r.body)?["id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let t0 = Instant::now();
                let r = conn.send("POST", &format!("/jobs/{id}/cancel"), None, "")?;
                t.check("cancel job", t0, &r, &[200, 409]);
            }
            std::thread::sleep(Duration::from_millis(500));
            Ok(())
        }));
        for v in 0..3u64 {
            let model = model.clone();
            threads.push(client(&addr, "visitor", &stop, &tallies, move |conn, t, n| {
                // A fixed pool of 25 visitors per client: created once, then overwritten, so the
                // model stops growing and what the RSS shows is the server, not the data.
                let user = format!("/models/{model}/users/soak-{v}-{}", (n / 4) % 25);
                let t0 = Instant::now();
                match n % 4 {
                    0 | 1 => {
                        let r = conn.send("GET", &user, None, "")?;
                        t.check("get user", t0, &r, &[200, 404]);
                        let (extra, want) = match r.etag {
                            Some(tag) if r.status == 200 => (format!("If-Match: {tag}\r\n"), [200, 412]),
                            _ => (String::new(), [200, 200]),
                        };
                        let w = if n % 2 == 0 { [0.2, 0.3, 0.5] } else { [0.6, 0.2, 0.2] };
                        let t0 = Instant::now();
                        let r = conn.send("PUT", &user, Some(&json!({"weights": w})), &extra)?;
                        // Another visitor's write in between is a correct 412, not an error.
                        t.check("write user", t0, &r, &want);
                    }
                    2 => {
                        let r = conn.send("GET", &format!("/models/{model}/bundle"), None, "")?;
                        t.check("bundle", t0, &r, &[200]);
                        let rev = serde_json::from_slice::<Value>(&r.body)?["revision"].as_u64().unwrap_or(0);
                        let t0 = Instant::now();
                        let r = conn.send("GET", &format!("/models/{model}/files/weights.safetensors?rev={rev}"), None, "")?;
                        t.check("bundle weights", t0, &r, &[200]);
                    }
                    _ if n >= 100 => {
                        let r = conn.send("GET", &format!("/models/{model}"), None, "")?;
                        t.check("model", t0, &r, &[200]);
                    }
                    _ => {
                        let pairs: Vec<Value> = (0..10)
                            .map(|k| json!({"user": format!("fit-{v}-{n}"), "prompt": "prompt0",
                                "left": format!("item{k}"), "right": format!("item{}", k + 10), "label": k % 2}))
                            .collect();
                        let r = conn.send("POST", &format!("/models/{model}/users/adapt"),
                            Some(&json!({"pairs": pairs, "fewshot": {"epochs": 50}})), "")?;
                        t.check("adapt", t0, &r, &[201]);
                    }
                }
                Ok(())
            }));
        }
        // New visitors all the time, each writing at once with the others; every fourth forgets
        // themselves, so the stored visitors grow slowly and RSS still measures the server.
        let puts: crate::soak_visitors::Puts = Arc::default();
        for _ in 0..4 {
            let (model, puts) = (model.clone(), puts.clone());
            threads.push(client(
                &addr,
                "new visitors",
                &stop,
                &tallies,
                move |conn, t, n| {
                    crate::soak_visitors::new_visitor_once(conn, &model, n, 4, (t, &puts))
                },
            ));
        }
        std::thread::sleep(Duration::from_secs(seconds.min(5)));
        let rss_warm = rss_kib(pid);
        let mut rss_peak = rss_warm;
        let mut samples = vec![rss_warm / 1024];
        let t0 = Instant::now();
        let mut next = 5;
        while t0.elapsed() < Duration::from_secs(seconds.saturating_sub(5)) {
            std::thread::sleep(Duration::from_millis(500));
            let now = rss_kib(pid);
            rss_peak = rss_peak.max(now);
            if t0.elapsed() >= Duration::from_secs(next) {
                samples.push(now / 1024);
                next += 5;
            }
        }
        println!("  server RSS every 5 s after warm-up (MiB): {samples:?}");
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
        }
        let rss_end = rss_kib(pid);
        let tallies = std::mem::take(&mut *tallies.lock().expect("tally lock"));
        let mut errors = Vec::new();
        let mut all = Vec::new();
        for kind in ["rank", "jobs", "visitor", "new visitors"] {
            let mut lat: Vec<Duration> = Vec::new();
            for (k, t) in tallies.iter().filter(|(k, _)| *k == kind) {
                debug_assert_eq!(*k, kind);
                lat.extend(&t.lat);
                errors.extend(t.errors.iter().cloned());
            }
            lat.sort();
            println!(
                "  {kind:<8} {:>7} requests, {:>7.0} req/s, p50 {:>6.2} ms, p99 {:>7.2} ms",
                lat.len(),
                lat.len() as f64 / seconds as f64,
                percentile(&lat, 0.5),
                percentile(&lat, 0.99)
            );
            all.extend(lat);
        }
        all.sort();
        let growth = (rss_end as f64 / rss_warm.max(1) as f64 - 1.0) * 100.0;
        println!(
            "soak {seconds}s: {} requests, {} errors, p99 {:.2} ms; server RSS after warm-up {:.1} MiB, peak {:.1} MiB, end {:.1} MiB ({growth:+.1}%)",
            all.len(),
            errors.len(),
            percentile(&all, 0.99),
            rss_warm as f64 / 1024.0,
            rss_peak as f64 / 1024.0,
            rss_end as f64 / 1024.0
        );
        let mut c = Conn::open(&addr)?;
        let health = c.send("GET", "/health", None, "")?;
        if health.status != 200 {
            bail!(
                "/health after the soak: {} {}",
                health.status,
                String::from_utf8_lossy(&health.body)
            );
        }
        if !errors.is_empty() {
            bail!("{} errors, first: {}", errors.len(), errors[0]);
        }
        if growth >= 10.0 {
            bail!("server RSS grew {growth:.1}% (limit 10%)");
        }
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}
