//! `filters`: Pick-a-Filter-style preferences over real CC0 photos (scikit-image's sample photos).
//!
//! Every photo is cut into several square crops (224 px), and every crop is shown plain and under
//! four colour filters (warm, cool, vivid, faded). The prompt is a short description of the photo.
//! With probability 1-β a comparison is between two plain crops of the same photo and every user
//! prefers the more colourful one (a shared taste, Hasler–Süsstrunk colourfulness); with probability
//! β it is between two filtered versions of the same crop, and users prefer by their group's filter
//! ranking (warm-lovers vs cool-lovers). β = 0 leaves no group signal, β = 1 only group signal.

use std::path::Path;

use image::{DynamicImage, RgbImage};
use pal_embed::{EmbedInput, Embedder};
use pal_format::Comparison;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::wallpapers::Photo;
use crate::{
    Built, Content, DataError, Group, ItemContent, Population, PopulationConfig, Progress,
};

/// The photos used and their prompts.
pub const PHOTOS: [(&str, &str); 15] = [
    (
        "astronaut.png",
        "a portrait of an astronaut in a spacesuit with a flag",
    ),
    ("chelsea.png", "a tabby cat looking to the side"),
    ("coffee.png", "a cup of coffee on a saucer"),
    ("rocket.jpg", "a rocket on the launch pad"),
    ("motorcycle_left.png", "a motorcycle parked in a garage"),
    (
        "hubble_deep_field.jpg",
        "galaxies in the deep sky seen by a telescope",
    ),
    ("ihc.png", "a stained tissue sample under a microscope"),
    ("retina.jpg", "a photograph of the back of a human eye"),
    ("camera.png", "a man with a camera on a tripod"),
    ("moon.png", "the surface of the moon with craters"),
    ("coins.png", "old coins lying on a table"),
    ("grass.png", "a close-up of grass"),
    ("gravel.png", "a close-up of gravel"),
    ("brick.png", "a brick wall"),
    ("clock_motion.png", "a clock on a wall"),
];

/// Colour filters; `None` is the plain photo.
pub const FILTERS: [Filter; 5] = [
    Filter::None,
    Filter::Warm,
    Filter::Cool,
    Filter::Vivid,
    Filter::Faded,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Filter {
    None,
    Warm,
    Cool,
    Vivid,
    Faded,
}

impl Filter {
    pub fn name(self) -> &'static str {
        match self {
            Filter::None => "plain",
            Filter::Warm => "warm",
            Filter::Cool => "cool",
            Filter::Vivid => "vivid",
            Filter::Faded => "faded",
        }
    }

    /// Applies the filter to one pixel (channels in 0..=1).
    pub fn apply(self, [r, g, b]: [f32; 3]) -> [f32; 3] {
        let grey = 0.299 * r + 0.587 * g + 0.114 * b;
        let out = match self {
            Filter::None => [r, g, b],
            Filter::Warm => [r * 1.12 + 0.06, g * 1.02 + 0.02, b * 0.78],
            Filter::Cool => [r * 0.78, g * 1.0 + 0.02, b * 1.12 + 0.08],
            Filter::Vivid => [
                grey + 1.6 * (r - grey),
                grey + 1.6 * (g - grey),
                grey + 1.6 * (b - grey),
            ],
            Filter::Faded => [
                0.6 * r + 0.4 * 0.62,
                0.6 * g + 0.4 * 0.6,
                0.6 * b + 0.4 * 0.58,
            ],
        };
        out.map(|c| c.clamp(0.0, 1.0))
    }
}

/// Filter rankings of the two groups (best first).
const WARM_ORDER: [Filter; 5] = [
    Filter::Warm,
    Filter::Vivid,
    Filter::None,
    Filter::Faded,
    Filter::Cool,
];
const COOL_ORDER: [Filter; 5] = [
    Filter::Cool,
    Filter::Faded,
    Filter::None,
    Filter::Vivid,
    Filter::Warm,
];

