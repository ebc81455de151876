//! Comparisons as JSONL: `{"user", "prompt", "left", "right", "label"}`, one per line.
//!
//! `label` is 1 when the user preferred `left`, 0 when they preferred `right`. `prompt` may be
//! omitted (or null) for PAL-A data that has no context. Ids refer to rows of the item and prompt
//! embedding stores.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{PalError, Result};

/// One labelled comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison {
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    pub left: String,
    pub right: String,
    /// 1 = left preferred, 0 = right preferred.
    pub label: u8,
}

impl Comparison {
    /// The same comparison with left and right swapped (label flipped).
    pub fn swapped(&self) -> Self {
        Self {
            left: self.right.clone(),
            right: self.left.clone(),
            label: 1 - self.label,
            ..self.clone()
        }
    }
}

fn parse_line(v: &Value, path: &Path, line: usize) -> Result<Comparison> {
    let err = |field: &'static str, reason: &str| PalError::Record {
        path: path.to_path_buf(),
        line,
        field,
        reason: reason.to_string(),
    };
    let obj = v
        .as_object()
        .ok_or_else(|| err("(record)", "expected a JSON object"))?;
    let text = |field: &'static str| -> Result<String> {
        match obj.get(field) {
            None | Some(Value::Null) => Err(err(field, "missing")),
            Some(Value::String(s)) if s.is_empty() => Err(err(field, "empty string")),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(_) => Err(err(field, "expected a string id")),
        }
    };
    let prompt = match obj.get("prompt") {
        None | Some(Value::Null) => None,
        Some(_) => Some(text("prompt")?),
    };
    let label = match obj.get("label") {
        None | Some(Value::Null) => return Err(err("label", "missing")),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => 0,
        Some(Value::Number(n)) if n.as_u64() == Some(1) => 1,
        Some(other) => {
            return Err(err(
                "label",
                &format!("must be 0 (right preferred) or 1 (left preferred), got {other}"),
            ));
        }
    };
    let (left, right) = (text("left")?, text("right")?);
    if left == right {
        return Err(err("right", "left and right are the same item"));
    }
    Ok(Comparison {
        user: text("user")?,
        prompt,
        left,
        right,
        label,
    })
}

/// Calls `f` with each comparison of a JSONL file in order, without keeping them; blank lines are
/// skipped. Errors name file, line and field.
pub fn for_each_jsonl(path: &Path, mut f: impl FnMut(Comparison) -> Result<()>) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| PalError::io(path, e))?;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| PalError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| PalError::Record {
            path: path.to_path_buf(),
            line: i + 1,
            field: "(json)",
            reason: e.to_string(),
        })?;
        f(parse_line(&v, path, i + 1)?)?;
    }
    Ok(())
}

/// Reads a JSONL file of comparisons (see [`for_each_jsonl`]).
pub fn read_jsonl(path: &Path) -> Result<Vec<Comparison>> {
    let mut out = Vec::new();
    for_each_jsonl(path, |c| {
        out.push(c);
        Ok(())
    })?;
    Ok(out)
}

/// Writes comparisons as JSONL.
pub fn write_jsonl(path: &Path, rows: &[Comparison]) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| PalError::io(path, e))?;
    let mut w = BufWriter::new(file);
    for r in rows {
        let line = serde_json::to_string(r).expect("comparison serialises");
        writeln!(w, "{line}").map_err(|e| PalError::io(path, e))?;
    }
    w.flush().map_err(|e| PalError::io(path, e))
}
