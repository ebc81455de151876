//! `candidates.json`: per prompt, the items people compared under it (from a dataset's training
//! comparisons). The browser asks a visitor only about two candidates of one prompt — pairs a
//! person can answer (versions of one photo, summaries of one paper) — never about unrelated items.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use pal_math::{PalError, Result, write_atomic};
use serde::{Deserialize, Serialize};

use crate::comparison::Comparison;

pub const CANDIDATES_FILE: &str = "candidates.json";
/// The key of comparisons without a prompt (PAL-A).
pub const NO_PROMPT: &str = "";

/// Prompt id → the sorted item ids compared under it (prompts with fewer than two are left out).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Candidates {
    pub prompts: BTreeMap<String, Vec<String>>,
}

impl Candidates {
    pub fn from_comparisons<'a>(rows: impl IntoIterator<Item = &'a Comparison>) -> Self {
        let mut sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for c in rows {
            let set = sets
                .entry(c.prompt.clone().unwrap_or_else(|| NO_PROMPT.into()))
                .or_default();
            set.insert(c.left.clone());
            set.insert(c.right.clone());
        }
        Self {
            prompts: sets
                .into_iter()
                .filter(|(_, s)| s.len() >= 2)
                .map(|(p, s)| (p, s.into_iter().collect()))
                .collect(),
        }
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
}
