//! A simulated user of a known group answers 10 questions chosen by information gain; the
//! posterior finds the group, grows confident, and beats randomly chosen questions.

use pal_math::PalWeights;
use pal_math::config::ModelConfig;
use pal_math::personalise::{Personaliser, Question};
use rand::{Rng, SeedableRng};

fn rows(n: usize, dim: usize, rng: &mut impl Rng) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect()
}

/// Runs 10 answers for a user of `group`; returns (posterior mean, spread before, spread after).
fn session(model: &PalWeights, group: usize, smart: bool, seed: u64) -> (Vec<f32>, f32, f32) {
    let cfg = &model.config;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let items = rows(60, cfg.d_item, &mut rng);
    let prompts = rows(5, cfg.d_prompt.max(1), &mut rng);
    let truth: Vec<f32> = (0..cfg.k).map(|j| f32::from(j == group)).collect();
    let mut post = Personaliser::new(model, 300, seed);
    let before = post.spread();
    for _ in 0..10 {
        let cands: Vec<(usize, usize, usize)> = (0..30)
            .map(|_| {
                (
                    rng.random_range(0..5),
                    rng.random_range(0..60),
                    rng.random_range(0..60),
                )
            })
            .filter(|(_, l, r)| l != r)
            .collect();
        let qs: Vec<Question> = cands
            .iter()
            .map(|&(p, l, r)| Question::new(model, &prompts[p], &items[l], &items[r]))
            .collect();
        let pick = if smart {
            post.best_question(&qs).unwrap()
        } else {
            0
        };
        let (p, l, r) = cands[pick];
        // The simulated user answers as their group's reward says.
        let chose_left = model.logit(&truth, &prompts[p], &items[l], &items[r]) > 0.0;
        post.observe(&qs[pick], chose_left);
    }
    (post.mean(), before, post.spread())
}

#[test]
fn ten_answers_identify_the_group_for_pal_a_and_pal_b() {
    for (i, cfg) in [
        ModelConfig::pal_b(8, 4, 16, 3),
        ModelConfig::pal_a(8, 16, 3),
    ]
    .into_iter()
    .enumerate()
    {
        let mut model = PalWeights::init(&cfg, 1, 11 + i as u64);
        // Trained models are sharp (s grows during training; the cap is 100).
        model.log_scale = 50f32.ln();
        for group in 0..3 {
            let (mean, before, after) = session(&model, group, true, 100 + group as u64);
            let best = (0..3).max_by(|&a, &b| mean[a].total_cmp(&mean[b])).unwrap();
            assert_eq!(
                best, group,
                "{:?} group {group}: mean {mean:?}",
                cfg.variant
            );
            assert!(mean[group] > 0.5, "{mean:?}");
            assert!(after < before, "no more confident: {before} → {after}");
            assert!((mean.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        }
    }
}

#[test]
fn information_gain_beats_arbitrary_questions() {
    let cfg = ModelConfig::pal_b(8, 4, 16, 3);
    let mut model = PalWeights::init(&cfg, 1, 5);
    model.log_scale = 50f32.ln();
    let (mut smart, mut naive) = (0.0, 0.0);
    for seed in 0..6 {
        for group in 0..3 {
            smart += session(&model, group, true, seed * 10 + group as u64).0[group];
            naive += session(&model, group, false, seed * 10 + group as u64).0[group];
        }
    }
    assert!(smart > naive, "EIG {smart} vs first-candidate {naive}");
}
