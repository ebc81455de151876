//! Visitors in the database: their salted secret hashes, their weights per model, and the
//! answers they contributed; "forget me" deletes all three in one transaction.

use pal_core::Comparison;
use pal_format::http::ContributedPair;
use sqlx::Row;

use super::{Db, comparison_rows, now};
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
#[derive(Debug, Clone, PartialEq)]
pub struct VisitorWeights {
    pub logits: Vec<f32>,
    pub revision: u64,
}

impl Db {
    pub async fn insert_visitor(&self, v: &VisitorRow) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO visitors (id, model_id, salt, secret_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&v.id)
        .bind(&v.model_id)
        .bind(&v.salt)
        .bind(&v.secret_hash)
        .bind(v.created_at)
        .execute(&self.pool)
        .await?;
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

    /// How many visitors exist (all models).
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
            "SELECT logits, revision FROM visitor_weights WHERE model_id = $1 AND user_id = $2",
        )
        .bind(model)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let text: String = r.try_get("logits")?;
        let logits = serde_json::from_str(&text)
            .map_err(|e| ApiError::internal(format!("stored visitor logits: {e}")))?;
        Ok(Some(VisitorWeights {
            logits,
            revision: r.try_get::<i64, _>("revision")? as u64,
        }))
    }

    /// Writes a visitor's weights on a model as revision `current + 1`. With `expected`, only
    /// when the stored revision is still `expected` (0: none stored); `None` when it was not.
    pub async fn set_visitor_weights(
        &self,
        model: &str,
        user: &str,
        logits: &[f32],
        expected: Option<u64>,
    ) -> Result<Option<u64>, ApiError> {
        let mut tx = self.pool.begin().await?;
        let current: Option<i64> = sqlx::query(
            "SELECT revision FROM visitor_weights WHERE model_id = $1 AND user_id = $2",
        )
        .bind(model)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("revision"))
        .transpose()?;
        let current = current.unwrap_or(0) as u64;
        if expected.is_some_and(|e| e != current) {
            tx.rollback().await?;
            return Ok(None);
        }
        let text = serde_json::to_string(logits)
            .map_err(|e| ApiError::internal(format!("writing visitor logits: {e}")))?;
        sqlx::query("DELETE FROM visitor_weights WHERE model_id = $1 AND user_id = $2")
            .bind(model)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO visitor_weights (model_id, user_id, logits, revision, updated_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(model)
        .bind(user)
        .bind(text)
        .bind((current + 1) as i64)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(current + 1))
    }

    /// Appends contributed pairs of a visitor to a model; the visitor's total after it.
    pub async fn add_contributions(
        &self,
        model: &str,
        user: &str,
        pairs: &[ContributedPair],
    ) -> Result<usize, ApiError> {
        let mut tx = self.pool.begin().await?;
        let next: i64 = sqlx::query(
            "SELECT COALESCE(MAX(seq) + 1, 0) AS n FROM contributions \
             WHERE model_id = $1 AND user_id = $2",
        )
        .bind(model)
        .bind(user)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        let at = now();
        for (i, p) in pairs.iter().enumerate() {
            sqlx::query(
                "INSERT INTO contributions (model_id, user_id, seq, prompt, left_item, \
                 right_item, label, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(model)
            .bind(user)
            .bind(next + i as i64)
            .bind(p.prompt.clone())
            .bind(&p.left)
            .bind(&p.right)
            .bind(i64::from(p.label))
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(next as usize + pairs.len())
    }

    /// A visitor's contributions to a model, oldest first.
    pub async fn contributions(
        &self,
        model: &str,
        user: &str,
    ) -> Result<Vec<ContributedPair>, ApiError> {
        let rows = sqlx::query(
            "SELECT user_id, prompt, left_item, right_item, label FROM contributions \
             WHERE model_id = $1 AND user_id = $2 ORDER BY seq",
        )
        .bind(model)
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        Ok(comparison_rows(&rows)?
            .into_iter()
            .map(|c| ContributedPair {
                prompt: c.prompt,
                left: c.left,
                right: c.right,
                label: c.label,
            })
            .collect())
    }

    /// Every contribution to the models of `dataset` made up to `until` (ms), as comparisons
    /// of the contributing visitors, in a stable order.
    pub async fn dataset_contributions(
        &self,
        dataset: &str,
        until: i64,
    ) -> Result<Vec<Comparison>, ApiError> {
        let rows = sqlx::query(
            "SELECT c.user_id, c.prompt, c.left_item, c.right_item, c.label FROM contributions c \
             JOIN models m ON m.id = c.model_id \
             WHERE m.dataset_id = $1 AND c.created_at <= $2 \
             ORDER BY c.model_id, c.user_id, c.seq",
        )
        .bind(dataset)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        comparison_rows(&rows)
    }

    /// "Forget me": the visitor, their weights on every model and every contribution, at once.
    /// `false` when there was no such visitor.
    pub async fn delete_visitor(&self, id: &str) -> Result<bool, ApiError> {
        let mut tx = self.pool.begin().await?;
        for table in ["contributions", "visitor_weights"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let gone = sqlx::query("DELETE FROM visitors WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(gone.rows_affected() == 1)
    }
}
