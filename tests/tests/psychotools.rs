//! Real respondents: every paircomp set of the pinned psychotools/psychotree packages reads (no
//! R), builds with respondents as users, ties counted and covariates kept; bad sets fail in one
//! line with nothing written; and on a slice of FirstNames the cross-validated residual model
//! keeps up with per-user logistic regression where plain PAL does not.
//! Needs `cargo xtask assets` (fails loudly without).

use std::path::PathBuf;

use pal_core::experiment::{self, ExperimentConfig};
use pal_core::select::SelectConfig;
use pal_core::{ModelConfig, Split, TrainConfig};
use pal_data::psychotools::{ItemsAs, PsychoConfig, PsychoSet, SETS, build};
use pal_embed::Asset;
use pal_format::dataset::Dataset;

fn data_dir(set: &PsychoSet) -> PathBuf {
    Asset::named(set.package)
        .unwrap()
        .path()
        .expect("run `cargo xtask assets`")
}

fn config(set: PsychoSet, respondents: Option<usize>) -> PsychoConfig {
    PsychoConfig {
        set,
        items: ItemsAs::OneHot,
        unseen_share: 0.25,
        unseen_pool: 10,
        respondents,
        seed: 2,
    }
}

#[test]
fn every_set_builds_with_respondents_as_users() {
    let tmp = tempfile::tempdir().unwrap();
    for set in SETS {
        let out = tmp.path().join(set.name);
        let built = build(
            &config(set, Some(40)),
            &data_dir(&set),
            None,
            &out,
            &mut |_, _, _| {},
        )
        .unwrap();
        let card = &built.card;
        let objects = card["objects"].as_array().unwrap().len();
        let want = match set.name {
            "soundquality" => 8,
            "europeanvalues" => 4,
            _ => 6,
        };
        assert_eq!(objects, want, "{}", set.name);
        let data = Dataset::load(&out).unwrap();
        assert_eq!((data.items.len(), data.items.dim()), (objects, objects));
        let users: std::collections::BTreeSet<String> = data
            .read(Split::Train)
            .unwrap()
            .into_iter()
            .map(|c| c.user)
            .collect();
        // 40 respondents drawn, 25% new (fewer when some had under 2 untied answers).
        let seen = card["respondents"]["seen"].as_u64().unwrap() as usize;
        assert_eq!(users.len(), seen, "{}", set.name);
        assert!((28..=30).contains(&seen), "{}: {seen}", set.name);
        assert!(data.read(Split::UnseenTest).is_ok(), "{}", set.name);
        let total = card["respondents"]["total"].as_u64().unwrap() as usize;
        let features = pal_format::UserFeatures::read(&out).unwrap().unwrap();
        assert_eq!(features.users.len(), total);
        assert!(!card["covariates"]["names"].as_array().unwrap().is_empty());
        if set.name == "cems" {
            assert!(card["respondents"]["ties_dropped"].as_u64().unwrap() > 0);
        }
        if set.name == "soundquality" {
            // Users are listeners: each pools ~20 rows of 28 comparisons, and only the
            // listener-level columns survive as covariates.
            assert!(card["respondents"]["comparisons"].as_u64().unwrap() > 40 * 200);
            let first = card["covariates"]
                .as_object()
                .unwrap()
                .values()
                .next()
                .unwrap();
            assert!(first.get("repet").is_none(), "{first}");
        }
    }
}

#[test]
fn a_column_that_is_not_paircomp_fails_in_one_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let base = PsychoSet::named("firstnames").unwrap();
    for (object, column, want) in [
        ("MathExam14W", "solved", "not of class paircomp"),
        ("FirstNames", "nope", "no paircomp column `nope`"),
        ("NoSuchFile", "preference", "NoSuchFile.rda"),
    ] {
        let set = PsychoSet {
            object,
            column,
            ..base
        };
        let out = tmp.path().join(object);
        let e = build(
            &config(set, None),
            &data_dir(&base),
            None,
            &out,
            &mut |_, _, _| {},
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains(want), "{e}");
        assert!(!e.contains('\n'), "{e}");
        assert!(
            !out.exists(),
            "{object}: a failed build left {}",
            out.display()
        );
    }
}

#[test]
fn the_residual_model_keeps_up_with_per_user_logistic_on_real_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let set = PsychoSet::named("firstnames").unwrap();
    let out = tmp.path().join("firstnames");
    build(
        &config(set, Some(120)),
        &data_dir(&set),
        None,
        &out,
        &mut |_, _, _| {},
    )
    .unwrap();
    let data = Dataset::load(&out).unwrap();
    let exp = ExperimentConfig {
        model: ModelConfig::pal_b(6, 1, 16, 1),
        train: TrainConfig::default(),
        fewshot: Default::default(),
        shots: vec![10],
        selection: Some(SelectConfig {
            ks: vec![1, 2],
            residuals: vec![None, Some(1.0)],
            folds: 3,
            min_steps: 1500,
            ..SelectConfig::default()
        }),
    };
    let (model, report) = experiment::run(&data, &exp, &mut |_| {}).unwrap();
    eprintln!("{}", report.to_markdown());
    let acc = |m: &str| report.row(m).unwrap().seen_accuracy;
    let sel = report.selection.as_ref().unwrap();
    // 2 K × 2 λ with 3-layer maps, then the chosen K's 2 λ with a linear map.
    assert_eq!(sel.candidates.len(), 6);
    // People differ more than K prototypes allow: cross-validation picks the residual, and the
    // chosen model is within a few points of per-user logistic and well above BTL.
    assert_eq!(sel.best().residual, Some(1.0), "{}", sel.to_markdown());
    assert_eq!(model.weights.user_residuals.len(), model.users.len());
    assert!(
        acc("PAL") > acc("per-user") - 0.05,
        "PAL {} vs per-user {}",
        acc("PAL"),
        acc("per-user")
    );
    assert!(
        acc("PAL") > acc("BTL") + 0.05,
        "PAL {} vs BTL {}",
        acc("PAL"),
        acc("BTL")
    );
    let plain = sel
        .candidates
        .iter()
        .filter(|c| c.residual.is_none())
        .map(|c| c.cv_accuracy)
        .fold(0.0, f32::max);
    assert!(
        sel.best().cv_accuracy > plain + 0.03,
        "{}",
        sel.to_markdown()
    );
    assert!(report.rows.iter().all(|r| (0.0..0.5).contains(&r.seen_ece)));
    // The slice carries the respondents' covariates: new users get a cold-start prediction.
    let cold = report
        .cold_start
        .as_ref()
        .expect("user_features.json → cold start");
    assert!(cold.users > 0 && (0.0..=1.0).contains(&cold.accuracy));
}
