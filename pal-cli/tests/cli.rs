//! The `pal` binary end to end: synth → train → eval → adapt → export, JSON output, and
//! one-line errors with exit code 2 for bad input.

use std::path::Path;
use std::process::{Command, Output};

fn pal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pal"))
        .args(args)
        .output()
        .expect("pal runs")
}

fn ok(args: &[&str]) -> String {
    let out = pal(args);
    assert!(
        out.status.success(),
        "pal {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["--json", "-q"]);
    serde_json::from_str(&ok(&a)).expect("valid JSON on stdout")
}

/// Fails with exit code 2 and a single `error:` line mentioning every fragment.
fn fails(args: &[&str], fragments: &[&str]) {
    let out = pal(args);
    assert_eq!(out.status.code(), Some(2), "pal {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .expect("an error line");
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1);
    for f in fragments {
        assert!(line.contains(f), "`{line}` does not mention `{f}`");
    }
}

fn synth(dir: &Path, variant: &str) {
    ok(&[
        "synth",
        "--out",
        dir.to_str().unwrap(),
        "--variant",
        variant,
        "--users",
        "12",
        "--unseen-users",
        "3",
        "--unseen-train-pairs",
        "20",
        "--items",
        "60",
        "-q",
    ]);
}

/// A temp dir with a PAL-B synthetic dataset in `data/`; `model/` is the model path to use.
fn setup() -> (tempfile::TempDir, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, "b");
    let d = data.to_str().unwrap().to_string();
    let m = tmp.path().join("model").to_str().unwrap().to_string();
    (tmp, d, m)
}

