//! Visitors arriving all at once: clients that each act as a stream of new visitors (create,
//! write their weights, contribute, read back, sometimes forget), for the soak's visitor mix,
//! and `cargo xtask load --visitors`: the p99 of a visitor's weight write with 1,000 stored
//! visitors and again with 100,000, same run, same clients (flat means ratio ≤ 1.5).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::loadgen::{Conn, Shared, Tally, client, percentile};

/// Flags that let one loopback address create visitors as fast as the clients can.
pub const OPEN_VISITORS: [&str; 4] = [
    "--visitors-per-minute",
    "100000000",
    "--max-visitors-per-network",
    "100000000",
];

/// PUT latencies of every client, shared.
pub type Puts = Arc<Mutex<Vec<Duration>>>;

/// One new visitor's life: created, weights written, a contribution, weights read back;
/// every `forget_every`-th visitor then forgets themselves. PUT latencies also go to `puts`.
pub fn new_visitor_once(
    conn: &mut Conn,
    model: &str,
    n: u64,
    forget_every: u64,
    (t, puts): (&mut Tally, &Puts),
) -> Result<()> {
    let t0 = Instant::now();
    let r = conn.send("POST", &format!("/models/{model}/visitors"), None, "")?;
    t.check("new visitor", t0, &r, &[201]);
    if r.status != 201 {
        return Ok(());
    }
    let v: Value = serde_json::from_slice(&r.body)?;
    let (user, secret) = (
        v["user"].as_str().context("user")?,
        v["secret"].as_str().context("secret")?,
    );
    let auth = format!("Authorization: Bearer {secret}\r\n");
    let path = format!("/models/{model}/users/{user}");
    let a = (n % 9 + 1) as f64 / 10.0;
    let w = json!({"weights": [a, (1.0 - a) / 2.0, (1.0 - a) / 2.0]});
    let t0 = Instant::now();
    let r = conn.send("PUT", &path, Some(&w), &auth)?;
    t.check("visitor PUT", t0, &r, &[200]);
    puts.lock().expect("puts lock").push(t0.elapsed());
    if n.is_multiple_of(2) {
        let pair = json!({"pairs": [{"prompt": "prompt0", "left": format!("item{}", n % 10),
            "right": format!("item{}", n % 10 + 10), "label": n % 2}]});
        let t0 = Instant::now();
        let r = conn.send("POST", &format!("{path}/comparisons"), Some(&pair), &auth)?;
        t.check("contribute", t0, &r, &[201]);
    }
    let t0 = Instant::now();
    let r = conn.send("GET", &path, None, &auth)?;
    t.check("visitor GET", t0, &r, &[200]);
    if forget_every > 0 && n.is_multiple_of(forget_every) {
        let t0 = Instant::now();
        let r = conn.send("DELETE", &path, None, &auth)?;
        t.check("forget me", t0, &r, &[204]);
    }
    Ok(())
}

/// `clients` new-visitor clients for `seconds`; the PUT latencies sorted, and any errors.
fn window(
    addr: &str,
    model: &str,
    clients: u64,
    seconds: u64,
) -> Result<(Vec<Duration>, Vec<String>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let tallies: Shared = Arc::default();
    let puts: Puts = Arc::default();
    let mut threads = Vec::new();
    for _ in 0..clients {
        let (model, puts) = (model.to_string(), puts.clone());
        threads.push(client(
            addr,
            "visitor mix",
            &stop,
            &tallies,
            move |conn, t, n| new_visitor_once(conn, &model, n, 0, (t, &puts)),
        ));
    }
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
    }
    let tallies = std::mem::take(&mut *tallies.lock().expect("tally lock"));
    let errors = tallies
        .iter()
        .flat_map(|(_, t)| t.errors.iter().cloned())
        .collect();
    let mut puts = std::mem::take(&mut *puts.lock().expect("puts lock"));
    puts.sort();
    Ok((puts, errors))
}

/// Creates visitors with `clients` connections until the server holds `target`.
fn fill(addr: &str, model: &str, clients: u64, target: u64) -> Result<()> {
    let each = target.div_ceil(clients);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (addr, model) = (addr.to_string(), model.to_string());
            std::thread::spawn(move || -> Result<()> {
                let mut c = Conn::open(&addr)?;
                for _ in 0..each {
                    let r = c.send("POST", &format!("/models/{model}/visitors"), None, "")?;
                    if r.status != 201 {
                        bail!("creating visitors: {}", r.status);
                    }
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("filler panicked"))??;
    }
    Ok(())
}

/// `cargo xtask load --visitors`: PUT p99 at 1,000 and at 100,000 stored visitors.
pub fn flatness(pal: &Path, root: &Path, seconds: u64) -> Result<()> {
    let (out, data, store) = crate::load::prepare(pal, root, "visitors")?;
    let (mut child, addr) =
        crate::load::start_server(pal, "127.0.0.1:0", &store, &out, None, &OPEN_VISITORS)?;
    let result = (|| -> Result<()> {
        let b1 = json!({"variant": "b", "layers": 1});
        let model =
            crate::load::train_on_server(&addr, "visitors", &data, b1, json!({"epochs": 5}))?;
        let mut rows: Vec<(u64, f64, f64)> = Vec::new();
        for target in [1_000u64, 100_000] {
            crate::cmd::step(&format!("visitors: filling to {target} stored visitors"));
            let t0 = Instant::now();
            let have = rows.last().map_or(0, |(n, ..)| *n);
            fill(&addr, &model, 8, target.saturating_sub(have))?;
            let fill_s = t0.elapsed().as_secs_f64();
            crate::cmd::step(&format!(
                "visitors: {seconds}s of 8 new-visitor clients at {target}"
            ));
            let (puts, errors) = window(&addr, &model, 8, seconds)?;
            if !errors.is_empty() {
                bail!("{} errors, first: {}", errors.len(), errors[0]);
            }
            let (p50, p99) = (percentile(&puts, 0.5), percentile(&puts, 0.99));
            println!(
                "  {target:>7} stored visitors (+{} in the window; filled in {fill_s:.0} s): \
                 {} PUTs, {:.0}/s, p50 {p50:.2} ms, p99 {p99:.2} ms",
                puts.len(),
                puts.len(),
                puts.len() as f64 / seconds as f64
            );
            rows.push((target + puts.len() as u64, p50, p99));
        }
        let ratio = rows[1].2 / rows[0].2.max(1e-9);
        println!("visitor PUT p99 at 100k / at 1k stored visitors: {ratio:.2} (flat: ≤ 1.5)");
        if ratio > 1.5 {
            bail!("visitor PUT p99 grew {ratio:.2}× from 1k to 100k stored visitors");
        }
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}
