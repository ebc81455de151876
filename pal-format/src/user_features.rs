//! `user_features.json`: what is known about each user besides their comparisons (a survey's
//! respondent covariates: age, gender, region, …) as text values by name. One writer, one reader.
//!
//! ```text
//! {"users": {"USER_ID": {"age": "46", "gender": "male"}, …}}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use pal_math::{PalError, Result, write_atomic};
use serde::{Deserialize, Serialize};

pub const USER_FEATURES_FILE: &str = "user_features.json";

/// Each user's covariates by name; a missing name is an unknown value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFeatures {
    pub users: BTreeMap<String, BTreeMap<String, String>>,
}

impl UserFeatures {
    /// The one writer: `dir/user_features.json`, atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self).expect("user features serialise");
        write_atomic(&dir.join(USER_FEATURES_FILE), &text)
    }

    /// The one reader; `None` when the dataset has no such file. Errors give the position in
    /// the file, never its text.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(USER_FEATURES_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).map_err(|e| PalError::io(&path, e))?;
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            PalError::file(
                &path,
                format!(
                    "line {}: not a valid user features file (column {}; expected {{\"users\": {{ID: {{NAME: VALUE}}}}}})",
                    e.line(),
                    e.column()
                ),
            )
        })
    }

    /// Every covariate name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .users
            .values()
            .flat_map(|m| m.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_a_bad_file_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(UserFeatures::read(dir.path()).unwrap(), None);
        let mut f = UserFeatures::default();
        f.users
            .entry("u1".into())
            .or_default()
            .insert("age".into(), "46".into());
        f.write(dir.path()).unwrap();
        assert_eq!(UserFeatures::read(dir.path()).unwrap(), Some(f.clone()));
        assert_eq!(f.names(), ["age"]);
        std::fs::write(
            dir.path().join(USER_FEATURES_FILE),
            b"{\"users\": [secret]}",
        )
        .unwrap();
        let e = UserFeatures::read(dir.path()).unwrap_err().to_string();
        assert!(!e.contains("secret") && !e.contains('\n'), "{e}");
    }
}
