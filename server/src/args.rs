//! Command-line arguments of `pal`, turned into the core's validated config structs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pal_core::config::{IdealPoint, Link, ModelConfig, NormBound, Variant};
use pal_core::dataset::Split;
use pal_core::pipeline::FewShotConfig;
use pal_core::synth::{Regime, SynthConfig, TruthMap};
use pal_core::train::{GroupRates, TrainConfig};

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
    /// Train a PAL model on DIR/train.jsonl (early stopping on DIR/val.jsonl when present).
    Train(TrainArgs),
    /// Evaluate a model on a split: accuracy, log-loss, per-user accuracy, accuracy vs shots.
    Eval(EvalArgs),
    /// Fit new users few-shot (only their weights are learned) and save the extended model.
    Adapt(AdaptArgs),
    /// Write a browser bundle: weights.safetensors + manifest.json (+ item embeddings).
    Export(ExportArgs),
    /// Train PAL, BTL and per-user baselines and print the comparison table (+ SVG plots).
    Report(ReportArgs),
    /// Embed texts or images into an embedding store (MiniLM / EfficientNet-Lite0; cached).
    Embed(crate::data_cli::EmbedArgs),
    /// Build a dataset: `summaries`, `filters` (real registry content) or `synthetic`.
    Data(crate::data_cli::DataArgs),
    /// Run the training and scoring HTTP API (datasets, jobs, models, users, /rank).
    Serve(ServeArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum VariantArg {
    A,
    B,
}

impl From<VariantArg> for Variant {
    fn from(v: VariantArg) -> Self {
        match v {
            VariantArg::A => Variant::A,
            VariantArg::B => Variant::B,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum IdealArg {
    /// Prototypes in item space, a = f(Σ w p) (paper default).
    FPw,
    /// Prototypes in preference space, a = Σ w p.
    Pw,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum LinkArg {
    Logistic,
    Hinge,
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

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum SplitArg {
    Train,
    Val,
    Test,
    UnseenTest,
}

impl From<SplitArg> for Split {
    fn from(s: SplitArg) -> Self {
        match s {
            SplitArg::Train => Split::Train,
            SplitArg::Val => Split::Val,
            SplitArg::Test => Split::Test,
            SplitArg::UnseenTest => Split::UnseenTest,
        }
    }
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

/// Model shape options (embedding dims come from the dataset).
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    #[arg(long, value_enum, default_value = "b")]
    pub variant: VariantArg,
    /// Number of prototypes / prompt maps.
    #[arg(long, default_value_t = 3)]
    pub k: usize,
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
}

impl ModelArgs {
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
            k: self.k,
            dropout: self.dropout,
            norm_bound: self.norm_bound_lambda.map(|lambda| NormBound {
                lambda,
                beta: self.norm_bound_beta,
            }),
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
    pub engine: pal_core::engine::Engine,
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

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    /// Directory for model weights, dataset embeddings, checkpoints (and the SQLite database).
    #[arg(long, default_value = "pal-data")]
    pub data_dir: PathBuf,
    /// `sqlite://FILE?mode=rwc` or `postgres://…` (default: SQLite in the data dir).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Bearer token required by write endpoints (default: none, writes open).
    #[arg(long, env = "PAL_TOKEN")]
    pub token: Option<String>,
    /// Largest request body in MiB.
    #[arg(long, default_value_t = 256)]
    pub max_body_mib: usize,
    /// Training jobs run at once.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Serve this directory (the built browser app) at `/`.
    #[arg(long)]
    pub static_dir: Option<PathBuf>,
    /// Allow `POST /datasets {"path": …}` imports from below DIR (repeatable). Without it, import
    /// by path is refused (403); symbolic links and non-regular files are never followed.
    #[arg(long = "import-root", value_name = "DIR")]
    pub import_roots: Vec<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Resource limits of `pal serve`; a request over one is refused (422 naming the field) before
/// any work starts. See SECURITY.md.
#[derive(Args, Debug)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Largest model output dimension d.
    #[arg(long, default_value_t = 4096)]
    pub max_d: usize,
    /// Largest hidden width of a model's maps.
    #[arg(long, default_value_t = 8192)]
    pub max_hidden: usize,
    /// Most linear layers in each map.
    #[arg(long, default_value_t = 8)]
    pub max_layers: usize,
    /// Most prototypes K.
    #[arg(long, default_value_t = 64)]
    pub max_k: usize,
    /// Most trainable parameters of one model.
    #[arg(long, default_value_t = 100_000_000)]
    pub max_params: u64,
    /// Most estimated training memory of one job, in MiB.
    #[arg(long, default_value_t = 8192)]
    pub max_train_memory_mib: u64,
    /// Most training epochs of one job.
    #[arg(long, default_value_t = 100_000)]
    pub max_epochs: usize,
    /// Largest training batch.
    #[arg(long, default_value_t = 65_536)]
    pub max_batch_size: usize,
    /// Most items (or prompts) of one dataset.
    #[arg(long, default_value_t = 2_000_000)]
    pub max_items: usize,
    /// Most comparisons of one dataset.
    #[arg(long, default_value_t = 20_000_000)]
    pub max_comparisons: usize,
    /// Most users of one dataset or model.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_users: usize,
    /// Longest id (item, prompt, user) or name, in bytes.
    #[arg(long, default_value_t = 256)]
    pub max_id_len: usize,
    /// Most bytes of one dataset imported by path, in MiB.
    #[arg(long, default_value_t = 16384)]
    pub max_import_mib: u64,
    /// Seconds one request's file work may take before it answers 503.
    #[arg(long, default_value_t = 30)]
    pub io_timeout_secs: u64,
    /// Loaded models kept in memory.
    #[arg(long, default_value_t = 16)]
    pub max_cached_models: usize,
}

impl LimitArgs {
    pub fn limits(&self) -> pal_server::config::Limits {
        pal_server::config::Limits {
            max_d: self.max_d,
            max_hidden: self.max_hidden,
            max_layers: self.max_layers,
            max_k: self.max_k,
            max_params: self.max_params,
            max_train_memory: self.max_train_memory_mib << 20,
            max_epochs: self.max_epochs,
            max_batch_size: self.max_batch_size,
            max_items: self.max_items,
            max_comparisons: self.max_comparisons,
            max_users: self.max_users,
            max_id_len: self.max_id_len,
            max_import_bytes: self.max_import_mib << 20,
            io_timeout_secs: self.io_timeout_secs,
            max_cached_models: self.max_cached_models,
            ..Default::default()
        }
    }
}
