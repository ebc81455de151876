//! Server configuration, validated once at start: address, storage, auth, import roots and the
//! resource limits every request is checked against before any work starts.

use crate::error::ApiError;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;

/// Everything `pal serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    /// Model weights, dataset embeddings and checkpoints live here.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default: SQLite at `data_dir/pal.db`.
    pub database_url: Option<String>,
    /// Bearer token required by write endpoints; `None` leaves them open.
    pub token: Option<String>,
    /// Largest accepted request body in bytes (enforced for every route).
    pub max_body_bytes: usize,
    /// Training jobs run at once.
    pub workers: usize,
    /// Built browser app to serve at `/` (default: the bundled index page).
    pub static_dir: Option<PathBuf>,
    /// Directories a dataset may be imported from by `path`; empty: path import refused (403).
    pub import_roots: Vec<PathBuf>,
    /// Limits checked before a request's work starts.
    pub limits: Limits,
    /// Bundles list the weights of the users a model learned (the app's "Rank for" menu);
    /// off by default, when they are readable only with the admin token.
    pub publish_user_weights: bool,
    /// Reward serving: the model mounted at `/get_reward` and how queries are split.
    pub reward: RewardConfig,
}

/// How `/get_reward` (OpenRLHF's remote reward model) is served.
#[derive(Debug, Clone)]
pub struct RewardConfig {
    /// The model `POST /get_reward` answers for (`pal serve --reward-model`); `None`: 404.
    pub model: Option<String>,
    /// Rewards for stored (non-visitor) users without the admin token at the reward routes,
    /// for pipelines that send no header (OpenRLHF). Visitors still need their secret.
    pub open_users: bool,
    /// Where a query without `prompts` splits into prompt and response: the last occurrence
    /// of the first of these markers the query contains.
    pub split_markers: Vec<String>,
}

/// Chat-template markers that open the assistant's turn (ChatML, Llama 3, Mistral/Llama 2,
/// Gemma, and a plain `Assistant:` transcript), tried in this order.
pub const DEFAULT_SPLIT_MARKERS: [&str; 5] = [
    "<|im_start|>assistant\n",
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "[/INST]",
    "<start_of_turn>model\n",
    "\n\nAssistant:",
];

impl Default for RewardConfig {
    fn default() -> Self {
        Self {
            model: None,
            open_users: false,
            split_markers: DEFAULT_SPLIT_MARKERS.map(String::from).to_vec(),
        }
    }
}

impl ServeConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            addr: ([127, 0, 0, 1], 8080).into(),
            data_dir: data_dir.into(),
            database_url: None,
            token: None,
            max_body_bytes: 256 << 20,
            workers: 1,
            static_dir: None,
            import_roots: Vec::new(),
            limits: Limits::default(),
            publish_user_weights: false,
            reward: RewardConfig::default(),
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("pal.db").display()
            )
        })
    }
}

