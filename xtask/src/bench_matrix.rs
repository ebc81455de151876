//! `cargo xtask bench --matrix`: one PAL-B (and PAL-A) training step at the paper's shapes
//! (D = 1024, d = 512/1024, K = 1…4, batch 256…16384) on pal's fused engine (through the
//! `step_profile` example) in f32 on the kernels the CPU picks, in f32 on the AVX2 path that ran
//! before them, and in bf16; against the same step in PyTorch (`xtask/bench/torch_pal_b.py`) in
//! f32 and under bf16 autocast, in the same run. The CPU (model, flags) heads the table, with every
//! kernel path's 2048² product and PyTorch's (`pal-cpu`'s `gflops` example,
//! `xtask/bench/torch_matmul.py`); the peak is the best product of the run by any library.
//! Writes runs/bench/matrix.md.

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

/// One fused profile at `precision`, on `kernels` (`None`: the CPU's choice).
fn profile(
    bin: &Path,
    (model, d, k, b): Shape,
    precision: &str,
    kernels: Option<&str>,
) -> Result<Value> {
    let mut c = Command::new(bin);
    c.args([b, D_IN, d, k].map(|v| v.to_string())).args([
        "--json",
        "--engine",
        "fused",
        "--model",
        model,
        "--precision",
        precision,
    ]);
    if let Some(kernels) = kernels {
        c.env("PAL_CPU_KERNELS", kernels);
    }
    Ok(serde_json::from_str(output(c)?.trim())?)
}

type Shape = (&'static str, usize, usize, usize);

fn torch(
    root: &Path,
    (model, d, k, b): Shape,
    steps: usize,
    autocast: &str,
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
        "--autocast",
        autocast,
    ]);
    let t: Value = serde_json::from_str(output(c)?.trim())?;
    Ok(t["samples_per_second"].as_f64())
}

