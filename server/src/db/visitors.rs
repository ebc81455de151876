//! Visitors in the database: their salted secret hashes, their weights per model (revisioned),
//! and "forget me". Every write to a visitor's data is one write transaction that first touches
//! the visitor's own row (`last_seen`): on PostgreSQL that row lock serialises the visitor's
//! writes with each other and with "forget me" (which deletes the row first), on SQLite the
//! transaction holds the one write lock from `BEGIN IMMEDIATE`. So a compare-and-set never
//! loses an acknowledged write, and nothing is stored for a visitor once "forget me" commits.

use pal_format::model_dir::TakenUser;
use sqlx::{Any, Row, Transaction};

use super::{Db, now};
use crate::error::ApiError;

/// A visitor's identity: the secret is never stored, only `sha256(salt ‖ secret)`.
#[derive(Debug, Clone, PartialEq)]
pub struct VisitorRow {
    pub id: String,
    /// The model the visitor was created on.
    pub model_id: String,
    pub salt: String,
    pub secret_hash: String,
    pub created_at: i64,
}

/// A visitor's weights on one model (logits; the simplex weights are their softmax).
/// A visitor's weights on one model: logits, the residual a training job learned for them
/// (residual models only) and the revision — stored as a model user's are.
pub type VisitorWeights = super::users::StoredUser;

/// What a compare-and-set of a visitor's weights did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsWrite {
    /// Stored as this revision.
    Written(u64),
    /// Not stored: the stored revision is this one, not the expected one.
    Stale(u64),
    /// Not stored: the visitor no longer exists ("forget me" committed first).
    Gone,
}

/// What creating a visitor did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewVisitorOutcome {
    Created,
    /// The server holds `max_visitors` visitors.
    ServerFull,
    /// The client's network holds its share of visitors.
    NetworkFull,
}

fn to_json(v: &impl serde::Serialize, what: &str) -> Result<String, ApiError> {
    serde_json::to_string(v).map_err(|e| ApiError::internal(format!("writing {what}: {e}")))
}

