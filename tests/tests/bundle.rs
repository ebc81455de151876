//! A browser bundle written by `export_bundle` is self-describing: reading it back through the
//! manifest alone reproduces the model's scores exactly.

use pal_core::checkpoint::{MANIFEST_JSON, weights_from_bytes};
use pal_core::config::{ModelConfig, Variant};
use pal_core::dataset::{Dataset, Split};
use pal_core::pipeline::{evaluate, fit};
use pal_core::synth::{self, SynthConfig};
use pal_core::train::{Control, TrainConfig};

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
    model.export_bundle(&bundle).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join(MANIFEST_JSON)).unwrap())
            .unwrap();
    let config: ModelConfig = serde_json::from_value(manifest["config"].clone()).unwrap();
    assert_eq!(config.variant, Variant::B);
    let users = manifest["users"].as_array().unwrap();
    let file = bundle.join(manifest["weights_file"].as_str().unwrap());
    let weights =
        weights_from_bytes(&config, users.len(), &std::fs::read(&file).unwrap(), &file).unwrap();
    assert_eq!(weights, model.weights);

    // Every user's simplex weights in the manifest score test pairs like the model does.
    let test = data.read(Split::Test).unwrap();
    let report = evaluate(&model, &data, &test, "test").unwrap();
    let mut correct = 0;
    for c in &test {
        let u = users.iter().find(|u| u["id"] == c.user.as_str()).unwrap();
        let w: Vec<f32> = serde_json::from_value(u["weights"].clone()).unwrap();
        let p = data
            .prompts
            .as_ref()
            .unwrap()
            .get(c.prompt.as_deref().unwrap())
            .unwrap();
        let z = weights.logit(
            &w,
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