/// Options of `pal data filters`.
#[derive(Debug, Clone, Serialize)]
pub struct FiltersConfig {
    /// Fraction of comparisons between filtered versions (group signal), in [0, 1].
    pub beta: f32,
    /// Fraction of comparisons everyone agrees on, drawn first: under a photo's prompt, a version
    /// of that photo beats a version of another photo (relevance), in [0, 1].
    pub relevance: f32,
    /// Square crops per photo.
    pub crops: usize,
    /// Use only the first N photos (small slices for tests).
    pub photos: usize,
    pub population: PopulationConfig,
}

impl FiltersConfig {
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |field, reason: String| Err(DataError::Config { field, reason });
        crate::check_share("beta", self.beta)?;
        crate::check_share("relevance", self.relevance)?;
        if !(2..=64).contains(&self.crops) {
            return bad("crops", format!("{} is outside 2..=64", self.crops));
        }
        if !(1..=PHOTOS.len()).contains(&self.photos) {
            return bad(
                "photos",
                format!("{} is outside 1..={}", self.photos, PHOTOS.len()),
            );
        }
        Ok(())
    }
}

/// Hasler–Süsstrunk colourfulness of an RGB image (0..=255 scale).
pub fn colourfulness(img: &RgbImage) -> f32 {
    let n = (img.width() * img.height()).max(1) as f32;
    let (mut s, mut ss) = ([0f32; 2], [0f32; 2]);
    for p in img.pixels() {
        let [r, g, b] = p.0.map(f32::from);
        let (rg, yb) = (r - g, 0.5 * (r + g) - b);
        s[0] += rg;
        s[1] += yb;
        ss[0] += rg * rg;
        ss[1] += yb * yb;
    }
    let mean = [s[0] / n, s[1] / n];
    let var = [ss[0] / n - mean[0] * mean[0], ss[1] / n - mean[1] * mean[1]];
    (var[0].max(0.0) + var[1].max(0.0)).sqrt()
        + 0.3 * (mean[0] * mean[0] + mean[1] * mean[1]).sqrt()
}

fn filtered(img: &RgbImage, f: Filter) -> RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let v = f.apply(p.0.map(|c| f32::from(c) / 255.0));
        p.0 = v.map(|c| (c * 255.0).round() as u8);
    }
    out
}

struct Crop {
    photo: usize,
    id: String,
    colourfulness: f32,
}

