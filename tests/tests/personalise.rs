//! Local personalisation against a trained model: an unseen synthetic user (a known group of
//! the ground truth) answers 10 A/B questions chosen by information gain; their held-out pairs
//! are then predicted far better than with uniform weights.

use pal_core::TrainedModel;
use pal_core::config::ModelConfig;
use pal_core::pipeline::fit;
use pal_core::synth::{self, SynthConfig};
use pal_core::train::{Control, GroupRates, TrainConfig};
use pal_format::dataset::{Dataset, Split};
use pal_math::personalise::{Personaliser, Question};
use rand::{Rng, SeedableRng};

#[test]
fn ten_questions_personalise_an_unseen_user() {
    let dir = tempfile::tempdir().unwrap();
    let scfg = SynthConfig::default();
    synth::generate(&scfg)
        .unwrap()
        .write(dir.path(), &scfg)
        .unwrap();
    let data = Dataset::load(dir.path()).unwrap();
    let mut cfg = ModelConfig::pal_b(data.items.dim(), data.prompt_dim(), 16, 3);
    cfg.layers = 1;
    let tc = TrainConfig {
        epochs: 300,
        weight_decay: GroupRates {
            item_map: 0.3,
            head: 0.3,
            users: 0.0,
            scale: 0.0,
        },
        ..TrainConfig::default()
    };
    let train = data.read(Split::Train).unwrap();
    let val = data.read(Split::Val).unwrap();
    let (model, _) = fit(&data, &cfg, &tc, &train, Some(&val), None, &mut |_| {
        Control::Continue
    })
    .unwrap();
    let truth = TrainedModel::load(&dir.path().join("truth")).unwrap();
    let items = &data.items;
    let prompts = data.prompts.as_ref().unwrap();
    let held: Vec<_> = data.read(Split::UnseenTest).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let mut total = (0.0, 0.0);
    for user in ["new0", "new1", "new2"] {
        let tw = truth.weights.user_weights(truth.user_index(user).unwrap());
        let mut post = Personaliser::new(&model.weights, 300, 1);
        for _ in 0..10 {
            let cands: Vec<(usize, usize, usize)> = (0..40)
                .map(|_| {
                    (
                        rng.random_range(0..prompts.len()),
                        rng.random_range(0..items.len()),
                        rng.random_range(0..items.len()),
                    )
                })
                .filter(|(_, l, r)| l != r)
                .collect();
            let qs: Vec<Question> = cands
                .iter()
                .map(|&(p, l, r)| {
                    Question::new(&model.weights, prompts.row(p), items.row(l), items.row(r))
                })
                .collect();
            let i = post.best_question(&qs).unwrap();
            let (p, l, r) = cands[i];
            let chose_left = truth
                .weights
                .logit(&tw, prompts.row(p), items.row(l), items.row(r))
                > 0.0;
            post.observe(&qs[i], chose_left);
        }
        let acc = |w: &[f32]| {
            let rows: Vec<_> = held.iter().filter(|c| c.user == user).collect();
            let ok = rows
                .iter()
                .filter(|c| {
                    let z = model.weights.logit(
                        w,
                        prompts.get(c.prompt.as_deref().unwrap()).unwrap(),
                        items.get(&c.left).unwrap(),
                        items.get(&c.right).unwrap(),
                    );
                    (z > 0.0) == (c.label == 1)
                })
                .count();
            ok as f32 / rows.len() as f32
        };
        let personal = acc(&post.mean());
        let uniform = acc(&[1.0 / 3.0; 3]);
        eprintln!(
            "{user}: personalised {personal:.3}, uniform {uniform:.3}, spread {:.3}",
            post.spread()
        );
        total.0 += personal;
        total.1 += uniform;
    }
    let (personal, uniform) = (total.0 / 3.0, total.1 / 3.0);
    assert!(personal >= 0.75, "personalised accuracy {personal}");
    assert!(
        personal >= uniform + 0.10,
        "personalised {personal} vs uniform {uniform}"
    );
}
