//! Command-line arguments of `pal`, turned into the core's validated config structs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use pal_core::config::{IdealPoint, Link, ModelConfig, NormBound, Variant};
use pal_core::pipeline::FewShotConfig;
use pal_core::select::SelectConfig;
use pal_core::train::{GroupRates, TrainConfig};

use crate::data_args::{DataArgs, EmbedArgs, SynthArgs};
use crate::values::{IdealArg, LinkArg, SplitArg, VariantArg};
use pal_core::kchoice::KChoice;

/// PAL: personalised reward models for pluralistic alignment (PAL-A, PAL-B).
///
/// Typical flow: `pal synth` (or bring a dataset), `pal train`, `pal eval`, `pal adapt` for new
/// users, `pal export` for the browser. `pal report` runs the whole comparison in one go.
#[derive(Parser, Debug)]
#[command(name = "pal", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Print machine-readable JSON on stdout instead of human output.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars or per-epoch lines on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a synthetic dataset from a known PAL model (ground truth saved in DIR/truth).
    Synth(SynthArgs),
    /// Train a PAL model on DIR/train.jsonl: `--k auto` (default) cross-validates K, the residual and
    /// the epochs on train + val; `--k N` trains with early stopping on DIR/val.jsonl.
    Train(TrainArgs),
    /// Evaluate a model on a split: accuracy, log-loss, per-user accuracy, accuracy vs shots.
    Eval(EvalArgs),
    /// Fit new users few-shot (only their weights are learned) and save the extended model.
    Adapt(AdaptArgs),
    /// Write a browser bundle: weights.safetensors + manifest.json (+ item embeddings).
    Export(ExportArgs),
    /// Train PAL, BTL and per-user baselines and print the comparison table (+ SVG plots).
    Report(ReportArgs),
    /// Rewards of new responses for a user (or the population's mixture) under a typed prompt,
    /// embedded by the encoder that made the model's dataset: JSON lines `{"index", "reward"}`.
    Score(crate::score_cmd::ScoreArgs),
    /// Embed texts or images into an embedding store (MiniLM / EfficientNet-Lite0; cached).
    Embed(EmbedArgs),
    /// Build a dataset: `summaries`, `filters`, `fashion`, `psychotools` (real respondents) or `synthetic`.
    Data(DataArgs),
    /// Run the training and scoring HTTP API (datasets, jobs, models, users, /rank). Logs go to
    /// stderr, filtered by PAL_LOG (default `info`; `pal_server=debug` adds an access line per
    /// request); every answer carries an `x-request-id`.
    Serve(pal_server::cli::ServeArgs),
    /// Measure this machine as JSON lines: `info`, `train` (samples/s of a shape on a device),
    /// `score` (WGSL kernels vs the CPU reference). The GPU kit runs these (docs/gpu.md).
    Bench(crate::bench_cmd::BenchArgs),
}

/// Model shape options (embedding dims come from the dataset).
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    #[arg(long, value_enum, default_value = "b")]
    pub variant: VariantArg,
    /// Number of prototypes / prompt maps, or `auto`: K ∈ {1, 2, 4}, the residual strength
    /// (none, λ = 100, 10 or 1; or only `--residual`'s), a linear map at the chosen K, and the
    /// epochs are chosen by 3-fold cross-validation on the seen users' comparisons (train + val),
    /// then refitted on them all.
    #[arg(long, default_value = "auto")]
    pub k: KChoice,
    /// Preference-space dimension.
    #[arg(long, default_value_t = 16)]
    pub d: usize,
    /// Hidden width of the MLPs (default: d).
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Linear layers per MLP (GELU between).
    #[arg(long, default_value_t = 3)]
    pub layers: usize,
    #[arg(long, value_enum, default_value = "f-pw")]
    pub ideal_point: IdealArg,
    /// PAL-A loss link (PAL-B is always logistic).
    #[arg(long, value_enum, default_value = "logistic")]
    pub link: LinkArg,
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    /// Add the prototype-norm bound λ·max(0, ‖point‖ − β) with this λ.
    #[arg(long)]
    pub norm_bound_lambda: Option<f32>,
    #[arg(long, default_value_t = 4.0)]
    pub norm_bound_beta: f32,
    /// PAL-B: add a content prior b·σ(a·(cos(x, c) − t)) on the frozen embeddings, learned and
    /// shared by every user. For datasets whose items and prompts come from one encoder (e.g.
    /// `summaries`): it makes an item of the prompt outrank unrelated ones for everyone.
    #[arg(long)]
    pub content_prior: bool,
    /// Personal residuals: each user's point is the prototypes' mixture plus their own δ,
    /// penalised by λ·Σ‖δ‖² (this λ). Small λ lets users with many comparisons leave the
    /// simplex; users with few stay near it.
    #[arg(long)]
    pub residual: Option<f32>,
}

impl ModelArgs {
    /// The cross-validated search `--k auto` asks for, if it does.
    pub fn selection(&self) -> Option<SelectConfig> {
        (self.k == KChoice::Auto).then(|| {
            let d = SelectConfig::default();
            SelectConfig {
                residuals: match self.residual {
                    Some(l) => vec![Some(l)],
                    None => d.residuals.clone(),
                },
                ..d
            }
        })
    }

