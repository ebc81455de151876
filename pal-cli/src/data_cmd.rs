//! `pal embed` (texts and images into an embedding store, cached) and `pal data` (the paper-style
//! datasets built from real registry content: summaries, filters, synthetic).

use std::path::Path;

use anyhow::{Context, Result, bail};
use pal_data::fashion::FashionConfig;
use pal_data::filters::FiltersConfig;
use pal_data::summaries::{SummariesConfig, SummaryGroups};
use pal_embed::{Asset, EmbedInput, Embedder, ImageEncoder, TextEncoder};
use serde_json::json;

use crate::args::Cli;
use crate::data_args::{DataArgs, DataKind, EmbedArgs, EncoderArg, GroupsArg, ItemsArg};
use crate::output::print;
use crate::progress::CountProgress;

fn text_encoder(model: Option<&Path>) -> Result<Embedder> {
    let dir = match model {
        Some(p) => p.to_path_buf(),
        None => Asset::named("minilm")?.path()?,
    };
    let enc = TextEncoder::load(&dir)
        .with_context(|| format!("loading the text encoder from {}", dir.display()))?;
    Ok(Embedder::Text(Box::new(enc)))
}

fn image_encoder(model: Option<&Path>) -> Result<Embedder> {
    let file = match model {
        Some(p) => p.to_path_buf(),
        None => Asset::named("efficientnet")?.path()?,
    };
    Ok(Embedder::Image(ImageEncoder::load(&file).with_context(
        || format!("loading the image encoder from {}", file.display()),
    )?))
}

fn text_inputs(path: &Path) -> Result<Vec<EmbedInput>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let jsonl = path.extension().is_some_and(|e| e == "jsonl");
    let mut out = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        if !jsonl {
            out.push(EmbedInput::Text {
                id: format!("{}", n + 1),
                text: line.to_string(),
            });
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), n + 1))?;
        let field = |k: &str| {
            v[k].as_str().map(str::to_string).with_context(|| {
                format!(
                    "{}:{}: field `{k}` missing or not a string",
                    path.display(),
                    n + 1
                )
            })
        };
        out.push(EmbedInput::Text {
            id: field("id")?,
            text: field("text")?,
        });
    }
    Ok(out)
}

fn image_inputs(dir: &Path) -> Result<Vec<EmbedInput>> {
    let mut out = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("reading directory {}", dir.display()))?
    {
        let path = entry?.path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) {
            let id = path
                .file_stem()
                .and_then(|s| s.to_str())
                .context("file name is not UTF-8")?
                .to_string();
            out.push(EmbedInput::Image { id, path });
        }
    }
    out.sort_by(|a, b| a.id().cmp(b.id()));
    Ok(out)
}

pub fn embed_cmd(cli: &Cli, a: &EmbedArgs) -> Result<()> {
    let (embedder, inputs) = match a.encoder {
        EncoderArg::Text => (text_encoder(a.model.as_deref())?, text_inputs(&a.input)?),
        EncoderArg::Image => (image_encoder(a.model.as_deref())?, image_inputs(&a.input)?),
    };
    if inputs.is_empty() {
        bail!("{}: no inputs found", a.input.display());
    }
    let mut bar = CountProgress::new(cli.quiet);
    let r =
        pal_embed::embed_into_store(&embedder, &inputs, &a.out, a.batch.max(1), &mut |d, t| {
            bar.update("embedding", d, t)
        })?;
    bar.finish();
    print(cli, json!({"out": a.out, "report": r}), || {
        format!(
            "wrote {} ({} items × {}): {} embedded at {:.1} items/s, {} reused from the cache\n",
            a.out.display(),
            r.items,
            r.dim,
            r.embedded,
            r.items_per_second,
            r.reused
        )
    });
    Ok(())
}

