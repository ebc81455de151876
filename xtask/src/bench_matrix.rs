//! `cargo xtask bench --matrix`: one PAL-B (and PAL-A) training step at the paper's shapes
//! (D = 1024, d = 512/1024, K = 1…4, batch 256…16384) on pal's fused engine and on burn (both through the
//! `step_profile` example), against the same step in PyTorch (`xtask/bench/torch_pal_b.py`) in the
//! same run; GFLOP/s against the machine's matmul peak, the fused step's split and scoring
//! (forward-only) throughput. Writes runs/bench/matrix.md.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::cmd::{cargo, output, run, step};

/// (model, d, K, batch) at D = 1024.
const SHAPES: [(&str, usize, usize, usize); 9] = [
    ("pal-b", 512, 1, 256),
    ("pal-b", 512, 4, 256),
    ("pal-b", 1024, 1, 256),
    ("pal-b", 1024, 4, 256),
    ("pal-b", 512, 2, 2048),
    ("pal-b", 1024, 2, 2048),
    ("pal-b", 512, 1, 16384),
    ("pal-a", 512, 2, 256),
    ("pal-a", 1024, 4, 2048),
];
const D_IN: usize = 1024;

fn profile(bin: &Path, model: &str, d: usize, k: usize, b: usize, engine: &str) -> Result<Value> {
    let mut c = Command::new(bin);
    c.args([b, D_IN, d, k].map(|v| v.to_string()))
        .args(["--json", "--engine", engine, "--model", model]);
    Ok(serde_json::from_str(output(c)?.trim())?)
}

fn torch(
    root: &Path,
    model: &str,
    d: usize,
    k: usize,
    b: usize,
    steps: usize,
) -> Result<Option<f64>> {
    let mut c = Command::new("python3");
    let variant = if model == "pal-a" { "a" } else { "b" };
    c.arg(root.join("xtask/bench/torch_pal_b.py")).args([
        "--variant",
        variant,
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
    let bin = crate::cmd::target_dir().join("release/examples/step_profile");
    let has_torch = Command::new("python3")
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success());
    let num = |v: &Value, key: &str| v[key].as_f64().unwrap_or(f64::NAN);
    let mut runs = vec![];
    for (model, d, k, b) in SHAPES {
        step(&format!("{model} D={D_IN} d={d} K={k} batch={b}"));
        let fused = profile(&bin, model, d, k, b, "fused")?;
        let burn = profile(&bin, model, d, k, b, "burn")?;
        let t = if has_torch {
            let steps = fused["steps"].as_u64().context("steps")? as usize;
            torch(root, model, d, k, b, steps.max(3))?
        } else {
            None
        };
        println!(
            "  fused {:.0}, burn {:.0}, torch {} samples/s",
            num(&fused, "samples_per_second"),
            num(&burn, "samples_per_second"),
            t.map_or("–".into(), |t| format!("{t:.0}"))
        );
        runs.push(((model, d, k, b), fused, burn, t));
    }
    // The machine's peak: the best 2048² product of the whole run (one measurement can fall on
    // a moment when a neighbour holds the cores).
    let peak = runs
        .iter()
        .flat_map(|(_, f, b, _)| [num(f, "peak_gflops"), num(b, "peak_gflops")])
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let mut md = format!(
        "| model | D | d | K | batch | fused samples/s | burn samples/s | torch samples/s | fused/torch | burn/torch | fused GFLOP/s (of {peak:.0} peak) | fused fwd / bwd / opt | scoring GFLOP/s (of peak) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n",
    );
    for ((model, d, k, b), fused, burn, t) in &runs {
        let (f, bu) = (
            num(fused, "samples_per_second"),
            num(burn, "samples_per_second"),
        );
        let ratio = |x: f64| t.map_or("–".into(), |t| format!("{:.2}×", x / t));
        let pct = |key: &str| 100.0 * num(fused, key);
        md += &format!(
            "| {} | {D_IN} | {d} | {k} | {b} | {f:.0} | {bu:.0} | {} | {} | {} | {:.0} ({:.0}%) | {:.0}% / {:.0}% / {:.0}% | {:.0} ({:.0}%) |\n",
            if *model == "pal-a" { "PAL-A" } else { "PAL-B" },
            t.map_or("–".into(), |t| format!("{t:.0}")),
            ratio(f),
            ratio(bu),
            num(fused, "gflops"),
            100.0 * num(fused, "gflops") / peak,
            pct("forward") + pct("gather"),
            pct("backward") + pct("head"),
            pct("optimizer"),
            num(fused, "score_gflops"),
            100.0 * num(fused, "score_gflops") / peak,
        );
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
