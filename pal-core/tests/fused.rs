//! The fused CPU engine against burn and the plain reference: per-comparison logits equal the
//! reference (property test over shapes), gradients equal burn autodiff's, and whole training runs
//! (losses, weights, resume) match the burn engine. The logit and gradient checks run on every
//! kernel path this CPU has (`pal_cpu::Path`), and again in bf16 against a documented bound.

use burn::tensor::{Device, Int, Tensor, TensorData};
use pal_core::config::{IdealPoint, Link, ModelConfig, NormBound, Variant};
use pal_core::fused::{FusedTrainer, HostTables, Rows};
use pal_core::model::{Batch, Group, PalModel};
use pal_core::reference::{ContentPrior, Head, PalWeights};
use pal_core::train::Engine;
use pal_cpu::{Path, Precision, Products};
use pal_format::dataset::Encoded;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

const ALL: [Group; 4] = [Group::ItemMap, Group::Head, Group::Users, Group::Scale];

/// Every kernel path this CPU runs, at `precision`; prints the skipped ones and why.
fn paths(precision: Precision) -> Vec<Products> {
    Path::ALL
        .into_iter()
        .filter_map(|p| match Products::on(p, precision) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("SKIPPED {p} kernels: {e}");
                None
            }
        })
        .collect()
}

struct Case {
    weights: PalWeights,
    items: Vec<f32>,
    prompts: Vec<f32>,
    enc: Encoded,
}

fn case(cfg: &ModelConfig, users: usize, n: usize, seed: u64) -> Case {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut table = |rows: usize, dim: usize| -> Vec<f32> {
        (0..rows * dim)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect()
    };
    let (items, prompts) = (table(30, cfg.d_item), table(9, cfg.d_prompt));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 1);
    let mut pick = |m: u32| -> Vec<u32> { (0..n).map(|_| rng.random_range(0..m)).collect() };
    let enc = Encoded {
        users: pick(users as u32),
        prompts: pick(9),
        left: pick(30),
        right: pick(30),
        labels: pick(2).into_iter().map(|v| v as u8).collect(),
    };
    let mut weights = PalWeights::init(cfg, users, seed);
    if cfg.content_prior {
        // Unsaturated, so every gradient of the gate is exercised.
        weights.prior = ContentPrior {
            weight: 2.5,
            log_sharpness: 3f32.ln(),
            threshold: 0.05,
        };
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 2);
    for r in weights.user_residuals.iter_mut().flatten() {
        *r = rng.random_range(-0.5..0.5);
    }
    Case {
        weights,
        items,
        prompts,
        enc,
    }
}

impl Case {
    /// The reference logit of comparison `j`.
    fn reference_logit(&self, j: usize) -> f32 {
        let cfg = &self.weights.config;
        let prompt = self.row(&self.prompts, cfg.d_prompt, self.enc.prompts[j]);
        let point = self
            .weights
            .known_user_point(self.enc.users[j] as usize, prompt);
        self.weights.logit_at(
            &point,
            prompt,
            self.row(&self.items, cfg.d_item, self.enc.left[j]),
            self.row(&self.items, cfg.d_item, self.enc.right[j]),
        )
    }

    fn tables(&self) -> HostTables<'_> {
        HostTables {
            items: Rows {
                data: &self.items,
                dim: self.weights.config.d_item,
            },
            prompts: Rows {
                data: &self.prompts,
                dim: self.weights.config.d_prompt,
            },
        }
    }

    fn row<'a>(&self, table: &'a [f32], dim: usize, i: u32) -> &'a [f32] {
        &table[i as usize * dim..(i as usize + 1) * dim]
    }

    fn burn_batch(&self, device: &Device) -> Batch {
        let gather = |table: &[f32], dim: usize, idx: &[u32]| {
            let rows: Vec<f32> = idx
                .iter()
                .flat_map(|&i| self.row(table, dim, i).to_vec())
                .collect();
            Tensor::<2>::from_data(TensorData::new(rows, [idx.len(), dim]), device)
        };
        let c = &self.weights.config;
        let prompts =
            (c.variant == Variant::B).then(|| gather(&self.prompts, c.d_prompt, &self.enc.prompts));
        let users: Vec<i64> = self.enc.users.iter().map(|&u| u as i64).collect();
        let labels: Vec<f32> = self.enc.labels.iter().map(|&l| l as f32).collect();
        Batch {
            users: Tensor::<1, Int>::from_data(TensorData::new(users, [self.enc.len()]), device),
            prompts,
            left: gather(&self.items, c.d_item, &self.enc.left),
            right: gather(&self.items, c.d_item, &self.enc.right),
            labels: Tensor::from_data(TensorData::new(labels, [self.enc.len()]), device),
        }
    }
}