pub fn data_cmd(cli: &Cli, a: &DataArgs) -> Result<()> {
    let mut bar = CountProgress::new(cli.quiet);
    let (out, built) = match &a.kind {
        DataKind::Synthetic(s) => return crate::commands::synth_cmd(cli, s),
        DataKind::Summaries(s) => {
            let cfg = SummariesConfig {
                groups: match s.groups {
                    GroupsArg::Length => SummaryGroups::Length,
                    GroupsArg::Aspect => SummaryGroups::Aspect,
                },
                population: s.users.config(),
                papers: s.papers,
                relevance: s.relevance,
            };
            let source = Asset::named("aclsum")?.path()?;
            let enc = text_encoder(None)?;
            (
                &s.out,
                pal_data::summaries::build(&cfg, &source, &enc, &s.out, &mut |st, d, t| {
                    bar.update(st, d, t)
                })?,
            )
        }
        DataKind::Psychotools(s) => {
            use pal_data::psychotools::{ItemsAs, PsychoConfig, PsychoSet, build};
            let set = PsychoSet::named(&s.set)?;
            let cfg = PsychoConfig {
                set,
                items: match s.items {
                    ItemsArg::OneHot => ItemsAs::OneHot,
                    ItemsArg::Text => ItemsAs::Text,
                },
                unseen_share: s.unseen_share,
                unseen_pool: s.unseen_pool,
                respondents: s.respondents,
                seed: s.seed,
            };
            cfg.validate()?;
            let source = Asset::named(set.package)?.path()?;
            let enc = match cfg.items {
                ItemsAs::Text => Some(text_encoder(None)?),
                ItemsAs::OneHot => None,
            };
            (
                &s.out,
                build(&cfg, &source, enc.as_ref(), &s.out, &mut |st, d, t| {
                    bar.update(st, d, t)
                })?,
            )
        }
        DataKind::Fashion(s) => {
            let cfg = FashionConfig {
                products: s.products,
                pool: s.pool,
                relevance: s.relevance,
                population: s.users.config(),
            };
            cfg.validate()?;
            let source = Asset::named("fashion-mnist")?.path()?;
            let enc = text_encoder(None)?;
            (
                &s.out,
                pal_data::fashion::build(&cfg, &source, &enc, &s.out, &mut |st, d, t| {
                    bar.update(st, d, t)
                })?,
            )
        }
        DataKind::Filters(s) => {
            let cfg = FiltersConfig {
                beta: s.beta,
                relevance: s.relevance,
                crops: s.crops,
                photos: s.photos,
                population: s.users.config(),
            };
            cfg.validate()?;
            let photos = Asset::named("skimage")?.path()?;
            let extra = if s.wallpapers {
                let mate = Asset::named("mate-backgrounds")?;
                pal_data::wallpapers::mate(
                    &mate.path()?,
                    &mate.dir().join("usr/share/doc/mate-backgrounds/copyright"),
                )?
            } else {
                vec![]
            };
            let (img, txt) = (image_encoder(None)?, text_encoder(None)?);
            (
                &s.out,
                pal_data::filters::build(
                    &cfg,
                    &photos,
                    &extra,
                    &img,
                    &txt,
                    &s.out,
                    &mut |st, d, t| bar.update(st, d, t),
                )?,
            )
        }
    };
    bar.finish();
    print(cli, json!({"out": out, "card": built.card}), || {
        let mut s = format!("wrote {} (card.json, content.json)\n", out.display());
        for (split, rows) in &built.splits {
            s += &format!("  {:<20} {} comparisons\n", split.file_name(), rows.len());
        }
        for kind in ["items", "prompts"] {
            let r = &built.card["embedding"][kind];
            if r.is_null() {
                continue;
            }
            s += &format!(
                "  {kind:<20} {} embedded ({:.1}/s), {} from the cache\n",
                r["embedded"],
                r["items_per_second"].as_f64().unwrap_or(0.0),
                r["reused"]
            );
        }
        s
    });
    Ok(())
}
