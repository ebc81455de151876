//! `pal bench`: throughput on this machine as JSON lines (the GPU kit's measurements, see
//! docs/gpu.md). `info` names the CPU and the GPU adapter; `train` runs training steps of a
//! model on synthetic embeddings with an engine on a device; `score` ranks random items with the
//! WGSL kernels and with the CPU reference. Every line carries the process's peak RSS.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use pal_core::config::ModelConfig;
use pal_core::device::ComputeDevice;
use pal_core::train::{Control, Engine, Tables, TrainConfig, Trainer};
use pal_core::{Dataset, EmbeddingStore, Encoded, PalWeights, Precision};
use pal_cpu::{Path, Products};
use pal_infer::cpu::{CpuScorer, ItemFeatures};
use pal_infer::gpu::GpuScorer;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::values::VariantArg;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub kind: BenchKind,
}

#[derive(Subcommand, Debug)]
pub enum BenchKind {
    /// The CPU (model, cores) and the GPU adapter wgpu opens (name, backend, driver).
    Info,
    /// Training samples/s of one shape with one engine on one device (synthetic embeddings).
    Train(TrainBench),
    /// Ranking throughput: WGSL kernels (first call, steady) vs the CPU reference (f(x) each
    /// time, and re-ranking with cached f(x)).
    Score(ScoreBench),
}

#[derive(Args, Debug)]
pub struct TrainBench {
    #[arg(long, value_enum, default_value = "b")]
    pub variant: VariantArg,
    /// Item (and prompt) embedding dimension D.
    #[arg(long, default_value_t = 1024)]
    pub d_item: usize,
    #[arg(long, default_value_t = 512)]
    pub d: usize,
    #[arg(long, default_value_t = 2)]
    pub k: usize,
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// cpu, wgpu (build with `--features wgpu`) or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: ComputeDevice,
    /// auto, burn or fused.
    #[arg(long, default_value = "auto")]
    pub engine: Engine,
    /// Seconds of timed steps (after a warm-up and a 3-step probe); 3 to 5000 steps run.
    #[arg(long, default_value_t = 4.0)]
    pub seconds: f64,
    /// f32 or bf16 products (bf16: fused engine only).
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
}

