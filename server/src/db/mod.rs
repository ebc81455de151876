//! Persistence of metadata and comparisons: the same SQL on SQLite (default, WAL) and Postgres.

use pal_core::Comparison;
use pal_format::dataset::Split;
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};

use crate::error::ApiError;

mod contributions;
mod publish;
mod users;
mod visitors;

pub use contributions::{Contributed, ContributionCount};
pub use users::{StoredUser, UserWrite, UsersAdded};
pub use visitors::{NewVisitorOutcome, VisitorRow, VisitorWeights, WeightsWrite};

const SCHEMA: [&str; 10] = [
    "CREATE TABLE IF NOT EXISTS datasets (id TEXT PRIMARY KEY, name TEXT NOT NULL, \
     created_at BIGINT NOT NULL, d_item BIGINT NOT NULL, d_prompt BIGINT NOT NULL, \
     n_items BIGINT NOT NULL, n_prompts BIGINT NOT NULL, n_comparisons BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS comparisons (dataset_id TEXT NOT NULL, split TEXT NOT NULL, \
     seq BIGINT NOT NULL, user_id TEXT NOT NULL, prompt TEXT, left_item TEXT NOT NULL, \
     right_item TEXT NOT NULL, label BIGINT NOT NULL, PRIMARY KEY (dataset_id, split, seq))",
    "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, \
     status TEXT NOT NULL, spec TEXT NOT NULL, progress TEXT, error TEXT, model_id TEXT, \
     created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS models (id TEXT PRIMARY KEY, job_id TEXT, dataset_id TEXT NOT NULL, \
     name TEXT NOT NULL, config TEXT NOT NULL, metrics TEXT, created_at BIGINT NOT NULL)",
    // A visitor: an account-less user whose secret is kept only as a salted SHA-256.
    "CREATE TABLE IF NOT EXISTS visitors (id TEXT PRIMARY KEY, model_id TEXT NOT NULL, \
     salt TEXT NOT NULL, secret_hash TEXT NOT NULL, created_at BIGINT NOT NULL)",
    // A visitor's weights on one model (kept out of the model's files and bundles).
    "CREATE TABLE IF NOT EXISTS visitor_weights (model_id TEXT NOT NULL, user_id TEXT NOT NULL, \
     logits TEXT NOT NULL, revision BIGINT NOT NULL, updated_at BIGINT NOT NULL, \
     PRIMARY KEY (model_id, user_id))",
    // Answers a visitor contributed (with consent) to a model; training jobs may include them.
    "CREATE TABLE IF NOT EXISTS contributions (model_id TEXT NOT NULL, user_id TEXT NOT NULL, \
     seq BIGINT NOT NULL, prompt TEXT, left_item TEXT NOT NULL, right_item TEXT NOT NULL, \
     label BIGINT NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY (model_id, user_id, seq))",
    // Server-wide values every replica shares (the key of visitors' network hashes).
    "CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    // Counts kept in the transactions that change them (`visitors`: rows of `visitors`).
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n BIGINT NOT NULL)",
    // A model's users its training job did not learn (admin-set, adapted), a revision each.
    "CREATE TABLE IF NOT EXISTS model_users (model_id TEXT NOT NULL, user_id TEXT NOT NULL, \
     logits TEXT NOT NULL, residual TEXT, revision BIGINT NOT NULL, created_at BIGINT NOT NULL, \
     updated_at BIGINT NOT NULL, PRIMARY KEY (model_id, user_id))",
];

/// Indexes, made after the migrations (they may name migrated columns): "forget me" and
/// expiry delete by visitor, creation counts a network's visitors.
const INDEXES: [&str; 3] = [
    "CREATE INDEX IF NOT EXISTS visitor_weights_user ON visitor_weights (user_id)",
    "CREATE INDEX IF NOT EXISTS contributions_user ON contributions (user_id)",
    "CREATE INDEX IF NOT EXISTS visitors_network ON visitors (network)",
];