pub fn run_all(root: &Path) -> Result<()> {
    step(
        "building the step profiler and the product bench (pal-core step_profile, pal-cpu gflops)",
    );
    let mut c = cargo();
    c.args([
        "build",
        "--release",
        "-p",
        "pal-core",
        "--example",
        "step_profile",
        "-p",
        "pal-cpu",
        "--example",
        "gflops",
    ]);
    run(c)?;
    let dir = crate::cmd::target_dir().join("release/examples");
    let bin = dir.join("step_profile");
    let has_torch = Command::new("python3")
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success());
    let num = |v: &Value, key: &str| v[key].as_f64().unwrap_or(f64::NAN);

    step("2048² products: every kernel path of this CPU, and PyTorch's");
    let mut g = Command::new(dir.join("gflops"));
    g.arg("--json");
    let products: Value = serde_json::from_str(output(g)?.trim())?;
    let mut peaks: Vec<(String, &str, f64)> = products["products"]
        .as_array()
        .context("gflops products")?
        .iter()
        .map(|p| {
            let precision = if p["precision"] == "bf16" {
                "bf16"
            } else {
                "f32"
            };
            (
                format!("pal {}", p["kernel"].as_str().unwrap_or("?")),
                precision,
                num(p, "gflops"),
            )
        })
        .collect();
    let torch_version = if has_torch {
        let mut c = Command::new("python3");
        c.arg(root.join("xtask/bench/torch_matmul.py"));
        let t: Value = serde_json::from_str(output(c)?.trim())?;
        peaks.push(("PyTorch float32".into(), "f32", num(&t, "f32_gflops")));
        peaks.push(("PyTorch bfloat16".into(), "bf16", num(&t, "bf16_gflops")));
        t["torch"].as_str().unwrap_or("?").to_string()
    } else {
        "not installed".into()
    };

    let mut runs = vec![];
    for shape in SHAPES {
        let (model, d, k, b) = shape;
        step(&format!("{model} D={D_IN} d={d} K={k} batch={b}"));
        let fused = profile(&bin, shape, "f32", None)?;
        let kernels = fused["kernels"].as_str().unwrap_or("?").to_string();
        let avx2 = if kernels.starts_with("avx2") || kernels.starts_with("generic") {
            None
        } else {
            Some(profile(&bin, shape, "f32", Some("avx2"))?)
        };
        let bf16 = profile(&bin, shape, "bf16", None)?;
        let steps = fused["steps"].as_u64().context("steps")? as usize;
        let (t32, t16) = if has_torch {
            (
                torch(root, shape, steps.max(3), "none")?,
                torch(root, shape, steps.max(3), "bf16")?,
            )
        } else {
            (None, None)
        };
        println!(
            "  fused {kernels} {:.0}, avx2 {}, bf16 {:.0}, torch f32 {}, torch bf16 {} samples/s",
            num(&fused, "samples_per_second"),
            avx2.as_ref().map_or("–".into(), |a| format!(
                "{:.0}",
                num(a, "samples_per_second")
            )),
            num(&bf16, "samples_per_second"),
            t32.map_or("–".into(), |t| format!("{t:.0}")),
            t16.map_or("–".into(), |t| format!("{t:.0}")),
        );
        // burn's 2048² product (the profiler's own peak measure) joins the peaks.
        peaks.push((
            "burn (gemm crate)".into(),
            "f32",
            num(&fused, "peak_gflops"),
        ));
        runs.push((shape, kernels, fused, avx2, bf16, t32, t16));
    }
    let best = |precision: &str| {
        peaks
            .iter()
            .filter(|p| precision == "bf16" || p.1 == "f32")
            .fold(("none".to_string(), 0.0f64), |acc, p| {
                if p.2 > acc.1 { (p.0.clone(), p.2) } else { acc }
            })
    };
    let (f32_peak, bf16_peak) = (best("f32"), best("bf16"));
    let mut md = format!(
        "CPU: **{}**, {} threads; flags: {}; lacks: {}. PyTorch {torch_version}.\n\n",
        products["cpu"].as_str().unwrap_or("?"),
        products["threads"],
        join(&products["flags"]),
        join(&products["lacks"]),
    );
    md += "| 2048² product | precision | GFLOP/s |\n|---|---|---:|\n";
    let mut seen = std::collections::BTreeSet::new();
    for (name, precision, gflops) in &peaks {
        if seen.insert(name.clone()) {
            let best_of_name = peaks
                .iter()
                .filter(|p| &p.0 == name)
                .map(|p| p.2)
                .fold(*gflops, f64::max);
            md += &format!("| {name} | {precision} | {best_of_name:.0} |\n");
        }
    }
    md += &format!(
        "\nPeaks (best product of the run): f32 {:.0} GFLOP/s ({}), any precision {:.0} GFLOP/s ({}).\n\n",
        f32_peak.1, f32_peak.0, bf16_peak.1, bf16_peak.0
    );
    md += "| model | D | d | K | batch | fused f32 kernels | fused f32 samples/s | fused f32 on avx2 | fused bf16 | torch f32 | torch bf16 autocast | f32 / torch f32 | bf16 / torch f32 | bf16 / torch bf16 | f32 / avx2 path | fused f32 GFLOP/s (of f32 peak) | fused bf16 GFLOP/s (of peak) | scoring f32 GFLOP/s |\n\
           |---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for ((model, d, k, b), kernels, fused, avx2, bf16, t32, t16) in &runs {
        let f = num(fused, "samples_per_second");
        let h = num(bf16, "samples_per_second");
        let a = avx2.as_ref().map(|a| num(a, "samples_per_second"));
        let fmt = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
        let ratio = |x: f64, y: Option<f64>| y.map_or("–".into(), |y| format!("{:.2}×", x / y));
        md += &format!(
            "| {} | {D_IN} | {d} | {k} | {b} | {kernels} | {f:.0} | {} | {h:.0} | {} | {} | {} | {} | {} | {} | {:.0} ({:.0}%) | {:.0} ({:.0}%) | {:.0} |\n",
            if *model == "pal-a" { "PAL-A" } else { "PAL-B" },
            fmt(a),
            fmt(*t32),
            fmt(*t16),
            ratio(f, *t32),
            ratio(h, *t32),
            ratio(h, *t16),
            ratio(f, a),
            num(fused, "gflops"),
            100.0 * num(fused, "gflops") / f32_peak.1,
            num(bf16, "gflops"),
            100.0 * num(bf16, "gflops") / bf16_peak.1,
            num(fused, "score_gflops"),
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

fn join(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}
