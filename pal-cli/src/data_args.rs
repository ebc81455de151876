//! Arguments of `pal embed`, `pal data …` and `pal synth`: encoders, dataset builders, the
//! synthetic setting and the simulated user population.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use pal_core::synth::{Regime, SynthConfig, TruthMap};
use pal_data::PopulationConfig;

use crate::values::VariantArg;

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
    /// A 70,000-product gallery (Fashion-MNIST from Debian, MIT): pixel features, category
    /// prompts, dark / light / patterned taste groups.
    Fashion(FashionArgs),
    /// Real paired comparisons by survey respondents from R's psychotools/psychotree packages
    /// (Debian's .deb, read without R): soundquality, firstnames, germanparties, topmodel, cems,
    /// europeanvalues.
    Psychotools(PsychotoolsArgs),
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
    pub fn config(&self) -> PopulationConfig {
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
    /// Share of comparisons everyone agrees on: the group's least liked summary of the paper beats
    /// its favourite summary of another paper. Train with `--content-prior` to learn it (items
    /// and prompts share MiniLM's space; README, "relevance").
    #[arg(long, default_value_t = 0.2)]
    pub relevance: f32,
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
    /// Share of comparisons everyone agrees on: a version of the prompt's photo beats one of
    /// another photo (drawn before β), in [0, 1].
    #[arg(long, default_value_t = 0.2)]
    pub relevance: f32,
    /// Square crops per photo.
    #[arg(long, default_value_t = 6)]
    pub crops: usize,
    /// Use only the first N of the 15 photos.
    #[arg(long, default_value_t = 15)]
    pub photos: usize,
    /// Add the 12 real nature photos of Debian's mate-backgrounds (GPL-2+, credited per image).
    #[arg(long)]
    pub wallpapers: bool,
    #[command(flatten)]
    pub users: UsersArgs,
}

#[derive(Args, Debug)]
pub struct FashionArgs {
    /// Output dataset directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Use only the first N of the 70,000 products (quick runs).
    #[arg(long)]
    pub products: Option<usize>,
    /// Cells per side of the pooled pixel features (1, 2, 4, 7, 14 or 28; 7 gives 49 features).
    #[arg(long, default_value_t = 7)]
    pub pool: usize,
    /// Share of comparisons everyone agrees on: a product of the prompt's category beats one of
    /// another category.
    #[arg(long, default_value_t = 0.2)]
    pub relevance: f32,
    #[command(flatten)]
    pub users: UsersArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ItemsArg {
    /// One-hot vectors, one per compared object.
    OneHot,
    /// The object's name embedded by MiniLM (384-d).
    Text,
}

#[derive(Args, Debug)]
pub struct PsychotoolsArgs {
    /// Output dataset directory.
    #[arg(long)]
    pub out: PathBuf,
    /// soundquality, firstnames, germanparties, topmodel, cems or europeanvalues.
    #[arg(long)]
    pub set: String,
    #[arg(long, value_enum, default_value = "one-hot")]
    pub items: ItemsArg,
    /// Share of respondents held out as new users.
    #[arg(long, default_value_t = 0.25)]
    pub unseen_share: f32,
    /// Answers per new user that few-shot fitting may use (the rest are their test).
    #[arg(long, default_value_t = 10)]
    pub unseen_pool: usize,
    /// Keep only N respondents (drawn at random): quick runs and CI slices.
    #[arg(long)]
    pub respondents: Option<usize>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum RegimeArg {
    OnePrototype,
    Mixture,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum TruthArg {
    Linear,
    Mlp,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output dataset directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Which PAL form generates the preferences.
    #[arg(long, value_enum, default_value = "b")]
    pub variant: VariantArg,
    #[arg(long, default_value_t = 8)]
    pub d_item: usize,
    #[arg(long, default_value_t = 4)]
    pub d_prompt: usize,
    /// Preference-space dimension of the ground truth.
    #[arg(long, default_value_t = 16)]
    pub d: usize,
    #[arg(long, default_value_t = 3)]
    pub k: usize,
    /// Seen users.
    #[arg(long, default_value_t = 60)]
    pub users: usize,
    /// Training pairs per seen user.
    #[arg(long, default_value_t = 50)]
    pub train_pairs: usize,
    #[arg(long, default_value_t = 10)]
    pub val_pairs: usize,
    #[arg(long, default_value_t = 25)]
    pub test_pairs: usize,
    #[arg(long, default_value_t = 20)]
    pub unseen_users: usize,
    /// Few-shot pool per unseen user.
    #[arg(long, default_value_t = 100)]
    pub unseen_train_pairs: usize,
    #[arg(long, default_value_t = 50)]
    pub unseen_test_pairs: usize,
    #[arg(long, default_value_t = 400)]
    pub items: usize,
    #[arg(long, default_value_t = 5)]
    pub prompts: usize,
    #[arg(long, value_enum, default_value = "one-prototype")]
    pub regime: RegimeArg,
    #[arg(long, value_enum, default_value = "linear")]
    pub truth_map: TruthArg,
    /// Std of the truth's log-odds: higher means less label noise.
    #[arg(long, default_value_t = 4.0)]
    pub signal: f32,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

impl SynthArgs {
    pub fn config(&self) -> SynthConfig {
        SynthConfig {
            variant: self.variant.into(),
            d_item: self.d_item,
            d_prompt: self.d_prompt,
            d: self.d,
            k: self.k,
            users: self.users,
            train_pairs: self.train_pairs,
            val_pairs: self.val_pairs,
            test_pairs: self.test_pairs,
            unseen_users: self.unseen_users,
            unseen_train_pairs: self.unseen_train_pairs,
            unseen_test_pairs: self.unseen_test_pairs,
            items: self.items,
            prompts: self.prompts,
            regime: match self.regime {
                RegimeArg::OnePrototype => Regime::OnePrototype,
                RegimeArg::Mixture => Regime::Mixture,
            },
            truth_map: match self.truth_map {
                TruthArg::Linear => TruthMap::Linear,
                TruthArg::Mlp => TruthMap::Mlp,
            },
            signal: self.signal,
            seed: self.seed,
        }
    }
}
