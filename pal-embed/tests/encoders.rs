//! The real encoders on real inputs: MiniLM's similarity ordering and a checksum, EfficientNet's
//! ImageNet classes for shipped photos, and the cache. Needs `cargo xtask assets`; fails loudly without.

use pal_embed::{Asset, EmbedInput, Embedder, ImageEncoder, TextEncoder, embed_into_store};

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn text_encoder() -> TextEncoder {
    let dir = Asset::named("minilm")
        .unwrap()
        .path()
        .expect("run `cargo xtask assets`");
    TextEncoder::load(&dir).unwrap()
}

#[test]
fn minilm_puts_paraphrases_closest() {
    let enc = text_encoder();
    let texts = [
        "A man is playing a guitar.",
        "Someone is strumming a guitar.",
        "The stock market fell sharply today.",
        "A chef is cooking pasta in the kitchen.",
    ];
    let e = enc.embed(&texts).unwrap();
    assert_eq!(e.len(), 4);
    assert!(
        e.iter()
            .all(|v| v.len() == 384 && (cos(v, v) - 1.0).abs() < 1e-4)
    );
    let para = cos(&e[0], &e[1]);
    assert!(para > 0.6, "paraphrase similarity {para}");
    assert!(para > cos(&e[0], &e[2]) + 0.3 && para > cos(&e[0], &e[3]) + 0.3);
    // Batching and padding do not change a sentence's embedding.
    let alone = enc.embed(&texts[2..3]).unwrap();
    assert!(cos(&alone[0], &e[2]) > 0.9999);
    // Checksum against Hugging Face transformers (PyTorch) on the same files: the first coordinates
    // of sentence 0 and the sum of all 4×384 values.
    let reference = [0.0217f32, -0.0049, -0.0096, -0.0634];
    for (got, want) in e[0].iter().zip(reference) {
        assert!(
            (got - want).abs() < 2e-4,
            "coordinate {got} vs reference {want}"
        );
    }
    let sum: f32 = e.iter().flatten().sum();
    assert!(
        (sum - 0.2087).abs() < 1e-3,
        "checksum {sum} vs reference 0.2087"
    );
}

#[test]
fn efficientnet_recognises_the_shipped_photos() {
    let weights = Asset::named("efficientnet")
        .unwrap()
        .path()
        .expect("run `cargo xtask assets`");
    let photos = Asset::named("skimage")
        .unwrap()
        .path()
        .expect("run `cargo xtask assets`");
    let enc = ImageEncoder::load(&weights).unwrap();
    // ImageNet-1k classes: 281 tabby, 282 tiger cat, 285 Egyptian cat; 967 espresso, 968 cup, 504 coffee mug.
    for (file, ok) in [
        ("chelsea.png", &[281usize, 282, 285][..]),
        ("coffee.png", &[967, 968, 504][..]),
    ] {
        let img = image::open(photos.join(file)).unwrap();
        let (features, logits) = enc.forward(&ImageEncoder::prepare(&img)).unwrap();
        assert_eq!(features.len(), 1280);
        let top = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap();
        eprintln!("{file}: class {top} logit {}", logits[top]);
        assert!(ok.contains(&top), "{file}: predicted class {top}");
    }
}

#[test]
fn cache_reuses_unchanged_items_and_reembeds_changed_ones() {
    let enc = Embedder::Text(Box::new(text_encoder()));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("texts.safetensors");
    let mut inputs: Vec<EmbedInput> = ["red apple", "green pear", "blue sky"]
        .iter()
        .enumerate()
        .map(|(i, t)| EmbedInput::Text {
            id: format!("t{i}"),
            text: t.to_string(),
        })
        .collect();
    let first = embed_into_store(&enc, &inputs, &out, 2, &mut |_, _| {}).unwrap();
    assert_eq!((first.embedded, first.reused), (3, 0));
    inputs[1] = EmbedInput::Text {
        id: "t1".into(),
        text: "yellow banana".into(),
    };
    let second = embed_into_store(&enc, &inputs, &out, 2, &mut |_, _| {}).unwrap();
    assert_eq!((second.embedded, second.reused), (1, 2));
    let store = pal_math::EmbeddingStore::load(&out).unwrap();
    let fresh = match &enc {
        Embedder::Text(t) => t.embed(&["yellow banana"]).unwrap(),
        Embedder::Image(_) => unreachable!(),
    };
    assert!(cos(store.get("t1").unwrap(), &fresh[0]) > 0.9999);
    // Duplicate ids and unreadable images are clear errors, and the store is left as it was.
    inputs.push(EmbedInput::Text {
        id: "t0".into(),
        text: "again".into(),
    });
    let err = embed_into_store(&enc, &inputs, &out, 2, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("duplicate id"), "{err}");
    let missing = vec![EmbedInput::Image {
        id: "x".into(),
        path: dir.path().join("nope.png"),
    }];
    let err = embed_into_store(&enc, &missing, &out, 2, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("nope.png"), "{err}");
    assert_eq!(pal_math::EmbeddingStore::load(&out).unwrap().len(), 3);
    // Another model's files (the same weights under an edited config) never reuse these rows.
    let other = dir.path().join("other-model");
    std::fs::create_dir(&other).unwrap();
    let src = Asset::named("minilm").unwrap().path().unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::os::unix::fs::symlink(src.join(f), other.join(f)).unwrap();
    }
    let cfg = std::fs::read_to_string(src.join("config.json")).unwrap();
    std::fs::write(other.join("config.json"), format!("{cfg}\n")).unwrap();
    let enc2 = Embedder::Text(Box::new(TextEncoder::load(&other).unwrap()));
    assert_ne!(enc2.model_id(), enc.model_id());
    let r = embed_into_store(&enc2, &inputs[..3], &out, 2, &mut |_, _| {}).unwrap();
    assert_eq!((r.embedded, r.reused), (3, 0));
}