/// Every parameter of two weight sets, flattened in one order.
fn flat(w: &PalWeights) -> Vec<f32> {
    let mlp = |m: &pal_core::reference::Mlp| {
        m.layers
            .iter()
            .flat_map(|l| l.weight.iter().chain(&l.bias).copied())
            .collect::<Vec<_>>()
    };
    let mut v = mlp(&w.item_map);
    match &w.head {
        Head::PromptMaps(maps) => maps.iter().for_each(|m| v.extend(mlp(m))),
        Head::Prototypes(ps) => ps.iter().for_each(|p| v.extend(p)),
    }
    w.user_logits.iter().for_each(|r| v.extend(r));
    w.user_residuals.iter().for_each(|r| v.extend(r));
    v.push(w.log_scale);
    v.extend(w.prior.to_array());
    v
}

fn assert_close(a: &[f32], b: &[f32], abs: f32, rel: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= abs + rel * y.abs(),
            "{what}[{i}]: fused {x}, expected {y}"
        );
    }
}

/// A small config; `variant` 0 = PAL-B, 1 = PAL-A f(Pw) logistic, 2 = PAL-A Pw hinge,
/// 3 = PAL-B with the content prior; 4–6 = 0–2 with personal residuals.
fn config(variant: u8, k: usize, layers: usize, bound: bool) -> ModelConfig {
    if variant >= 4 {
        return ModelConfig {
            residual: Some(0.7),
            ..config(variant - 4, k, layers, bound)
        };
    }
    let base = match variant {
        0 => ModelConfig::pal_b(11, 6, 5, k),
        1 => ModelConfig::pal_a(11, 5, k),
        3 => ModelConfig {
            content_prior: true,
            ..ModelConfig::pal_b(11, 11, 5, k)
        },
        _ => ModelConfig {
            ideal_point: IdealPoint::Pw,
            link: Link::Hinge,
            ..ModelConfig::pal_a(11, 5, k)
        },
    };
    ModelConfig {
        hidden: 7,
        layers,
        norm_bound: bound.then_some(NormBound {
            lambda: 0.5,
            beta: 0.3,
        }),
        ..base
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn logits_equal_the_reference(variant in 0u8..7, k in 1usize..5, layers in 1usize..4, n in 1usize..40, seed in 0u64..1000) {
        let c = case(&config(variant, k, layers, false), 5, n, seed);
        for p in paths(Precision::F32) {
        let mut f = FusedTrainer::with_products(&c.weights, &[], p).unwrap();
        let idx: Vec<usize> = (0..n).collect();
        let got = f.logits(c.tables(), &c.enc, &idx).unwrap();
        for (j, z) in got.iter().enumerate() {
            let want = c.reference_logit(j);
            prop_assert!((z - want).abs() < 1e-4 * (1.0 + want.abs()), "{}: row {}: {} vs {}", p.describe(), j, z, want);
        }
        }
    }
}

/// burn autodiff's loss and gradient (flattened) on the whole case.
fn burn_gradient(c: &Case) -> (f32, Vec<f32>) {
    let device = Device::flex().autodiff();
    let model = PalModel::from_weights(&c.weights, &device);
    let mut burn_loss = model.loss(&c.burn_batch(&device));
    if let Some(p) = model.residual_penalty(c.enc.len()) {
        burn_loss = burn_loss + p;
    }
    let loss = burn_loss.clone().into_scalar::<f32>();
    let grads = burn_loss.backward();
    (loss, flat(&model.grads_as_weights(&grads)))
}

/// bf16 products with f32 sums and f32 weights, on every path: logits within 3% (+0.02) of the
/// reference, and a gradient within 1% (cosine ≥ 0.9995, norm within 2%) of burn's f32 one —
/// yet not bit-equal to the f32 engine's, so the bf16 kernels really ran.
#[test]
fn bf16_stays_within_its_bound_of_the_f32_reference() {
    let bf16 = paths(Precision::Bf16);
    for p in bf16.iter().flat_map(|&p| [p, p.with_rounded_bf16()]) {
        for variant in 0..7 {
            let c = case(&config(variant, 3, 2, false), 6, 40, 11 + variant as u64);
            let what = format!("{}: variant {variant}", p.describe());
            let groups: Vec<_> = ALL.iter().map(|&g| (g, 0.0, 0.0)).collect();
            let mut f = FusedTrainer::with_products(&c.weights, &groups, p).unwrap();
            let f32_path = Products::on(p.path(), Precision::F32).unwrap();
            let mut exact = FusedTrainer::with_products(&c.weights, &groups, f32_path).unwrap();
            let idx: Vec<usize> = (0..c.enc.len()).collect();
            let got = f.logits(c.tables(), &c.enc, &idx).unwrap();
            let got_f32 = exact.logits(c.tables(), &c.enc, &idx).unwrap();
            assert!(
                got != got_f32,
                "{what}: bf16 logits equal the f32 ones bit for bit"
            );
            for (j, z) in got.iter().enumerate() {
                let want = c.reference_logit(j);
                assert!(
                    (z - want).abs() <= 0.02 + 0.03 * want.abs(),
                    "{what}: row {j}: {z} vs {want}"
                );
            }
            f.step(c.tables(), &c.enc, &idx).unwrap();
            let (g, (_, want)) = (flat(&f.last_gradient()), burn_gradient(&c));
            let dot: f64 = g.iter().zip(&want).map(|(a, b)| (a * b) as f64).sum();
            let norm = |v: &[f32]| v.iter().map(|x| (x * x) as f64).sum::<f64>().sqrt();
            let (ng, nw) = (norm(&g), norm(&want));
            assert!(
                dot / (ng * nw) >= 0.9995,
                "{what}: gradient cosine {}",
                dot / (ng * nw)
            );
            assert!(
                (ng - nw).abs() <= 0.02 * nw,
                "{what}: gradient norm {ng} vs {nw}"
            );
        }
    }
}

#[test]
fn gradients_equal_burn_autodiff() {
    let cases = [
        (0, 3, 3, true),
        (0, 1, 2, false),
        (0, 4, 1, true),
        (1, 3, 3, true),
        (1, 2, 1, false),
        (2, 3, 2, true),
        (2, 1, 3, false),
        (3, 3, 2, true),
        (3, 1, 1, false),
        (4, 3, 2, true),
        (4, 1, 1, false),
        (5, 3, 2, true),
        (5, 2, 1, false),
        (6, 3, 2, true),
    ];
    for (p, (variant, k, layers, bound)) in paths(Precision::F32)
        .into_iter()
        .flat_map(|p| cases.map(|c| (p, c)))
    {
        let c = case(&config(variant, k, layers, bound), 6, 40, 7 + k as u64);
        let what = format!(
            "{}: variant {variant}, K={k}, {layers} layers, bound {bound}",
            p.describe()
        );
        // Learning rate 0: the step computes gradients and leaves the weights alone.
        let groups: Vec<_> = ALL.iter().map(|&g| (g, 0.0, 0.0)).collect();
        let mut f = FusedTrainer::with_products(&c.weights, &groups, p).unwrap();
        let idx: Vec<usize> = (0..c.enc.len()).collect();
        let loss = f.step(c.tables(), &c.enc, &idx).unwrap();
        let (want_loss, want) = burn_gradient(&c);
        assert!(
            (loss - want_loss).abs() < 1e-5,
            "{what}: loss {loss} vs burn {want_loss}"
        );
        // The reference loss (mean over comparisons) agrees too.
        let cfg = &c.weights.config;
        let reference: f32 = (0..c.enc.len())
            .map(|j| {
                let prompt = c.row(&c.prompts, cfg.d_prompt, c.enc.prompts[j]);
                c.weights.loss_at(
                    &c.weights.known_user_point(c.enc.users[j] as usize, prompt),
                    prompt,
                    c.row(&c.items, cfg.d_item, c.enc.left[j]),
                    c.row(&c.items, cfg.d_item, c.enc.right[j]),
                    c.enc.labels[j],
                )
            })
            .sum::<f32>()
            / c.enc.len() as f32
            + c.weights.residual_penalty(c.enc.len());
        assert!(
            (loss - reference).abs() < 1e-5,
            "{what}: loss {loss} vs reference {reference}"
        );
        assert_close(&flat(&f.last_gradient()), &want, 2e-6, 1e-3, &what);
        assert_eq!(
            flat(&f.weights()),
            flat(&c.weights),
            "lr 0 changed the weights"
        );
    }
}

#[test]
fn unsupported_models_and_devices_are_named() {
    let a = ModelConfig::pal_a(8, 4, 2);
    assert!(
        Engine::Auto
            .is_fused(pal_core::device::ComputeDevice::Cpu, &a)
            .unwrap()
    );
    let e = Engine::Fused
        .is_fused(pal_core::device::ComputeDevice::Wgpu, &a)
        .unwrap_err();
    assert!(
        e.to_string().contains("engine") && e.to_string().contains("CPU"),
        "{e}"
    );
    let b = ModelConfig::pal_b(8, 8, 4, 2);
    assert!(
        Engine::Auto
            .is_fused(pal_core::device::ComputeDevice::Cpu, &b)
            .unwrap()
    );
    assert!(
        !Engine::Auto
            .is_fused(pal_core::device::ComputeDevice::Wgpu, &b)
            .unwrap()
    );
    let dropout = ModelConfig { dropout: 0.1, ..b };
    assert!(
        Engine::Fused
            .is_fused(pal_core::device::ComputeDevice::Cpu, &dropout)
            .is_err()
    );
    let c = case(&config(0, 2, 2, false), 3, 4, 1);
    let mut f = FusedTrainer::new(&c.weights, &[], Precision::F32).unwrap();
    let bad = Encoded {
        users: vec![0],
        prompts: vec![0],
        left: vec![99],
        right: vec![0],
        labels: vec![1],
    };
    let e = f.step(c.tables(), &bad, &[0]).unwrap_err();
    assert!(e.to_string().contains("item index 99"), "{e}");
}

#[test]
fn training_runs_match_the_burn_engine() {
    use pal_core::pipeline::fit;
    use pal_core::synth::{self, SynthConfig};
    use pal_core::train::{Control, TrainConfig};
    use pal_format::dataset::{Dataset, Split};
    let dir = tempfile::tempdir().unwrap();
    let sc = SynthConfig {
        users: 12,
        train_pairs: 20,
        val_pairs: 5,
        test_pairs: 5,
        unseen_users: 2,
        items: 50,
        ..SynthConfig::default()
    };
    synth::generate(&sc)
        .unwrap()
        .write(dir.path(), &sc)
        .unwrap();
    let data = Dataset::load(dir.path()).unwrap();
    let (rows, val) = (
        data.read(Split::Train).unwrap(),
        data.read(Split::Val).unwrap(),
    );
    let bound = Some(NormBound {
        lambda: 1.0,
        beta: 4.0,
    });
    let configs = [
        ModelConfig {
            norm_bound: bound,
            ..ModelConfig::pal_b(data.items.dim(), data.prompt_dim(), 16, 3)
        },
        ModelConfig {
            norm_bound: bound,
            ..ModelConfig::pal_a(data.items.dim(), 16, 3)
        },
    ];
    for cfg in &configs {
        let run = |engine| {
            let tc = TrainConfig {
                epochs: 5,
                batch_size: 32,
                patience: None,
                engine,
                ..TrainConfig::default()
            };
            fit(&data, cfg, &tc, &rows, Some(&val), None, &mut |_| {
                Control::Continue
            })
            .unwrap()
        };
        let ((burn, rb), (fused, rf)) = (run(Engine::Burn), run(Engine::Fused));
        assert_eq!((rf.history.len(), rb.history.len()), (5, 5));
        let (first, last) = (rf.history[0].train_loss, rf.history[4].train_loss);
        assert!(
            last < first - 0.05,
            "fused training did not learn: {first} → {last}"
        );
        for (a, b) in rf.history.iter().zip(&rb.history) {
            assert!(
                (a.train_loss - b.train_loss).abs() < 1e-3,
                "epoch {}: {a:?} vs {b:?}",
                a.epoch
            );
            let (va, vb) = (a.val_loss.unwrap(), b.val_loss.unwrap());
            assert!(
                (va - vb).abs() < 1e-3,
                "epoch {} val: {va} vs {vb}",
                a.epoch
            );
        }
        assert_close(
            &flat(&fused.weights),
            &flat(&burn.weights),
            2e-3,
            1e-2,
            "weights after 5 epochs",
        );
    }
}
