//! Who may read or write a user: the admin (`--token`) for everything, a visitor (their own
//! secret, kept as a salted SHA-256) for their own user. Secrets are 256 random bits from the
//! operating system's generator, so one hash round is enough; comparisons take constant time.

use axum::http::{HeaderMap, StatusCode, header};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::db::VisitorRow;
use crate::error::{ApiError, shorten};
use crate::state::AppState;

/// The prefix of every visitor's user id.
pub const VISITOR_PREFIX: &str = "visitor-";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rng().fill_bytes(&mut buf);
    hex(&buf)
}

/// `sha256(salt ‖ secret)` in hex.
pub fn hash_secret(salt: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(secret.as_bytes());
    hex(&h.finalize())
}

/// Equal strings, in time that depends only on their lengths.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// A new visitor of `model`: the row to store and the secret to show once.
pub fn new_visitor(model: &str, now: i64) -> (VisitorRow, String) {
    let secret = random_hex(32);
    let salt = random_hex(16);
    let row = VisitorRow {
        id: format!("{VISITOR_PREFIX}{}", random_hex(12)),
        model_id: model.to_string(),
        secret_hash: hash_secret(&salt, &secret),
        salt,
        created_at: now,
    };
    (row, secret)
}

/// The bearer credential of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The request carries the admin token (and one is configured).
pub fn is_admin(state: &AppState, headers: &HeaderMap) -> bool {
    match (&state.config.token, bearer(headers)) {
        (Some(token), Some(given)) => same(token, given),
        _ => false,
    }
}

fn unauthorized(detail: String) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
}

/// Admin-only access to users that are not visitors (dataset and admin-made users): open when
/// the server has no `--token`, else 401 without a credential and 403 with a wrong one.
pub fn require_admin(state: &AppState, headers: &HeaderMap, what: &str) -> Result<(), ApiError> {
    if state.config.token.is_none() || is_admin(state, headers) {
        return Ok(());
    }
    match bearer(headers) {
        None => Err(unauthorized(format!(
            "{what} needs `Authorization: Bearer <token>`"
        ))),
        Some(_) => Err(ApiError::forbidden(format!(
            "{what}: the bearer credential is not the admin token"
        ))),
    }
}

/// Access to visitor `v`'s user: their own secret or the admin token; 401 without a
/// credential, 403 with any other (another visitor's secret included).
pub fn require_visitor(
    state: &AppState,
    headers: &HeaderMap,
    v: &VisitorRow,
) -> Result<(), ApiError> {
    if is_admin(state, headers) {
        return Ok(());
    }
    let Some(given) = bearer(headers) else {
        return Err(unauthorized(format!(
            "user `{}` is a visitor: send `Authorization: Bearer <secret>` with the secret \
             `POST /models/{{id}}/visitors` gave",
            shorten(&v.id)
        )));
    };
    if same(&hash_secret(&v.salt, given), &v.secret_hash) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "the bearer secret is not user `{}`'s",
            shorten(&v.id)
        )))
    }
}

/// The visitor row of `user`, if `user` is a visitor (only ids with the visitor prefix are
/// looked up).
pub async fn visitor_of(state: &AppState, user: &str) -> Result<Option<VisitorRow>, ApiError> {
    if !user.starts_with(VISITOR_PREFIX) {
        return Ok(None);
    }
    state.db.visitor(user).await
}

/// Access to `user` when it is a visitor's id: `Some(row)` once their secret (or the admin
/// token) is checked, `None` for ids without the visitor prefix. An id with the prefix that
/// names no visitor (never made, or forgotten) answers exactly as an existing visitor does to
/// a missing or wrong secret, after the same hashing work, so no answer confirms which ids
/// exist; only the admin token learns that (`None`: the caller's not-found path).
pub async fn visitor_access(
    state: &AppState,
    headers: &HeaderMap,
    user: &str,
) -> Result<Option<VisitorRow>, ApiError> {
    if !user.starts_with(VISITOR_PREFIX) {
        return Ok(None);
    }
    match state.db.visitor(user).await? {
        Some(v) => require_visitor(state, headers, &v).map(|()| Some(v)),
        None if is_admin(state, headers) => Ok(None),
        None => {
            let (mut decoy, _) = new_visitor("", 0);
            decoy.id = user.to_string();
            require_visitor(state, headers, &decoy)?;
            // A random decoy secret never matches: unreachable in practice, refused anyway.
            Err(ApiError::forbidden(format!(
                "the bearer secret is not user `{}`'s",
                shorten(user)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_checked_by_salted_hash() {
        let (a, sa) = new_visitor("m", 0);
        let (b, sb) = new_visitor("m", 0);
        assert_ne!(sa, sb);
        assert_ne!(a.id, b.id);
        assert_ne!(a.salt, b.salt);
        assert_eq!(sa.len(), 64, "256-bit secret in hex");
        assert!(a.id.starts_with(VISITOR_PREFIX));
        assert!(!a.secret_hash.contains(&sa));
        assert!(same(&hash_secret(&a.salt, &sa), &a.secret_hash));
        assert!(!same(&hash_secret(&a.salt, &sb), &a.secret_hash));
        assert!(!same(&hash_secret(&b.salt, &sa), &b.secret_hash));
        assert!(!same("ab", "abc"));
    }
}
