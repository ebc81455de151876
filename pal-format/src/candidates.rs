//! `candidates.json`: per prompt, the items people compared under it (from a dataset's training
//! comparisons). The browser asks a visitor only about two candidates of one prompt — pairs a
//! person can answer (versions of one photo, summaries of one paper) — never about unrelated items.
//! An item compared under a prompt only now and then — far less often than under the prompt it
//! is compared under most, like another photo shown as the irrelevant side of a relevance
//! comparison — is not that prompt's candidate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use pal_math::{PalError, Result, write_atomic};
use serde::{Deserialize, Serialize};

use crate::comparison::Comparison;

pub const CANDIDATES_FILE: &str = "candidates.json";
/// The key of comparisons without a prompt (PAL-A).
pub const NO_PROMPT: &str = "";

/// An item is a candidate of a prompt when it is compared under it at least this share as often
/// as under the prompt it is compared under most.
pub const MIN_SHARE: f32 = 0.25;

/// Prompt id → the sorted item ids compared under it (prompts with fewer than two are left out).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Candidates {
    pub prompts: BTreeMap<String, Vec<String>>,
}

impl Candidates {
    pub fn from_comparisons<'a>(rows: impl IntoIterator<Item = &'a Comparison>) -> Self {
        // item → prompt → times compared under it.
        let mut seen: BTreeMap<&str, BTreeMap<&str, u32>> = BTreeMap::new();
        for c in rows {
            let prompt = c.prompt.as_deref().unwrap_or(NO_PROMPT);
            for item in [&c.left, &c.right] {
                *seen.entry(item).or_default().entry(prompt).or_default() += 1;
            }
        }
        let mut sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (item, prompts) in &seen {
            let most = prompts.values().copied().max().unwrap_or(0) as f32;
            for (prompt, n) in prompts {
                if *n as f32 >= MIN_SHARE * most {
                    sets.entry(prompt.to_string())
                        .or_default()
                        .insert(item.to_string());
                }
            }
        }
        Self {
            prompts: sets
                .into_iter()
                .filter(|(_, s)| s.len() >= 2)
                .map(|(p, s)| (p, s.into_iter().collect()))
                .collect(),
        }
    }

    /// The candidates a dataset declares in `content.json` (prompts with fewer than two items
    /// left out), if it declares any.
    pub fn declared(content: &crate::content::Content) -> Option<Self> {
        let prompts: BTreeMap<String, Vec<String>> = content
            .candidates
            .iter()
            .filter(|(_, items)| items.len() >= 2)
            .map(|(p, items)| {
                let set: BTreeSet<&String> = items.iter().collect();
                (p.clone(), set.into_iter().cloned().collect())
            })
            .collect();
        (!prompts.is_empty()).then_some(Self { prompts })
    }

    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    /// The one writer: `dir/candidates.json`, atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).expect("candidates serialise");
        write_atomic(&dir.join(CANDIDATES_FILE), &bytes)
    }

    /// The one reader.
    pub fn parse(bytes: &[u8], origin: &Path) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| {
            PalError::file(
                origin,
                format!(
                    "not a candidates file (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(prompt: Option<&str>, l: &str, r: &str) -> Comparison {
        Comparison {
            user: "u".into(),
            prompt: prompt.map(String::from),
            left: l.into(),
            right: r.into(),
            label: 1,
        }
    }

    #[test]
    fn candidates_are_the_items_compared_under_each_prompt() {
        let rows = [
            c(Some("p"), "b", "a"),
            c(Some("p"), "a", "c"),
            c(Some("q"), "x", "y"),
            c(None, "m", "n"),
        ];
        let cand = Candidates::from_comparisons(&rows);
        assert_eq!(cand.prompts["p"], ["a", "b", "c"]);
        assert_eq!(cand.prompts["q"], ["x", "y"]);
        assert_eq!(cand.prompts[NO_PROMPT], ["m", "n"]);
        let dir = tempfile::tempdir().unwrap();
        cand.write(dir.path()).unwrap();
        let bytes = std::fs::read(dir.path().join(CANDIDATES_FILE)).unwrap();
        assert_eq!(
            Candidates::parse(&bytes, Path::new("c.json")).unwrap(),
            cand
        );
        assert!(Candidates::parse(b"[1]", Path::new("c.json")).is_err());
    }

    #[test]
    fn an_item_seen_under_a_prompt_only_as_a_rare_negative_is_not_its_candidate() {
        // x and y are p's (often compared there); z is q's, shown under p once as the
        // irrelevant side; w is compared under both about as often (kept in both).
        let mut rows = vec![];
        for _ in 0..8 {
            rows.push(c(Some("p"), "x", "y"));
            rows.push(c(Some("q"), "z", "v"));
            rows.push(c(Some("p"), "w", "x"));
            rows.push(c(Some("q"), "w", "v"));
        }
        rows.push(c(Some("p"), "x", "z"));
        let cand = Candidates::from_comparisons(&rows);
        assert_eq!(cand.prompts["p"], ["w", "x", "y"]);
        assert_eq!(cand.prompts["q"], ["v", "w", "z"]);
    }
}
