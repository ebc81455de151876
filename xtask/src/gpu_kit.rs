//! `cargo xtask gpu-kit [--check]`: builds the GPU measurement kit under `target/gpu-kit/` — a
//! stripped, gzipped `pal` with burn's wgpu backend, `run.sh`, the PyTorch baseline, a README — that a
//! bare GPU machine (driver, no Rust, no network) runs in one command. `--check` runs the kit's
//! quick mode here (lavapipe in CI) and checks every JSON line it prints.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd::{cargo, root, run, step, target_dir};

/// The most the kit may weigh (it is copied to the GPU machine with the working tree).
const MAX_BYTES: u64 = 60 << 20;

/// Builds the kit and returns its directory.
pub fn build() -> Result<PathBuf> {
    step("building pal with the wgpu training backend (release)");
    let mut c = cargo();
    c.args(["build", "--release", "-p", "pal-cli", "--features", "wgpu"]);
    run(c)?;
    let kit = target_dir().join("gpu-kit");
    let _ = std::fs::remove_dir_all(&kit);
    std::fs::create_dir_all(&kit)?;
    let pal = kit.join("pal");
    std::fs::copy(target_dir().join("release/pal"), &pal)?;
    let mut strip = Command::new("strip");
    strip.arg(&pal);
    run(strip).context("stripping pal (binutils' strip)")?;
    // Compressed for the trip (run.sh unpacks it once); the binary itself is unchanged.
    let mut gzip = Command::new("gzip");
    gzip.args(["-9", "-n", "-f"]).arg(&pal);
    run(gzip).context("compressing pal (gzip)")?;
    let src = root().join("xtask");
    for (from, to) in [
        ("gpu-kit/run.sh", "run.sh"),
        ("bench/torch_pal_b.py", "torch_pal_b.py"),
    ] {
        std::fs::copy(src.join(from), kit.join(to))?;
    }
    std::fs::copy(root().join("docs/gpu.md"), kit.join("README.md"))?;
    let size: u64 = std::fs::read_dir(&kit)?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "    {}: {:.1} MiB (limit {} MiB)",
        kit.display(),
        size as f64 / 1048576.0,
        MAX_BYTES >> 20
    );
    if size > MAX_BYTES {
        bail!("the kit is {size} bytes, over the {MAX_BYTES}-byte limit");
    }
    Ok(kit)
}

/// The kinds of line `run.sh --quick` must print, each at least once.
const KINDS: [&str; 4] = ["info", "train", "score", "done"];

/// Checks the kit's JSON lines: each parses, none is an error, every kind is there, and the
/// measurements are positive.
pub fn check_lines(stdout: &str) -> Result<usize> {
    let positive = |v: &serde_json::Value| v.as_f64().is_some_and(|x| x > 0.0);
    let mut seen = std::collections::BTreeSet::new();
    let mut n = 0;
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("not a JSON line: {line}"))?;
        let kind = v["kind"].as_str().unwrap_or("").to_string();
        match kind.as_str() {
            "error" => bail!("the kit reported an error: {line}"),
            "train" if !positive(&v["samples_per_second"]) => {
                bail!("a train line without samples/s: {line}")
            }
            "score" if !positive(&v["gpu_items_per_second"]) => {
                bail!("a score line without GPU throughput: {line}")
            }
            "info" if v["adapter"]["name"].as_str().is_none() => {
                bail!("no GPU adapter (install a Vulkan driver, e.g. mesa-vulkan-drivers): {line}")
            }
            _ => {}
        }
        seen.insert(kind);
        n += 1;
    }
    for k in KINDS {
        if !seen.contains(k) {
            bail!("the kit printed no `{k}` line");
        }
    }
    Ok(n)
}

/// Runs `run.sh --quick` from the kit directory and checks what it prints.
pub fn check(kit: &Path) -> Result<()> {
    step("running the kit's quick mode here (run.sh --quick)");
    let out = Command::new("sh")
        .arg(kit.join("run.sh"))
        .arg("--quick")
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("starting run.sh")?;
    let stdout = String::from_utf8(out.stdout)?;
    print!("{stdout}");
    if !out.status.success() {
        bail!("run.sh exited with {}", out.status);
    }
    let n = check_lines(&stdout)?;
    eprintln!("    {n} JSON lines, every kind present, no errors");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kit_lines_are_checked() {
        let good = concat!(
            "{\"kind\":\"info\",\"adapter\":{\"name\":\"llvmpipe\"}}\n",
            "{\"kind\":\"train\",\"samples_per_second\":10.0}\n",
            "{\"kind\":\"score\",\"gpu_items_per_second\":5.0}\n",
            "{\"kind\":\"done\"}\n"
        );
        assert_eq!(check_lines(good).unwrap(), 4);
        let err = good.replace("{\"kind\":\"done\"}", "{\"kind\":\"error\",\"of\":\"x\"}");
        assert!(check_lines(&err).is_err());
        assert!(check_lines(&good.replace("10.0", "0")).is_err());
        assert!(check_lines("{\"kind\":\"info\"}\nnot json\n").is_err());
        let no_gpu = good.replace("{\"name\":\"llvmpipe\"}", "{\"error\":\"none\"}");
        assert!(
            check_lines(&no_gpu)
                .unwrap_err()
                .to_string()
                .contains("no GPU adapter")
        );
    }
}
