//! `cargo xtask bench --matrix`: one PAL-B training step at the paper's shapes (D = 1024,
//! d = 512/1024, K = 1…4, batch 256…16384), pal (burn flex, `step_profile` example) against the
//! same step in PyTorch (`xtask/bench/torch_pal_b.py`) in the same run, with GFLOP/s against the
//! machine's matmul peak and pal's forward/backward/optimizer split. Writes runs/bench/matrix.md.

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
        "| D | d | K | batch | pal samples/s | torch samples/s | pal/torch | pal GFLOP/s | of matmul peak | fwd / bwd / opt |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for (d, k, b) in SHAPES {
        step(&format!("D={D_IN} d={d} K={k} batch={b}"));
        let mut c = Command::new(&bin);
        c.args([b, D_IN, d, k].map(|v| v.to_string())).arg("--json");
        let p: Value = serde_json::from_str(output(c)?.trim())?;
        let pal = p["samples_per_second"]
            .as_f64()
            .context("samples_per_second")?;
        let torch = if has_torch {
            let steps = p["steps"].as_u64().unwrap_or(3) as usize;
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
            t["samples_per_second"].as_f64()
        } else {
            None
        };
        let pct = |key: &str| 100.0 * p[key].as_f64().unwrap_or(f64::NAN);
        let gflops = p["gflops"].as_f64().unwrap_or(f64::NAN);
        let peak = p["peak_gflops"].as_f64().unwrap_or(f64::NAN);
        let row = format!(
            "| {D_IN} | {d} | {k} | {b} | {pal:.0} | {} | {} | {gflops:.0} | {:.0}% of {peak:.0} | {:.0}% / {:.0}% / {:.0}% |\n",
            torch.map_or("–".into(), |t| format!("{t:.0}")),
            torch.map_or("–".into(), |t| format!("{:.2}×", pal / t)),
            100.0 * gflops / peak,
            pct("forward"),
            pct("backward"),
            pct("optimizer"),
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
