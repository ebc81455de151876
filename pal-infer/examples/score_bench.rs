//! Times scoring N items with the GPU kernels and with the CPU reference on the same bundle.
//! `cargo run --release -p pal-infer --example score_bench -- [N…]` (default 10000 100000).

use std::time::Instant;

use pal_infer::cpu::CpuScorer;
use pal_infer::gpu::GpuScorer;
use pal_math::PalWeights;
use pal_math::config::ModelConfig;

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000]
    } else {
        sizes
    };
    let dim: usize = std::env::var("PAL_D")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(384);
    let cfg = ModelConfig::pal_b(dim, dim, 128, 4);
    let weights = PalWeights::init(&cfg, 1, 0);
    let cpu = CpuScorer::new(weights.clone());
    let gpu = pollster::block_on(GpuScorer::new(&weights)).ok();
    let adapter = gpu
        .as_ref()
        .map_or("none".to_string(), |g| g.adapter_name.clone());
    println!("PAL-B D={dim} d=128 K=4, 3-layer maps; GPU adapter: {adapter}");
    let w = [0.1, 0.2, 0.3, 0.4];
    let prompt = vec![0.01f32; dim];
    for n in sizes {
        let items: Vec<f32> = (0..n * dim)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let t = Instant::now();
        let c = cpu.scores(&w, &prompt, &items);
        let cpu_s = t.elapsed().as_secs_f64();
        let gpu_s = gpu.as_ref().map(|g| {
            let _ = pollster::block_on(g.scores(&w, &prompt, &items[..dim])); // warm-up
            let t = Instant::now();
            let s = pollster::block_on(g.scores(&w, &prompt, &items)).expect("gpu scores");
            let secs = t.elapsed().as_secs_f64();
            let worst = s
                .iter()
                .zip(&c)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            (secs, worst)
        });
        match gpu_s {
            Some((g, worst)) => println!(
                "{n:>7} items: cpu {:.3}s ({:.0} items/s), gpu {:.3}s ({:.0} items/s), gpu/cpu speed {:.2}×, max |Δ| {worst:.2e}",
                cpu_s,
                n as f64 / cpu_s,
                g,
                n as f64 / g,
                cpu_s / g
            ),
            None => println!(
                "{n:>7} items: cpu {:.3}s ({:.0} items/s), no GPU",
                cpu_s,
                n as f64 / cpu_s
            ),
        }
    }
}
