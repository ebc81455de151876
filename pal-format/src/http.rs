//! The HTTP bodies that the server writes and the browser app (or any client) reads: a user's
//! weights, a weight write, ranking requests and answers, and a model list entry. Server-only
//! bodies (health, job events, model details) live in `pal_server::bodies`.

use serde::{Deserialize, Serialize};

/// A user of a model: simplex weights (softmax of the logits) and the model revision they
/// belong to (also the response's `ETag`, `"r{revision}"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserWeights {
    pub id: String,
    pub weights: Vec<f32>,
    pub logits: Vec<f32>,
    pub revision: u64,
}

/// `PUT /models/{id}/users/{user}`: new simplex weights for a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetWeights {
    pub weights: Vec<f32>,
}

fn ten() -> usize {
    10
}

/// `POST /rank`: top-k items for a stored user or explicit simplex weights, under a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankRequest {
    pub model: String,
    #[serde(default)]
    pub user: Option<String>,
    /// Simplex weights over the K prototypes, instead of a stored user.
    #[serde(default)]
    pub weights: Option<Vec<f32>>,
    #[serde(default)]
    pub prompt: Option<String>,
    /// Items to rank (default: every item of the model's dataset).
    #[serde(default)]
    pub items: Option<Vec<String>>,
    #[serde(default = "ten")]
    pub k: usize,
}

/// One ranked item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    pub item: String,
    pub score: f32,
}

/// The answer of `POST /rank`: best first; equal scores keep the lower item index first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankResponse {
    pub model: String,
    pub user: Option<String>,
    pub weights: Vec<f32>,
    pub prompt: Option<String>,
    pub ranking: Vec<Ranked>,
}

/// The part of a `GET /models` entry a client needs to find a model's bundle and the newest
/// model of the same dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRef {
    pub id: String,
    #[serde(default)]
    pub dataset_id: String,
    #[serde(default)]
    pub created_at: i64,
}

/// `POST /models/{id}/visitors` (201): a new visitor's user id and secret. The secret is shown
/// once; the server keeps only a salted hash. Send it as `Authorization: Bearer <secret>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewVisitor {
    pub user: String,
    pub secret: String,
}

/// `POST /models/{id}/embed`: a prompt typed by a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    pub text: String,
}

/// The answer of `POST /models/{id}/embed`: the text's embedding, made by the encoder of the
/// model's prompts (named), to rank with in the browser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    pub embedding: Vec<f32>,
    pub encoder: String,
}

/// One A/B answer a visitor contributes: under `prompt`, `label` 1 means `left` was preferred.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContributedPair {
    #[serde(default)]
    pub prompt: Option<String>,
    pub left: String,
    pub right: String,
    pub label: u8,
}

/// `POST /models/{id}/users/{user}/comparisons`: answers given with the visitor's consent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contribute {
    pub pairs: Vec<ContributedPair>,
}

/// The answer to a contribution, and `GET` of a visitor's contributions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contributions {
    /// Pairs stored by this request (0 for a `GET`).
    pub stored: usize,
    /// Every pair the visitor has contributed to this model, oldest first.
    pub pairs: Vec<ContributedPair>,
}

/// Every error answer: `{error, detail}` (a short code and one human line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_requests_default_k_and_refuse_unknown_fields() {
        let r: RankRequest = serde_json::from_str(r#"{"model": "m", "user": "u"}"#).unwrap();
        assert_eq!((r.k, r.weights), (10, None));
        let e = serde_json::from_str::<RankRequest>(r#"{"model": "m", "kk": 3}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = serde_json::from_str::<SetWeights>(r#"{"weights": [1], "x": 1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}
