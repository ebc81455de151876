//! Where a training step's time goes: batch gather, forward, backward, optimizer updates.
//! `cargo run --release -p pal-core --example step_profile -- [batch] [d_in] [d] [k] [--json]
//! [--engine burn|fused] [--model pal-a] [--precision f32|bf16]` (default 256 384 128 4, burn,
//! PAL-B, f32: the `cargo xtask bench` shape; bf16 is fused only, on the kernel path
//! `PAL_CPU_KERNELS` or the CPU picks). Runs 2
//! warm-up steps, then steps until 5 s have passed (at least 3, at most 60). The fused engine also
//! measures scoring (forward only). `--json` prints one JSON line instead of the table.

use std::time::{Duration, Instant};

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use pal_core::Precision;
use pal_core::config::{IdealPoint, ModelConfig, Variant};
use pal_core::fused::{FusedTrainer, HostTables, Rows};
use pal_core::model::{Batch, Group, PalModel};
use pal_core::reference::PalWeights;
use pal_format::dataset::Encoded;
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
    let cfg = if std::env::args().any(|a| a == "pal-a") {
        ModelConfig::pal_a(d_in, d, k)
    } else {
        ModelConfig::pal_b(d_in, d_in, d, k)
    };
    let users = 1000;
    let json = std::env::args().any(|a| a == "--json");
    let args: Vec<String> = std::env::args().collect();
    let precision = args
        .iter()
        .position(|a| a == "--precision")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(Precision::F32), |v| v.parse())
        .unwrap_or_else(|e| panic!("{e}"));
    if std::env::args().any(|a| a == "fused") {
        return fused(&cfg, b, users, json, precision);
    }
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
    let peak = matmul_peak();
    let ms = |t: Duration| t.as_secs_f64() * 1e3 / steps as f64;
    let fwd_flop = forward_flop(&cfg, b);
    let work = step_flop(&cfg, b);
    let step_s = total.as_secs_f64() / steps as f64;
    if json {
        let frac = |t: Duration| t.as_secs_f64() / total.as_secs_f64();
        println!(
            "{{\"batch\":{b},\"d_in\":{d_in},\"d\":{d},\"k\":{k},\"steps\":{steps},\"ms_per_step\":{:.3},\"samples_per_second\":{:.1},\"gflops\":{:.2},\"peak_gflops\":{peak:.1},\"forward\":{:.3},\"backward\":{:.3},\"optimizer\":{:.3}}}",
            step_s * 1e3,
            b as f64 / step_s,
            work / 1e9 / step_s,
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
        "  forward matmul work {:.2} GFLOP/step → {:.1} GFLOP/s in forward; with the backward pass → {:.1} GFLOP/s overall ({:.0}% of the {peak:.0} GFLOP/s 2048² matmul peak)",
        fwd_flop / 1e9,
        fwd_flop / 1e9 / (t_fwd.as_secs_f64() / steps as f64),
        work / 1e9 / (total.as_secs_f64() / steps as f64),
        100.0 * work / 1e9 / (total.as_secs_f64() / steps as f64) / peak
    );
}

/// The machine's matmul peak in GFLOP/s as burn (gemm) reaches it: the best of five 2048²
/// products, no autodiff.
fn matmul_peak() -> f64 {
    let plain = Device::flex();
    let n = 2048;
    let m = Tensor::<2>::from_data(TensorData::new(vec![0.5f32; n * n], [n, n]), &plain);
    let _ = m.clone().matmul(m.clone()).into_data();
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            let _ = m.clone().matmul(m.clone()).into_data();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    2.0 * (n * n * n) as f64 / best / 1e9
}

/// Rows through the item map (2B items, plus B ideal points for PAL-A `f(Pw)`) and through
/// each of the K prompt maps (PAL-B: B).
fn map_rows(cfg: &ModelConfig, b: usize) -> (usize, usize) {
    match (cfg.variant, cfg.ideal_point) {
        (Variant::B, _) => (2 * b, cfg.k * b),
        (Variant::A, IdealPoint::FPw) => (3 * b, 0),
        (Variant::A, IdealPoint::Pw) => (2 * b, 0),
    }
}

/// Floating-point operations of one forward pass over `b` comparisons, two per multiply-add.
fn forward_flop(cfg: &ModelConfig, b: usize) -> f64 {
    let macs = |d_in: usize| -> usize { cfg.widths(d_in).windows(2).map(|w| w[0] * w[1]).sum() };
    let (item_rows, prompt_rows) = map_rows(cfg, b);
    2.0 * (macs(cfg.d_item) * item_rows + macs(cfg.d_prompt) * prompt_rows) as f64
}

/// Floating-point operations of one training step: the forward pass, every weight gradient
/// (as much again) and every input gradient except the first layer's on frozen embeddings
/// (PAL-A's ideal points do need theirs). The same work in every engine, PyTorch included.
fn step_flop(cfg: &ModelConfig, b: usize) -> f64 {
    let out = if cfg.layers == 1 { cfg.d } else { cfg.hidden };
    let (_, prompt_rows) = map_rows(cfg, b);
    let first = 2.0 * (cfg.d_item * out * 2 * b + cfg.d_prompt * out * prompt_rows) as f64;
    3.0 * forward_flop(cfg, b) - first
}

