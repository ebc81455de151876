//! Builds small slices of `summaries` and `filters` with the real encoders and checks the files,
//! the card, the embedding cache, and that PAL separates the groups where BTL cannot.
//! Needs `cargo xtask assets` (fails loudly without).

use pal_core::experiment::{self, ExperimentConfig};
use pal_core::{ModelConfig, Split, TrainConfig};
use pal_data::PopulationConfig;
use pal_data::filters::FiltersConfig;
use pal_data::summaries::{SummariesConfig, SummaryGroups};
use pal_embed::{Asset, Embedder, ImageEncoder, TextEncoder};
use pal_format::dataset::Dataset;

fn text() -> Embedder {
    let dir = Asset::named("minilm")
        .unwrap()
        .path()
        .expect("run `cargo xtask assets`");
    Embedder::Text(Box::new(TextEncoder::load(&dir).unwrap()))
}

fn users(seen: usize, pairs: usize) -> PopulationConfig {
    PopulationConfig {
        seen_users: seen,
        unseen_users: 6,
        pairs_per_user: pairs,
        unseen_train_pairs: 20,
        unseen_test_pairs: 20,
        seed: 3,
    }
}

#[test]
fn summaries_slice_builds_caches_and_pal_beats_btl() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("summaries");
    let cfg = SummariesConfig {
        groups: SummaryGroups::Length,
        population: users(20, 60),
        papers: Some(15),
        relevance: 0.0,
    };
    let source = Asset::named("aclsum")
        .unwrap()
        .path()
        .expect("run `cargo xtask assets`");
    let enc = text();
    let built = pal_data::summaries::build(&cfg, &source, &enc, &out, &mut |_, _, _| {}).unwrap();
    assert_eq!(
        built.card["embedding"]["items"]["embedded"], 105,
        "15 papers × 7 candidates"
    );
    let data = Dataset::load(&out).unwrap();
    assert_eq!((data.items.len(), data.items.dim()), (105, 384));
    assert_eq!(data.read(Split::Train).unwrap().len(), 20 * 42);
    assert_eq!(data.read(Split::UnseenTest).unwrap().len(), 6 * 20);
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("card.json")).unwrap()).unwrap();
    assert!(card["source"].as_str().unwrap().contains("aclsum==0.1.2"));
    assert_eq!(
        card["users"]["groups"][0]["seen_users"]
            .as_array()
            .unwrap()
            .len(),
        14,
        "7:3 of 20"
    );
    let content: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("content.json")).unwrap()).unwrap();
    assert!(
        content["items"]
            .as_object()
            .unwrap()
            .values()
            .all(|v| v["text"].is_string())
    );
    // A rebuild with the same content embeds nothing.
    let again = pal_data::summaries::build(&cfg, &source, &enc, &out, &mut |_, _, _| {}).unwrap();
    assert_eq!(again.card["embedding"]["items"]["reused"], 105);
    assert_eq!(again.card["embedding"]["prompts"]["embedded"], 0);

    // PAL-B with K=2 learns both groups; one shared reward cannot.
    let mut model = ModelConfig::pal_b(384, 384, 32, 2);
    model.layers = 1;
    let exp = ExperimentConfig {
        model,
        train: TrainConfig {
            epochs: 150,
            ..TrainConfig::default()
        },
        fewshot: Default::default(),
        shots: vec![20],
        selection: None,
    };
    let (_, report) = experiment::run(&data, &exp, &mut |_| {}).unwrap();
    let acc = |m: &str| report.row(m).unwrap().seen_accuracy;
    eprintln!("{}", report.to_markdown());
    assert!(
        acc("PAL") > acc("BTL") + 0.1,
        "PAL {} vs BTL {}",
        acc("PAL"),
        acc("BTL")
    );

    // With relevance comparisons (the same texts: nothing is embedded again), PAL-B alone loses
    // accuracy (relevance pairs pull against taste, and s·cos(f(x), u(c)) must learn paper–summary
    // matching); with the content prior it keeps both (on 15 papers the plain model still ranks
    // own summaries high; on all 247 the prior doubles top-5 relevance: README).
    let cfg = SummariesConfig {
        relevance: 0.2,
        ..cfg
    };
    let again = pal_data::summaries::build(&cfg, &source, &enc, &out, &mut |_, _, _| {}).unwrap();
    assert_eq!(again.card["embedding"]["items"]["embedded"], 0);
    let data = Dataset::load(&out).unwrap();
    let run = |content_prior: bool| {
        let exp = ExperimentConfig {
            model: ModelConfig {
                content_prior,
                ..exp.model.clone()
            },
            ..exp.clone()
        };
        let (_, report) = experiment::run(&data, &exp, &mut |_| {}).unwrap();
        let pal = report.row("PAL").unwrap();
        (pal.seen_accuracy, report.relevance_at_5.unwrap())
    };
    let ((acc_plain, rel_plain), (acc_prior, rel_prior)) = (run(false), run(true));
    eprintln!(
        "relevance 0.2: plain {acc_plain} / top-5 {rel_plain}; prior {acc_prior} / top-5 {rel_prior}"
    );
    assert!(
        acc_prior > acc_plain + 0.1,
        "accuracy {acc_plain} → {acc_prior}"
    );
    assert!(
        rel_prior > 0.75,
        "top-5 relevance {rel_plain} → {rel_prior}"
    );
}

