//! Dataset import by `path`, for directories the operator put under an import root
//! (`--import-root`). The directory is walked from the root with `openat(O_NOFOLLOW)`, so no
//! symbolic link is followed at any depth; files are opened non-blocking and only regular files
//! are read (a FIFO or device is refused, never waited on); everything is copied into a
//! server-owned staging directory with a byte budget before anything parses it. Errors name the
//! file, line and field: never file contents, never a server path.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use pal_core::Comparison;
use pal_format::comparison::{ReadOptions, read_jsonl_with};
use pal_format::content::{CONTENT_FILE, Content, ItemContent};
use pal_format::dataset::{ITEMS_FILE, PROMPTS_FILE, Split};
use rustix::fs::{CWD, Mode, OFlags, openat};
use rustix::io::Errno;

use crate::config::Limits;
use crate::error::ApiError;

/// Canonical import roots; a root that does not exist is a start-up error.
pub fn canonical_roots(roots: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    roots
        .iter()
        .map(|r| {
            let c = r
                .canonicalize()
                .map_err(|e| format!("--import-root {}: {e}", r.display()))?;
            if c.is_dir() {
                Ok(c)
            } else {
                Err(format!("--import-root {}: not a directory", r.display()))
            }
        })
        .collect()
}

/// The root and the components below it that `requested` names. A relative path is taken below
/// the first root; an absolute one must lie lexically under one of the roots. Every path outside
/// the roots gets the same answer, whether or not it exists.
fn locate(roots: &[PathBuf], requested: &str) -> Result<(PathBuf, Vec<String>), ApiError> {
    if roots.is_empty() {
        return Err(ApiError::forbidden(
            "dataset import by `path` is disabled on this server; the operator enables it with \
             `pal serve --import-root DIR` (or upload the data inline)",
        ));
    }
    let outside = || ApiError::forbidden("field `path`: must lie under an import root");
    if requested.is_empty() || requested.contains('\0') {
        return Err(ApiError::invalid("field `path`: must be a directory path"));
    }
    let p = Path::new(requested);
    let (root, rest) = if p.is_absolute() {
        let root = roots
            .iter()
            .find(|r| p.starts_with(r))
            .ok_or_else(outside)?;
        (root.clone(), p.strip_prefix(root).map_err(|_| outside())?)
    } else {
        (roots[0].clone(), p)
    };
    let mut comps = Vec::new();
    for c in rest.components() {
        match c {
            Component::Normal(s) => comps.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => return Err(outside()),
        }
    }
    Ok((root, comps))
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn file_flags() -> OFlags {
    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC
}

/// Opens the dataset directory without following any link below the root.
fn open_dir(root: &Path, comps: &[String]) -> Result<OwnedFd, ApiError> {
    let mut fd = openat(CWD, root, dir_flags(), Mode::empty())
        .map_err(|e| ApiError::internal(format!("opening import root: {e}")))?;
    for c in comps {
        fd = openat(&fd, c.as_str(), dir_flags(), Mode::empty()).map_err(|e| match e {
            Errno::NOENT => ApiError::invalid("field `path`: no such directory under the import root"),
            Errno::LOOP | Errno::NOTDIR => ApiError::invalid(
                "field `path`: a component is a symbolic link or not a directory (links are not followed)",
            ),
            Errno::ACCESS | Errno::PERM => {
                ApiError::invalid("field `path`: the server may not read that directory")
            }
            Errno::NAMETOOLONG => ApiError::invalid("field `path`: a component is too long"),
            other => ApiError::invalid(format!("field `path`: cannot be opened ({other})")),
        })?;
    }
    Ok(fd)
}

/// Opens `name` in `dir` as a regular file (errors call it `shown`); `None` when it does not exist.
fn open_file(dir: &OwnedFd, name: &str, shown: &str) -> Result<Option<File>, ApiError> {
    let name_in_dir = name;
    let name = shown;
    let fd = match openat(dir, name_in_dir, file_flags(), Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => {
            return Err(ApiError::invalid(format!(
                "{name}: is a symbolic link (links are not followed)"
            )));
        }
        Err(Errno::ACCESS | Errno::PERM) => {
            return Err(ApiError::invalid(format!(
                "{name}: the server may not read it"
            )));
        }
        Err(e) => return Err(ApiError::invalid(format!("{name}: cannot be opened ({e})"))),
    };
    let file = File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| ApiError::internal(format!("{name}: {e}")))?;
    if !meta.is_file() {
        return Err(ApiError::invalid(format!("{name}: is not a regular file")));
    }
    Ok(Some(file))
}

