//! Server configuration, validated once at start.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Training jobs run at once.
    pub workers: usize,
    /// Built browser app to serve at `/` (default: the bundled index page).
    pub static_dir: Option<PathBuf>,
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
