//! The simulated taste of a dataset's groups, where its builder knows it: each group's members
//! and their utility of every item (the rule that made their comparisons, as a number). Written
//! by `pal-data` as `tastes.json` beside the card; read by the best-of-n check of `pal report`,
//! which scores a model's picks by the picker's own group's utility.

use std::collections::HashMap;
use std::path::Path;

use pal_math::{PalError, Result, write_atomic};
use serde::{Deserialize, Serialize};

pub const TASTES_FILE: &str = "tastes.json";

/// One group: its name, members (seen and unseen users) and utility of each item id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupTaste {
    pub group: String,
    pub users: Vec<String>,
    pub utility: HashMap<String, f64>,
}

/// The one writer: `dir/tastes.json`, atomically.
pub fn write(dir: &Path, tastes: &[GroupTaste]) -> Result<()> {
    let bytes = serde_json::to_vec(tastes).expect("tastes serialise");
    write_atomic(&dir.join(TASTES_FILE), &bytes)
}

/// The one reader: `None` when the dataset has no such file.
pub fn read(dir: &Path) -> Result<Option<Vec<GroupTaste>>> {
    let path = dir.join(TASTES_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PalError::io(&path, e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        PalError::file(
            &path,
            format!(
                "line {}: not a tastes file (expected [{{\"group\", \"users\", \"utility\": {{ITEM: NUMBER}}}}])",
                e.line()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tastes_round_trip_and_are_optional() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let t = vec![GroupTaste {
            group: "longer".into(),
            users: vec!["u1".into()],
            utility: [("i".to_string(), 3.0)].into_iter().collect(),
        }];
        write(dir.path(), &t).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(t));
        std::fs::write(dir.path().join(TASTES_FILE), "{").unwrap();
        assert!(
            read(dir.path())
                .unwrap_err()
                .to_string()
                .contains("tastes file")
        );
    }
}
