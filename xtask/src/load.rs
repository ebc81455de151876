//! `cargo xtask load`: a bounded loopback load test of `POST /rank` — 100 concurrent keep-alive
//! clients for a fixed time against a freshly started `pal serve`, reporting requests/s and
//! latency percentiles. Traffic goes only to 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

fn request(addr: &str, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, rest) = out.split_once("\r\n\r\n").context("malformed response")?;
    let status = head.split(' ').nth(1).context("status")?.parse()?;
    Ok((status, rest.to_string()))
}

/// Reads one keep-alive response; returns its status.
fn read_response(r: &mut BufReader<TcpStream>) -> Result<u16> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line.split(' ').nth(1).context("status line")?.parse()?;
    let mut len = 0usize;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse()?;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(status)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// `runs/NAME/` with the synthetic PAL-B dataset (made once) and an empty server store;
/// returns (run dir, dataset dir, store dir).
pub(crate) fn prepare(pal: &Path, root: &Path, name: &str) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let out = root.join("runs").join(name);
    let data = out.join("synth-b");
    let store = out.join("server");
    let _ = std::fs::remove_dir_all(&store);
    if !data.join("train.jsonl").exists() {
        crate::cmd::run(crate::cmd::pal(
            pal,
            &["synth", "-q", "--out", data.to_str().context("path")?],
        ))?;
    }
    Ok((out, data, store))
}

