//! A browser bundle written by `pal_format::bundle::export` is self-describing: reading it back through the
//! manifest alone reproduces the model's scores exactly.

use pal_core::config::{ModelConfig, Variant};
use pal_core::pipeline::{evaluate, fit};
use pal_core::synth::{self, SynthConfig};
use pal_core::train::{Control, TrainConfig};
use pal_format::BundleManifest;
use pal_format::dataset::{Dataset, Split};
use pal_math::weights::weights_from_bytes;

#[test]
fn exported_bundle_scores_like_the_trained_model() {
    let dir = tempfile::tempdir().unwrap();
    let scfg = SynthConfig {
        users: 8,
        unseen_users: 0,
        items: 40,
        ..SynthConfig::default()
    };
    synth::generate(&scfg)
        .unwrap()
        .write(dir.path(), &scfg)
        .unwrap();
    let data = Dataset::load(dir.path()).unwrap();
    let cfg = ModelConfig::pal_b(data.items.dim(), data.prompt_dim(), 16, 2);
    let train = data.read(Split::Train).unwrap();
    let tc = TrainConfig {
        epochs: 3,
        ..TrainConfig::default()
    };
    let (model, _) = fit(&data, &cfg, &tc, &train, None, None, &mut |_| {
        Control::Continue
    })
    .unwrap();

    let bundle = dir.path().join("bundle");
    pal_format::bundle::export(&model, &bundle).unwrap();
    let manifest = BundleManifest::read(&bundle).unwrap();
    let config: ModelConfig = manifest.config.clone();
    assert_eq!(config.variant, Variant::B);
    let users = &manifest.users;
    let file = bundle.join(&manifest.weights_file);
    let weights =
        weights_from_bytes(&config, users.len(), &std::fs::read(&file).unwrap(), &file).unwrap();
    assert_eq!(weights, model.weights);

    // Every user's simplex weights in the manifest score test pairs like the model does.
    let test = data.read(Split::Test).unwrap();
    let report = evaluate(&model, &data, &test, "test").unwrap();
    let mut correct = 0;
    for c in &test {
        let w = &users.iter().find(|u| u.id == c.user).unwrap().weights;
        let p = data
            .prompts
            .as_ref()
            .unwrap()
            .get(c.prompt.as_deref().unwrap())
            .unwrap();
        let z = weights.logit(
            w,
            p,
            data.items.get(&c.left).unwrap(),
            data.items.get(&c.right).unwrap(),
        );
        correct += usize::from((z > 0.0) == (c.label == 1));
    }
    let acc = correct as f32 / test.len() as f32;
    assert!(
        (acc - report.accuracy).abs() < 1e-6,
        "bundle {acc} vs model {}",
        report.accuracy
    );
}
