//! The workspace's house rules, checked on its own sources: every Rust file opens with a `//!`
//! line, none is over 600 lines, every crate is named in ARCHITECTURE.md, and no two modules of
//! a crate import from each other, directly or round a longer loop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The workspace members, from the root `Cargo.toml`.
fn members() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("a members line");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if p.is_dir() && !matches!(name.as_str(), "target" | "dist" | "node_modules") {
            rust_files(&p, out);
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_file_opens_with_a_doc_line_and_reads_in_one_sitting() {
    let mut problems = vec![];
    for m in members() {
        let mut files = vec![];
        rust_files(&root().join(&m), &mut files);
        assert!(!files.is_empty(), "crate folder {m} has no Rust files");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let shown = f.strip_prefix(root()).unwrap_or(&f).display().to_string();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if !first.starts_with("//!") {
                problems.push(format!("{shown}: does not open with a `//!` line"));
            }
            let n = text.lines().count();
            if n > MAX_LINES {
                problems.push(format!("{shown}: {n} lines (the limit is {MAX_LINES})"));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn every_crate_is_named_in_architecture_md() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    for m in members() {
        let toml = std::fs::read_to_string(root().join(&m).join("Cargo.toml")).unwrap();
        let package = toml
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap()
            .to_string();
        assert!(
            arch.lines().any(|l| l.starts_with(&format!("{m}/"))),
            "ARCHITECTURE.md's tree has no `{m}/` line"
        );
        assert!(
            arch.contains(&package) || m == package,
            "ARCHITECTURE.md never names the package {package}"
        );
    }
}

/// A crate's modules: module path (`a::b`) → file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut files = vec![];
    rust_files(src, &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .collect();
        if matches!(
            parts.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            parts.pop();
        }
        out.insert(parts.join("::"), f);
    }
    out
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths after every `prefix::` in `code`: `a::b::c` → ["a::b::c"]; `{a, b::{c}}` → each
/// top-level item.
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| ident_char(c) || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut item, mut end) = (0, String::new(), group.len());
            for (n, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        end = n;
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.push(item);
            rest = &group[end..];
        } else {
            let end = rest
                .find(|c: char| !(ident_char(c) || c == ':'))
                .unwrap_or(rest.len());
            out.push(rest[..end].to_string());
        }
    }
    out.into_iter()
        .map(|p| {
            p.trim()
                .split(['{', ' ', '\n'])
                .next()
                .unwrap_or("")
                .trim_end_matches(':')
                .to_string()
        })
        .filter(|p| !p.is_empty() && p != "self")
        .collect()
}

/// The module a path inside the crate names: its longest prefix that is a module.
fn resolve(mods: &BTreeMap<String, PathBuf>, path: &[&str]) -> Option<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| mods.contains_key(m))
}

/// Edges between a crate's modules: `use crate::…`, `crate::…`, `super::…`, and a parent's use
/// of its own submodules' items (a `pub use` re-export or a `mod` line is not a use).
fn edges(mods: &BTreeMap<String, PathBuf>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, file) in mods {
        let text = std::fs::read_to_string(file).unwrap();
        // Unit tests inside a file use their own file (`use super::*`).
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let here: Vec<&str> = if m.is_empty() {
            vec![]
        } else {
            m.split("::").collect()
        };
        let is_dir = matches!(
            file.file_stem().and_then(|s| s.to_str()),
            Some("mod" | "lib" | "main")
        );
        // `super` is the parent module, for `a/b.rs` and `a/b/mod.rs` alike.
        let parent: Vec<&str> = here[..here.len().saturating_sub(1)].to_vec();
        let mut targets = vec![];
        for p in paths_after(&code, "crate::") {
            targets.push(p.split("::").map(str::to_string).collect::<Vec<_>>());
        }
        for p in paths_after(&code, "super::") {
            let mut t: Vec<String> = parent.iter().map(|s| s.to_string()).collect();
            t.extend(p.split("::").map(str::to_string));
            targets.push(t);
        }
        if is_dir {
            // Uses of its own submodules, outside `mod` lines and `pub use` re-exports.
            let used: String = code
                .lines()
                .filter(|l| {
                    let t = l.trim_start();
                    !(t.starts_with("mod ")
                        || t.starts_with("pub mod ")
                        || t.starts_with("pub use ")
                        || t.starts_with("pub(crate) use ")
                        || t.starts_with("#[cfg"))
                })
                .collect::<Vec<_>>()
                .join("\n");
            for child in mods.keys() {
                let Some(name) =
                    child.strip_prefix(&format!("{m}{}", if m.is_empty() { "" } else { "::" }))
                else {
                    continue;
                };
                if name.is_empty() || name.contains("::") {
                    continue;
                }
                if !paths_after(&used, &format!("{name}::")).is_empty()
                    || used.contains(&format!("use {name}::"))
                {
                    let mut t: Vec<String> = here.iter().map(|s| s.to_string()).collect();
                    t.push(name.to_string());
                    targets.push(t);
                }
            }
        }
        for t in targets {
            let t: Vec<&str> = t.iter().map(String::as_str).collect();
            if let Some(to) = resolve(mods, &t)
                && to != *m
            {
                // A module using its own parent's facade (crate root, `mod.rs`) is not an
                // import of a sibling.
                out.entry(m.clone()).or_default().insert(to);
            }
        }
    }
    out
}

/// Every cycle's members (strongly connected components with more than one module).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = graph.keys().chain(graph.values().flatten()).collect();
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for next in graph.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut out: Vec<Vec<String>> = vec![];
    for n in &nodes {
        if !reaches[n].contains(*n) {
            continue;
        }
        let mut scc: Vec<String> = nodes
            .iter()
            .filter(|m| reaches[n].contains(**m) && reaches[*m].contains(*n))
            .map(|m| m.to_string())
            .collect();
        scc.sort();
        if scc.len() > 1 && !out.contains(&scc) {
            out.push(scc);
        }
    }
    out
}

#[test]
fn no_crate_has_an_import_circle() {
    let mut found = vec![];
    for m in members() {
        let src = root().join(&m).join("src");
        if !src.is_dir() {
            continue;
        }
        let mods = modules(&src);
        for c in cycles(&edges(&mods)) {
            let shown: Vec<String> = c
                .iter()
                .map(|x| {
                    if x.is_empty() {
                        "(crate root)".into()
                    } else {
                        x.clone()
                    }
                })
                .collect();
            found.push(format!("{m}: {}", shown.join(" ↔ ")));
        }
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_circle_finder_finds_circles() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    g.entry("c".into()).or_default().insert("d".into());
    assert_eq!(cycles(&g), vec![vec!["a", "b", "c"]]);
    assert_eq!(
        paths_after(
            "use crate::{a::X, b::{c, d}};\nlet x = crate::e::f(1);",
            "crate::"
        ),
        ["a::X", "b::", "e::f"].map(|s| s.trim_end_matches(':').to_string())
    );
}