/// Copies `src` to `dst`, charging its bytes to `budget`.
fn copy_limited(mut src: File, dst: &Path, name: &str, budget: &mut u64) -> Result<(), ApiError> {
    let mut out = File::create(dst).map_err(|e| ApiError::internal(format!("staging: {e}")))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ApiError::invalid(format!("{name}: read failed ({e})"))),
        };
        if n as u64 > *budget {
            return Err(ApiError::invalid(format!(
                "{name}: the dataset is larger than the server's import limit"
            )));
        }
        *budget -= n as u64;
        out.write_all(&buf[..n])
            .map_err(|e| ApiError::internal(format!("staging: {e}")))?;
    }
    Ok(())
}

/// What an import copied into the staging directory.
pub struct Staged {
    pub splits: Vec<Split>,
    pub content: Option<Content>,
}

/// Copies the dataset at `requested` into `staging` (which must not exist yet): embedding
/// stores, comparison splits, `content.json` and the images it names.
pub fn stage(
    roots: &[PathBuf],
    requested: &str,
    staging: &Path,
    limits: &Limits,
) -> Result<Staged, ApiError> {
    let (root, comps) = locate(roots, requested)?;
    let dir = open_dir(&root, &comps)?;
    std::fs::create_dir_all(staging).map_err(|e| ApiError::internal(format!("staging: {e}")))?;
    let mut budget = limits.max_import_bytes;
    let mut copy = |dir: &OwnedFd, name: &str, dst: &Path| -> Result<bool, ApiError> {
        match open_file(dir, name, name)? {
            Some(f) => copy_limited(f, dst, name, &mut budget).map(|()| true),
            None => Ok(false),
        }
    };
    if !copy(&dir, ITEMS_FILE, &staging.join(ITEMS_FILE))? {
        return Err(ApiError::invalid(format!(
            "field `path`: the directory has no {ITEMS_FILE}"
        )));
    }
    copy(&dir, PROMPTS_FILE, &staging.join(PROMPTS_FILE))?;
    let mut splits = Vec::new();
    for s in Split::ALL {
        if copy(&dir, s.file_name(), &staging.join(s.file_name()))? {
            splits.push(s);
        }
    }
    let content = if copy(&dir, CONTENT_FILE, &staging.join(CONTENT_FILE))? {
        let bytes = std::fs::read(staging.join(CONTENT_FILE))
            .map_err(|e| ApiError::internal(format!("staging: {e}")))?;
        Some(parse_content(&bytes, limits)?)
    } else {
        None
    };
    let images: Vec<&str> = content
        .iter()
        .flat_map(|c| c.items.values())
        .filter_map(|i| match i {
            ItemContent::Image(rel) => rel.strip_prefix("images/"),
            ItemContent::Text(_) => None,
        })
        .collect();
    if !images.is_empty() {
        let img_dir = openat(&dir, "images", dir_flags(), Mode::empty()).map_err(|_| {
            ApiError::invalid(format!(
                "{CONTENT_FILE}: names images but `images` is not a directory (links are not followed)"
            ))
        })?;
        let dst = staging.join("images");
        std::fs::create_dir_all(&dst).map_err(|e| ApiError::internal(format!("staging: {e}")))?;
        for name in images {
            let shown = format!("images/{name}");
            match open_file(&img_dir, name, &shown)? {
                Some(f) => copy_limited(f, &dst.join(name), &shown, &mut budget)?,
                None => return Err(ApiError::invalid(format!("{shown}: missing"))),
            }
        }
    }
    Ok(Staged { splits, content })
}

/// A safe image file name (no directories), or `None`.
pub fn image_name(name: &str) -> Option<&str> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && (name.ends_with(".jpg") || name.ends_with(".png"));
    ok.then_some(name)
}

