//! `fashion`: a product gallery at the scale the engine is built for — the 70,000 real product
//! photos of Fashion-MNIST (Debian's `dataset-fashion-mnist`, MIT; 28×28 grey, 10 categories).
//! Items are pixel features (the image mean-pooled to `pool`×`pool` cells; no encoder, so all
//! 70k take seconds), prompts are the category names embedded by MiniLM (so typed prompts work),
//! and user groups differ in what people see: darker vs lighter products, and patterned
//! (textured) vs plain ones, within the category the prompt names. Every prompt declares its
//! category's products as its candidates; a share of comparisons (relevance) puts a product of
//! the prompt's category against one of another category, which everyone decides the same way.

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use pal_embed::{EmbedInput, EmbedReport, Embedder};
use pal_format::dataset::{ITEMS_FILE, PROMPTS_FILE};
use pal_math::EmbeddingStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::{
    Built, Comparison, Content, DataError, Group, ItemContent, Population, PopulationConfig,
    Progress,
};

/// Fashion-MNIST's categories, as the prompts that name them.
pub const CATEGORIES: [&str; 10] = [
    "a T-shirt or top",
    "a pair of trousers",
    "a pullover",
    "a dress",
    "a coat",
    "a sandal",
    "a shirt",
    "a sneaker",
    "a bag",
    "an ankle boot",
];

/// The image files of the package, in item order (training set first, then test set).
const FILES: [(&str, &str); 2] = [
    ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
];
const SIDE: usize = 28;

/// Options of `pal data fashion`.
#[derive(Debug, Clone, Serialize)]
pub struct FashionConfig {
    /// Use only the first N products (quick runs and tests); all 70,000 by default.
    pub products: Option<usize>,
    /// Cells per side of the pooled pixel features (28 must be a multiple): 7 gives 49 features.
    pub pool: usize,
    /// Share of comparisons everyone agrees on: a product of the prompt's category beats one of
    /// another category, in [0, 1].
    pub relevance: f32,
    pub population: PopulationConfig,
}

impl FashionConfig {
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |field, reason: String| Err(DataError::Config { field, reason });
        crate::check_share("relevance", self.relevance)?;
        if ![1, 2, 4, 7, 14, 28].contains(&self.pool) {
            return bad(
                "pool",
                format!("{} does not divide 28 (1, 2, 4, 7, 14 or 28)", self.pool),
            );
        }
        if self.products.is_some_and(|n| n < 20) {
            return bad("products", "at least 20 are needed".into());
        }
        self.population.validate()
    }
}

/// One product: category, pixels (0–255, row-major 28×28).
struct Product {
    category: usize,
    pixels: Vec<u8>,
}

impl Product {
    /// Mean brightness in [0, 1] (0 black).
    fn brightness(&self) -> f32 {
        self.pixels.iter().map(|&p| f32::from(p)).sum::<f32>() / (255.0 * self.pixels.len() as f32)
    }

    /// Texture: mean absolute difference of horizontally and vertically adjacent pixels, over
    /// the product's own pixels (non-zero), in [0, 1].
    fn pattern(&self) -> f32 {
        let px = |x: usize, y: usize| f32::from(self.pixels[y * SIDE + x]);
        let (mut sum, mut n) = (0.0f32, 0usize);
        for y in 0..SIDE {
            for x in 0..SIDE {
                if self.pixels[y * SIDE + x] == 0 {
                    continue;
                }
                if x + 1 < SIDE {
                    sum += (px(x, y) - px(x + 1, y)).abs();
                    n += 1;
                }
                if y + 1 < SIDE {
                    sum += (px(x, y) - px(x, y + 1)).abs();
                    n += 1;
                }
            }
        }
        sum / (255.0 * n.max(1) as f32)
    }

    /// Mean of each `cell`×`cell` block, scaled to [0, 1].
    fn pooled(&self, pool: usize) -> Vec<f32> {
        let cell = SIDE / pool;
        let mut out = vec![0.0f32; pool * pool];
        for y in 0..SIDE {
            for x in 0..SIDE {
                out[(y / cell) * pool + x / cell] += f32::from(self.pixels[y * SIDE + x]);
            }
        }
        let scale = 255.0 * (cell * cell) as f32;
        out.iter_mut().for_each(|v| *v /= scale);
        out
    }
}

fn gunzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| pal_math::PalError::io(path, e))?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::Source {
            path: path.to_path_buf(),
            reason: format!("not gzip: {e}"),
        })?;
    Ok(bytes)
}

