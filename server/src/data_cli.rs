//! `pal embed` (texts and images into an embedding store, cached) and `pal data` (the paper-style
//! datasets built from real registry content: summaries, filters, synthetic).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use pal_data::PopulationConfig;
use pal_data::filters::FiltersConfig;
use pal_data::summaries::{SummariesConfig, SummaryGroups};
use pal_embed::{Asset, EmbedInput, Embedder, ImageEncoder, TextEncoder};
use serde_json::json;

use crate::args::{Cli, SynthArgs};
use crate::progress::CountProgress;

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum EncoderArg {
    /// all-MiniLM-L6-v2 sentence embeddings (384-d).
    Text,
    /// EfficientNet-Lite0 pooled features (1280-d).
    Image,
}

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// Input: for `text`, a JSONL file of {"id", "text"} or a .txt file (one text per line, id = line
    /// number); for `image`, a directory of .png/.jpg/.jpeg files (id = file name without extension).
    #[arg(long)]
    pub input: PathBuf,
    /// Output embedding store (safetensors); unchanged items of an earlier run are reused.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum)]
    pub encoder: EncoderArg,
    /// A sentence-transformers BERT folder (model.safetensors, tokenizer.json, config.json) or an
    /// EfficientNet-Lite0 legacy .pth file, instead of the pinned asset.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Items per encoder batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
}

#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    pub kind: DataKind,
}

#[derive(Subcommand, Debug)]
pub enum DataKind {
    /// TL;DR-style: human summaries of ACL papers (aclsum), 7:3 length or aspect preference groups.
    Summaries(SummariesArgs),
    /// Pick-a-Filter-style: CC0 photos under colour filters; β = share of filtered pairs.
    Filters(FiltersArgs),
    /// The synthetic setting (same as `pal synth`), so all three run through one pipeline.
    Synthetic(SynthArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum GroupsArg {
    /// 70% prefer longer summaries, 30% shorter (the paper's TL;DR setting).
    Length,
    /// 70% prefer summaries stating the approach, 30% the outcome.
    Aspect,
}

#[derive(Args, Debug)]
pub struct UsersArgs {
    /// Seen users (train/val/test 70/10/20 of their comparisons).
    #[arg(long, default_value_t = 60)]
    pub seen_users: usize,
    /// Unseen users (few-shot pool + held-out test).
    #[arg(long, default_value_t = 40)]
    pub unseen_users: usize,
    /// Comparisons per seen user.
    #[arg(long, default_value_t = 100)]
    pub pairs_per_user: usize,
    /// Few-shot pool per unseen user.
    #[arg(long, default_value_t = 50)]
    pub unseen_train_pairs: usize,
    /// Held-out comparisons per unseen user.
    #[arg(long, default_value_t = 50)]
    pub unseen_test_pairs: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl UsersArgs {
    fn config(&self) -> PopulationConfig {
        PopulationConfig {
            seen_users: self.seen_users,
            unseen_users: self.unseen_users,
            pairs_per_user: self.pairs_per_user,
            unseen_train_pairs: self.unseen_train_pairs,
            unseen_test_pairs: self.unseen_test_pairs,
            seed: self.seed,
        }
    }
}

#[derive(Args, Debug)]
pub struct SummariesArgs {
    /// Output dataset directory.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "length")]
    pub groups: GroupsArg,
    /// Use only the first N of the 247 papers (quick runs).
    #[arg(long)]
    pub papers: Option<usize>,
    #[command(flatten)]
    pub users: UsersArgs,
}

#[derive(Args, Debug)]
pub struct FiltersArgs {
    /// Output dataset directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Share of comparisons between filtered versions of one crop (the group signal), in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    pub beta: f32,
    /// Square crops per photo.
    #[arg(long, default_value_t = 6)]
    pub crops: usize,
    /// Use only the first N of the 15 photos.
    #[arg(long, default_value_t = 15)]
    pub photos: usize,
    #[command(flatten)]
    pub users: UsersArgs,
}

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
    crate::print(cli, json!({"out": a.out, "report": r}), || {
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
        DataKind::Synthetic(s) => return crate::synth_cmd(cli, s),
        DataKind::Summaries(s) => {
            let cfg = SummariesConfig {
                groups: match s.groups {
                    GroupsArg::Length => SummaryGroups::Length,
                    GroupsArg::Aspect => SummaryGroups::Aspect,
                },
                population: s.users.config(),
                papers: s.papers,
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
        DataKind::Filters(s) => {
            let cfg = FiltersConfig {
                beta: s.beta,
                crops: s.crops,
                photos: s.photos,
                population: s.users.config(),
            };
            cfg.validate()?;
            let photos = Asset::named("skimage")?.path()?;
            let (img, txt) = (image_encoder(None)?, text_encoder(None)?);
            (
                &s.out,
                pal_data::filters::build(&cfg, &photos, &img, &txt, &s.out, &mut |st, d, t| {
                    bar.update(st, d, t)
                })?,
            )
        }
    };
    bar.finish();
    crate::print(cli, json!({"out": out, "card": built.card}), || {
        let mut s = format!("wrote {} (card.json, content.json)\n", out.display());
        for (split, rows) in &built.splits {
            s += &format!("  {:<20} {} comparisons\n", split.file_name(), rows.len());
        }
        for kind in ["items", "prompts"] {
            let r = &built.card["embedding"][kind];
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