#[derive(Args, Debug)]
pub struct ScoreBench {
    /// Items ranked by the kernels.
    #[arg(long, default_value_t = 100_000)]
    pub items: usize,
    /// At most this many items are scored by the CPU reference (it is single-threaded).
    #[arg(long, default_value_t = 20_000)]
    pub cpu_items: usize,
    #[arg(long, default_value_t = 384)]
    pub d_item: usize,
    #[arg(long, default_value_t = 128)]
    pub d: usize,
    #[arg(long, default_value_t = 4)]
    pub k: usize,
    /// Precision of the batched f(x) products behind the cached CPU ranking: f32 or bf16.
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`), if known.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn random(n: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn store(prefix: &str, n: usize, dim: usize, rng: &mut impl Rng) -> Result<EmbeddingStore> {
    let ids = (0..n).map(|i| format!("{prefix}{i}")).collect();
    Ok(EmbeddingStore::new(ids, dim, random(n * dim, rng))?)
}

pub fn bench_cmd(a: &BenchArgs) -> Result<()> {
    let line = match &a.kind {
        BenchKind::Info => info()?,
        BenchKind::Train(t) => train(t)?,
        BenchKind::Score(s) => score(s)?,
    };
    println!("{line}");
    Ok(())
}

fn info() -> Result<serde_json::Value> {
    let cpu = pal_cpu::cpu();
    let cfg = ModelConfig::pal_b(8, 8, 8, 2);
    let gpu = pollster::block_on(GpuScorer::new(&PalWeights::init(&cfg, 1, 0)));
    let adapter = match gpu {
        Ok(g) => {
            let i = g.adapter_info;
            json!({"name": i.name, "backend": i.backend, "device_type": i.device_type,
                   "driver": i.driver, "driver_info": i.driver_info})
        }
        Err(e) => json!({"error": e.to_string()}),
    };
    Ok(json!({
        "kind": "info",
        "cpu": cpu.model,
        "cpu_threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu_flags": cpu.flags,
        "cpu_lacks": cpu.missing(),
        "kernels": pal_cpu::chosen()?.name(),
        "kernel_paths": Path::ALL.iter().map(|p| json!({
            "path": p.name(),
            "runs": p.check().is_ok(),
            "why_not": p.check().err().map(|e| e.to_string()),
            "bf16": if p.native_bf16() { "vdpbf16ps" } else { "inputs rounded, f32 kernels" },
        })).collect::<Vec<_>>(),
        "adapter": adapter,
        "pal": env!("CARGO_PKG_VERSION"),
        "wgpu_training": cfg!(feature = "wgpu"),
        "peak_rss_mib": peak_rss_mib(),
    }))
}

/// One epoch over `steps` random batches; its samples/s as the trainer measured them.
fn train_run(
    t: &TrainBench,
    cfg: &ModelConfig,
    tables: &Tables,
    users: usize,
    steps: usize,
    rng: &mut impl Rng,
) -> Result<(f64, f64)> {
    let n = t.batch * steps;
    let pick = |m: usize, rng: &mut dyn rand::RngCore| {
        (0..n)
            .map(|_| rng.random_range(0..m as u32))
            .collect::<Vec<_>>()
    };
    let enc = Encoded {
        users: pick(users, rng),
        prompts: pick(64, rng),
        left: pick(4096, rng),
        right: pick(4096, rng),
        labels: (0..n).map(|_| rng.random_range(0..2u8)).collect(),
    };
    let tc = TrainConfig {
        epochs: 1,
        batch_size: t.batch,
        patience: None,
        device: t.device,
        engine: t.engine,
        precision: t.precision,
        ..TrainConfig::default()
    };
    let trainer = Trainer {
        config: &tc,
        tables,
        train: &enc,
        val: None,
        checkpoint_dir: None,
    };
    let started = Instant::now();
    let (_, report) = trainer.run(PalWeights::init(cfg, users, 0), &mut |_| Control::Continue)?;
    Ok((report.samples_per_second, started.elapsed().as_secs_f64()))
}

fn train(t: &TrainBench) -> Result<serde_json::Value> {
    let cfg = match t.variant {
        VariantArg::A => ModelConfig::pal_a(t.d_item, t.d, t.k),
        VariantArg::B => ModelConfig::pal_b(t.d_item, t.d_item, t.d, t.k),
    };
    cfg.validate()?;
    if t.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let fused = t.engine.is_fused(t.device, &cfg)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let data = Dataset {
        dir: PathBuf::new(),
        items: store("i", 4096, t.d_item, &mut rng)?,
        prompts: Some(store("p", 64, t.d_item, &mut rng)?),
    };
    let tables = Tables::new(&data, &t.device.burn()?);
    let users = 1000;
    // Warm-up (kernel compilation, allocation), a 3-step run to time a step, then a run sized
    // to the time budget.
    train_run(t, &cfg, &tables, users, 2, &mut rng)?;
    let (_, probe_secs) = train_run(t, &cfg, &tables, users, 3, &mut rng)?;
    let per_step = (probe_secs / 3.0).max(1e-5);
    let steps = ((t.seconds / per_step) as usize).clamp(3, 5000);
    let (samples_per_second, seconds) = train_run(t, &cfg, &tables, users, steps, &mut rng)?;
    Ok(json!({
        "kind": "train",
        "variant": format!("{:?}", cfg.variant),
        "d_item": t.d_item, "d": t.d, "k": t.k, "batch": t.batch,
        "device": t.device.to_string(),
        "engine": if fused { "fused" } else { "burn" },
        "kernels": if fused { format!("{} {}", pal_cpu::chosen()?, t.precision) } else { "burn".into() },
        "steps": steps,
        "seconds": seconds,
        "samples_per_second": samples_per_second,
        "peak_rss_mib": peak_rss_mib(),
    }))
}

fn score(s: &ScoreBench) -> Result<serde_json::Value> {
    let cfg = ModelConfig::pal_b(s.d_item, s.d_item, s.d, s.k);
    cfg.validate()?;
    let weights = PalWeights::init(&cfg, 1, 0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let items = random(s.items * s.d_item, &mut rng);
    let prompt = random(s.d_item, &mut rng);
    let w = vec![1.0 / s.k as f32; s.k];
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;

    let t = Instant::now();
    let gpu = pollster::block_on(GpuScorer::new(&weights)).context("opening a GPU adapter")?;
    let open_ms = ms(t);
    let rank = |gpu: &GpuScorer| -> Result<f64> {
        let t = Instant::now();
        let scores = pollster::block_on(gpu.scores(&w, &prompt, &items))?;
        pollster::block_on(gpu.top_k(&scores, 10))?;
        Ok(ms(t))
    };
    let gpu_first_ms = rank(&gpu)?;
    let gpu_steady_ms = rank(&gpu)?.min(rank(&gpu)?);

    let n_cpu = s.items.min(s.cpu_items).max(1);
    let cpu_items = &items[..n_cpu * s.d_item];
    let cpu = CpuScorer::new(weights.clone());
    let t = Instant::now();
    pal_infer::top_k(&cpu.scores(&w, &prompt, cpu_items), 10);
    let cpu_ms = ms(t);
    let features = ItemFeatures::new(&weights, cpu_items);
    let t = Instant::now();
    pal_infer::top_k(&features.scores(&weights, &w, &prompt, None), 10);
    let cpu_cached_ms = ms(t);
    // f(x) of every item as batched products on the CPU kernels, then one ranking.
    let products = Products::new(s.precision)?;
    let t = Instant::now();
    let batched = ItemFeatures::with_products(&weights, &items, products);
    pal_infer::top_k(&batched.scores(&weights, &w, &prompt, None), 10);
    let cpu_batched_ms = ms(t);
    let per_s = |n: usize, ms: f64| n as f64 / (ms / 1e3);
    Ok(json!({
        "kind": "score",
        "adapter": gpu.adapter_name,
        "d_item": s.d_item, "d": s.d, "k": s.k,
        "items": s.items,
        "gpu_open_ms": open_ms,
        "gpu_first_ms": gpu_first_ms,
        "gpu_steady_ms": gpu_steady_ms,
        "gpu_items_per_second": per_s(s.items, gpu_steady_ms),
        "cpu_items": n_cpu,
        "cpu_ms": cpu_ms,
        "cpu_items_per_second": per_s(n_cpu, cpu_ms),
        "cpu_cached_rerank_ms": cpu_cached_ms,
        "cpu_cached_items_per_second": per_s(n_cpu, cpu_cached_ms),
        "cpu_batched_kernels": products.describe(),
        "cpu_batched_ms": cpu_batched_ms,
        "cpu_batched_items_per_second": per_s(s.items, cpu_batched_ms),
        "gpu_vs_cpu": per_s(s.items, gpu_steady_ms) / per_s(n_cpu, cpu_ms),
        "peak_rss_mib": peak_rss_mib(),
    }))
}
