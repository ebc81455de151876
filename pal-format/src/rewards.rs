//! The reward-serving HTTP bodies: pal's own `POST /models/{id}/rewards`, OpenRLHF's remote
//! reward-model protocol (`/get_reward`) and the Jina/vLLM rerank shape (`/rerank`). Requests
//! name a user (a stored user id, or none for the population's mixture) or give explicit simplex
//! weights; texts are embedded by the server with the encoder that made the model's dataset.

use serde::{Deserialize, Serialize};

/// `POST /models/{id}/rewards`: the rewards of `responses` (texts) or `response_embeddings`
/// (rows already embedded like the model's items) under `prompt` for one user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardsRequest {
    /// A user of the model; absent (and no `weights`): the population's mixture.
    #[serde(default)]
    pub user: Option<String>,
    /// Simplex weights over the K prototypes, instead of a user.
    #[serde(default)]
    pub weights: Option<Vec<f32>>,
    /// The prompt's text (PAL-B models; PAL-A models ignore it).
    #[serde(default)]
    pub prompt: Option<String>,
    /// The prompt already embedded like the model's prompts, instead of `prompt`.
    #[serde(default)]
    pub prompt_embedding: Option<Vec<f32>>,
    #[serde(default)]
    pub responses: Option<Vec<String>>,
    #[serde(default)]
    pub response_embeddings: Option<Vec<Vec<f32>>>,
}

/// The answer of `POST /models/{id}/rewards`: one reward per response, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rewards {
    pub rewards: Vec<f32>,
    /// The encoder that embedded the texts (`None` when every row came embedded).
    pub encoder: Option<String>,
    /// The simplex weights the rewards are for.
    pub weights: Vec<f32>,
}

/// OpenRLHF's `--remote_rm_url` request: `query[i]` is a prompt and its response as one text,
/// `prompts[i]` the prompt it starts with (older OpenRLHF releases send no `prompts`), and
/// `labels[i]` the dataset's label column, here a user id (`null`: the population's mixture).
/// Fields OpenRLHF may add are ignored, so newer releases keep working.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GetRewardRequest {
    pub query: Vec<String>,
    #[serde(default)]
    pub prompts: Option<Vec<String>>,
    #[serde(default)]
    pub labels: Option<Vec<serde_json::Value>>,
}

/// OpenRLHF's answer: `rewards` and `scores` (the same values, in request order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetRewardResponse {
    pub rewards: Vec<f32>,
    pub scores: Vec<f32>,
}

/// `POST /models/{id}/rerank` in the Jina/vLLM/TEI shape, plus pal's `user` or `weights`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerankRequest {
    /// Accepted for compatibility with rerank clients (which name the reranker); not used.
    #[serde(default)]
    pub model: Option<String>,
    pub query: String,
    pub documents: Vec<String>,
    /// Results to return, best first (default: every document).
    #[serde(default)]
    pub top_n: Option<usize>,
    #[serde(default)]
    pub return_documents: bool,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub weights: Option<Vec<f32>>,
}

/// A reranked document: its index in the request and its reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerankResult {
    pub index: usize,
    pub relevance_score: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<RerankDocument>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerankDocument {
    pub text: String,
}

/// The answer of `POST /models/{id}/rerank`: results best first (equal rewards keep request
/// order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerankResponse {
    pub model: String,
    pub results: Vec<RerankResult>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openrlhf_bodies_parse_with_and_without_prompts_and_labels() {
        let old: GetRewardRequest = serde_json::from_str(r#"{"query": ["a b"]}"#).unwrap();
        assert_eq!(old.query, ["a b"]);
        assert!(old.prompts.is_none() && old.labels.is_none());
        let new: GetRewardRequest = serde_json::from_str(
            r#"{"query": ["p r"], "prompts": ["p"], "labels": [null], "extra": 1}"#,
        )
        .unwrap();
        assert_eq!(new.labels.unwrap()[0], serde_json::Value::Null);
        let out = serde_json::to_value(GetRewardResponse {
            rewards: vec![0.5],
            scores: vec![0.5],
        })
        .unwrap();
        assert_eq!(out, serde_json::json!({"rewards": [0.5], "scores": [0.5]}));
    }

    #[test]
    fn own_bodies_refuse_unknown_fields() {
        assert!(serde_json::from_str::<RewardsRequest>(r#"{"responses": [], "x": 1}"#).is_err());
        let r: RerankRequest =
            serde_json::from_str(r#"{"query": "q", "documents": ["a"], "top_n": 1}"#).unwrap();
        assert_eq!(r.top_n, Some(1));
        assert!(!r.return_documents);
    }
}
