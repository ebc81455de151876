//! Running things from xtask: the workspace root and target dir, cargo and the `pal` binary,
//! commands run with their status checked or their output captured, and step headings.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// `pal report` settings for the synthetic setting: the true K, a linear map, weight decay 0.3.
pub const SYNTH_REPORT: [&str; 10] = [
    "--k",
    "3",
    "--d",
    "16",
    "--layers",
    "1",
    "--weight-decay",
    "0.3",
    "--epochs",
    "300",
];

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn step(msg: &str) {
    eprintln!("\n==> {msg}");
}

pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

pub fn run(mut cmd: Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("command failed ({status}): {shown}");
    }
    Ok(())
}

/// Runs a command, showing its stderr (progress) live and returning its stdout.
pub fn output(mut cmd: Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("starting {shown}"))?;
    if !out.status.success() {
        bail!("command failed ({}): {shown}", out.status);
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, relative to the workspace, or `target/`).
pub fn target_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    if target.is_absolute() {
        target
    } else {
        root().join(target)
    }
}

/// Builds the release `pal` binary and returns its path.
pub fn build_pal() -> Result<PathBuf> {
    step("building pal (release)");
    let mut c = cargo();
    c.args(["build", "--release", "-p", "pal-cli"]);
    run(c)?;
    Ok(target_dir().join("release").join("pal"))
}

pub fn pal(bin: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args).current_dir(root());
    c
}
