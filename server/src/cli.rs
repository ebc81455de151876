//! `pal serve`: its flags (address, data dir, database, token, import roots, every limit) and
//! the wiring from them to [`ServeConfig`] and a runtime. The `pal` binary (pal-cli) embeds
//! [`ServeArgs`] as its `serve` subcommand.

use std::path::PathBuf;

use clap::Args;

use crate::config::{Limits, RewardConfig, ServeConfig};
use crate::error::ApiError;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    /// Directory for model weights, dataset embeddings, checkpoints (and the SQLite database).
    /// Default: `$XDG_DATA_HOME/pal`, else `~/.local/share/pal` (never the source tree).
    #[arg(long, env = "PAL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
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
    /// Publish the weights of the users each model learned in its open bundle (the browser
    /// app's "Rank for" menu of dataset users). Off by default: bundles then hold no user's
    /// weights, which only the admin token reads (`GET /models/{id}/users/{user}`).
    #[arg(long)]
    pub publish_user_weights: bool,
    #[command(flatten)]
    pub reward: RewardArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Serving a model as the reward model of an RLHF pipeline (OpenRLHF's `--remote_rm_url`).
#[derive(Args, Debug)]
#[command(next_help_heading = "Reward serving")]
pub struct RewardArgs {
    /// Answer `POST /get_reward` (OpenRLHF's remote reward-model protocol) for this model id,
    /// so `--remote_rm_url http://HOST:PORT/get_reward` works unchanged. Every model also
    /// answers at `POST /models/{id}/get_reward`.
    #[arg(long, value_name = "MODEL_ID")]
    pub reward_model: Option<String>,
    /// Rewards for stored users without the admin token at the reward routes (for pipelines
    /// that send no `Authorization` header, as OpenRLHF does). Visitors still need their secret.
    #[arg(long)]
    pub reward_open_users: bool,
    /// Where a `/get_reward` query without `prompts` splits into prompt and response: after
    /// the last MARKER it contains (repeatable; tried in order). Default: the assistant-turn
    /// markers of ChatML, Llama 3, Llama 2/Mistral (`[/INST]`), Gemma and `\n\nAssistant:`.
    #[arg(long = "reward-split", value_name = "MARKER")]
    pub reward_split: Vec<String>,
}

impl RewardArgs {
    pub fn config(&self) -> RewardConfig {
        let mut c = RewardConfig {
            model: self.reward_model.clone(),
            open_users: self.reward_open_users,
            ..RewardConfig::default()
        };
        if !self.reward_split.is_empty() {
            c.split_markers = self.reward_split.clone();
        }
        c
    }
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
    /// Visitors one network (an IPv4 address, or an IPv6 /64) may create per minute (more: 429
    /// with Retry-After).
    #[arg(long, default_value_t = 10)]
    pub visitors_per_minute: u32,
    /// Most visitors in all (when full, idle visitors past --visitor-ttl-days go first; then 503).
    #[arg(long, default_value_t = 1_000_000)]
    pub max_visitors: usize,
    /// Most visitors one network (an IPv4 address, or an IPv6 /64) holds at once (more: 429).
    #[arg(long, default_value_t = 1000)]
    pub max_visitors_per_network: usize,
    /// Days after a visitor's last write when they are deleted with their weights and
    /// contributions, as "forget me" does (0: never).
    #[arg(long, default_value_t = 180)]
    pub visitor_ttl_days: u64,
    /// Most answers one visitor may contribute to one model.
    #[arg(long, default_value_t = 10_000)]
    pub max_contributions: usize,
    /// Longest prompt text `POST /models/{id}/embed` and the reward routes take, in bytes.
    #[arg(long, default_value_t = 2000)]
    pub max_prompt_bytes: usize,
    /// Most responses (rerank documents, OpenRLHF queries) in one reward request.
    #[arg(long, default_value_t = 64)]
    pub max_responses: usize,
    /// Longest response text, in bytes (longer: 413).
    #[arg(long, default_value_t = 8000)]
    pub max_response_bytes: usize,
    /// Embedding requests waiting for the encoder at most (more: 503 with Retry-After).
    #[arg(long, default_value_t = 256)]
    pub embed_queue: usize,
    /// Most texts in one encoder pass (concurrent requests are batched up to it).
    #[arg(long, default_value_t = 64)]
    pub embed_batch: usize,
    /// Milliseconds an encoder pass waits for more requests to batch.
    #[arg(long, default_value_t = 3)]
    pub embed_wait_ms: u64,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
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
            visitors_per_minute: self.visitors_per_minute,
            max_visitors: self.max_visitors,
            max_visitors_per_network: self.max_visitors_per_network,
            visitor_ttl_days: self.visitor_ttl_days,
            max_contributions: self.max_contributions,
            max_prompt_bytes: self.max_prompt_bytes,
            max_responses: self.max_responses,
            max_response_bytes: self.max_response_bytes,
            embed_queue: self.embed_queue,
            embed_batch: self.embed_batch,
            embed_wait_ms: self.embed_wait_ms,
            ..Default::default()
        }
    }
}