#[test]
fn full_flow_with_json_output() {
    let (tmp, d, m) = setup();
    let (d, m, data) = (d.as_str(), m.as_str(), tmp.path().join("data"));
    let t = json(&[
        "train", "--data", d, "--out", m, "--k", "3", "--epochs", "5", "--layers", "1",
    ]);
    assert_eq!(t["report"]["history"].as_array().unwrap().len(), 5);
    let e = json(&[
        "eval",
        "--model",
        m,
        "--data",
        d,
        "--per-user",
        "--shots",
        "1,5,10",
    ]);
    let acc = e["report"]["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    assert_eq!(e["report"]["per_user"].as_array().unwrap().len(), 12);
    assert_eq!(e["shots"].as_array().unwrap().len(), 3);
    let adapted = tmp.path().join("adapted");
    let a = json(&[
        "adapt",
        "--model",
        m,
        "--data",
        d,
        "--shots",
        "5",
        "--out",
        adapted.to_str().unwrap(),
    ]);
    assert_eq!(a["new_users"].as_array().unwrap().len(), 3);
    assert_eq!(a["pairs"].as_u64(), Some(15));
    let un = json(&[
        "eval",
        "--model",
        adapted.to_str().unwrap(),
        "--data",
        d,
        "--split",
        "unseen-test",
    ]);
    assert_eq!(un["report"]["n"].as_u64(), Some(3 * 50));
    let bundle = tmp.path().join("bundle");
    let items = data.join("items.safetensors");
    let prompts = data.join("prompts.safetensors");
    let x = json(&[
        "export",
        "--model",
        m,
        "--out",
        bundle.to_str().unwrap(),
        "--items",
        items.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
    ]);
    assert_eq!(x["prompts_file"], "prompts.safetensors");
    assert_eq!(x["format"], "pal-bundle");
    assert_eq!(x["users"].as_array().unwrap().len(), 12);
    for f in [
        "manifest.json",
        "weights.safetensors",
        "items.safetensors",
        "prompts.safetensors",
        "model.json",
    ] {
        assert!(bundle.join(f).exists(), "{f} missing from bundle");
    }
    // Human output of the BTL baseline and the report.
    let btl = tmp.path().join("btl");
    let out = ok(&[
        "train",
        "--data",
        d,
        "--out",
        btl.to_str().unwrap(),
        "--btl",
        "--epochs",
        "2",
        "-q",
    ]);
    assert!(out.contains("PAL-B (K=1)"), "{out}");
    let out = ok(&["eval", "--model", btl.to_str().unwrap(), "--data", d]);
    assert!(
        out.starts_with("test.jsonl: 300 comparisons, accuracy"),
        "{out}"
    );
}

#[test]
fn report_prints_a_table_and_writes_plots() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, "a");
    let plots = tmp.path().join("plots");
    let out = ok(&[
        "report",
        "--data",
        data.to_str().unwrap(),
        "--variant",
        "a",
        "--k",
        "3",
        "--epochs",
        "5",
        "--shots",
        "1,5,20",
        "--plots",
        plots.to_str().unwrap(),
        "-q",
    ]);
    for row in [
        "| ground truth |",
        "| PAL-A (K=3) |",
        "| BTL (one shared reward) |",
        "| 20 |",
    ] {
        assert!(out.contains(row), "missing `{row}` in\n{out}");
    }
    let svg = std::fs::read_to_string(plots.join("shots.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    assert!(plots.join("training.svg").exists());
}

#[test]
fn bad_inputs_fail_with_one_line_errors() {
    let (tmp, d, m) = setup();
    let (d, m, data) = (d.as_str(), m.as_str(), tmp.path().join("data"));
    fails(
        &["train", "--data", "/nonexistent/x", "--out", m],
        &["/nonexistent/x", "not found"],
    );
    fails(
        &["eval", "--model", "/nonexistent/m", "--data", d],
        &["/nonexistent/m", "model.json"],
    );
    ok(&[
        "train", "--data", d, "--out", m, "--k", "2", "--epochs", "1", "-q",
    ]);
    // A model trained on seen users cannot score unseen ones without adapting.
    fails(
        &["eval", "--model", m, "--data", d, "--split", "unseen-test"],
        &["unknown user `new0`"],
    );
    fails(&["train", "--data", d, "--out", m, "--k", "0"], &["`k`"]);
    fails(
        &["train", "--data", d, "--out", m, "--k", "many"],
        &["neither `auto` nor a whole number"],
    );
    // Corrupt a split: label 3 on line 2.
    let train = data.join("train.jsonl");
    let text = std::fs::read_to_string(&train).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[1] = lines[1]
        .replace("\"label\":1", "\"label\":3")
        .replace("\"label\":0", "\"label\":3");
    std::fs::write(&train, lines.join("\n")).unwrap();
    fails(
        &["train", "--data", d, "--out", m],
        &["train.jsonl:2", "`label`"],
    );
    // The model written before is untouched by the failed run.
    ok(&["eval", "--model", m, "--data", d]);
    // PAL-B without prompt embeddings.
    std::fs::remove_file(data.join("prompts.safetensors")).unwrap();
    fails(
        &["eval", "--model", m, "--data", d],
        &["prompts.safetensors"],
    );
}

/// `pal bench` (what the GPU kit runs): a JSON line per measurement; a device this build lacks is
/// a one-line error naming the cargo feature.
#[test]
fn bench_prints_one_json_line_per_measurement() {
    let out = ok(&[
        "bench",
        "train",
        "--d-item",
        "16",
        "--d",
        "8",
        "--k",
        "2",
        "--batch",
        "32",
        "--seconds",
        "0.2",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["kind"].as_str(), v["engine"].as_str()),
        (Some("train"), Some("fused"))
    );
    assert!(v["samples_per_second"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["steps"].as_u64().unwrap() >= 3, "{v}");
    let info: serde_json::Value = serde_json::from_str(ok(&["bench", "info"]).trim()).unwrap();
    assert!(info["cpu_threads"].as_u64().unwrap() >= 1, "{info}");
    assert!(info["adapter"].is_object(), "{info}");
    if !cfg!(feature = "wgpu") {
        fails(
            &[
                "bench", "train", "--d-item", "16", "--d", "8", "--device", "wgpu",
            ],
            &["wgpu"],
        );
    }
    fails(&["bench", "train", "--k", "0"], &["`k`"]);
}
