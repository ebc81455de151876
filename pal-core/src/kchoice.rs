//! The number of prototypes a run asks for: a whole number, or `auto` (chosen with the residual
//! strength and the epochs by cross-validation, [`crate::select`]). Written `3` or `"auto"` in
//! JSON and on the command line.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KChoice {
    Auto,
    Fixed(usize),
}

impl KChoice {
    /// The fixed K, if one was asked for.
    pub fn fixed(self) -> Option<usize> {
        match self {
            KChoice::Auto => None,
            KChoice::Fixed(k) => Some(k),
        }
    }
}

impl FromStr for KChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(KChoice::Auto);
        }
        s.parse::<usize>()
            .map(KChoice::Fixed)
            .map_err(|_| format!("`{s}` is neither `auto` nor a whole number"))
    }
}

impl fmt::Display for KChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KChoice::Auto => f.write_str("auto"),
            KChoice::Fixed(k) => write!(f, "{k}"),
        }
    }
}

impl Serialize for KChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            KChoice::Auto => s.serialize_str("auto"),
            KChoice::Fixed(k) => s.serialize_u64(*k as u64),
        }
    }
}

/// Either JSON form, checked: the one place both are read.
#[derive(Deserialize)]
#[serde(untagged)]
enum Wire {
    Number(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for KChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bad = || serde::de::Error::custom("expected a whole number of prototypes or \"auto\"");
        match Wire::deserialize(d).map_err(|_| bad())? {
            Wire::Number(k) => usize::try_from(k).map(KChoice::Fixed).map_err(|_| bad()),
            Wire::Text(t) if t == "auto" => Ok(KChoice::Auto),
            Wire::Text(_) => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_text_forms_round_trip() {
        for (json, k) in [("3", KChoice::Fixed(3)), ("\"auto\"", KChoice::Auto)] {
            assert_eq!(serde_json::from_str::<KChoice>(json).unwrap(), k);
            assert_eq!(serde_json::to_string(&k).unwrap(), json);
            assert_eq!(k.to_string().parse::<KChoice>().unwrap(), k);
        }
        for bad in ["\"many\"", "-1", "2.5", "null", "[1]"] {
            let e = serde_json::from_str::<KChoice>(bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains("\"auto\""), "{bad}: {e}");
        }
        assert!("x".parse::<KChoice>().is_err());
    }
}