/// The fused engine: whole steps (its own split), then scoring throughput.
fn fused(cfg: &ModelConfig, b: usize, users: usize, json: bool, precision: Precision) {
    let d_in = cfg.d_item;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let n_items = 5000;
    let items: Vec<f32> = (0..n_items * d_in)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let tables = HostTables {
        items: Rows {
            data: &items,
            dim: d_in,
        },
        prompts: Rows {
            data: &items,
            dim: d_in,
        },
    };
    let groups: Vec<_> = [Group::ItemMap, Group::Head, Group::Users, Group::Scale]
        .iter()
        .map(|&g| (g, 1e-3, 1e-4))
        .collect();
    let mut f = FusedTrainer::new(&PalWeights::init(cfg, users, 0), &groups, precision)
        .unwrap_or_else(|e| panic!("{e}"));
    let kernels = f.products().describe();
    let batch = |rng: &mut rand::rngs::StdRng| random_comparisons(rng, b, users, n_items);
    let idx: Vec<usize> = (0..b).collect();
    for _ in 0..2 {
        let enc = batch(&mut rng);
        f.step(tables, &enc, &idx).expect("valid batch");
    }
    let before = f.profile();
    let started = Instant::now();
    let mut steps = 0usize;
    while steps < 3 || (steps < 60 && started.elapsed() < Duration::from_secs(5)) {
        let enc = batch(&mut rng);
        f.step(tables, &enc, &idx).expect("valid batch");
        steps += 1;
    }
    let step_s = started.elapsed().as_secs_f64() / steps as f64;
    let p = f.profile();
    let part = |now: Duration, then: Duration| (now - then).as_secs_f64() / steps as f64 / step_s;
    // Scoring: forward passes only, over 4096 comparisons at a time.
    let score_n = 4096;
    let mut r = rand::rngs::StdRng::seed_from_u64(1);
    let enc = random_comparisons(&mut r, score_n, users, n_items);
    let all: Vec<usize> = (0..score_n).collect();
    f.logits(tables, &enc, &all).expect("valid batch");
    let t = Instant::now();
    let mut scored = 0;
    while scored < 3 || (scored < 30 && t.elapsed() < Duration::from_secs(2)) {
        f.logits(tables, &enc, &all).expect("valid batch");
        scored += 1;
    }
    let score_s = t.elapsed().as_secs_f64() / scored as f64;
    let peak = matmul_peak();
    let gflops = step_flop(cfg, b) / 1e9 / step_s;
    let score_gflops = forward_flop(cfg, score_n) / 1e9 / score_s;
    let (k, d) = (cfg.k, cfg.d);
    if json {
        println!(
            "{{\"engine\":\"fused\",\"batch\":{b},\"d_in\":{d_in},\"d\":{d},\"k\":{k},\"steps\":{steps},\"ms_per_step\":{:.3},\"samples_per_second\":{:.1},\"gflops\":{gflops:.2},\"peak_gflops\":{peak:.1},\"gather\":{:.3},\"forward\":{:.3},\"head\":{:.3},\"backward\":{:.3},\"optimizer\":{:.3},\"score_per_second\":{:.1},\"score_gflops\":{score_gflops:.2},\"kernels\":\"{kernels}\"}}",
            step_s * 1e3,
            b as f64 / step_s,
            part(p.gather, before.gather),
            part(p.forward, before.forward),
            part(p.head, before.head),
            part(p.backward, before.backward),
            part(p.optimizer, before.optimizer),
            score_n as f64 / score_s,
        );
        return;
    }
    println!(
        "fused ({kernels}), batch {b}, D {d_in}, d {d}, K {k}: {:.2} ms/step, {:.0} samples/s, {gflops:.1} GFLOP/s ({:.0}% of the {peak:.0} GFLOP/s matmul peak)",
        step_s * 1e3,
        b as f64 / step_s,
        100.0 * gflops / peak
    );
    for (name, now, then) in [
        ("gather", p.gather, before.gather),
        ("forward", p.forward, before.forward),
        ("head", p.head, before.head),
        ("backward", p.backward, before.backward),
        ("optimizer", p.optimizer, before.optimizer),
    ] {
        println!("  {name:<9} {:>5.1}%", 100.0 * part(now, then));
    }
    println!(
        "  scoring: {:.0} comparisons/s, {score_gflops:.1} GFLOP/s ({:.0}% of peak)",
        score_n as f64 / score_s,
        100.0 * score_gflops / peak
    );
}

/// `n` random comparisons over `users` users and `items` items (prompts drawn from the items).
fn random_comparisons(
    rng: &mut rand::rngs::StdRng,
    n: usize,
    users: usize,
    items: usize,
) -> Encoded {
    let mut pick = |m: usize| {
        (0..n)
            .map(|_| rng.random_range(0..m) as u32)
            .collect::<Vec<_>>()
    };
    Encoded {
        users: pick(users),
        prompts: pick(items),
        left: pick(items),
        right: pick(items),
        labels: pick(2).into_iter().map(|v| v as u8).collect(),
    }
}