/// Locks visitor `id`'s row for this transaction (and records the activity); `false` when the
/// visitor does not exist (any more).
pub(super) async fn touch(tx: &mut Transaction<'static, Any>, id: &str) -> Result<bool, ApiError> {
    let done = sqlx::query("UPDATE visitors SET last_seen = $1 WHERE id = $2")
        .bind(now())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Lowers the visitor count by `n` deleted visitors.
async fn lower_count(tx: &mut Transaction<'static, Any>, n: u64) -> Result<(), ApiError> {
    if n > 0 {
        sqlx::query("UPDATE counters SET n = n - $1 WHERE name = 'visitors'")
            .bind(n as i64)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Deletes every weight row and contribution of visitor `id` (after their row is deleted).
async fn delete_data(tx: &mut Transaction<'static, Any>, id: &str) -> Result<(), ApiError> {
    for table in ["contributions", "visitor_weights"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Stores a visitor's weights on `model` as revision `revision`: replacing stored ones, or
/// (`replace` false) only where none are stored.
async fn upsert_weights(
    tx: &mut Transaction<'static, Any>,
    (model, user): (&str, &str),
    (logits, residual): (&[f32], Option<&[f32]>),
    revision: u64,
    replace: bool,
) -> Result<(), ApiError> {
    let residual = residual
        .map(|r| to_json(&r, "a visitor residual"))
        .transpose()?;
    let on_conflict = if replace {
        "DO UPDATE SET logits = excluded.logits, residual = excluded.residual, \
         revision = excluded.revision, updated_at = excluded.updated_at"
    } else {
        "DO NOTHING"
    };
    sqlx::query(&format!(
        "INSERT INTO visitor_weights (model_id, user_id, logits, residual, revision, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (model_id, user_id) {on_conflict}"
    ))
    .bind(model)
    .bind(user)
    .bind(to_json(&logits, "visitor logits")?)
    .bind(residual)
    .bind(revision as i64)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Moves the visitors a training job learned into `visitor_weights` of `model` (revision 1,
/// where the visitor has none there yet), inside the caller's transaction; visitors forgotten
/// since the job read their answers are left out (their rows are locked or gone, never
/// re-created).
pub(super) async fn adopt_learned(
    tx: &mut Transaction<'static, Any>,
    model: &str,
    learned: &[TakenUser],
) -> Result<(), ApiError> {
    for v in learned {
        if touch(tx, &v.id).await? {
            let w = (v.logits.as_slice(), v.residual.as_deref());
            upsert_weights(tx, (model, &v.id), w, 1, false).await?;
        }
    }
    Ok(())
}

impl Db {
    /// Creates a visitor unless the server holds `max_total` visitors or the client's network
    /// (`network`: a keyed hash of its /64 or IPv4 address) holds `max_per_network`; counted
    /// and inserted in one write transaction, so concurrent creations cannot pass a cap.
    pub async fn insert_visitor(
        &self,
        v: &VisitorRow,
        network: Option<&str>,
        (max_total, max_per_network): (usize, usize),
    ) -> Result<NewVisitorOutcome, ApiError> {
        let mut tx = self.write_tx().await?;
        // The visitor count, kept in the transactions that add and delete visitors: raised
        // here only below the cap, in one statement whose row lock (SQLite: the write lock)
        // makes creations one at a time, so no cap is passed between a count and an insert.
        let raised = sqlx::query(
            "UPDATE counters SET n = n + 1 WHERE name = 'visitors' AND n < $1 RETURNING n",
        )
        .bind(i64::try_from(max_total).unwrap_or(i64::MAX))
        .fetch_optional(&mut *tx)
        .await?;
        if raised.is_none() {
            return Ok(NewVisitorOutcome::ServerFull);
        }
        // A network's count is bounded by its cap (indexed); no count when it cannot bind.
        if let Some(net) = network.filter(|_| max_per_network < max_total) {
            let here: i64 = sqlx::query("SELECT COUNT(*) AS n FROM visitors WHERE network = $1")
                .bind(net)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            if here as usize >= max_per_network {
                return Ok(NewVisitorOutcome::NetworkFull);
            }
        }
        sqlx::query(
            "INSERT INTO visitors (id, model_id, salt, secret_hash, created_at, last_seen, network) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&v.id)
        .bind(&v.model_id)
        .bind(&v.salt)
        .bind(&v.secret_hash)
        .bind(v.created_at)
        .bind(v.created_at)
        .bind(network.map(str::to_string))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(NewVisitorOutcome::Created)
    }

    /// Moves visitors learned into an older model's files into `visitor_weights` (the upgrade
    /// of a data dir from before visitors' weights were rows only).
    pub async fn adopt_visitors(&self, model: &str, learned: &[TakenUser]) -> Result<(), ApiError> {
        let mut tx = self.write_tx().await?;
        adopt_learned(&mut tx, model, learned).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The visitor with this user id, if the id is a visitor's.
    pub async fn visitor(&self, id: &str) -> Result<Option<VisitorRow>, ApiError> {
        let row = sqlx::query(
            "SELECT id, model_id, salt, secret_hash, created_at FROM visitors WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(VisitorRow {
            id: r.try_get("id")?,
            model_id: r.try_get("model_id")?,
            salt: r.try_get("salt")?,
            secret_hash: r.try_get("secret_hash")?,
            created_at: r.try_get("created_at")?,
        }))
    }

    /// The visitor count kept beside the rows (what the cap is checked against).
    pub async fn kept_visitor_count(&self) -> Result<usize, ApiError> {
        let n: i64 = sqlx::query("SELECT n FROM counters WHERE name = 'visitors'")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(n as usize)
    }

    /// How many visitors exist (all models), counted (the kept count is `counters.visitors`).
    pub async fn count_visitors(&self) -> Result<usize, ApiError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM visitors")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(n as usize)
    }

    pub async fn visitor_weights(
        &self,
        model: &str,
        user: &str,
    ) -> Result<Option<VisitorWeights>, ApiError> {
        let row = sqlx::query(
            "SELECT logits, residual, revision FROM visitor_weights \
             WHERE model_id = $1 AND user_id = $2",
        )
        .bind(model)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(super::users::stored).transpose()
    }

    /// Writes a visitor's weights on a model as revision `current + 1`: with `expected`, only
    /// when the stored revision is still `expected` (0: none stored). One transaction holding
    /// the visitor's row, so of many writers with one `expected` exactly one is stored.
    pub async fn set_visitor_weights(
        &self,
        model: &str,
        user: &str,
        logits: &[f32],
        expected: Option<u64>,
    ) -> Result<WeightsWrite, ApiError> {
        let mut tx = self.write_tx().await?;
        if !touch(&mut tx, user).await? {
            return Ok(WeightsWrite::Gone);
        }
        let current: Option<(i64, Option<String>)> = sqlx::query(
            "SELECT revision, residual FROM visitor_weights WHERE model_id = $1 AND user_id = $2",
        )
        .bind(model)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| Ok::<_, sqlx::Error>((r.try_get("revision")?, r.try_get("residual")?)))
        .transpose()?;
        let (current, residual) = current.unwrap_or((0, None));
        let current = current as u64;
        if expected.is_some_and(|e| e != current) {
            return Ok(WeightsWrite::Stale(current));
        }
        // Setting the simplex weights keeps a residual a training job learned for the visitor.
        let residual: Option<Vec<f32>> = residual.and_then(|t| serde_json::from_str(&t).ok());
        let w = (logits, residual.as_deref());
        upsert_weights(&mut tx, (model, user), w, current + 1, true).await?;
        tx.commit().await?;
        Ok(WeightsWrite::Written(current + 1))
    }

    /// "Forget me": the visitor, their weights on every model and every contribution, in one
    /// transaction that deletes the visitor's row first (writers holding it finish first, later
    /// ones find it gone). `false` when there was no such visitor.
    pub async fn delete_visitor(&self, id: &str) -> Result<bool, ApiError> {
        let mut tx = self.write_tx().await?;
        let gone = sqlx::query("DELETE FROM visitors WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        delete_data(&mut tx, id).await?;
        lower_count(&mut tx, gone.rows_affected()).await?;
        tx.commit().await?;
        Ok(gone.rows_affected() == 1)
    }

    /// Deletes the visitors idle since before `before` (ms; last write, else creation) with all
    /// their data, as "forget me" does; how many.
    pub async fn expire_visitors(&self, before: i64) -> Result<usize, ApiError> {
        let mut tx = self.write_tx().await?;
        let ids: Vec<String> = sqlx::query(
            "DELETE FROM visitors WHERE COALESCE(last_seen, created_at) < $1 RETURNING id",
        )
        .bind(before)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
        for id in &ids {
            delete_data(&mut tx, id).await?;
        }
        lower_count(&mut tx, ids.len() as u64).await?;
        tx.commit().await?;
        Ok(ids.len())
    }

    /// Rows a visitor has left anywhere (weights and contributions): 0 after "forget me".
    pub async fn visitor_rows(&self, id: &str) -> Result<usize, ApiError> {
        let mut n = 0;
        for table in ["visitors", "visitor_weights", "contributions"] {
            let col = if table == "visitors" { "id" } else { "user_id" };
            let c: i64 = sqlx::query(&format!(
                "SELECT COUNT(*) AS n FROM {table} WHERE {col} = $1"
            ))
            .bind(id)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
            n += c as usize;
        }
        Ok(n)
    }
}
