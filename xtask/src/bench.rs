//! `cargo xtask bench`: PAL-B training on 100k synthetic comparisons (D = 384, d = 128, K = 4)
//! on the fused engine (f32 on the chosen CPU kernels, f32 on the AVX2 path, bf16) and burn,
//! against the same loop in PyTorch, f32 and bf16 autocast, when installed; the CPU is named first.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::cmd::{build_pal, output, pal, root, run, step};

pub fn bench(epochs: usize) -> Result<()> {
    let bin = build_pal()?;
    let out = root().join("runs/bench");
    let data = out.join("synth-100k");
    let d = data.to_str().context("utf-8 path")?;
    if !data.join("train.jsonl").exists() {
        step("generating 100k comparisons (D=384, d=128, K=4, 1000 users)");
        run(pal(
            &bin,
            &[
                "synth",
                "--out",
                d,
                "--variant",
                "b",
                "--d-item",
                "384",
                "--d-prompt",
                "384",
                "--d",
                "128",
                "--k",
                "4",
                "--users",
                "1000",
                "--train-pairs",
                "100",
                "--val-pairs",
                "5",
                "--test-pairs",
                "10",
                "--unseen-users",
                "0",
                "--items",
                "5000",
                "--prompts",
                "500",
            ],
        ))?;
    }
    let epochs_s = epochs.to_string();
    let info: serde_json::Value =
        serde_json::from_str(output(pal(&bin, &["bench", "info"]))?.trim())?;
    let chosen = info["kernels"].as_str().unwrap_or("?").to_string();
    println!(
        "CPU: {} ({} threads; flags {}; lacks {}); kernels: {chosen}",
        info["cpu"].as_str().unwrap_or("?"),
        info["cpu_threads"],
        info["cpu_flags"],
        info["cpu_lacks"],
    );
    // (label, engine, precision, PAL_CPU_KERNELS): the chosen kernels, the AVX2 path that ran
    // before them (same run, for "nothing got slower"), bf16, and burn.
    let mut runs = vec![("fused f32", "fused", "f32", None)];
    if chosen != "avx2" && chosen != "generic" {
        runs.push(("fused f32 (avx2)", "fused", "f32", Some("avx2")));
    }
    runs.push(("fused bf16", "fused", "bf16", None));
    runs.push(("burn", "burn", "f32", None));
    let mut rates = vec![];
    for (label, engine, precision, kernels) in runs {
        step(&format!(
            "training PAL-B for {epochs} epochs, batch 256, {label} (progress on stderr)"
        ));
        let model = out.join(format!("model-{}", label.replace([' ', '(', ')'], "")));
        let sps = bench_train(&bin, d, &model, &epochs_s, engine, precision, kernels)?;
        rates.push((label, sps));
    }
    let has_torch = Command::new("python3")
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_torch {
        println!("PyTorch is not installed (pip install torch): no same-run ratio");
        return Ok(());
    }
    let mut torch = vec![];
    for autocast in ["none", "bf16"] {
        step(&format!(
            "same shapes in a plain PyTorch CPU loop (xtask/bench/torch_pal_b.py, autocast {autocast})"
        ));
        let mut c = Command::new("python3");
        c.arg(root().join("xtask/bench/torch_pal_b.py")).args([
            "--epochs",
            &epochs_s,
            "--autocast",
            autocast,
        ]);
        let t: serde_json::Value = serde_json::from_str(output(c)?.trim())?;
        let tsps = t["samples_per_second"].as_f64().unwrap_or(f64::NAN);
        println!(
            "torch {} ({} threads, autocast {autocast}): {tsps:.0} samples/s",
            t["torch"].as_str().unwrap_or("?"),
            t["threads"],
        );
        torch.push((autocast, tsps));
    }
    for (label, sps) in &rates {
        let ratios: Vec<String> = torch
            .iter()
            .map(|(autocast, t)| {
                format!(
                    "{:.2}× torch {}",
                    sps / t,
                    if *autocast == "none" {
                        "f32"
                    } else {
                        "bf16 autocast"
                    }
                )
            })
            .collect();
        println!("pal {label}: {sps:.0} samples/s = {}", ratios.join(", "));
    }
    Ok(())
}

/// Trains on the bench dataset with one engine; returns samples/s.
fn bench_train(
    bin: &Path,
    d: &str,
    model: &Path,
    epochs: &str,
    engine: &str,
    precision: &str,
    kernels: Option<&str>,
) -> Result<f64> {
    let t0 = Instant::now();
    let mut c = pal(
        bin,
        &[
            "train",
            "--data",
            d,
            "--out",
            model.to_str().context("utf-8 path")?,
            "--variant",
            "b",
            "--d",
            "128",
            "--k",
            "4",
            "--epochs",
            epochs,
            "--batch-size",
            "256",
            "--patience",
            "0",
            "--engine",
            engine,
            "--precision",
            precision,
            "--json",
        ],
    );
    if let Some(k) = kernels {
        c.env("PAL_CPU_KERNELS", k);
    }
    let json = output(c)?;
    let wall = t0.elapsed().as_secs_f64();
    let v: serde_json::Value = serde_json::from_str(&json)?;
    let sps = v["report"]["samples_per_second"]
        .as_f64()
        .unwrap_or(f64::NAN);
    let secs = v["report"]["seconds"].as_f64().unwrap_or(f64::NAN);
    println!(
        "pal ({engine}, {precision}{}): 100k comparisons × {epochs} epochs in {secs:.1}s ({wall:.1}s with loading), {sps:.0} samples/s",
        kernels.map_or(String::new(), |k| format!(", PAL_CPU_KERNELS={k}"))
    );
    Ok(sps)
}
