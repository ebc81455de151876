//! Publishing a finished job's model: the job's state, the model's row and the weights of the
//! visitors it learned, in one transaction.

use pal_format::model_dir::TakenUser;

use super::visitors::adopt_learned;
use super::{Db, ModelRow, now};
use crate::error::ApiError;

impl Db {
    /// Publishes a finished job's model and marks the job succeeded, atomically, moving the
    /// visitors it learned into `visitor_weights` (those who still exist); `false` (and nothing
    /// published) when the job is no longer running, e.g. it was cancelled.
    pub async fn publish_model(
        &self,
        model: &ModelRow,
        visitors: &[TakenUser],
    ) -> Result<bool, ApiError> {
        let mut tx = self.write_tx().await?;
        if let Some(job) = &model.job_id {
            let claimed = sqlx::query(
                "UPDATE jobs SET status = 'succeeded', model_id = $1, updated_at = $2 \
                 WHERE id = $3 AND status = 'running'",
            )
            .bind(&model.id)
            .bind(now())
            .bind(job)
            .execute(&mut *tx)
            .await?;
            if claimed.rows_affected() != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        sqlx::query("DELETE FROM models WHERE id = $1")
            .bind(&model.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO models VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&model.id)
            .bind(model.job_id.clone())
            .bind(&model.dataset_id)
            .bind(&model.name)
            .bind(model.config.to_string())
            .bind(model.metrics.as_ref().map(|m| m.to_string()))
            .bind(model.created_at)
            .execute(&mut *tx)
            .await?;
        adopt_learned(&mut tx, &model.id, visitors).await?;
        tx.commit().await?;
        Ok(true)
    }
}
