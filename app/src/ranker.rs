//! The app's ranker (browser only): f(x) of the gallery is computed once — on WebGPU or on the
//! CPU path, whichever a short warm-up measures faster in this browser (`?cpu=1` / `?gpu=1`
//! force one) — and every ranking after that is the user's point plus one pass over the cached
//! features (`pal_infer::cpu::ItemFeatures`, SIMD in wasm), so an answer re-ranks at once.

use pal_infer::cpu::ItemFeatures;
use pal_infer::gpu::GpuScorer;
use pal_math::{EmbeddingStore, PalWeights, UserPref};

/// Rows timed on each path before choosing.
const WARM_UP_ROWS: usize = 512;

/// Which path computes f(x).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Force {
    /// Measure both, take the faster.
    Auto,
    Cpu,
    Gpu,
}

pub struct Ranker {
    pub weights: PalWeights,
    features: ItemFeatures,
    /// What ran, in plain words, with the warm-up's figures.
    pub label: String,
    /// Milliseconds the cached f(x) took.
    pub features_ms: f64,
}

/// Milliseconds since the page started (sub-millisecond where the browser allows).
pub fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or_else(js_sys::Date::now, |p| p.now())
}

fn adapter_label(g: &GpuScorer) -> &'static str {
    if g.adapter_info.device_type == "Cpu" {
        "WebGPU (software adapter)"
    } else {
        "WebGPU"
    }
}

impl Ranker {
    /// Caches f(x) of every item of `items` on the path `force` names or the warm-up picks.
    pub async fn new(weights: PalWeights, items: &EmbeddingStore, force: Force) -> Self {
        let gpu = match force {
            Force::Cpu => None,
            _ => GpuScorer::new(&weights).await.ok(),
        };
        let d_item = weights.config.d_item;
        let sample = &items.data()[..items.len().min(WARM_UP_ROWS) * d_item];
        let (mut label, use_gpu) = match &gpu {
            None if force == Force::Gpu => ("CPU (wasm; no WebGPU adapter)".to_string(), false),
            None => ("CPU (wasm)".to_string(), false),
            Some(g) if force == Force::Gpu => (format!("{} (forced)", adapter_label(g)), true),
            Some(g) => {
                // The first pass compiles the pipelines: not timed.
                let _ = g.features(&sample[..d_item.min(sample.len())]).await;
                let t = now_ms();
                let ok = g.features(sample).await.is_ok();
                let gpu_ms = now_ms() - t;
                let t = now_ms();
                let _ = ItemFeatures::new(&weights, sample);
                let cpu_ms = now_ms() - t;
                let use_gpu = ok && gpu_ms < cpu_ms;
                let chosen = if use_gpu {
                    adapter_label(g)
                } else {
                    "CPU (wasm)"
                };
                (
                    format!(
                        "{chosen} (warm-up on {} items: CPU {cpu_ms:.1} ms, {} {gpu_ms:.1} ms)",
                        sample.len() / d_item.max(1),
                        adapter_label(g)
                    ),
                    use_gpu,
                )
            }
        };
        let t = now_ms();
        let features = match (&gpu, use_gpu) {
            (Some(g), true) => match g.features(items.data()).await {
                Ok(f) => ItemFeatures::from_features(&weights, f, items.data()),
                Err(e) => {
                    label = format!("CPU (wasm; WebGPU failed: {e})");
                    ItemFeatures::new(&weights, items.data())
                }
            },
            _ => ItemFeatures::new(&weights, items.data()),
        };
        Self {
            features_ms: now_ms() - t,
            weights,
            features,
            label,
        }
    }

    /// The top `k` items (row, score) for simplex weights `w` (and a residual δ on residual
    /// models) under a prompt embedding.
    pub fn rank(
        &self,
        w: &[f32],
        residual: Option<&[f32]>,
        prompt: &[f32],
        k: usize,
    ) -> Vec<(usize, f32)> {
        let user = UserPref {
            weights: w,
            residual,
        };
        let scores = self.features.scores(&self.weights, user, prompt, None);
        pal_infer::top_k(&scores, k)
    }
}