/// Resource limits. A request over any of them is refused with 422 naming the field and the
/// limit, before a job is queued or a file is read. Defaults fit a 2-core, 8 GiB server.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// Embedding dimension of items and prompts.
    pub max_embedding_dim: usize,
    /// Items (or prompts) in one dataset.
    pub max_items: usize,
    /// Comparisons in one dataset (all splits).
    pub max_comparisons: usize,
    /// Distinct users in one dataset, and users in one model.
    pub max_users: usize,
    /// Model: output dimension d, hidden width, layers of each map, prototypes K.
    pub max_d: usize,
    pub max_hidden: usize,
    pub max_layers: usize,
    pub max_k: usize,
    /// Trainable parameters of one model.
    pub max_params: u64,
    /// Estimated training memory (parameters, optimizer state, activations) in bytes.
    pub max_train_memory: u64,
    /// Training epochs and batch size of one job.
    pub max_epochs: usize,
    pub max_batch_size: usize,
    /// Few-shot adaptation: epochs, comparisons in one request, and epochs × comparisons.
    pub max_adapt_epochs: usize,
    pub max_adapt_pairs: usize,
    pub max_adapt_work: u64,
    /// Length in bytes of any id (dataset item, prompt, user) and of names.
    pub max_id_len: usize,
    /// Length in bytes of one text in a dataset's `content.json`.
    pub max_text_len: usize,
    /// Bytes of all files of one dataset imported by path.
    pub max_import_bytes: u64,
    /// Seconds a file-system operation of one request may take before it answers 503.
    pub io_timeout_secs: u64,
    /// Longest accepted request URI, in bytes.
    pub max_uri_len: usize,
    /// Loaded models kept in memory (least recently used evicted).
    pub max_cached_models: usize,
    /// Visitors one client address may create per minute (`POST /models/{id}/visitors`).
    pub visitors_per_minute: u32,
    /// Visitors in all (each costs a database row).
    pub max_visitors: usize,
    /// Visitors one network may hold at once (an IPv4 address, or an IPv6 /64).
    pub max_visitors_per_network: usize,
    /// Days after a visitor's last write when they are deleted with their data (0: never).
    pub visitor_ttl_days: u64,
    /// Pairs one visitor may contribute to one model.
    pub max_contributions: usize,
    /// Bytes of a prompt typed for `POST /models/{id}/embed`, or given to the reward routes.
    pub max_prompt_bytes: usize,
    /// Responses (or rerank documents, or OpenRLHF queries) in one reward request.
    pub max_responses: usize,
    /// Bytes of one response text.
    pub max_response_bytes: usize,
    /// Embedding requests waiting for the encoder at most (more: 503 with Retry-After).
    pub embed_queue: usize,
    /// Texts in one encoder pass at most, and how long (ms) a pass waits for more requests.
    pub embed_batch: usize,
    pub embed_wait_ms: u64,
    /// Prompt embeddings remembered (an RLHF batch repeats each prompt).
    pub prompt_memo: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_embedding_dim: 8192,
            max_items: 2_000_000,
            max_comparisons: 20_000_000,
            max_users: 1_000_000,
            max_d: 4096,
            max_hidden: 8192,
            max_layers: 8,
            max_k: 64,
            max_params: 100_000_000,
            max_train_memory: 8 << 30,
            max_epochs: 100_000,
            max_batch_size: 65_536,
            max_adapt_epochs: 2000,
            max_adapt_pairs: 10_000,
            max_adapt_work: 2_000_000,
            max_id_len: 256,
            max_text_len: 100_000,
            max_import_bytes: 16 << 30,
            io_timeout_secs: 30,
            max_uri_len: 8192,
            max_cached_models: 16,
            visitors_per_minute: 10,
            max_visitors: 1_000_000,
            max_visitors_per_network: 1000,
            visitor_ttl_days: 180,
            max_contributions: 10_000,
            max_prompt_bytes: 2000,
            max_responses: 64,
            max_response_bytes: 8000,
            embed_queue: 256,
            embed_batch: 64,
            embed_wait_ms: 3,
            prompt_memo: 4096,
        }
    }
}

/// Checks a dataset name.
pub fn check_name(name: &str, limits: &Limits) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::invalid("field `name`: must not be empty"));
    }
    if let Some(why) = id_problem(name, limits.max_id_len) {
        return Err(ApiError::invalid(format!("field `name`: {why}")));
    }
    Ok(())
}

/// Why an id is refused, or `None` for a good one: non-empty, at most `max_len` bytes, no
/// control characters, no leading or trailing white space.
pub fn id_problem(id: &str, max_len: usize) -> Option<String> {
    if id.is_empty() {
        Some("must not be empty".into())
    } else if id.len() > max_len {
        Some(format!(
            "is {} bytes long; the limit is {max_len}",
            id.len()
        ))
    } else if id.chars().any(char::is_control) {
        Some("must not contain control characters".into())
    } else if id.trim() != id {
        Some("must not start or end with white space".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::id_problem;

    #[test]
    fn ids_are_checked() {
        assert!(id_problem("user-1 ok", 16).is_none());
        assert!(id_problem("", 16).unwrap().contains("empty"));
        assert!(id_problem(" ", 16).unwrap().contains("white space"));
        assert!(id_problem("a\nb", 16).unwrap().contains("control"));
        assert!(
            id_problem(&"x".repeat(17), 16)
                .unwrap()
                .contains("limit is 16")
        );
    }
}
