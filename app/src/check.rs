//! In-browser checks: `?selftest=1` compares the WGSL kernels (scores and top-k) with the
//! reference on random bundles of every form; `?bench=1` times scoring 10k and 100k items on WebGPU vs the CPU path.
//! Results go to `#check` as text (read by the browser test and the README's benchmark).

use pal_infer::cpu::CpuScorer;
use pal_infer::gpu::GpuScorer;
use pal_math::PalWeights;
use pal_math::config::{IdealPoint, ModelConfig};
use pal_math::reference::softmax;

fn random(n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| (js_sys::Math::random() * 3.0 - 1.5) as f32)
        .collect()
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

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
        let want = CpuScorer::new(weights).scores(&w, &prompt, &items);
        for (g, r) in got.iter().zip(&want) {
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
        "selftest: {count} scores, max relative error {worst:.2e}, top-k ok, adapter {adapter}"
    ))
}

/// Time to score and rank 10k and 100k items, WebGPU vs CPU (PAL-B, D=384, d=128, K=4).
pub async fn bench() -> Result<String, String> {
    let cfg = ModelConfig::pal_b(384, 384, 128, 4);
    let weights = PalWeights::init(&cfg, 1, 0);
    let gpu = GpuScorer::new(&weights).await.map_err(|e| e.to_string())?;
    let cpu = CpuScorer::new(weights);
    let w = [0.1, 0.2, 0.3, 0.4];
    let prompt = random(384);
    let mut out = format!(
        "bench (PAL-B D=384 d=128 K=4, adapter {}):",
        gpu.adapter_name
    );
    let _ = gpu.scores(&w, &prompt, &random(384)).await;
    for n in [10_000usize, 100_000] {
        let items = random(n * 384);
        let t = now_ms();
        let s = gpu
            .scores(&w, &prompt, &items)
            .await
            .map_err(|e| e.to_string())?;
        let _ = gpu.top_k(&s, 10).await.map_err(|e| e.to_string())?;
        let g = now_ms() - t;
        let t = now_ms();
        let s = cpu.scores(&w, &prompt, &items);
        let _ = pal_infer::top_k(&s, 10);
        let c = now_ms() - t;
        out += &format!(" {n} items: webgpu {g:.0} ms, cpu {c:.0} ms;");
    }
    Ok(out)
}
