//! burn's wgpu backend trains the same model as the CPU (burn's autodiff and the fused engine):
//! the same synthetic data, seed and steps give the same losses and weights (feature `wgpu`;
//! needs a GPU or Mesa's lavapipe — `cargo xtask test` runs it where a Vulkan driver is
//! installed, CI included).
#![cfg(feature = "wgpu")]

use pal_core::config::ModelConfig;
use pal_core::device::ComputeDevice;
use pal_core::pipeline::fit;
use pal_core::synth::{self, SynthConfig};
use pal_core::train::Engine;
use pal_core::train::{Control, TrainConfig};
use pal_format::dataset::{Dataset, Split};
use pal_math::weights::named_tensors;

#[test]
fn wgpu_training_matches_cpu_training() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        users: 12,
        train_pairs: 30,
        val_pairs: 5,
        test_pairs: 5,
        unseen_users: 0,
        items: 60,
        ..SynthConfig::default()
    };
    synth::generate(&cfg)
        .unwrap()
        .write(dir.path(), &cfg)
        .unwrap();
    let data = Dataset::load(dir.path()).unwrap();
    let (train, val) = (
        data.read(Split::Train).unwrap(),
        data.read(Split::Val).unwrap(),
    );
    let model = ModelConfig::pal_b(data.items.dim(), data.prompt_dim(), 16, 3);
    let run = |device, engine| {
        let t = TrainConfig {
            epochs: 3,
            batch_size: 32,
            patience: None,
            device,
            engine,
            ..TrainConfig::default()
        };
        fit(&data, &model, &t, &train, Some(&val), None, &mut |_| {
            Control::Continue
        })
        .unwrap()
    };
    let (gpu, gpu_report) = run(ComputeDevice::Wgpu, Engine::Auto);
    // The same autodiff graph on the CPU, and the fused CPU engine.
    for engine in [Engine::Burn, Engine::Fused] {
        let (cpu, cpu_report) = run(ComputeDevice::Cpu, engine);
        for (c, g) in cpu_report.history.iter().zip(&gpu_report.history) {
            assert!(
                (c.train_loss - g.train_loss).abs() < 1e-4,
                "{engine} epoch {}: {} vs {}",
                c.epoch,
                c.train_loss,
                g.train_loss
            );
        }
        for ((name, _, c), (_, _, g)) in named_tensors(&cpu.weights)
            .iter()
            .zip(named_tensors(&gpu.weights))
        {
            let worst = c
                .iter()
                .zip(&g)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-3, "{engine} {name}: max difference {worst}");
        }
    }
}
