//! Users of a model that its training job did not learn — made by the admin with PUT, or
//! fitted by adapt — as rows of `model_users`, each with its own revision and written in one
//! transaction: the model's files and bundle never change for them, and the loaded model is
//! never reloaded. Creations lock the model's row first, so racing writers cannot pass
//! `max_users`; an overwrite is one conditional update on the revision it was sent.

use pal_format::model_dir::TakenUser;
use sqlx::{Any, Row, Transaction};

use super::{Db, now};
use crate::error::ApiError;

/// A user's weights as stored (logits; the simplex weights are their softmax).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredUser {
    pub logits: Vec<f32>,
    pub residual: Option<Vec<f32>>,
    pub revision: u64,
}

/// What a write of one model user did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserWrite {
    /// Stored as this revision.
    Written(u64),
    /// Not stored: the stored revision is this one (0: none), not the one sent.
    Stale(u64),
    /// Not stored: the user exists and overwriting needs `If-Match`.
    Exists,
    /// Not stored: the model holds this many users, the server's limit.
    Full(usize),
}

/// What adding fitted users did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsersAdded {
    Added,
    /// Nothing stored: this user exists already.
    Exists(String),
    /// Nothing stored: the model would pass the limit; it holds this many users.
    Full(usize),
}

fn parse(text: &str) -> Result<Vec<f32>, ApiError> {
    serde_json::from_str(text).map_err(|e| ApiError::internal(format!("stored user weights: {e}")))
}

fn json(v: &[f32]) -> Result<String, ApiError> {
    serde_json::to_string(v).map_err(|e| ApiError::internal(format!("writing user weights: {e}")))
}

pub(super) fn stored(r: &sqlx::any::AnyRow) -> Result<StoredUser, ApiError> {
    Ok(StoredUser {
        logits: parse(&r.try_get::<String, _>("logits")?)?,
        residual: r
            .try_get::<Option<String>, _>("residual")?
            .as_deref()
            .map(parse)
            .transpose()?,
        revision: r.try_get::<i64, _>("revision")? as u64,
    })
}

/// Locks model `id`'s row for this transaction (PostgreSQL; SQLite's `BEGIN IMMEDIATE` holds
/// the one write lock already) and counts its stored users.
async fn lock_and_count(
    tx: &mut Transaction<'static, Any>,
    model: &str,
) -> Result<usize, ApiError> {
    sqlx::query("UPDATE models SET created_at = created_at WHERE id = $1")
        .bind(model)
        .execute(&mut **tx)
        .await?;
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM model_users WHERE model_id = $1")
        .bind(model)
        .fetch_one(&mut **tx)
        .await?
        .try_get("n")?;
    Ok(n as usize)
}

/// Inserts a user at revision 1 unless one with that id is stored; whether it was.
async fn insert(
    tx: &mut Transaction<'static, Any>,
    model: &str,
    user: &str,
    (logits, residual): (&[f32], Option<&[f32]>),
) -> Result<bool, ApiError> {
    let t = now();
    let done = sqlx::query(
        "INSERT INTO model_users (model_id, user_id, logits, residual, revision, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, 1, $5, $6) ON CONFLICT (model_id, user_id) DO NOTHING",
    )
    .bind(model)
    .bind(user)
    .bind(json(logits)?)
    .bind(residual.map(json).transpose()?)
    .bind(t)
    .bind(t)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

impl Db {
    pub async fn model_user(
        &self,
        model: &str,
        user: &str,
    ) -> Result<Option<StoredUser>, ApiError> {
        let row = sqlx::query(
            "SELECT logits, residual, revision FROM model_users WHERE model_id = $1 AND user_id = $2",
        )
        .bind(model)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(stored).transpose()
    }

    /// Every stored user of a model, oldest first.
    pub async fn model_users(&self, model: &str) -> Result<Vec<(String, StoredUser)>, ApiError> {
        let rows = sqlx::query(
            "SELECT user_id, logits, residual, revision FROM model_users WHERE model_id = $1 \
             ORDER BY created_at, user_id",
        )
        .bind(model)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("user_id")?, stored(r)?)))
            .collect()
    }

    pub async fn count_model_users(&self, model: &str) -> Result<usize, ApiError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM model_users WHERE model_id = $1")
            .bind(model)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(n as usize)
    }

    /// Sets a user's weights: with `expected`, only while the stored revision is `expected`
    /// (0: none stored, which creates it); without, only a new user. `fixed` users live in the
    /// model's files and count against `max_users` with the stored ones.
    pub async fn put_model_user(
        &self,
        (model, user): (&str, &str),
        logits: &[f32],
        expected: Option<u64>,
        (fixed, max_users): (usize, usize),
    ) -> Result<UserWrite, ApiError> {
        let mut tx = self.write_tx().await?;
        if let Some(e) = expected.filter(|e| *e > 0) {
            let done = sqlx::query(
                "UPDATE model_users SET logits = $1, updated_at = $2, revision = revision + 1 \
                 WHERE model_id = $3 AND user_id = $4 AND revision = $5",
            )
            .bind(json(logits)?)
            .bind(now())
            .bind(model)
            .bind(user)
            .bind(e as i64)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                tx.commit().await?;
                return Ok(UserWrite::Written(e + 1));
            }
            let now = sqlx::query(
                "SELECT revision FROM model_users WHERE model_id = $1 AND user_id = $2",
            )
            .bind(model)
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
            let current = now.map(|r| r.try_get::<i64, _>("revision")).transpose()?;
            return Ok(UserWrite::Stale(current.unwrap_or(0) as u64));
        }
        let held = lock_and_count(&mut tx, model).await?;
        if fixed + held >= max_users {
            return Ok(UserWrite::Full(fixed + held));
        }
        if !insert(&mut tx, model, user, (logits, None)).await? {
            return Ok(match expected {
                // `If-Match: "r0"` (create only): someone created it first.
                Some(_) => UserWrite::Stale(1),
                None => UserWrite::Exists,
            });
        }
        tx.commit().await?;
        Ok(UserWrite::Written(1))
    }

    /// Adds fitted users (revision 1), all or none; `fixed` as for `put_model_user`.
    pub async fn add_model_users(
        &self,
        model: &str,
        users: &[TakenUser],
        (fixed, max_users): (usize, usize),
    ) -> Result<UsersAdded, ApiError> {
        let mut tx = self.write_tx().await?;
        let held = lock_and_count(&mut tx, model).await?;
        if fixed + held + users.len() > max_users {
            return Ok(UsersAdded::Full(fixed + held));
        }
        for u in users {
            if !insert(&mut tx, model, &u.id, (&u.logits, u.residual.as_deref())).await? {
                return Ok(UsersAdded::Exists(u.id.clone()));
            }
        }
        tx.commit().await?;
        Ok(UsersAdded::Added)
    }
}