/// The data directory when `--data-dir` is not given: `$XDG_DATA_HOME/pal`, else
/// `$HOME/.local/share/pal`.
pub fn default_data_dir() -> Result<PathBuf, ApiError> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("XDG_DATA_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| var("HOME").map(|h| h.join(".local/share")))
        .map(|base| base.join("pal"))
        .ok_or_else(|| {
            ApiError::invalid("no data directory: set --data-dir (or PAL_DATA_DIR, or HOME)")
        })
}

impl ServeArgs {
    /// The validated server configuration these flags describe.
    pub fn config(&self) -> Result<ServeConfig, ApiError> {
        if self.workers == 0 || self.max_body_mib == 0 {
            return Err(ApiError::invalid(
                "--workers and --max-body-mib must be at least 1",
            ));
        }
        let data_dir = match &self.data_dir {
            Some(d) => d.clone(),
            None => default_data_dir()?,
        };
        Ok(ServeConfig {
            addr: self.addr,
            data_dir,
            database_url: self.database_url.clone(),
            token: self.token.clone().filter(|t| !t.is_empty()),
            max_body_bytes: self.max_body_mib << 20,
            workers: self.workers,
            static_dir: self.static_dir.clone(),
            import_roots: self.import_roots.clone(),
            limits: self.limits.limits(),
            publish_user_weights: self.publish_user_weights,
            reward: self.reward.config(),
        })
    }
}

/// Log lines go to stderr, filtered by `PAL_LOG` (default `info`; e.g. `PAL_LOG=warn`,
/// `PAL_LOG=pal_server=debug`). Every line of a request names its `x-request-id`.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Runs `pal serve` until Ctrl-C.
pub fn run(args: &ServeArgs) -> Result<(), ApiError> {
    let config = args.config()?;
    init_tracing();
    let rt = tokio::runtime::Runtime::new()
        .map_err(|e| ApiError::internal(format!("starting the runtime: {e}")))?;
    rt.block_on(crate::serve(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn flags_become_a_config_and_the_data_dir_is_never_relative_by_default() {
        let cmd = Cmd::try_parse_from(["serve", "--data-dir", "/d", "--max-k", "3"]).unwrap();
        let cfg = cmd.serve.config().unwrap();
        assert_eq!(cfg.data_dir, PathBuf::from("/d"));
        assert_eq!(cfg.limits.max_k, 3);
        if std::env::var_os("HOME").is_some() {
            assert!(default_data_dir().unwrap().is_absolute());
        }
        let cmd = Cmd::try_parse_from(["serve", "--workers", "0"]).unwrap();
        assert!(cmd.serve.config().unwrap_err().detail.contains("--workers"));
    }
}