/// Columns added after the first release, for databases made before them (an error here
/// means the column exists). Queries name their columns, so a schema change never shifts them.
const MIGRATIONS: [&str; 4] = [
    "ALTER TABLE jobs ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0",
    // When the visitor last wrote (idle visitors expire), and a keyed hash of their network.
    "ALTER TABLE visitors ADD COLUMN last_seen BIGINT",
    "ALTER TABLE visitors ADD COLUMN network TEXT",
    // A visitor's personal residual (JSON) on residual models, learned by a training job.
    "ALTER TABLE visitor_weights ADD COLUMN residual TEXT",
];

const DATASET_COLS: &str =
    "id, name, created_at, d_item, d_prompt, n_items, n_prompts, n_comparisons";
const JOB_COLS: &str =
    "id, dataset_id, status, spec, progress, error, model_id, created_at, updated_at, attempts";
const MODEL_COLS: &str = "id, job_id, dataset_id, name, config, metrics, created_at";

/// Job states in which a job may still run.
const LIVE: &str = "('queued', 'running')";

/// A dataset's metadata row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatasetRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub d_item: i64,
    pub d_prompt: i64,
    pub n_items: i64,
    pub n_prompts: i64,
    pub n_comparisons: i64,
}

/// A training job's row; `spec` and `progress` are JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobRow {
    pub id: String,
    pub dataset_id: String,
    pub status: String,
    pub spec: serde_json::Value,
    pub progress: Option<serde_json::Value>,
    pub error: Option<String>,
    pub model_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// How many times a worker has started this job (a crash at start leaves it counted).
    #[serde(default)]
    pub attempts: i64,
}