/// Reads an IDX file (big-endian header: magic `0x0000080N`, N dimension sizes), returning the
/// sizes and the unsigned-byte payload.
pub fn read_idx(bytes: &[u8], path: &Path) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let bad = |reason: String| DataError::Source {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(bad("not an IDX file of unsigned bytes".into()));
    }
    let dims = usize::from(bytes[3]);
    let head = 4 + 4 * dims;
    if bytes.len() < head {
        return Err(bad("IDX header is cut short".into()));
    }
    let sizes: Vec<usize> = (0..dims)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let n = sizes.iter().try_fold(1usize, |a, s| a.checked_mul(*s));
    if n != Some(bytes.len() - head) {
        return Err(bad(format!(
            "IDX sizes {sizes:?} do not match the {} data bytes",
            bytes.len() - head
        )));
    }
    Ok((sizes, bytes[head..].to_vec()))
}

fn read_products(source: &Path, limit: Option<usize>) -> Result<Vec<Product>, DataError> {
    let mut out = Vec::new();
    for (images, labels) in FILES {
        let (ip, lp) = (source.join(images), source.join(labels));
        let (isz, ibytes) = read_idx(&gunzip(&ip)?, &ip)?;
        let (lsz, lbytes) = read_idx(&gunzip(&lp)?, &lp)?;
        if isz.len() != 3 || isz[1..] != [SIDE, SIDE] || lsz != [isz[0]] {
            return Err(DataError::Source {
                path: ip,
                reason: format!("expected N×28×28 images with N labels, found {isz:?} and {lsz:?}"),
            });
        }
        for (i, &label) in lbytes.iter().enumerate() {
            if limit.is_some_and(|n| out.len() >= n) {
                return Ok(out);
            }
            out.push(Product {
                category: usize::from(label).min(CATEGORIES.len() - 1),
                pixels: ibytes[i * SIDE * SIDE..(i + 1) * SIDE * SIDE].to_vec(),
            });
        }
    }
    Ok(out)
}

/// What each group prefers, as a score (higher wins).
#[derive(Debug, Clone, Copy)]
enum Taste {
    Dark,
    Light,
    Patterned,
}

