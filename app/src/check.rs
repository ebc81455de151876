//! In-browser checks: `?selftest=1` compares the WGSL kernels (scores and top-k) with the
//! reference on random bundles of every form; `?bench=1` times the cold first ranking (f(x)
//! on WebGPU vs the CPU path) and the warm re-rank over cached f(x), for 10k and 100k items.
//! Results go to `#check` as text (read by the browser test and the README's benchmark).

use pal_infer::cpu::{CpuScorer, ItemFeatures};
use pal_infer::gpu::GpuScorer;
use pal_math::PalWeights;
use pal_math::config::{IdealPoint, ModelConfig};
use pal_math::reference::softmax;

fn random(n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| (js_sys::Math::random() * 3.0 - 1.5) as f32)
        .collect()
}

use crate::ranker::now_ms;

/// Max relative error of WGSL vs reference over random bundles (PAL-A f(Pw)/Pw, PAL-B).
pub async fn selftest() -> Result<String, String> {
    let mut configs = vec![];
    for (d_item, d_prompt, d, hidden, layers, k) in [
        (8, 4, 16, 16, 1, 3),
        (37, 19, 23, 29, 3, 4),
        (64, 48, 32, 40, 2, 1),
    ] {
        let mut b = ModelConfig::pal_b(d_item, d_prompt, d, k);
        (b.hidden, b.layers) = (hidden, layers);
        let mut a = ModelConfig::pal_a(d_item, d, k);
        (a.hidden, a.layers) = (hidden, layers);
        let mut p = a.clone();
        p.ideal_point = IdealPoint::Pw;
        configs.extend([b, a, p]);
    }
    let (mut worst, mut count, mut adapter) = (0.0f32, 0usize, String::new());
    for (i, cfg) in configs.iter().enumerate() {
        let weights = PalWeights::init(cfg, 1, i as u64);
        let gpu = GpuScorer::new(&weights).await.map_err(|e| e.to_string())?;
        adapter = gpu.adapter_name.clone();
        let n = 50;
        let items = random(n * cfg.d_item);
        let prompt = random(cfg.d_prompt);
        let w = softmax(&random(cfg.k));
        let got = gpu
            .scores(&w, &prompt, &items)
            .await
            .map_err(|e| e.to_string())?;
        let weights_copy = weights.clone();
        let want = CpuScorer::new(weights).scores(&w, &prompt, &items);
        for (g, r) in got.iter().zip(&want) {
            worst = worst.max((g - r).abs() / g.abs().max(r.abs()).max(1.0));
            count += 1;
        }
        // f(x) on WebGPU (what the ranker caches) against the reference item map.
        let feats = gpu.features(&items).await.map_err(|e| e.to_string())?;
        let reference = ItemFeatures::new(&weights_copy, &items);
        for (g, r) in feats.iter().zip(reference.features()) {
            worst = worst.max((g - r).abs() / g.abs().max(r.abs()).max(1.0));
            count += 1;
        }
        let top = gpu.top_k(&want, 10).await.map_err(|e| e.to_string())?;
        if top != pal_infer::top_k(&want, 10) {
            return Err(format!(
                "top-k kernel differs from the CPU top-k on bundle {i}"
            ));
        }
    }
    Ok(format!(
        "selftest: {count} scores and features, max relative error {worst:.2e}, top-k ok, adapter {adapter}"
    ))
}

/// Cold first ranking (f(x) of every item, then the top 10) on the CPU path and on WebGPU, and
/// the warm re-rank after an answer (new weights: the user's point and one pass over the cached
/// f(x)), for 10k and 100k items (PAL-B, D=384, d=128, K=4). Warm figures are the median of 7.
pub async fn bench() -> Result<String, String> {
    let cfg = ModelConfig::pal_b(384, 384, 128, 4);
    let weights = PalWeights::init(&cfg, 1, 0);
    let gpu = GpuScorer::new(&weights).await.map_err(|e| e.to_string())?;
    let prompt = random(384);
    let mut out = format!(
        "bench (PAL-B D=384 d=128 K=4, adapter {}):",
        gpu.adapter_name
    );
    let _ = gpu.features(&random(384)).await;
    for n in [10_000usize, 100_000] {
        let items = random(n * 384);
        let w0 = softmax(&random(4));
        let t = now_ms();
        let cached = ItemFeatures::new(&weights, &items);
        let _ = pal_infer::top_k(&cached.scores(&weights, &w0, &prompt, None), 10);
        let cold_cpu = now_ms() - t;
        let t = now_ms();
        let f = gpu.features(&items).await.map_err(|e| e.to_string())?;
        let on_gpu = ItemFeatures::from_features(&weights, f, &items);
        let _ = pal_infer::top_k(&on_gpu.scores(&weights, &w0, &prompt, None), 10);
        let cold_gpu = now_ms() - t;
        let mut warm: Vec<f64> = (0..7)
            .map(|_| {
                let w = softmax(&random(4));
                let t = now_ms();
                let _ = pal_infer::top_k(&cached.scores(&weights, &w, &prompt, None), 10);
                now_ms() - t
            })
            .collect();
        warm.sort_by(f64::total_cmp);
        out += &format!(
            " {n} items: cold cpu {cold_cpu:.0} ms, cold webgpu {cold_gpu:.0} ms, warm re-rank {:.1} ms;",
            warm[3]
        );
    }
    Ok(out)
}
