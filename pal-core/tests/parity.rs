//! The burn model is held to the plain-Rust reference: logits, losses, simplex weights,
//! left/right symmetry and save/load round trips.

use burn::tensor::{Device, Int, Tensor, TensorData};
use pal_core::TrainedModel;
use pal_core::config::{IdealPoint, Link, ModelConfig, NormBound, Variant};
use pal_core::model::{Batch, PalModel};
use pal_core::reference::{ContentPrior, PalWeights, sigmoid, softmax};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

struct Case {
    weights: PalWeights,
    users: Vec<usize>,
    prompts: Vec<Vec<f32>>,
    left: Vec<Vec<f32>>,
    right: Vec<Vec<f32>>,
    labels: Vec<u8>,
}

fn rows(n: usize, dim: usize, rng: &mut impl Rng) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| (0..dim).map(|_| rng.random_range(-2.0..2.0)).collect())
        .collect()
}

fn case(cfg: ModelConfig, n_users: usize, n: usize, seed: u64) -> Case {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut weights = PalWeights::init(&cfg, n_users, seed);
    weights.log_scale = rng.random_range(-1.0..3.0);
    if cfg.content_prior {
        weights.prior = ContentPrior {
            weight: rng.random_range(-3.0..3.0),
            log_sharpness: rng.random_range(-1.0..3.0),
            threshold: rng.random_range(-0.5..0.5),
        };
    }
    for r in weights.user_residuals.iter_mut().flatten() {
        *r = rng.random_range(-1.0..1.0);
    }
    Case {
        users: (0..n).map(|_| rng.random_range(0..n_users)).collect(),
        prompts: rows(n, cfg.d_prompt.max(1), &mut rng),
        left: rows(n, cfg.d_item, &mut rng),
        right: rows(n, cfg.d_item, &mut rng),
        labels: (0..n).map(|_| rng.random_range(0..2)).collect(),
        weights,
    }
}

fn mat(r: &[Vec<f32>], device: &Device) -> Tensor<2> {
    let flat: Vec<f32> = r.concat();
    Tensor::from_data(TensorData::new(flat, [r.len(), r[0].len()]), device)
}

fn batch(c: &Case, device: &Device) -> Batch {
    let users: Vec<i64> = c.users.iter().map(|&u| u as i64).collect();
    let n = users.len();
    let labels: Vec<f32> = c.labels.iter().map(|&l| l as f32).collect();
    Batch {
        users: Tensor::<1, Int>::from_data(TensorData::new(users, [n]), device),
        prompts: (c.weights.config.variant == Variant::B).then(|| mat(&c.prompts, device)),
        left: mat(&c.left, device),
        right: mat(&c.right, device),
        labels: Tensor::from_data(TensorData::new(labels, [n]), device),
    }
}

fn vec1(t: Tensor<1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-5 * a.abs().max(b.abs()).max(1.0)
}

