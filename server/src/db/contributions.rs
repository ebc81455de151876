//! Answers visitors contributed (with consent) to a model: appended in one write transaction
//! that holds the visitor's row and checks the per-visitor limit inside it, read back per
//! visitor, and read for a training job as one snapshot of the visitors that still exist.

use pal_core::Comparison;
use pal_format::http::ContributedPair;
use sqlx::Row;

use super::visitors::touch;
use super::{Db, INSERT_CHUNK, comparison_rows, now, values_list};
use crate::error::ApiError;

/// What appending contributions did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contributed {
    /// Stored; the visitor's total on the model after it.
    Stored(usize),
    /// Nothing stored: the visitor's `stored` ones plus these would exceed the limit.
    OverLimit { stored: usize },
    /// Nothing stored: the visitor no longer exists ("forget me" committed first).
    Gone,
}

/// Contributions a training job would add to a dataset: rows and distinct visitors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContributionCount {
    pub rows: usize,
    pub visitors: usize,
}

impl Db {
    /// Appends contributed pairs of visitor `user` to `model`, unless that would take the
    /// visitor past `limit` on this model; counted and stored in one transaction.
    pub async fn add_contributions(
        &self,
        model: &str,
        user: &str,
        pairs: &[ContributedPair],
        limit: usize,
    ) -> Result<Contributed, ApiError> {
        let mut tx = self.write_tx().await?;
        if !touch(&mut tx, user).await? {
            return Ok(Contributed::Gone);
        }
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(MAX(seq) + 1, 0) AS next FROM contributions \
             WHERE model_id = $1 AND user_id = $2",
        )
        .bind(model)
        .bind(user)
        .fetch_one(&mut *tx)
        .await?;
        let stored = row.try_get::<i64, _>("n")? as usize;
        let next: i64 = row.try_get("next")?;
        if stored + pairs.len() > limit {
            return Ok(Contributed::OverLimit { stored });
        }
        let at = now();
        for (chunk_no, chunk) in pairs.chunks(INSERT_CHUNK).enumerate() {
            let sql = format!(
                "INSERT INTO contributions (model_id, user_id, seq, prompt, left_item, \
                 right_item, label, created_at) VALUES {}",
                values_list(chunk.len(), 8)
            );
            let mut q = sqlx::query(&sql);
            for (i, p) in chunk.iter().enumerate() {
                q = q
                    .bind(model)
                    .bind(user)
                    .bind(next + (chunk_no * INSERT_CHUNK + i) as i64)
                    .bind(p.prompt.clone())
                    .bind(&p.left)
                    .bind(&p.right)
                    .bind(i64::from(p.label))
                    .bind(at);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(Contributed::Stored(stored + pairs.len()))
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

    /// Every contribution to the models of `dataset` made up to `until` (ms) by a visitor who
    /// still exists, as comparisons, in a stable order: one statement, so one snapshot.
    pub async fn dataset_contributions(
        &self,
        dataset: &str,
        until: i64,
    ) -> Result<Vec<Comparison>, ApiError> {
        let rows = sqlx::query(
            "SELECT c.user_id, c.prompt, c.left_item, c.right_item, c.label FROM contributions c \
             JOIN models m ON m.id = c.model_id JOIN visitors v ON v.id = c.user_id \
             WHERE m.dataset_id = $1 AND c.created_at <= $2 \
             ORDER BY c.model_id, c.user_id, c.seq",
        )
        .bind(dataset)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        comparison_rows(&rows)
    }

    /// How many contributions (and from how many visitors) a job on `dataset` created at
    /// `until` would include: what the limits are checked against.
    pub async fn count_dataset_contributions(
        &self,
        dataset: &str,
        until: i64,
    ) -> Result<ContributionCount, ApiError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COUNT(DISTINCT c.user_id) AS u FROM contributions c \
             JOIN models m ON m.id = c.model_id JOIN visitors v ON v.id = c.user_id \
             WHERE m.dataset_id = $1 AND c.created_at <= $2",
        )
        .bind(dataset)
        .bind(until)
        .fetch_one(&self.pool)
        .await?;
        Ok(ContributionCount {
            rows: row.try_get::<i64, _>("n")? as usize,
            visitors: row.try_get::<i64, _>("u")? as usize,
        })
    }
}
