//! Pipeline behaviour: clear errors on bad input, exact resume from checkpoints, and learning
//! on the synthetic setting (PAL close to the ground truth, far above BTL; few-shot rises with n).

use std::path::Path;

use pal_core::config::{ModelConfig, Variant};
use pal_core::pipeline::{self, FewShotConfig, evaluate, fit};
use pal_core::synth::{self, SynthConfig};
use pal_core::train::{Control, TrainConfig};
use pal_core::{EmbeddingStore, PalError, TrainedModel};
use pal_format::dataset::{Dataset, Split};

fn small_synth(variant: Variant, dir: &Path) -> SynthConfig {
    let cfg = SynthConfig {
        variant,
        users: 12,
        train_pairs: 20,
        val_pairs: 5,
        test_pairs: 5,
        unseen_users: 3,
        unseen_train_pairs: 10,
        unseen_test_pairs: 10,
        items: 50,
        ..SynthConfig::default()
    };
    synth::generate(&cfg).unwrap().write(dir, &cfg).unwrap();
    cfg
}

fn model_cfg(data: &Dataset, variant: Variant) -> ModelConfig {
    match variant {
        Variant::A => ModelConfig::pal_a(data.items.dim(), 16, 3),
        Variant::B => ModelConfig::pal_b(data.items.dim(), data.prompt_dim(), 16, 3),
    }
}

fn quick_train() -> TrainConfig {
    TrainConfig {
        epochs: 4,
        batch_size: 32,
        patience: None,
        ..TrainConfig::default()
    }
}

fn train(data: &Dataset, variant: Variant) -> TrainedModel {
    let rows = data.read(Split::Train).unwrap();
    fit(
        data,
        &model_cfg(data, variant),
        &quick_train(),
        &rows,
        None,
        None,
        &mut |_| Control::Continue,
    )
    .unwrap()
    .0
}

/// The error's message is one line and contains every fragment.
fn assert_error(e: PalError, fragments: &[&str]) {
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "multi-line error: {msg}");
    for f in fragments {
        assert!(msg.contains(f), "`{msg}` does not mention `{f}`");
    }
}

#[test]
fn missing_dataset_is_a_clear_error() {
    let e = Dataset::load(Path::new("/nonexistent/pal-data")).unwrap_err();
    assert_error(e, &["/nonexistent/pal-data", "not found"]);
}

#[test]
fn wrong_dims_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    small_synth(Variant::B, dir.path());
    let data = Dataset::load(dir.path()).unwrap();
    let mut cfg = model_cfg(&data, Variant::B);
    cfg.d_item += 1;
    let rows = data.read(Split::Train).unwrap();
    let e = fit(&data, &cfg, &quick_train(), &rows, None, None, &mut |_| {
        Control::Continue
    })
    .unwrap_err();
    assert_error(e, &["item embeddings", "expected dimension 9", "found 8"]);
}

#[test]
fn unknown_user_in_eval_is_named() {
    let dir = tempfile::tempdir().unwrap();
    small_synth(Variant::A, dir.path());
    let data = Dataset::load(dir.path()).unwrap();
    let model = train(&data, Variant::A);
    let unseen = data.read(Split::UnseenTest).unwrap();
    let e = evaluate(&model, &data, &unseen, "unseen_test.jsonl").unwrap_err();
    assert_error(e, &["unknown user `new0`", "unseen_test.jsonl"]);
}

#[test]
fn streamed_splits_equal_encoded_rows_and_name_strangers() {
    use pal_core::pipeline::EncodedSplits;
    let dir = tempfile::tempdir().unwrap();
    small_synth(Variant::B, dir.path());
    let data = Dataset::load(dir.path()).unwrap();
    let (train, val) = (
        data.read(Split::Train).unwrap(),
        data.read(Split::Val).unwrap(),
    );
    let rows = EncodedSplits::from_rows(&data, &train, Some(&val)).unwrap();
    let streamed = EncodedSplits::read(&data, true).unwrap();
    assert_eq!(streamed.users, rows.users);
    assert_eq!(streamed.train, rows.train);
    assert_eq!(streamed.val, rows.val);
    assert_eq!(streamed.train.len(), train.len());
    // A validation user the training split never saw is named with the comparison.
    let mut lines = std::fs::read_to_string(dir.path().join("val.jsonl")).unwrap();
    lines = lines.replacen(&format!("\"{}\"", val[0].user), "\"stranger\"", 1);
    std::fs::write(dir.path().join("val.jsonl"), lines).unwrap();
    let e = EncodedSplits::read(&data, true).unwrap_err();
    assert_error(e, &["stranger", "val split, comparison 1"]);
}