fn config_strategy() -> impl Strategy<Value = ModelConfig> {
    (
        prop_oneof![Just(Variant::A), Just(Variant::B)],
        prop_oneof![Just(IdealPoint::FPw), Just(IdealPoint::Pw)],
        prop_oneof![Just(Link::Logistic), Just(Link::Hinge)],
        1usize..9,
        1usize..9,
        1usize..9,
        1usize..9,
        1usize..4,
        1usize..5,
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(None), (0.0f32..3.0).prop_map(Some)],
    )
        .prop_map(
            |(
                variant,
                ideal_point,
                link,
                d_item,
                d_prompt,
                d,
                hidden,
                layers,
                k,
                nb,
                prior,
                residual,
            )| {
                let prior = prior && variant == Variant::B;
                ModelConfig {
                    variant,
                    ideal_point,
                    link: if variant == Variant::B {
                        Link::Logistic
                    } else {
                        link
                    },
                    d_item,
                    d_prompt: match variant {
                        Variant::B if prior => d_item,
                        Variant::B => d_prompt,
                        Variant::A => 0,
                    },
                    d,
                    hidden,
                    layers,
                    k,
                    dropout: 0.0,
                    norm_bound: nb.then_some(NormBound {
                        lambda: 1.0,
                        beta: 0.5,
                    }),
                    content_prior: prior,
                    residual,
                    new_user_residual: None,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn burn_logits_and_loss_match_reference(cfg in config_strategy(), seed in 0u64..1000) {
        let c = case(cfg, 5, 7, seed);
        let device = Device::flex();
        let model = PalModel::from_weights(&c.weights, &device);
        let b = batch(&c, &device);
        let got = vec1(model.logits(&b));
        let mut ref_loss = 0.0;
        for (i, &g) in got.iter().enumerate() {
            let point = c.weights.known_user_point(c.users[i], &c.prompts[i]);
            let want = c.weights.logit_at(&point, &c.prompts[i], &c.left[i], &c.right[i]);
            prop_assert!(close(g, want), "logit {i}: burn {g} vs reference {want}");
            ref_loss += c.weights.loss_at(&point, &c.prompts[i], &c.left[i], &c.right[i], c.labels[i]);
        }
        ref_loss /= c.labels.len() as f32;
        let loss = vec1(model.loss(&b))[0];
        prop_assert!(close(loss, ref_loss), "loss: burn {loss} vs reference {ref_loss}");
        let penalty = model.residual_penalty(40).map_or(0.0, |p| vec1(p)[0]);
        let want = c.weights.residual_penalty(40);
        prop_assert!(close(penalty, want), "penalty: burn {penalty} vs reference {want}");
    }

    #[test]
    fn user_weights_lie_on_the_simplex(logits in prop::collection::vec(-50.0f32..50.0, 1..10)) {
        let w = softmax(&logits);
        prop_assert!(w.iter().all(|&x| (0.0..=1.0).contains(&x)));
        prop_assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn swapping_left_and_right_gives_one_minus_p(cfg in config_strategy(), seed in 0u64..1000) {
        let c = case(cfg, 3, 4, seed);
        for i in 0..4 {
            let point = c.weights.known_user_point(c.users[i], &c.prompts[i]);
            let p = sigmoid(c.weights.logit_at(&point, &c.prompts[i], &c.left[i], &c.right[i]));
            let q = sigmoid(c.weights.logit_at(&point, &c.prompts[i], &c.right[i], &c.left[i]));
            prop_assert!((p + q - 1.0).abs() < 1e-5, "p {p} q {q}");
        }
        // The burn model too.
        let device = Device::flex();
        let model = PalModel::from_weights(&c.weights, &device);
        let mut swapped = batch(&c, &device);
        std::mem::swap(&mut swapped.left, &mut swapped.right);
        let a = vec1(model.logits(&batch(&c, &device)));
        let b = vec1(model.logits(&swapped));
        for (x, y) in a.iter().zip(&b) {
            prop_assert!(close(*x, -*y));
        }
    }
}

#[test]
fn burn_round_trip_preserves_weights() {
    for variant in [Variant::A, Variant::B] {
        let cfg = match variant {
            Variant::A => ModelConfig::pal_a(6, 4, 3),
            Variant::B => ModelConfig::pal_b(6, 5, 4, 3),
        };
        let w = PalWeights::init(&cfg, 4, 1);
        let back = PalModel::from_weights(&w, &Device::flex()).to_weights();
        assert_eq!(w, back);
    }
    let mut w = PalWeights::init(&with_prior(ModelConfig::pal_b(6, 6, 4, 3)), 4, 1);
    w.prior.threshold = 0.125;
    assert_eq!(w, PalModel::from_weights(&w, &Device::flex()).to_weights());
    for cfg in [ModelConfig::pal_a(6, 4, 3), ModelConfig::pal_b(6, 5, 4, 3)] {
        let c = case(with_residual(cfg, 0.5), 4, 1, 3);
        let back = PalModel::from_weights(&c.weights, &Device::flex()).to_weights();
        assert_eq!(c.weights, back);
    }
}

fn with_residual(cfg: ModelConfig, lambda: f32) -> ModelConfig {
    ModelConfig {
        residual: Some(lambda),
        ..cfg
    }
}

#[test]
fn a_residual_moves_the_point_off_the_mixture() {
    // PAL-B: u = s·m/‖m‖ + δ and the reward ⟨f(x), u⟩/‖f(x)‖; PAL-A: a + δ; δ = 0 leaves
    // every logit as the plain model's.
    for cfg in [ModelConfig::pal_a(5, 4, 2), ModelConfig::pal_b(5, 3, 4, 2)] {
        let mut c = case(with_residual(cfg.clone(), 1.0), 2, 4, 5);
        let plain = PalWeights {
            config: cfg.clone(),
            user_residuals: vec![],
            ..c.weights.clone()
        };
        let p = &c.prompts[0];
        let w = c.weights.user_weights(1);
        let m = plain.user_point(&w, p);
        let delta = c.weights.user_residuals[1].clone();
        let point = c.weights.known_user_point(1, p);
        let n = m.iter().map(|v| v * v).sum::<f32>().sqrt();
        for j in 0..4 {
            let base = if cfg.variant == Variant::B {
                c.weights.scale() * m[j] / n
            } else {
                m[j]
            };
            assert!(close(point[j], base + delta[j]), "coordinate {j}");
        }
        c.weights.user_residuals[1].fill(0.0);
        let (l, r) = (&c.left[0], &c.right[0]);
        let a = c
            .weights
            .logit_at(&c.weights.known_user_point(1, p), p, l, r);
        assert!(close(a, plain.logit(&w, p, l, r)));
    }
    // The penalty is λ Σ‖δ‖² / n.
    let mut w = PalWeights::init(&with_residual(ModelConfig::pal_b(3, 2, 2, 2), 2.0), 2, 0);
    w.user_residuals = vec![vec![1.0, 0.0], vec![0.0, -2.0]];
    assert!(close(w.residual_penalty(5), 2.0 * 5.0 / 5.0));
    // New users get the prior the known residuals imply (1 / 2σ², σ² = Σ‖δ‖² / (users·d)),
    // never weaker than λ.
    assert_eq!(w.new_user_residual_strength(), Some(2.0));
    w.user_residuals = vec![vec![0.1, 0.0], vec![0.0, 0.1]];
    assert!(close(
        w.new_user_residual_strength().unwrap(),
        4.0 / (2.0 * 0.02)
    ));
    let bad = with_residual(ModelConfig::pal_b(3, 2, 2, 2), -1.0).validate();
    assert!(bad.unwrap_err().to_string().contains("residual"));
}

fn with_prior(cfg: ModelConfig) -> ModelConfig {
    ModelConfig {
        content_prior: true,
        ..cfg
    }
}

#[test]
fn content_prior_adds_a_gate_on_the_embedding_cosine_to_each_reward() {
    let mut c = case(with_prior(ModelConfig::pal_b(5, 5, 4, 2)), 3, 6, 9);
    c.weights.prior = ContentPrior {
        weight: 2.5,
        log_sharpness: 4f32.ln(),
        threshold: 0.1,
    };
    // b σ(a (cos − t)), written out.
    let gate = |cos: f32| 2.5 / (1.0 + (-4.0 * (cos - 0.1)).exp());
    let plain = PalWeights {
        config: ModelConfig::pal_b(5, 5, 4, 2),
        ..c.weights.clone()
    };
    for i in 0..6 {
        let (p, x) = (&c.prompts[i], &c.left[i]);
        let w = c.weights.user_weights(c.users[i]);
        let cos = pal_core::reference::cosine(x, p);
        let want = plain.reward(&w, p, x) + gate(cos);
        assert!(close(c.weights.reward(&w, p, x), want));
        let with = c.weights.logit(&w, p, x, &c.right[i]);
        let without = plain.logit(&w, p, x, &c.right[i]);
        let gap = gate(cos) - gate(pal_core::reference::cosine(&c.right[i], p));
        assert!(
            close(with - without, gap),
            "logit gap {} vs {gap}",
            with - without
        );
    }
    // The prior needs PAL-B and one embedding space.
    let err = with_prior(ModelConfig::pal_b(5, 4, 4, 2))
        .validate()
        .unwrap_err();
    assert!(err.to_string().contains("content_prior"), "{err}");
    assert!(with_prior(ModelConfig::pal_a(5, 4, 2)).validate().is_err());
}

#[test]
fn save_load_round_trip_gives_identical_scores() {
    let dir = tempfile::tempdir().unwrap();
    for (i, cfg) in [
        ModelConfig::pal_a(6, 4, 2),
        ModelConfig::pal_b(6, 5, 4, 3),
        with_prior(ModelConfig::pal_b(6, 6, 4, 3)),
        with_residual(ModelConfig::pal_b(6, 5, 4, 3), 0.3),
        with_residual(ModelConfig::pal_a(6, 4, 2), 0.3),
    ]
    .into_iter()
    .enumerate()
    {
        let c = case(cfg, 3, 5, 42);
        let users = vec!["a".to_string(), "b".into(), "c".into()];
        let model = TrainedModel::new(c.weights.clone(), users, serde_json::json!({"k": 1}));
        let path = dir.path().join(format!("m{i}"));
        model.save(&path).unwrap();
        // Saving again over an existing model replaces it cleanly.
        model.save(&path).unwrap();
        let loaded = TrainedModel::load(&path).unwrap();
        assert_eq!(loaded, model);
        for j in 0..5 {
            let (pa, pb) = (
                c.weights.known_user_point(c.users[j], &c.prompts[j]),
                loaded.weights.known_user_point(c.users[j], &c.prompts[j]),
            );
            let a = c
                .weights
                .logit_at(&pa, &c.prompts[j], &c.left[j], &c.right[j]);
            let b = loaded
                .weights
                .logit_at(&pb, &c.prompts[j], &c.left[j], &c.right[j]);
            assert_eq!(a.to_bits(), b.to_bits());
        }
    }
}

#[test]
fn gelu_and_erf_match_known_values() {
    use pal_core::reference::{erf, gelu};
    for (x, want) in [
        (0.0, 0.0),
        (0.5, 0.520_499_9),
        (1.0, 0.842_700_8),
        (-2.0, -0.995_322_3),
    ] {
        assert!((erf(x) - want).abs() < 2e-7, "erf({x})");
    }
    assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
    assert!((gelu(-1.0) + 0.158_655_3).abs() < 1e-6);
}