    pub fn config(&self, d_item: usize, d_prompt: usize) -> ModelConfig {
        let variant = Variant::from(self.variant);
        ModelConfig {
            variant,
            ideal_point: match self.ideal_point {
                IdealArg::FPw => IdealPoint::FPw,
                IdealArg::Pw => IdealPoint::Pw,
            },
            link: match self.link {
                LinkArg::Logistic => Link::Logistic,
                LinkArg::Hinge => Link::Hinge,
            },
            d_item,
            d_prompt: if variant == Variant::B { d_prompt } else { 0 },
            d: self.d,
            hidden: self.hidden.unwrap_or(self.d),
            layers: self.layers,
            k: match self.k {
                KChoice::Fixed(k) => k,
                KChoice::Auto => 1,
            },
            dropout: self.dropout,
            norm_bound: self.norm_bound_lambda.map(|lambda| NormBound {
                lambda,
                beta: self.norm_bound_beta,
            }),
            content_prior: self.content_prior,
            residual: self.residual,
            new_user_residual: None,
        }
    }
}

/// Optimisation options.
#[derive(Args, Debug, Clone)]
pub struct OptimArgs {
    #[arg(long, default_value_t = 60)]
    pub epochs: usize,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 2e-3)]
    pub lr_item_map: f64,
    /// Learning rate of prompt maps (PAL-B) or prototypes (PAL-A).
    #[arg(long, default_value_t = 2e-3)]
    pub lr_head: f64,
    #[arg(long, default_value_t = 5e-2)]
    pub lr_users: f64,
    #[arg(long, default_value_t = 1e-2)]
    pub lr_scale: f64,
    /// AdamW weight decay of item map and head.
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Early-stopping patience in epochs (0 = off).
    #[arg(long, default_value_t = 10)]
    pub patience: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Training device: cpu (default), wgpu (build with `--features wgpu`), cuda or cuda:N
    /// (build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: pal_core::device::ComputeDevice,
    /// Training engine: auto (default: fused on the CPU for models without dropout, burn
    /// otherwise), burn (autodiff, any model and device) or fused (hand-derived CPU steps).
    #[arg(long, default_value = "auto")]
    pub engine: pal_core::train::Engine,
    /// Product precision on the fused engine: f32 (default) or bf16 (bf16 inputs, f32 sums,
    /// f32 weights and optimizer state; 1.2–1.7× faster than f32 on an AVX512-BF16 AMD EPYC). The kernel
    /// path comes from the CPU, or PAL_CPU_KERNELS=generic|avx2|avx512 (`pal bench info`).
    #[arg(long, env = "PAL_PRECISION", default_value = "f32")]
    pub precision: pal_core::Precision,
}

impl OptimArgs {
    pub fn config(&self) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: GroupRates {
                item_map: self.lr_item_map,
                head: self.lr_head,
                users: self.lr_users,
                scale: self.lr_scale,
            },
            weight_decay: GroupRates {
                item_map: self.weight_decay,
                head: self.weight_decay,
                users: 0.0,
                scale: 0.0,
            },
            patience: (self.patience > 0).then_some(self.patience),
            seed: self.seed,
            device: self.device,
            engine: self.engine,
            precision: self.precision,
            ..TrainConfig::default()
        }
    }
}

/// Few-shot fitting options.
#[derive(Args, Debug, Clone)]
pub struct FewShotArgs {
    #[arg(long, default_value_t = 150)]
    pub fewshot_epochs: usize,
    #[arg(long, default_value_t = 0.05)]
    pub fewshot_lr: f64,
    #[arg(long, default_value_t = 0.01)]
    pub fewshot_weight_decay: f64,
}

impl FewShotArgs {
    pub fn config(&self) -> FewShotConfig {
        FewShotConfig {
            epochs: self.fewshot_epochs,
            lr: self.fewshot_lr,
            weight_decay: self.fewshot_weight_decay,
            seed: 0,
        }
    }
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Dataset directory (items.safetensors, train.jsonl, ...).
    #[arg(long)]
    pub data: PathBuf,
    /// Output model directory.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub optim: OptimArgs,
    /// Checkpoint directory: state is saved every epoch and a rerun resumes from it.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Train the BTL baseline instead: all users pooled, K = 1.
    #[arg(long)]
    pub btl: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Also list accuracy per user.
    #[arg(long)]
    pub per_user: bool,
    /// Accuracy of unseen users vs shots, e.g. `1,2,5,10,20,50,100` (uses unseen_* splits).
    #[arg(long, value_delimiter = ',')]
    pub shots: Vec<usize>,
    #[command(flatten)]
    pub fewshot: FewShotArgs,
}

#[derive(Args, Debug)]
pub struct AdaptArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    /// Comparisons of the new users (default: DATA/unseen_train.jsonl).
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// Use only the first N comparisons of each new user.
    #[arg(long)]
    pub shots: Option<usize>,
    /// Output model directory (the input model plus the new users).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub fewshot: FewShotArgs,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// Bundle directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Copy this item embedding store into the bundle (the gallery to rank).
    #[arg(long)]
    pub items: Option<PathBuf>,
    /// Copy this prompt embedding store into the bundle (PAL-B ranks for a prompt).
    #[arg(long)]
    pub prompts: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub optim: OptimArgs,
    #[command(flatten)]
    pub fewshot: FewShotArgs,
    #[arg(long, value_delimiter = ',', default_value = "1,2,5,10,20,50,100")]
    pub shots: Vec<usize>,
    /// Write the trained PAL model here.
    #[arg(long)]
    pub save_model: Option<PathBuf>,
    /// Write SVG plots (training curve, accuracy vs shots) into this directory.
    #[arg(long)]
    pub plots: Option<PathBuf>,
}