/// Starts a server on a fresh data dir, trains a model on the synthetic dataset, then loads it.
pub fn run(pal: &Path, root: &Path, clients: usize, seconds: u64) -> Result<()> {
    let (out, data, store) = prepare(pal, root, "load")?;
    let (mut child, addr) = start_server(pal, "127.0.0.1:0", &store, &out, None, &[])?;
    let result = (|| -> Result<()> {
        let b1 = serde_json::json!({"variant": "b", "layers": 1});
        let model = train_on_server(
            &addr,
            "synthetic PAL-B",
            &data,
            b1,
            serde_json::json!({"epochs": 20}),
        )?;
        crate::cmd::step(&format!(
            "load: {clients} keep-alive clients × {seconds}s of POST /rank (top-10 of 400 items) on {addr}"
        ));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                let (addr, model) = (addr.clone(), model.clone());
                std::thread::spawn(move || -> Result<(Vec<Duration>, usize)> {
                    let stream = TcpStream::connect(&addr)?;
                    stream.set_nodelay(true)?;
                    let mut w = stream.try_clone()?;
                    let mut r = BufReader::new(stream);
                    let (mut lat, mut errors) = (Vec::new(), 0);
                    let mut n = 0;
                    while Instant::now() < deadline {
                        let body = serde_json::json!({"model": model, "user": format!("user{}", (c + n) % 60),
                            "prompt": format!("prompt{}", n % 5), "k": 10})
                        .to_string();
                        let t = Instant::now();
                        write!(w, "POST /rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())?;
                        if read_response(&mut r)? == 200 {
                            lat.push(t.elapsed());
                        } else {
                            errors += 1;
                        }
                        n += 1;
                    }
                    Ok((lat, errors))
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut errors = 0;
        for t in threads {
            let (lat, e) = t.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
            all.extend(lat);
            errors += e;
        }
        all.sort();
        if all.is_empty() {
            bail!("no successful requests");
        }
        let rps = all.len() as f64 / seconds as f64;
        println!(
            "POST /rank, {clients} clients, {seconds}s: {} ok, {errors} errors, {rps:.0} req/s, latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            all.len(),
            percentile(&all, 0.5),
            percentile(&all, 0.99),
            percentile(&all, 1.0)
        );
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Starts `pal serve` on `addr` (port 0 picks a free one), importing datasets from below
/// `import_root`; returns the process and its address.
pub(crate) fn start_server(
    pal: &Path,
    addr: &str,
    store: &Path,
    import_root: &Path,
    static_dir: Option<&Path>,
    extra: &[&str],
) -> Result<(Child, String)> {
    let mut cmd = Command::new(pal);
    cmd.args(["serve", "--addr", addr, "--data-dir"])
        .arg(store)
        .arg("--import-root")
        .arg(import_root);
    if let Some(dir) = static_dir {
        cmd.arg("--static-dir").arg(dir);
    }
    cmd.args(extra);
    let mut child = cmd.stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    match line.trim().rsplit_once("http://") {
        Some((_, bound)) if line.contains("listening") => Ok((child, bound.to_string())),
        _ => {
            let _ = child.kill();
            bail!("pal serve did not start on {addr} (is the port free?)")
        }
    }
}

/// Imports the dataset directory `data` and trains a PAL-B model (1-layer maps) with the given
/// `train` config; returns the model id once the job succeeded.
pub(crate) fn train_on_server(
    addr: &str,
    name: &str,
    data: &Path,
    model: serde_json::Value,
    train: serde_json::Value,
) -> Result<String> {
    let body = serde_json::json!({"name": name, "path": data}).to_string();
    let (s, ds) = request(addr, "POST", "/datasets", &body)?;
    if s != 201 {
        bail!("dataset import failed: {s} {ds}");
    }
    let ds: serde_json::Value = serde_json::from_str(&ds)?;
    let spec = serde_json::json!({"dataset": ds["id"], "model": model, "train": train});
    let (_, job) = request(addr, "POST", "/jobs", &spec.to_string())?;
    let job: serde_json::Value = serde_json::from_str(&job)?;
    let id = job["id"].as_str().context("job id")?.to_string();
    loop {
        let (_, j) = request(addr, "GET", &format!("/jobs/{id}"), "")?;
        let j: serde_json::Value = serde_json::from_str(&j)?;
        match j["status"].as_str() {
            Some("succeeded") => return Ok(j["model_id"].as_str().context("model")?.to_string()),
            Some("failed" | "cancelled") => bail!("training failed: {j}"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Serves the app on 127.0.0.1:8080 with PAL-B models trained on `out/synth-b` and on the photo
/// dataset `out/filters` (the newest, so the app opens on it), until Ctrl-C.
pub fn serve_demo(pal: &Path, out: &Path, dist: &Path) -> Result<()> {
    let store = out.join("server");
    let _ = std::fs::remove_dir_all(&store);
    crate::cmd::step(&format!(
        "starting pal serve on http://127.0.0.1:8080/ (data in {})",
        store.display()
    ));
    let (mut child, addr) = start_server(
        pal,
        "127.0.0.1:8080",
        &store,
        out,
        Some(dist),
        // The demo's dataset users are simulated groups: the app lists them to rank for.
        &["--publish-user-weights"],
    )?;
    crate::cmd::step(
        "training PAL-B on the server: synthetic, the 70k-product gallery, the paper summaries, then the photo dataset (the app opens the newest)",
    );
    let train = serde_json::json!({"epochs": 300,
        "weight_decay": {"item_map": 0.3, "head": 0.3, "users": 0.0, "scale": 0.0}});
    let b1 = serde_json::json!({"variant": "b", "layers": 1});
    let photos = serde_json::json!({"variant": "b", "k": 2, "d": 32, "layers": 1});
    let products = serde_json::json!({"variant": "b", "k": 3, "d": 16, "layers": 2});
    let summaries =
        serde_json::json!({"variant": "b", "k": 2, "d": 32, "layers": 1, "content_prior": true});
    let trained = train_on_server(&addr, "synthetic PAL-B", &out.join("synth-b"), b1, train)
        .and_then(|_| {
            train_on_server(
                &addr,
                "fashion (70,000 products)",
                &out.join("fashion"),
                products,
                serde_json::json!({"epochs": 60}),
            )
        })
        .and_then(|_| {
            train_on_server(
                &addr,
                "summaries (paper abstracts, MiniLM)",
                &out.join("summaries"),
                summaries,
                serde_json::json!({"epochs": 200}),
            )
        })
        .and_then(|_| {
            train_on_server(
                &addr,
                "filters (photos)",
                &out.join("filters"),
                photos,
                serde_json::json!({"epochs": 200}),
            )
        });
    if let Err(e) = trained {
        let _ = child.kill();
        return Err(e);
    }
    crate::cmd::step(&format!(
        "ready: open http://{addr}/ (WebGPU in Chromium with --enable-unsafe-webgpu, CPU otherwise); Ctrl-C stops"
    ));
    child.wait()?;
    Ok(())
}