#[test]
fn bad_labels_and_fields_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    let good = r#"{"user":"u","prompt":"p","left":"a","right":"b","label":1}"#;
    for (line, field) in [
        (r#"{"user":"u","left":"a","right":"b","label":2}"#, "label"),
        (
            r#"{"user":"u","left":"a","right":"b","label":"yes"}"#,
            "label",
        ),
        (r#"{"user":"u","left":"a","right":"b"}"#, "label"),
        (r#"{"left":"a","right":"b","label":0}"#, "user"),
        (r#"{"user":"u","left":"a","right":"a","label":0}"#, "right"),
        (r#"{"user":"u","left":"a""#, "(json)"),
    ] {
        std::fs::write(&path, format!("{good}\n{line}\n")).unwrap();
        let e = pal_format::comparison::read_jsonl(&path).unwrap_err();
        assert_error(e, &["bad.jsonl:2", &format!("`{field}`")]);
    }
}

#[test]
fn nan_in_embeddings_is_rejected_with_the_row_id() {
    let e = EmbeddingStore::new(
        vec!["x".into(), "y".into()],
        2,
        vec![0.0, 1.0, f32::NAN, 0.0],
    )
    .unwrap_err();
    assert_error(e, &["`y`", "non-finite"]);
    // And through a file.
    let dir = tempfile::tempdir().unwrap();
    let ok = EmbeddingStore::new(vec!["x".into()], 2, vec![0.5, 1.0]).unwrap();
    let path = dir.path().join("items.safetensors");
    ok.save(&path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let e = EmbeddingStore::load(&path).unwrap_err();
    assert_error(e, &["items.safetensors", "non-finite"]);
}

#[test]
fn empty_dataset_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    small_synth(Variant::A, dir.path());
    std::fs::write(dir.path().join("train.jsonl"), "\n").unwrap();
    let data = Dataset::load(dir.path()).unwrap();
    let e = data.read(Split::Train).unwrap_err();
    assert_error(e, &["train.jsonl", "no comparisons"]);
}

#[test]
fn resume_from_checkpoint_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    small_synth(Variant::B, dir.path());
    let data = Dataset::load(dir.path()).unwrap();
    let rows = data.read(Split::Train).unwrap();
    let val = data.read(Split::Val).unwrap();
    let cfg = model_cfg(&data, Variant::B);
    let tc = quick_train();
    let (straight, _) = fit(&data, &cfg, &tc, &rows, Some(&val), None, &mut |_| {
        Control::Continue
    })
    .unwrap();
    // Interrupted after two epochs, then resumed from the checkpoint.
    let ck = dir.path().join("ck");
    let mut epochs = 0;
    let (_, first) = fit(&data, &cfg, &tc, &rows, Some(&val), Some(&ck), &mut |p| {
        if let pal_core::Progress::Epoch(_) = p {
            epochs += 1;
            if epochs == 2 {
                return Control::Stop;
            }
        }
        Control::Continue
    })
    .unwrap();
    assert!(first.cancelled);
    let (resumed, report) = fit(&data, &cfg, &tc, &rows, Some(&val), Some(&ck), &mut |_| {
        Control::Continue
    })
    .unwrap();
    assert_eq!(report.history.len(), 4);
    assert_eq!(resumed.weights, straight.weights);
}

#[test]
fn adapt_appends_new_users_and_leaves_the_rest_untouched() {
    let dir = tempfile::tempdir().unwrap();
    small_synth(Variant::B, dir.path());
    let data = Dataset::load(dir.path()).unwrap();
    let model = train(&data, Variant::B);
    let pool = data.read(Split::UnseenTrain).unwrap();
    let adapted = pipeline::adapt(&model, &data, &pool, &FewShotConfig::default()).unwrap();
    assert_eq!(adapted.users.len(), model.users.len() + 3);
    assert_eq!(adapted.weights.item_map, model.weights.item_map);
    assert_eq!(adapted.weights.head, model.weights.head);
    assert_eq!(
        adapted.weights.user_logits[..12],
        model.weights.user_logits[..]
    );
    let e = pipeline::adapt(&adapted, &data, &pool, &FewShotConfig::default()).unwrap_err();
    assert_error(e, &["`new0`", "already in the model"]);
}

/// The issue's synthetic setting at full size: d = 16, K = 3, 60 users, 50 pairs/user.
fn learns_synthetic(variant: Variant) {
    let dir = tempfile::tempdir().unwrap();
    let scfg = SynthConfig {
        variant,
        ..SynthConfig::default()
    };
    synth::generate(&scfg)
        .unwrap()
        .write(dir.path(), &scfg)
        .unwrap();
    let data = Dataset::load(dir.path()).unwrap();
    let mut mcfg = model_cfg(&data, variant);
    mcfg.layers = 1;
    let tc = TrainConfig {
        epochs: 300,
        weight_decay: pal_core::train::GroupRates {
            item_map: 0.3,
            head: 0.3,
            users: 0.0,
            scale: 0.0,
        },
        ..TrainConfig::default()
    };
    let exp = pal_core::experiment::ExperimentConfig {
        model: mcfg,
        train: tc,
        fewshot: FewShotConfig::default(),
        shots: vec![1, 5, 20, 100],
        selection: None,
    };
    let (_, r) = pal_core::experiment::run(&data, &exp, &mut |_| {}).unwrap();
    let acc = |m: &str| r.row(m).unwrap().seen_accuracy;
    let (truth, pal, btl) = (acc("ground truth"), acc("PAL"), acc("BTL"));
    assert!(pal >= truth - 0.02, "PAL {pal} vs truth {truth}");
    assert!(pal >= btl + 0.10, "PAL {pal} vs BTL {btl}");
    let shots = &r.pal_shots;
    assert!(
        shots[0].accuracy < shots[3].accuracy,
        "few-shot does not rise: {shots:?}"
    );
    let at20 = shots.iter().find(|p| p.shots == 20).unwrap().accuracy;
    assert!(at20 >= pal - 0.05, "n=20 {at20} vs seen {pal}");
}

#[test]
fn pal_a_learns_the_synthetic_setting() {
    learns_synthetic(Variant::A);
}

#[test]
fn pal_b_learns_the_synthetic_setting() {
    learns_synthetic(Variant::B);
}

#[test]
fn weight_recovery_is_zero_for_the_truth_itself_and_permutation_invariant() {
    use pal_core::experiment::weight_recovery;
    let dir = tempfile::tempdir().unwrap();
    small_synth(Variant::A, dir.path());
    let truth = TrainedModel::load(&dir.path().join("truth")).unwrap();
    assert_eq!(weight_recovery(&truth, &truth), Some(0.0));
    let mut shuffled = truth.clone();
    shuffled
        .weights
        .user_logits
        .iter_mut()
        .for_each(|l| l.rotate_left(1));
    assert!(weight_recovery(&shuffled, &truth).unwrap() < 1e-6);
    let mut uniform = truth.clone();
    uniform
        .weights
        .user_logits
        .iter_mut()
        .for_each(|l| l.iter_mut().for_each(|v| *v = 0.0));
    // One-prototype users vs uniform weights over K = 3: TV = 2/3.
    assert!((weight_recovery(&uniform, &truth).unwrap() - 2.0 / 3.0).abs() < 1e-3);
}

/// A model search handed the candidates an interrupted search scored trains only the rest, and
/// reports every candidate it scores.
#[test]
fn an_interrupted_search_resumes_without_training_its_scored_candidates() {
    use pal_core::select::{SelectConfig, SelectEvent, select};
    let tmp = tempfile::tempdir().unwrap();
    small_synth(Variant::B, tmp.path());
    let data = Dataset::load(tmp.path()).unwrap();
    let mut base = model_cfg(&data, Variant::B);
    base.layers = 1;
    let rows = data.read(Split::Train).unwrap();
    let sel = SelectConfig {
        ks: vec![1, 2],
        residuals: vec![None],
        folds: 3,
        min_steps: 30,
        ..SelectConfig::default()
    };
    let train = quick_train();
    // (training runs started, candidates handed out) of one search.
    let run = |done: &[pal_core::select::Candidate]| {
        let (mut fits, mut scored) = (0, Vec::new());
        let s = select(&data, &base, &train, &rows, &sel, done, &mut |ev| {
            match ev {
                SelectEvent::Fit { .. } => fits += 1,
                SelectEvent::Scored(c) => scored.push(c.clone()),
                SelectEvent::Epoch => {}
            }
            Control::Continue
        })
        .unwrap();
        (s, fits, scored)
    };
    let (full, fits, scored) = run(&[]);
    assert_eq!((fits, scored.len()), (6, 2), "2 candidates × 3 folds");
    assert_eq!(scored, full.candidates);
    // Everything scored: nothing is trained, the same search comes back.
    let (again, fits, scored) = run(&full.candidates);
    assert_eq!((fits, scored.len()), (0, 0));
    assert_eq!(again, full);
    // Only K = 1 scored: K = 2's three folds run, and K = 1 is the one handed in.
    let (half, fits, scored) = run(&full.candidates[..1]);
    assert_eq!((fits, scored.len()), (3, 1));
    assert_eq!(half.candidates[0], full.candidates[0]);
    assert_eq!(scored[0].k, 2);
}
