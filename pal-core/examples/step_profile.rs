//! Where a training step's time goes: batch gather, forward, backward, optimizer updates.
//! `cargo run --release -p pal-core --example step_profile -- [batch] [d_in] [d] [k] [--json]`
//! (default 256 384 128 4, the `cargo xtask bench` shape). Runs 2 warm-up steps, then steps until
//! 3 s have passed (at least 3, at most 60). `--json` prints one JSON line instead of the table.

use std::time::{Duration, Instant};

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use pal_core::config::ModelConfig;
use pal_core::model::{Batch, Group, PalModel};
use pal_core::reference::PalWeights;
use rand::{Rng, SeedableRng};

fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let (b, d_in, d, k) = (
        *a.first().unwrap_or(&256),
        *a.get(1).unwrap_or(&384),
        *a.get(2).unwrap_or(&128),
        *a.get(3).unwrap_or(&4),
    );
    let cfg = ModelConfig::pal_b(d_in, d_in, d, k);
    let users = 1000;
    let device = Device::flex().autodiff();
    let mut model = PalModel::from_weights(&PalWeights::init(&cfg, users, 0), &device);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let n_items = 5000;
    let items: Vec<f32> = (0..n_items * d_in)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let items = Tensor::<2>::from_data(TensorData::new(items, [n_items, d_in]), &device);
    let groups = [Group::ItemMap, Group::Head, Group::Users, Group::Scale];
    let mut opts: Vec<_> = groups
        .iter()
        .map(|g| (model.group_ids(*g), AdamWConfig::new().init()))
        .collect();
    let ints =
        |v: Vec<i64>| Tensor::<1, Int>::from_data(TensorData::new(v.clone(), [v.len()]), &device);
    let (mut t_batch, mut t_fwd, mut t_bwd, mut t_opt) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    let json = std::env::args().any(|a| a == "--json");
    let mut steps = 0usize;
    let started = Instant::now();
    for step in 0.. {
        if step >= 2 && steps >= 3 && (steps >= 60 || started.elapsed() > Duration::from_secs(5)) {
            break;
        }
        let t0 = Instant::now();
        let pick = |rng: &mut rand::rngs::StdRng, n: usize| {
            (0..b)
                .map(|_| rng.random_range(0..n) as i64)
                .collect::<Vec<_>>()
        };
        let batch = Batch {
            users: ints(pick(&mut rng, users)),
            prompts: Some(items.clone().select(0, ints(pick(&mut rng, n_items)))),
            left: items.clone().select(0, ints(pick(&mut rng, n_items))),
            right: items.clone().select(0, ints(pick(&mut rng, n_items))),
            labels: Tensor::from_data(TensorData::new(vec![1.0f32; b], [b]), &device),
        };
        let t1 = Instant::now();
        let loss = model.loss(&batch);
        let _ = loss.clone().into_scalar::<f32>();
        let t2 = Instant::now();
        let mut grads = loss.backward();
        let t3 = Instant::now();
        for (ids, opt) in &mut opts {
            let gp = GradientsParams::from_params(&mut grads, &model, ids);
            model = opt.step(1e-3, model, gp);
        }
        let _ = model.clone().valid();
        let t4 = Instant::now();
        if step >= 2 {
            steps += 1;
            t_batch += t1 - t0;
            t_fwd += t2 - t1;
            t_bwd += t3 - t2;
            t_opt += t4 - t3;
        }
    }
    let total = t_batch + t_fwd + t_bwd + t_opt;
    // The machine's matmul peak as burn reaches it: a large square product, no autodiff.
    let plain = Device::flex();
    let n = 2048;
    let m = Tensor::<2>::from_data(TensorData::new(vec![0.5f32; n * n], [n, n]), &plain);
    let _ = m.clone().matmul(m.clone()).into_data();
    let t = Instant::now();
    for _ in 0..3 {
        let _ = m.clone().matmul(m.clone()).into_data();
    }
    let peak = 3.0 * 2.0 * (n * n * n) as f64 / t.elapsed().as_secs_f64() / 1e9;
    let ms = |t: Duration| t.as_secs_f64() * 1e3 / steps as f64;
    // Multiply-adds of one step's forward: f on 2B rows, K prompt maps on B rows (3 layers each).
    let mlp = (d_in * d + 2 * d * d) as f64;
    let fwd_flop = 2.0 * mlp * (2 * b + k * b) as f64;
    let step_s = total.as_secs_f64() / steps as f64;
    if json {
        let frac = |t: Duration| t.as_secs_f64() / total.as_secs_f64();
        println!(
            "{{\"batch\":{b},\"d_in\":{d_in},\"d\":{d},\"k\":{k},\"steps\":{steps},\"ms_per_step\":{:.3},\"samples_per_second\":{:.1},\"gflops\":{:.2},\"peak_gflops\":{peak:.1},\"forward\":{:.3},\"backward\":{:.3},\"optimizer\":{:.3}}}",
            step_s * 1e3,
            b as f64 / step_s,
            3.0 * fwd_flop / 1e9 / step_s,
            frac(t_fwd),
            frac(t_bwd),
            frac(t_opt)
        );
        return;
    }
    println!(
        "batch {b}, D {d_in}, d {d}, K {k}: {:.2} ms/step, {:.0} samples/s",
        ms(total),
        b as f64 / (total.as_secs_f64() / steps as f64)
    );
    for (name, t) in [
        ("gather", t_batch),
        ("forward", t_fwd),
        ("backward", t_bwd),
        ("optimizer", t_opt),
    ] {
        println!(
            "  {name:<9} {:>7.2} ms  {:>5.1}%",
            ms(t),
            100.0 * t.as_secs_f64() / total.as_secs_f64()
        );
    }
    println!(
        "  forward matmul work {:.2} GFLOP/step → {:.1} GFLOP/s in forward; ~3× that per step → {:.1} GFLOP/s overall ({:.0}% of the {peak:.0} GFLOP/s 2048² matmul peak)",
        fwd_flop / 1e9,
        fwd_flop / 1e9 / (t_fwd.as_secs_f64() / steps as f64),
        3.0 * fwd_flop / 1e9 / (total.as_secs_f64() / steps as f64),
        100.0 * 3.0 * fwd_flop / 1e9 / (total.as_secs_f64() / steps as f64) / peak
    );
}
