//! The visitor's own state, as plain Rust: where the browser keeps it (`localStorage` keys),
//! their answers as item and prompt ids (so they survive a reload and can be contributed), which
//! answers were already contributed, and which newer model of the same dataset to offer.
//! Nothing here leaves the browser; `api` sends weights on "save" and answers only with consent.

use pal_format::http::{ContributedPair, ModelRef};
use pal_math::EmbeddingStore;

use crate::policy::{Answer, Pair};

/// `localStorage` key of the visitor's `{user, secret}` (one identity for every model).
pub const VISITOR_KEY: &str = "pal.visitor";

/// `localStorage` key of the visitor's answers on a model (a JSON list of [`ContributedPair`]).
pub fn answers_key(model: &str) -> String {
    format!("pal.answers.{model}")
}

/// `localStorage` key of how many of those answers were contributed already.
pub fn sent_key(model: &str) -> String {
    format!("pal.sent.{model}")
}

/// An answer as ids: `label` 1 when the left item was chosen; no prompt for PAL-A.
pub fn to_pair(
    a: &Answer,
    items: &EmbeddingStore,
    prompts: Option<&EmbeddingStore>,
) -> ContributedPair {
    ContributedPair {
        prompt: prompts.map(|s| s.ids()[a.pair.prompt].clone()),
        left: items.ids()[a.pair.left].clone(),
        right: items.ids()[a.pair.right].clone(),
        label: u8::from(a.chose_left),
    }
}

/// Stored answers back as rows of this bundle's stores; answers naming ids it lacks are dropped.
pub fn from_pairs(
    pairs: &[ContributedPair],
    items: &EmbeddingStore,
    prompts: Option<&EmbeddingStore>,
) -> Vec<Answer> {
    pairs
        .iter()
        .filter_map(|p| {
            let prompt = match (prompts, &p.prompt) {
                (Some(s), Some(id)) => s.position(id)?,
                (None, None) => 0,
                _ => return None,
            };
            Some(Answer {
                pair: Pair {
                    prompt,
                    left: items.position(&p.left)?,
                    right: items.position(&p.right)?,
                },
                chose_left: p.label == 1,
            })
        })
        .collect()
}

/// The answers to contribute now: those after the first `sent`.
pub fn unsent(answers: &[ContributedPair], sent: usize) -> &[ContributedPair] {
    &answers[sent.min(answers.len())..]
}

/// A model of the same dataset as `current` and newer than it (the newest such), to offer.
pub fn newer_model(models_json: &[u8], current: &str) -> Option<String> {
    let models: Vec<ModelRef> = serde_json::from_slice(models_json).ok()?;
    let me = models.iter().find(|m| m.id == current)?;
    models
        .iter()
        .filter(|m| m.dataset_id == me.dataset_id && m.id != me.id && m.created_at > me.created_at)
        .max_by_key(|m| m.created_at)
        .map(|m| m.id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(ids: &[&str]) -> EmbeddingStore {
        let data: Vec<f32> = (0..ids.len() * 2).map(|v| v as f32).collect();
        EmbeddingStore::new(ids.iter().map(|s| s.to_string()).collect(), 2, data).unwrap()
    }

    #[test]
    fn answers_round_trip_through_ids_and_unknown_ids_drop() {
        let items = store(&["a", "b", "c"]);
        let prompts = store(&["p", "q"]);
        let answers = vec![
            Answer {
                pair: Pair {
                    prompt: 1,
                    left: 2,
                    right: 0,
                },
                chose_left: true,
            },
            Answer {
                pair: Pair {
                    prompt: 0,
                    left: 0,
                    right: 1,
                },
                chose_left: false,
            },
        ];
        let pairs: Vec<_> = answers
            .iter()
            .map(|a| to_pair(a, &items, Some(&prompts)))
            .collect();
        assert_eq!(
            pairs[0],
            ContributedPair {
                prompt: Some("q".into()),
                left: "c".into(),
                right: "a".into(),
                label: 1
            }
        );
        assert_eq!(from_pairs(&pairs, &items, Some(&prompts)), answers);
        // Another bundle's stores (a newer model with fewer items): unknown ids are dropped.
        let fewer = store(&["a", "b"]);
        assert_eq!(from_pairs(&pairs, &fewer, Some(&prompts)), answers[1..]);
        assert!(
            from_pairs(&pairs, &items, None).is_empty(),
            "PAL-B answers need prompts"
        );
        assert_eq!(unsent(&pairs, 1), &pairs[1..]);
        assert!(unsent(&pairs, 9).is_empty());
    }

    #[test]
    fn a_newer_model_of_the_same_dataset_is_offered() {
        let list = br#"[
            {"id": "m1", "dataset_id": "d1", "created_at": 10},
            {"id": "m2", "dataset_id": "d2", "created_at": 20},
            {"id": "m3", "dataset_id": "d1", "created_at": 30},
            {"id": "m4", "dataset_id": "d1", "created_at": 25}
        ]"#;
        assert_eq!(newer_model(list, "m1").as_deref(), Some("m3"));
        assert_eq!(newer_model(list, "m3"), None);
        assert_eq!(newer_model(list, "m2"), None);
        assert_eq!(newer_model(list, "nope"), None);
    }
}