/// A model's row; the weights are files under `data_dir/models/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelRow {
    pub id: String,
    pub job_id: Option<String>,
    pub dataset_id: String,
    pub name: String,
    pub config: serde_json::Value,
    pub metrics: Option<serde_json::Value>,
    pub created_at: i64,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn json_col(row: &AnyRow, col: &str) -> Result<Option<serde_json::Value>, sqlx::Error> {
    let text: Option<String> = row.try_get(col)?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

type RowMap<T> = fn(&AnyRow) -> Result<T, sqlx::Error>;

/// Rows of `user_id, prompt, left_item, right_item, label` (the comparisons and contributions
/// tables) as comparisons.
fn comparison_rows(rows: &[AnyRow]) -> Result<Vec<Comparison>, ApiError> {
    rows.iter()
        .map(|r| {
            Ok(Comparison {
                user: r.try_get("user_id")?,
                prompt: r.try_get("prompt")?,
                left: r.try_get("left_item")?,
                right: r.try_get("right_item")?,
                label: r.try_get::<i64, _>("label")? as u8,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(ApiError::from)
}

/// `($1,…,$c),($c+1,…)`: the VALUES list of a multi-row insert of `rows` rows of `cols` columns.
fn values_list(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", row.join(","))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Rows per multi-row insert (8 columns × 400 stays under every driver's bind limit).
const INSERT_CHUNK: usize = 400;

/// The database handle.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    pub kind: &'static str,
    /// The key of visitors' network hashes (random, made once, shared by every replica).
    pub network_key: String,
}

impl Db {
    /// Connects and creates the schema (SQLite: WAL journal, busy timeout).
    pub async fn connect(url: &str) -> Result<Self, ApiError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 8 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(|e| ApiError::internal(format!("connecting to the database: {e}")))?;
        if sqlite {
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        for stmt in SCHEMA {
            pool.execute(stmt).await?;
        }
        for stmt in MIGRATIONS {
            let _ = pool.execute(stmt).await;
        }
        for stmt in INDEXES {
            pool.execute(stmt).await?;
        }
        let fresh = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ('network_key', $1) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(fresh)
        .execute(&pool)
        .await?;
        // The first start with the counter counts the visitors once.
        sqlx::query(
            "INSERT INTO counters (name, n) SELECT 'visitors', COUNT(*) FROM visitors \
             WHERE true ON CONFLICT (name) DO NOTHING",
        )
        .execute(&pool)
        .await?;
        let network_key: String =
            sqlx::query("SELECT value FROM settings WHERE name = 'network_key'")
                .fetch_one(&pool)
                .await?
                .try_get("value")?;
        Ok(Self {
            pool,
            kind: if sqlite { "sqlite" } else { "postgres" },
            network_key,
        })
    }

    /// A write transaction. SQLite takes its one write lock at `BEGIN IMMEDIATE`, so a
    /// transaction that reads before it writes waits (busy timeout) for another writer instead
    /// of failing to upgrade its read snapshot ("database is locked"); PostgreSQL locks rows as
    /// the statements touch them (visitor writes lock the visitor's row first).
    pub(crate) async fn write_tx(&self) -> Result<Transaction<'static, Any>, ApiError> {
        Ok(if self.kind == "sqlite" {
            self.pool.begin_with("BEGIN IMMEDIATE").await?
        } else {
            self.pool.begin().await?
        })
    }

    pub async fn insert_dataset(
        &self,
        row: &DatasetRow,
        splits: &[(Split, Vec<Comparison>)],
    ) -> Result<(), ApiError> {
        let mut tx = self.write_tx().await?;
        sqlx::query("INSERT INTO datasets VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(&row.id)
            .bind(&row.name)
            .bind(row.created_at)
            .bind(row.d_item)
            .bind(row.d_prompt)
            .bind(row.n_items)
            .bind(row.n_prompts)
            .bind(row.n_comparisons)
            .execute(&mut *tx)
            .await?;
        for (split, rows) in splits {
            let name = split.file_name().trim_end_matches(".jsonl");
            for (chunk_no, chunk) in rows.chunks(INSERT_CHUNK).enumerate() {
                let sql = format!(
                    "INSERT INTO comparisons (dataset_id, split, seq, user_id, prompt, left_item, \
                     right_item, label) VALUES {}",
                    values_list(chunk.len(), 8)
                );
                let mut q = sqlx::query(&sql);
                for (i, c) in chunk.iter().enumerate() {
                    q = q
                        .bind(&row.id)
                        .bind(name)
                        .bind((chunk_no * INSERT_CHUNK + i) as i64)
                        .bind(&c.user)
                        .bind(c.prompt.clone())
                        .bind(&c.left)
                        .bind(&c.right)
                        .bind(i64::from(c.label));
                }
                q.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    fn dataset_row(r: &AnyRow) -> Result<DatasetRow, sqlx::Error> {
        Ok(DatasetRow {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            created_at: r.try_get("created_at")?,
            d_item: r.try_get("d_item")?,
            d_prompt: r.try_get("d_prompt")?,
            n_items: r.try_get("n_items")?,
            n_prompts: r.try_get("n_prompts")?,
            n_comparisons: r.try_get("n_comparisons")?,
        })
    }

    /// Comparisons of one split, in upload order.
    pub async fn comparisons(
        &self,
        dataset: &str,
        split: Split,
    ) -> Result<Vec<Comparison>, ApiError> {
        let name = split.file_name().trim_end_matches(".jsonl");
        let rows = sqlx::query(
            "SELECT user_id, prompt, left_item, right_item, label FROM comparisons \
             WHERE dataset_id = $1 AND split = $2 ORDER BY seq",
        )
        .bind(dataset)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        comparison_rows(&rows)
    }

    /// A trivial query: does the database answer?
    pub async fn ping(&self) -> Result<(), ApiError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn insert_job(&self, job: &JobRow) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO jobs (id, dataset_id, status, spec, progress, error, model_id, created_at, updated_at, attempts) \
             VALUES ($1, $2, $3, $4, NULL, NULL, NULL, $5, $6, $7)",
        )
        .bind(&job.id)
        .bind(&job.dataset_id)
        .bind(&job.status)
        .bind(job.spec.to_string())
        .bind(job.created_at)
        .bind(job.updated_at)
        .bind(job.attempts)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn job_row(r: &AnyRow) -> Result<JobRow, sqlx::Error> {
        Ok(JobRow {
            id: r.try_get("id")?,
            dataset_id: r.try_get("dataset_id")?,
            status: r.try_get("status")?,
            spec: json_col(r, "spec")?.unwrap_or_default(),
            progress: json_col(r, "progress")?,
            error: r.try_get("error")?,
            model_id: r.try_get("model_id")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            attempts: r.try_get("attempts")?,
        })
    }

    /// Moves a live (queued or running) job to `status`; `false` when it was no longer live, so
    /// a finished, failed or cancelled job never changes state again.
    pub async fn set_job_status(
        &self,
        id: &str,
        status: &str,
        error: Option<&str>,
    ) -> Result<bool, ApiError> {
        let done = sqlx::query(&format!(
            "UPDATE jobs SET status = $1, error = $2, updated_at = $3 WHERE id = $4 AND status IN {LIVE}"
        ))
        .bind(status)
        .bind(error.map(str::to_string))
        .bind(now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A worker claims a live job: marks it running and counts the attempt. `false` when the job
    /// was cancelled (or finished) in the meantime.
    pub async fn claim_job(&self, id: &str) -> Result<bool, ApiError> {
        let done = sqlx::query(&format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, updated_at = $1 \
             WHERE id = $2 AND status IN {LIVE}"
        ))
        .bind(now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Distinct users of a dataset split.
    pub async fn count_users(&self, dataset: &str, split: Split) -> Result<usize, ApiError> {
        let name = split.file_name().trim_end_matches(".jsonl");
        let n: i64 = sqlx::query(
            "SELECT COUNT(DISTINCT user_id) AS n FROM comparisons WHERE dataset_id = $1 AND split = $2",
        )
        .bind(dataset)
        .bind(name)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        Ok(n as usize)
    }

    pub async fn set_job_progress(
        &self,
        id: &str,
        progress: &serde_json::Value,
    ) -> Result<(), ApiError> {
        sqlx::query("UPDATE jobs SET progress = $1, updated_at = $2 WHERE id = $3")
            .bind(progress.to_string())
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn model_row(r: &AnyRow) -> Result<ModelRow, sqlx::Error> {
        Ok(ModelRow {
            id: r.try_get("id")?,
            job_id: r.try_get("job_id")?,
            dataset_id: r.try_get("dataset_id")?,
            name: r.try_get("name")?,
            config: json_col(r, "config")?.unwrap_or_default(),
            metrics: json_col(r, "metrics")?,
            created_at: r.try_get("created_at")?,
        })
    }

    /// Every row of `table` (a constant), oldest first.
    async fn all<T>(&self, table: &str, cols: &str, map: RowMap<T>) -> Result<Vec<T>, ApiError> {
        let rows = sqlx::query(&format!(
            "SELECT {cols} FROM {table} ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(map).collect::<Result<_, _>>()?)
    }

    /// The row of `table` (a constant) with `id`, or a not-found error naming `what`.
    async fn one<T>(
        &self,
        (table, cols): (&str, &str),
        what: &str,
        id: &str,
        map: RowMap<T>,
    ) -> Result<T, ApiError> {
        let row = sqlx::query(&format!("SELECT {cols} FROM {table} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| ApiError::not_found(what, id))?;
        Ok(map(&row)?)
    }

    pub async fn datasets(&self) -> Result<Vec<DatasetRow>, ApiError> {
        self.all("datasets", DATASET_COLS, Self::dataset_row).await
    }

    pub async fn dataset(&self, id: &str) -> Result<DatasetRow, ApiError> {
        self.one(("datasets", DATASET_COLS), "dataset", id, Self::dataset_row)
            .await
    }

    pub async fn jobs(&self) -> Result<Vec<JobRow>, ApiError> {
        self.all("jobs", JOB_COLS, Self::job_row).await
    }

    pub async fn job(&self, id: &str) -> Result<JobRow, ApiError> {
        self.one(("jobs", JOB_COLS), "job", id, Self::job_row).await
    }

    pub async fn models(&self) -> Result<Vec<ModelRow>, ApiError> {
        self.all("models", MODEL_COLS, Self::model_row).await
    }

    pub async fn model(&self, id: &str) -> Result<ModelRow, ApiError> {
        self.one(("models", MODEL_COLS), "model", id, Self::model_row)
            .await
    }
}