/// Builds the gallery into `out`: item features and thumbnails, prompts embedded by `text`,
/// splits, card and content.
pub fn build(
    cfg: &FashionConfig,
    source: &Path,
    text: &Embedder,
    out: &Path,
    progress: Progress,
) -> Result<Built, DataError> {
    cfg.validate()?;
    let t0 = Instant::now();
    let products = read_products(source, cfg.products)?;
    let ids: Vec<String> = (0..products.len()).map(|i| format!("fm{i:05}")).collect();
    let images = out.join("images");
    std::fs::create_dir_all(&images).map_err(|e| pal_math::PalError::io(&images, e))?;
    let mut content = Content::default();
    let mut data = Vec::with_capacity(products.len() * cfg.pool * cfg.pool);
    for (i, (p, id)) in products.iter().zip(&ids).enumerate() {
        data.extend(p.pooled(cfg.pool));
        let rel = format!("images/{id}.png");
        let img = image::GrayImage::from_raw(SIDE as u32, SIDE as u32, p.pixels.clone())
            .expect("28×28 pixels");
        img.save(out.join(&rel)).map_err(|e| DataError::Source {
            path: out.join(&rel),
            reason: e.to_string(),
        })?;
        content.items.insert(id.clone(), ItemContent::Image(rel));
        content
            .candidates
            .entry(format!("c{}", p.category))
            .or_default()
            .push(id.clone());
        if i % 1000 == 999 {
            progress("pixel features and thumbnails", i + 1, products.len());
        }
    }
    let dim = cfg.pool * cfg.pool;
    EmbeddingStore::new(ids.clone(), dim, data)?.save(&out.join(ITEMS_FILE))?;
    let seconds = t0.elapsed().as_secs_f64();
    let items_report = EmbedReport {
        items: products.len(),
        embedded: products.len(),
        reused: 0,
        dim,
        seconds,
        items_per_second: products.len() as f64 / seconds.max(1e-9),
    };
    let prompts: Vec<EmbedInput> = CATEGORIES
        .iter()
        .enumerate()
        .map(|(c, t)| EmbedInput::Text {
            id: format!("c{c}"),
            text: t.to_string(),
        })
        .collect();
    for p in &prompts {
        if let EmbedInput::Text { id, text } = p {
            content.prompts.insert(id.clone(), text.clone());
        }
    }
    let prompts_report =
        pal_embed::embed_into_store(text, &prompts, &out.join(PROMPTS_FILE), 16, &mut |d, t| {
            progress("embedding prompts", d, t)
        })?;

    let groups = vec![
        Group {
            name: "dark".into(),
            rule: "prefers the darker product (lower mean brightness)".into(),
            share: 0.4,
        },
        Group {
            name: "light".into(),
            rule: "prefers the lighter product (higher mean brightness)".into(),
            share: 0.3,
        },
        Group {
            name: "patterned".into(),
            rule: "prefers the more patterned product (more contrast between neighbouring pixels)"
                .into(),
            share: 0.3,
        },
    ];
    let tastes = [Taste::Dark, Taste::Light, Taste::Patterned];
    let features: Vec<(f32, f32)> = products
        .iter()
        .map(|p| (p.brightness(), p.pattern()))
        .collect();
    let mut by_category: Vec<Vec<usize>> = vec![vec![]; CATEGORIES.len()];
    for (i, p) in products.iter().enumerate() {
        by_category[p.category].push(i);
    }
    let present: Vec<usize> = (0..CATEGORIES.len())
        .filter(|&c| by_category[c].len() >= 2)
        .collect();
    let mut rng = StdRng::seed_from_u64(cfg.population.seed);
    let pop = Population::new(&cfg.population, groups, &mut rng)?;
    let splits = pop.simulate(&cfg.population, &mut rng, &mut |g, rng| {
        let ci = rng.random_range(0..present.len());
        let c = present[ci];
        let pool = &by_category[c];
        let a = pool[rng.random_range(0..pool.len())];
        let prompt = Some(format!("c{c}"));
        if cfg.relevance > 0.0 && rng.random::<f32>() < cfg.relevance {
            if present.len() < 2 {
                return None;
            }
            let other = &by_category[present[crate::other_than(rng, present.len(), ci)]];
            let b = other[rng.random_range(0..other.len())];
            let mine_left = rng.random::<bool>();
            let (l, r) = if mine_left { (a, b) } else { (b, a) };
            return Some(Comparison {
                user: String::new(),
                prompt,
                left: ids[l].clone(),
                right: ids[r].clone(),
                label: u8::from(mine_left),
            });
        }
        let b = pool[rng.random_range(0..pool.len())];
        let score = |i: usize| match tastes[g] {
            Taste::Dark => -features[i].0,
            Taste::Light => features[i].0,
            Taste::Patterned => features[i].1,
        };
        let (sa, sb) = (score(a), score(b));
        // Too close to tell: no comparison.
        ((sa - sb).abs() > 0.01).then(|| Comparison {
            user: String::new(),
            prompt,
            left: ids[a].clone(),
            right: ids[b].clone(),
            label: u8::from(sa > sb),
        })
    })?;
    let asset = pal_embed::Asset::named("fashion-mnist")?;
    let card = serde_json::json!({
        "name": "fashion",
        "source": asset.source(),
        "license": "MIT (Fashion-MNIST, Zalando Research); simulated preferences CC0-1.0",
        "items": format!("{} product photos (28×28 grey) in 10 categories; features: the image mean-pooled to {}×{} cells", products.len(), cfg.pool, cfg.pool),
        "prompts": "the 10 category names",
        "encoder": format!("pixel features ({dim}-d, no encoder) for items; all-MiniLM-L6-v2 (384-d) for prompts"),
        "rule": format!("with prob. r={:.2}: under a category, one of its products against a product of another category, everyone prefers the category's own (relevance); otherwise two products of the category, decided by the user's group", cfg.relevance),
        "build_seconds": seconds,
        "config": cfg,
    });
    Built::finish(
        out,
        splits,
        card,
        content,
        &pop,
        (items_report, prompts_report),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(f: impl Fn(usize, usize) -> u8) -> Product {
        let mut pixels = vec![0; SIDE * SIDE];
        for y in 0..SIDE {
            for x in 0..SIDE {
                pixels[y * SIDE + x] = f(x, y);
            }
        }
        Product {
            category: 0,
            pixels,
        }
    }

    #[test]
    fn features_pool_and_tastes_measure_what_they_say() {
        let plain = product(|_, _| 200);
        let dark = product(|_, _| 40);
        let striped = product(|x, _| if x % 2 == 0 { 250 } else { 60 });
        assert!(dark.brightness() < plain.brightness());
        assert!(striped.pattern() > 0.3 && plain.pattern() == 0.0);
        let pooled = plain.pooled(7);
        assert_eq!(pooled.len(), 49);
        assert!(pooled.iter().all(|v| (v - 200.0 / 255.0).abs() < 1e-6));
        let half = product(|x, _| if x < 14 { 255 } else { 0 }).pooled(2);
        assert_eq!(half, [1.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn idx_files_are_read_and_bad_ones_named() {
        let mut ok = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        ok.extend([1, 2, 3, 4]);
        let (sizes, data) = read_idx(&ok, Path::new("x")).unwrap();
        assert_eq!((sizes, data), (vec![2, 1, 2], vec![1, 2, 3, 4]));
        assert!(
            read_idx(&ok[..18], Path::new("x"))
                .unwrap_err()
                .to_string()
                .contains("do not match")
        );
        assert!(
            read_idx(b"PK\x03\x04", Path::new("x"))
                .unwrap_err()
                .to_string()
                .contains("not an IDX")
        );
    }
}