/// Builds the dataset into `out`: crops and filtered images (`images/*.jpg`, also the thumbnails the
/// browser shows), embeddings (cached), splits, card, content.
/// `extra` photos (e.g. [`crate::wallpapers::mate`]) join the first `cfg.photos` scikit-image
/// photos, with their credits in the card.
pub fn build(
    cfg: &FiltersConfig,
    photos_dir: &Path,
    extra: &[Photo],
    image_enc: &Embedder,
    text_enc: &Embedder,
    out: &Path,
    progress: Progress,
) -> Result<Built, DataError> {
    cfg.validate()?;
    std::fs::create_dir_all(out.join("images")).map_err(|e| pal_math::PalError::io(out, e))?;
    // Crops are drawn from their own seed so every β shares the same images (and embedding cache).
    let mut crop_rng = StdRng::seed_from_u64(7);
    let mut crops = Vec::new();
    let mut content = Content::default();
    let mut items = Vec::new();
    let sources: Vec<Photo> = PHOTOS
        .iter()
        .take(cfg.photos)
        .map(|(file, prompt)| Photo {
            path: photos_dir.join(file),
            stem: file.split('.').next().unwrap_or(file).to_string(),
            prompt: prompt.to_string(),
            credit: "CC0 / public domain (scikit-image data)".into(),
        })
        .chain(extra.iter().cloned())
        .collect();
    let n_photos = sources.len();
    for (photo, src) in sources.iter().enumerate() {
        let (path, prompt) = (src.path.clone(), src.prompt.as_str());
        let img: DynamicImage = image::open(&path).map_err(|e| DataError::Source {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let rgb = img.to_rgb8();
        let side = rgb.width().min(rgb.height());
        content
            .prompts
            .insert(format!("p{photo}"), prompt.to_string());
        for c in 0..cfg.crops {
            let s = ((side as f32) * crop_rng.random_range(0.55..1.0)) as u32;
            let (x, y) = (
                crop_rng.random_range(0..=rgb.width() - s),
                crop_rng.random_range(0..=rgb.height() - s),
            );
            let crop = image::imageops::crop_imm(&rgb, x, y, s, s).to_image();
            let crop =
                image::imageops::resize(&crop, 224, 224, image::imageops::FilterType::Triangle);
            let base = format!("{}-{c}", src.stem);
            crops.push(Crop {
                photo,
                id: base.clone(),
                colourfulness: colourfulness(&crop),
            });
            for f in FILTERS {
                let id = format!("{base}-{}", f.name());
                let rel = format!("images/{id}.jpg");
                let path = out.join(&rel);
                filtered(&crop, f)
                    .save_with_format(&path, image::ImageFormat::Jpeg)
                    .map_err(|e| DataError::Source {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                content.items.insert(id.clone(), ItemContent::Image(rel));
                // A person compares versions of the photo the prompt describes.
                content
                    .candidates
                    .entry(format!("p{photo}"))
                    .or_default()
                    .push(id.clone());
                items.push(EmbedInput::Image { id, path });
            }
        }
    }
    let groups = vec![
        Group {
            name: "warm".into(),
            rule: format!("filtered pairs: {}", order_text(&WARM_ORDER)),
            share: 0.5,
        },
        Group {
            name: "cool".into(),
            rule: format!("filtered pairs: {}", order_text(&COOL_ORDER)),
            share: 0.5,
        },
    ];
    let orders = [WARM_ORDER, COOL_ORDER];
    let mut rng = StdRng::seed_from_u64(cfg.population.seed);
    let pop = Population::new(&cfg.population, groups, &mut rng)?;
    let per_photo = cfg.crops;
    let splits = pop.simulate(&cfg.population, &mut rng, &mut |g, rng| {
        let a = rng.random_range(0..crops.len());
        let photo = crops[a].photo;
        // Drawn only when asked for, so `relevance` 0 leaves the earlier datasets bit for bit.
        let relevant = cfg.relevance > 0.0 && rng.random::<f32>() < cfg.relevance;
        let (left, right, label) = if relevant {
            if n_photos < 2 {
                return None;
            }
            let other = crate::other_than(rng, n_photos, photo);
            let b = other * per_photo + rng.random_range(0..per_photo);
            let version = |c: &Crop, rng: &mut StdRng| {
                format!(
                    "{}-{}",
                    c.id,
                    FILTERS[rng.random_range(0..FILTERS.len())].name()
                )
            };
            let (mine, theirs) = (version(&crops[a], rng), version(&crops[b], rng));
            if rng.random::<bool>() {
                (mine, theirs, 1)
            } else {
                (theirs, mine, 0)
            }
        } else if rng.random::<f32>() < cfg.beta {
            let (i, j) = (
                rng.random_range(0..FILTERS.len()),
                rng.random_range(0..FILTERS.len()),
            );
            if i == j {
                return None;
            }
            let rank = |f: Filter| orders[g].iter().position(|&x| x == f);
            let (fl, fr) = (FILTERS[i], FILTERS[j]);
            let id = &crops[a].id;
            (
                format!("{id}-{}", fl.name()),
                format!("{id}-{}", fr.name()),
                u8::from(rank(fl) < rank(fr)),
            )
        } else {
            let b = photo * per_photo + rng.random_range(0..per_photo);
            let (ca, cb) = (&crops[a], &crops[b]);
            if a == b || (ca.colourfulness - cb.colourfulness).abs() < 1.0 {
                return None;
            }
            (
                format!("{}-plain", ca.id),
                format!("{}-plain", cb.id),
                u8::from(ca.colourfulness > cb.colourfulness),
            )
        };
        Some(Comparison {
            user: String::new(),
            prompt: Some(format!("p{photo}")),
            left,
            right,
            label,
        })
    })?;
    let prompts: Vec<EmbedInput> = content
        .prompts
        .iter()
        .map(|(id, text)| EmbedInput::Text {
            id: id.clone(),
            text: text.clone(),
        })
        .collect();
    let (ri, rp) = crate::embed_stores(out, (image_enc, &items), (text_enc, &prompts), progress)?;
    let asset = pal_embed::Asset::named("skimage")?;
    let card = serde_json::json!({
        "name": "filters",
        "source": asset.source(),
        "license": "photos: see `photos` (scikit-image CC0 / public domain; MATE wallpapers GPL-2+); simulated preferences CC0-1.0",
        "photos": sources.iter().enumerate().map(|(i, s)| serde_json::json!({"prompt_id": format!("p{i}"), "id": s.stem, "prompt": s.prompt, "credit": s.credit})).collect::<Vec<_>>(),
        "items": format!("{} images: {} photos × {} crops × filters {:?}", items.len(), n_photos, cfg.crops, FILTERS.map(Filter::name)),
        "prompts": "a short description of each photo",
        "encoder": "EfficientNet-Lite0 pooled features (1280-d) for images; all-MiniLM-L6-v2 (384-d) for prompts",
        "rule": format!("with prob. r={:.2}: under a photo's prompt, a version of that photo against a version of another photo, everyone prefers the photo the prompt describes (relevance); otherwise, with prob. 1-β={:.2}: two plain crops of a photo, everyone prefers the more colourful (Hasler–Süsstrunk); with prob. β={:.2}: two filters of one crop, ranked by the user's group", cfg.relevance, 1.0 - cfg.beta, cfg.beta),
        "config": cfg,
    });
    Built::finish(out, splits, card, content, &pop, (ri, rp))
}

fn order_text(order: &[Filter]) -> String {
    order
        .iter()
        .map(|f| f.name())
        .collect::<Vec<_>>()
        .join(" > ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_shift_colour_the_documented_way() {
        let px = [0.5, 0.5, 0.5];
        let warm = Filter::Warm.apply(px);
        let cool = Filter::Cool.apply(px);
        assert!(warm[0] > warm[2] && cool[2] > cool[0]);
        assert_eq!(Filter::None.apply(px), px);
        let vivid = Filter::Vivid.apply([0.6, 0.4, 0.4]);
        assert!(vivid[0] - vivid[1] > 0.2);
    }

    #[test]
    fn colourfulness_is_zero_for_grey_and_grows_with_saturation() {
        let grey = RgbImage::from_pixel(8, 8, image::Rgb([120, 120, 120]));
        assert!(colourfulness(&grey) < 1e-3);
        let mut mixed = grey.clone();
        for (i, p) in mixed.pixels_mut().enumerate() {
            p.0 = if i % 2 == 0 {
                [200, 40, 40]
            } else {
                [40, 40, 200]
            };
        }
        assert!(colourfulness(&mixed) > colourfulness(&filtered(&mixed, Filter::Faded)));
    }

    #[test]
    fn bad_options_name_the_field() {
        let pop = PopulationConfig {
            seen_users: 4,
            unseen_users: 0,
            pairs_per_user: 10,
            unseen_train_pairs: 0,
            unseen_test_pairs: 0,
            seed: 1,
        };
        let cfg = FiltersConfig {
            beta: 1.5,
            relevance: 0.0,
            crops: 4,
            photos: 2,
            population: pop,
        };
        assert!(cfg.validate().unwrap_err().to_string().contains("`beta`"));
    }
}