#[test]
fn filters_slice_writes_images_and_validates_beta() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("filters");
    let cfg = FiltersConfig {
        beta: 0.5,
        relevance: 0.0,
        crops: 2,
        photos: 2,
        population: users(4, 20),
    };
    let photos = Asset::named("skimage")
        .unwrap()
        .path()
        .expect("run `cargo xtask assets`");
    let img = Embedder::Image(
        ImageEncoder::load(&Asset::named("efficientnet").unwrap().path().unwrap()).unwrap(),
    );
    let built =
        pal_data::filters::build(&cfg, &photos, &[], &img, &text(), &out, &mut |_, _, _| {})
            .unwrap();
    assert_eq!(built.content.items.len(), 2 * 2 * 5);
    let data = Dataset::load(&out).unwrap();
    assert_eq!((data.items.len(), data.items.dim()), (20, 1280));
    assert_eq!(data.prompts.as_ref().unwrap().len(), 2);
    assert!(out.join("images/chelsea-0-warm.jpg").is_file());
    // Every comparison is within one photo and names its prompt.
    for c in data.read(Split::Train).unwrap() {
        let photo = |id: &str| id.split('-').next().unwrap().to_string();
        assert_eq!(photo(&c.left), photo(&c.right));
        assert!(c.prompt.is_some());
    }
    let bad = FiltersConfig { beta: -0.1, ..cfg };
    let err = pal_data::filters::build(&bad, &photos, &[], &img, &text(), &out, &mut |_, _, _| {})
        .err()
        .unwrap();
    assert!(err.to_string().contains("beta"), "{err}");
    assert_eq!(
        Dataset::load(&out).unwrap().items.len(),
        20,
        "a refused build leaves the dataset intact"
    );
}

#[test]
fn mate_wallpapers_are_real_photos_credited_from_the_debian_copyright_file() {
    let mate = Asset::named("mate-backgrounds").unwrap();
    let nature = mate.path().expect("run `cargo xtask assets`");
    let photos = pal_data::wallpapers::mate(
        &nature,
        &mate.dir().join("usr/share/doc/mate-backgrounds/copyright"),
    )
    .unwrap();
    assert_eq!(photos.len(), 12);
    for p in &photos {
        assert!(p.path.is_file(), "{}", p.path.display());
        assert!(
            p.credit.contains("GPL-2+") && p.credit.contains("20"),
            "{}",
            p.credit
        );
        let img = image::open(&p.path).unwrap();
        assert!(
            img.width() >= 224 && img.height() >= 224,
            "{}",
            p.path.display()
        );
    }
    let ladybird = photos.iter().find(|p| p.stem == "mate-ladybird").unwrap();
    assert!(
        ladybird.credit.contains("Charles Barbin"),
        "{}",
        ladybird.credit
    );
}
