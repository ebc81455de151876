//! `cargo xtask bench --matrix`: one PAL-B training step at the paper's shapes (D = 1024,
//! d = 512/1024, K = 1…4, batch 256…16384) on pal's fused engine and on burn (both through the
//! `step_profile` example), against the same step in PyTorch (`xtask/bench/torch_pal_b.py`) in the
//! same run; GFLOP/s against the machine's matmul peak, the fused step's split and scoring
//! (forward-only) throughput. Writes runs/bench/matrix.md.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::{cargo, output, run, step};

/// (d, K, batch) at D = 1024.
const SHAPES: [(usize, usize, usize); 7] = [
    (512, 1, 256),
    (512, 4, 256),
    (1024, 1, 256),
    (1024, 4, 256),
    (512, 2, 2048),
    (1024, 2, 2048),
    (512, 1, 16384),
];
const D_IN: usize = 1024;

fn profile(bin: &Path, d: usize, k: usize, b: usize, engine: &str) -> Result<Value> {
    let mut c = Command::new(bin);
    c.args([b, D_IN, d, k].map(|v| v.to_string()))
        .args(["--json", "--engine", engine]);
    Ok(serde_json::from_str(output(c)?.trim())?)
}

fn torch(root: &Path, d: usize, k: usize, b: usize, steps: usize) -> Result<Option<f64>> {
    let mut c = Command::new("python3");
    c.arg(root.join("xtask/bench/torch_pal_b.py")).args([
        "--d-item",
        &D_IN.to_string(),
        "--d-prompt",
        &D_IN.to_string(),
        "--d",
        &d.to_string(),
        "--k",
        &k.to_string(),
        "--batch",
        &b.to_string(),
        "--comparisons",
        &(steps * b).to_string(),
        "--epochs",
        "1",
        "--warmup",
        "2",
    ]);
    let t: Value = serde_json::from_str(output(c)?.trim())?;
    Ok(t["samples_per_second"].as_f64())
}

pub fn run_all(root: &Path) -> Result<()> {
    step("building the step profiler (pal-core/examples/step_profile.rs)");
    let mut c = cargo();
    c.args([
        "build",
        "--release",
        "-p",
        "pal-core",
        "--example",
        "step_profile",
    ]);
    run(c)?;
    let bin = crate::target_dir().join("release/examples/step_profile");
    let has_torch = Command::new("python3")
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut md = String::from(
        "| D | d | K | batch | fused samples/s | burn samples/s | torch samples/s | fused/torch | burn/torch | fused GFLOP/s (of matmul peak) | fused fwd / bwd / opt | scoring GFLOP/s (of peak) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n",
    );
    for (d, k, b) in SHAPES {
        step(&format!("D={D_IN} d={d} K={k} batch={b}"));
        let fused = profile(&bin, d, k, b, "fused")?;
        let burn = profile(&bin, d, k, b, "burn")?;
        let num = |v: &Value, key: &str| v[key].as_f64().unwrap_or(f64::NAN);
        let (f, bu) = (
            num(&fused, "samples_per_second"),
            num(&burn, "samples_per_second"),
        );
        let t = if has_torch {
            let steps = fused["steps"].as_u64().context("steps")? as usize;
            torch(root, d, k, b, steps.max(3))?
        } else {
            None
        };
        let ratio = |x: f64| t.map_or("–".into(), |t| format!("{:.2}×", x / t));
        let peak = num(&fused, "peak_gflops");
        let pct = |key: &str| 100.0 * num(&fused, key);
        let row = format!(
            "| {D_IN} | {d} | {k} | {b} | {f:.0} | {bu:.0} | {} | {} | {} | {:.0} ({:.0}% of {peak:.0}) | {:.0}% / {:.0}% / {:.0}% | {:.0} ({:.0}%) |\n",
            t.map_or("–".into(), |t| format!("{t:.0}")),
            ratio(f),
            ratio(bu),
            num(&fused, "gflops"),
            100.0 * num(&fused, "gflops") / peak,
            pct("forward") + pct("gather"),
            pct("backward") + pct("head"),
            pct("optimizer"),
            num(&fused, "score_gflops"),
            100.0 * num(&fused, "score_gflops") / peak,
        );
        print!("{row}");
        md += &row;
    }
    let out = root.join("runs/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("matrix.md"), &md)?;
    println!("\n{md}");
    if !has_torch {
        println!("PyTorch is not installed (pip install torch): no same-run ratios");
    }
    Ok(())
}
