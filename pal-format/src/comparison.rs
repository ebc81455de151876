//! Comparisons as JSONL: `{"user", "prompt", "left", "right", "label"}`, one per line.
//!
//! `label` is 1 when the user preferred `left`, 0 when they preferred `right`. `prompt` may be
//! omitted (or null) for PAL-A data that has no context. Ids refer to rows of the item and prompt
//! embedding stores. This is the one reader and the one writer of the format: errors name
//! `FILE:LINE: field`, never a value from the file (the server answers them to clients).

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use pal_math::{PalError, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The fields a record may have.
pub const FIELDS: [&str; 5] = ["user", "prompt", "left", "right", "label"];

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

/// How strict a read is: the CLI reads its own files leniently, the server reads uploads strictly.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Refuse a record with a field outside [`FIELDS`].
    pub deny_unknown_fields: bool,
    /// Refuse a file with more comparisons than this.
    pub max_rows: Option<usize>,
}

fn parse_line(v: &Value, origin: &Path, line: usize, opts: ReadOptions) -> Result<Comparison> {
    let err = |field: &'static str, reason: &str| PalError::Record {
        path: origin.to_path_buf(),
        line,
        field,
        reason: reason.to_string(),
    };
    let obj = v
        .as_object()
        .ok_or_else(|| err("(record)", "not a JSON object"))?;
    if opts.deny_unknown_fields && obj.keys().any(|k| !FIELDS.contains(&k.as_str())) {
        return Err(err(
            "(record)",
            "a field is not one of user, prompt, left, right, label",
        ));
    }
    let text = |field: &'static str| -> Result<String> {
        match obj.get(field) {
            None | Some(Value::Null) => Err(err(field, "missing")),
            Some(Value::String(s)) if s.is_empty() => Err(err(field, "empty string")),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(_) => Err(err(field, "wrong type: expected a string id")),
        }
    };
    let prompt = match obj.get("prompt") {
        None | Some(Value::Null) => None,
        Some(_) => Some(text("prompt")?),
    };
    let label = match obj.get("label") {
        None | Some(Value::Null) => return Err(err("label", "missing")),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(l @ (0 | 1)) => l as u8,
            _ => return Err(err("label", "must be 0 or 1 (1 = left preferred)")),
        },
        Some(_) => return Err(err("label", "wrong type: must be 0 or 1")),
    };
    let user = text("user")?;
    let (left, right) = (text("left")?, text("right")?);
    if left == right {
        return Err(err("right", "left and right are the same item"));
    }
    Ok(Comparison {
        user,
        prompt,
        left,
        right,
        label,
    })
}

/// Calls `f` with each comparison read from `input` in order, without keeping them; blank lines
/// are skipped. `origin` names the file in errors (`FILE:LINE: field`).
pub fn for_each_comparison(
    input: impl BufRead,
    origin: &Path,
    opts: ReadOptions,
    mut f: impl FnMut(Comparison) -> Result<()>,
) -> Result<()> {
    let mut rows = 0usize;
    for (i, line) in input.lines().enumerate() {
        let record = |field: &'static str, reason: String| PalError::Record {
            path: origin.to_path_buf(),
            line: i + 1,
            field,
            reason,
        };
        let line = line.map_err(|_| record("(line)", "not UTF-8 text".into()))?;
        if line.trim().is_empty() {
            continue;
        }
        if let Some(max) = opts.max_rows
            && rows >= max
        {
            return Err(PalError::file(
                origin,
                format!("more than {max} comparisons (the limit)"),
            ));
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| {
            record(
                "(json)",
                format!("not a JSON object (column {})", e.column()),
            )
        })?;
        f(parse_line(&v, origin, i + 1, opts)?)?;
        rows += 1;
    }
    Ok(())
}

/// Calls `f` with each comparison of a JSONL file (see [`for_each_comparison`]).
pub fn for_each_jsonl(path: &Path, f: impl FnMut(Comparison) -> Result<()>) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| PalError::io(path, e))?;
    for_each_comparison(BufReader::new(file), path, ReadOptions::default(), f)
}

/// Reads a JSONL file of comparisons leniently (see [`for_each_jsonl`]).
pub fn read_jsonl(path: &Path) -> Result<Vec<Comparison>> {
    read_jsonl_with(path, ReadOptions::default())
}

/// Reads a JSONL file of comparisons with `opts` (errors name `path`).
pub fn read_jsonl_with(path: &Path, opts: ReadOptions) -> Result<Vec<Comparison>> {
    let file = std::fs::File::open(path).map_err(|e| PalError::io(path, e))?;
    let mut out = Vec::new();
    for_each_comparison(BufReader::new(file), path, opts, |c| {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, opts: ReadOptions) -> Result<Vec<Comparison>> {
        let mut out = vec![];
        for_each_comparison(text.as_bytes(), Path::new("train.jsonl"), opts, |c| {
            out.push(c);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn round_trips_through_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        let rows = vec![
            Comparison {
                user: "u".into(),
                prompt: Some("p".into()),
                left: "a".into(),
                right: "b".into(),
                label: 1,
            },
            Comparison {
                user: "v".into(),
                prompt: None,
                left: "b".into(),
                right: "c".into(),
                label: 0,
            },
        ];
        write_jsonl(&p, &rows).unwrap();
        assert_eq!(read_jsonl(&p).unwrap(), rows);
    }

    #[test]
    fn errors_name_line_and_field_never_values() {
        let strict = ReadOptions {
            deny_unknown_fields: true,
            max_rows: Some(10),
        };
        let cases = [
            ("SECRET=hunter2", "field `(json)`: not a JSON object"),
            (r#"["hunter2"]"#, "not a JSON object"),
            (
                r#"{"user":"u","left":"a","right":"b","label":7}"#,
                "field `label`: must be 0 or 1",
            ),
            (
                r#"{"user":"u","left":"a","right":"b","label":"hunter2"}"#,
                "wrong type",
            ),
            (
                r#"{"user":"u","left":"a","label":1}"#,
                "field `right`: missing",
            ),
            (
                r#"{"user":"u","left":"hunter2","right":"hunter2","label":1}"#,
                "same item",
            ),
            (
                r#"{"user":["hunter2"],"left":"a","right":"b","label":1}"#,
                "field `user`: wrong type",
            ),
            (
                r#"{"user":"u","left":"a","right":"b","label":1,"hunter2":1}"#,
                "not one of",
            ),
        ];
        for (line, want) in cases {
            let e = read(&format!("\n{line}\n"), strict)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("train.jsonl:2: "), "{e}");
            assert!(e.contains(want), "{e} lacks {want}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn lenient_reads_accept_extra_fields_and_numeric_ids_and_limits_count() {
        let line = r#"{"user":1,"left":"a","right":"b","label":0,"note":"x"}"#;
        let rows = read(line, ReadOptions::default()).unwrap();
        assert_eq!(rows[0].user, "1");
        let two = format!("{line}\n{line}\n");
        let opts = ReadOptions {
            max_rows: Some(1),
            ..ReadOptions::default()
        };
        assert!(
            read(&two, opts)
                .unwrap_err()
                .to_string()
                .contains("more than 1")
        );
    }
}