/// Parses `content.json` and checks its ids, image names and text lengths; errors give the
/// position or the id, never the text.
pub fn parse_content(bytes: &[u8], limits: &Limits) -> Result<Content, ApiError> {
    let c = Content::parse(bytes, Path::new(CONTENT_FILE))?;
    for (n, (id, item)) in c.items.iter().enumerate() {
        if let Some(why) = crate::config::id_problem(id, limits.max_id_len) {
            return Err(ApiError::invalid(format!(
                "{CONTENT_FILE}: item number {n}: id {why}"
            )));
        }
        match item {
            ItemContent::Image(rel)
                if image_name(rel.strip_prefix("images/").unwrap_or("")).is_none() =>
            {
                return Err(ApiError::invalid(format!(
                    "{CONTENT_FILE}: item `{}`: an image must be images/NAME.jpg or .png (letters, digits, - _ .)",
                    crate::error::shorten(id)
                )));
            }
            ItemContent::Text(t) if t.len() > limits.max_text_len => {
                return Err(ApiError::invalid(format!(
                    "{CONTENT_FILE}: item `{}`: text is {} bytes; the limit is {}",
                    crate::error::shorten(id),
                    t.len(),
                    limits.max_text_len
                )));
            }
            _ => {}
        }
    }
    for (prompt, items) in &c.candidates {
        let bad = std::iter::once(prompt)
            .chain(items)
            .find_map(|id| crate::config::id_problem(id, limits.max_id_len));
        if let Some(why) = bad {
            return Err(ApiError::invalid(format!(
                "{CONTENT_FILE}: candidates of prompt `{}`: an id {why}",
                crate::error::shorten(prompt)
            )));
        }
        if items.len() > limits.max_items {
            return Err(ApiError::invalid(format!(
                "{CONTENT_FILE}: candidates of prompt `{}`: {} items exceed the server's limit {}",
                crate::error::shorten(prompt),
                items.len(),
                limits.max_items
            )));
        }
    }
    if let Some((id, _)) = c
        .prompts
        .iter()
        .find(|(_, t)| t.len() > limits.max_text_len)
    {
        return Err(ApiError::invalid(format!(
            "{CONTENT_FILE}: prompt `{}`: text is longer than {} bytes",
            crate::error::shorten(id),
            limits.max_text_len
        )));
    }
    Ok(c)
}

/// Reads a staged comparison split strictly (no unknown fields, at most the server's
/// comparison limit). Errors are `FILE:LINE: field `F`: reason`, with no value from the file.
pub fn read_split(path: &Path, limits: &Limits) -> Result<Vec<Comparison>, ApiError> {
    let opts = ReadOptions {
        deny_unknown_fields: true,
        max_rows: Some(limits.max_comparisons),
    };
    // The conversion to `ApiError` reduces the path in a record error to the file name.
    Ok(read_jsonl_with(path, opts)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn locate_keeps_paths_under_the_roots() {
        let roots = vec![PathBuf::from("/srv/data")];
        assert_eq!(
            locate(&roots, "/srv/data/a/b").unwrap().1,
            vec!["a".to_string(), "b".to_string()]
        );
        assert_eq!(locate(&roots, "a/./b").unwrap().1.len(), 2);
        for bad in ["/etc", "/srv/data/../etc", "../x", "/srv/database"] {
            assert_eq!(
                locate(&roots, bad).unwrap_err().status,
                axum::http::StatusCode::FORBIDDEN,
                "{bad}"
            );
        }
        assert_eq!(
            locate(&[], "/srv/data").unwrap_err().status,
            axum::http::StatusCode::FORBIDDEN
        );
    }

    /// The reader's own cases are tested in pal-format; here: the server reads strictly (no
    /// unknown field, its comparison limit), names the file only, and echoes no value.
    #[test]
    fn splits_are_read_strictly_and_errors_name_the_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train.jsonl");
        std::fs::write(
            &p,
            "\n{\"user\":\"u\",\"left\":\"a\",\"right\":\"b\",\"label\":1,\"hunter2\":1}\n",
        )
        .unwrap();
        let e = read_split(&p, &limits()).unwrap_err();
        assert!(e.detail.starts_with("train.jsonl:2: "), "{}", e.detail);
        assert!(e.detail.contains("not one of"), "{}", e.detail);
        assert!(
            !e.detail.contains("hunter2") && !e.detail.contains('/'),
            "{}",
            e.detail
        );
        let line = r#"{"user":"u","prompt":"p","left":"a","right":"b","label":1}"#;
        std::fs::write(&p, format!("{line}\n{line}\n")).unwrap();
        assert_eq!(
            read_split(&p, &limits()).unwrap()[0].prompt.as_deref(),
            Some("p")
        );
        let tight = Limits {
            max_comparisons: 1,
            ..limits()
        };
        let e = read_split(&p, &tight).unwrap_err();
        assert!(e.detail.contains("more than 1 comparisons"), "{}", e.detail);
    }

    #[test]
    fn content_errors_hide_the_text() {
        let e = parse_content(b"{\"items\": {\"a\": {\"bogus\": \"hunter2\"}}}", &limits())
            .unwrap_err();
        assert!(e.detail.starts_with("content.json: line 1"), "{}", e.detail);
        assert!(!e.detail.contains("hunter2"));
        let e = parse_content(
            br#"{"items": {"a": {"image": "../../etc/passwd"}}}"#,
            &limits(),
        )
        .unwrap_err();
        assert!(e.detail.contains("item `a`"), "{}", e.detail);
    }
}
