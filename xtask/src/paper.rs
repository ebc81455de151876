//! `cargo xtask paper`: the paper's experiments on real content — builds `summaries`, `filters`
//! (β = 0 … 1), `synthetic` and the real respondents' sets (`paper_human`), runs `pal report` on
//! each, and writes the tables (docs/results.md and the README sections between the `paper` and
//! `human` markers) and PNG plots (plotters).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::prelude::*;

use crate::cmd::{pal, run, step};
use crate::runs::{Run, font, legend, pct, report, series, splice};

const BETAS: [f32; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];
const REPORT: [&str; 9] = [
    "--variant",
    "b",
    "--k",
    "2",
    "--d",
    "32",
    "--layers",
    "1",
    "--epochs",
];

/// Copies the embedding stores (and their cache sidecars) of `from` so a rebuild into `to` reuses them.
fn seed_cache(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for f in [
        "items.safetensors",
        "items.safetensors.cache.json",
        "prompts.safetensors",
        "prompts.safetensors.cache.json",
    ] {
        if from.join(f).exists() && !to.join(f).exists() {
            std::fs::copy(from.join(f), to.join(f))?;
        }
    }
    Ok(())
}

pub fn run_all(bin: &Path, root: &Path) -> Result<()> {
    crate::assets::fetch(root)?;
    // A fresh directory, so the encoders really run and their throughput is measured.
    let out = root.join("runs/paper");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let s = |p: &PathBuf| p.to_str().map(str::to_string).context("utf-8 path");
    let pal_args = [&REPORT[..], &["200"]].concat();
    // Items and prompts of `summaries` share MiniLM's space: the content prior applies.
    let sum_args = [&pal_args[..], &["--content-prior"]].concat();
    let mut runs = Vec::new();

    let sum = out.join("summaries");
    step("building `summaries` (length groups 7:3) from aclsum with MiniLM embeddings");
    run(pal(bin, &["data", "summaries", "--out", &s(&sum)?]))?;
    runs.push(report(
        bin,
        "summaries (longer 70% / shorter 30%)",
        &sum,
        &sum_args,
    )?);
    runs.push(report(
        bin,
        "summaries (longer / shorter), no content prior",
        &sum,
        &pal_args,
    )?);
    let asp = out.join("summaries-aspect");
    seed_cache(&sum, &asp)?;
    step("building `summaries --groups aspect` (approach 70% / outcome 30%)");
    run(pal(
        bin,
        &[
            "data",
            "summaries",
            "--groups",
            "aspect",
            "--out",
            &s(&asp)?,
        ],
    ))?;
    runs.push(report(
        bin,
        "summaries (approach 70% / outcome 30%)",
        &asp,
        &sum_args,
    )?);

    let mut filters = Vec::new();
    for (i, beta) in BETAS.iter().enumerate() {
        let dir = out.join(format!("filters-{beta}"));
        if i > 0 {
            seed_cache(&out.join(format!("filters-{}", BETAS[0])), &dir)?;
        }
        step(&format!(
            "building `filters` with β = {beta} (EfficientNet-Lite0 features)"
        ));
        run(pal(
            bin,
            &[
                "data",
                "filters",
                "--beta",
                &beta.to_string(),
                "--out",
                &s(&dir)?,
            ],
        ))?;
        filters.push((
            *beta,
            report(bin, &format!("filters (β = {beta})"), &dir, &pal_args)?,
        ));
    }

    let syn = out.join("synthetic");
    step("building `synthetic` (PAL-B truth, K=3)");
    run(pal(
        bin,
        &["data", "synthetic", "--variant", "b", "--out", &s(&syn)?],
    ))?;
    let syn_args = [&["--variant", "b"][..], &crate::cmd::SYNTH_REPORT].concat();
    let synthetic = report(bin, "synthetic (PAL-B truth, K=3)", &syn, &syn_args)?;
    let human = crate::paper_human::run_sets(bin, &out)?;
    let repeats = crate::paper_human::run_repeats(bin, &out, &human)?;

    let plots = root.join("docs/plots");
    std::fs::create_dir_all(&plots)?;
    plot_beta(&plots.join("filters_beta.png"), &filters)?;
    let half = &filters[2].1;
    plot_shots(&plots.join("shots.png"), &[&runs[0], half])?;
    let md = tables(&runs, &filters, &synthetic);
    std::fs::write(
        root.join("docs/results.md"),
        format!("# Results on real content\n\nRegenerate with `cargo xtask paper`.\n\n{md}"),
    )?;
    splice(
        &root.join("README.md"),
        &md,
        "<!-- paper:begin -->",
        "<!-- paper:end -->",
    )?;
    println!("{md}");
    crate::paper_human::write(root, &human, &repeats)?;
    step(
        "done: docs/results.md, the README's `paper` section, docs/plots/filters_beta.png, shots.png",
    );
    Ok(())
}

fn tables(runs: &[Run], filters: &[(f32, Run)], synthetic: &Run) -> String {
    let mut md = String::from(
        "Seen users: accuracy on held-out pairs. Unseen users: accuracy on their held-out pairs after fitting only\n\
         their weights from n = 20 pairs each. PAL-B, K = 2 (synthetic: K = 3), same settings for every dataset.\n\
         Relevance: the share of the prompt's own items (versions of its photo, summaries of its paper) in each seen\n\
         user's PAL-B top 5 over every item. 20% of the comparisons are relevance comparisons everyone agrees on\n\
         (`--relevance 0.2`). `summaries` rows train with the content prior (`--content-prior`) unless noted.\n\n\
         | dataset | items | PAL-B | BTL (one reward) | per-user logistic | unseen PAL @ n=20 | unseen / seen | top-5 relevance |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let all: Vec<&Run> = runs
        .iter()
        .chain(filters.iter().map(|(_, r)| r))
        .chain([synthetic])
        .collect();
    for r in all {
        let (pal, n20) = (r.seen("PAL"), r.at("pal_shots", 20.0));
        let items = r.items;
        let relevance = r.report["relevance_at_5"].as_f64().unwrap_or(f64::NAN);
        md += &format!(
            "| {} | {} | {} | {} | {} | {} | {:.2} | {} |\n",
            r.name,
            items,
            pct(pal),
            pct(r.seen("BTL")),
            pct(r.seen("per-user")),
            pct(n20),
            n20 / pal,
            pct(relevance)
        );
    }
    md += "\n![accuracy vs β](docs/plots/filters_beta.png)\n![accuracy vs shots](docs/plots/shots.png)\n";
    md += "\nEmbedding throughput while building (2-core CPU, same run): ";
    let tp = |r: &Run, k: &str| {
        r.card["embedding"][k]["items_per_second"]
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    md += &format!(
        "MiniLM {:.1} summaries/s and {:.1} title+abstract prompts/s (256 tokens); EfficientNet-Lite0 {:.1} images/s (224×224).\n",
        tp(&runs[0], "items"),
        tp(&runs[0], "prompts"),
        tp(&filters[0].1, "items")
    );
    md
}

fn plot_beta(path: &Path, filters: &[(f32, Run)]) -> Result<()> {
    font()?;
    let root = BitMapBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "filters: seen-user accuracy vs β (share of filtered pairs)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..1f64, 0.4f64..1.0f64)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("β")
        .y_desc("accuracy")
        .draw()?;
    let lines = [
        ("PAL-B (K=2)", BLUE, "PAL"),
        ("BTL", RED, "BTL"),
        ("per-user logistic", RGBColor(0, 140, 0), "per-user"),
    ];
    for (name, colour, method) in lines {
        let pts: Vec<(f64, f64)> = filters
            .iter()
            .map(|(b, r)| (*b as f64, r.seen(method)))
            .collect();
        series(&mut chart, name.into(), colour.stroke_width(2), 4, pts)?;
    }
    legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
    root.present()?;
    Ok(())
}

fn plot_shots(path: &Path, runs: &[&Run]) -> Result<()> {
    font()?;
    let root = BitMapBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "unseen users: accuracy vs pairs per user (n)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(
            (1f64..50f64)
                .log_scale()
                .with_key_points(vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0]),
            0.4f64..1.0f64,
        )?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| format!("{x:.0}"))
        .light_line_style(WHITE)
        .x_desc("n (log scale)")
        .y_desc("accuracy")
        .draw()?;
    let colours = [BLUE, RGBColor(200, 100, 0)];
    for (r, colour) in runs.iter().zip(colours) {
        for (key, label, dashed) in [
            ("pal_shots", "PAL (weights only)", false),
            ("per_user_shots", "per-user logistic", true),
        ] {
            let pts = r.shots(key);
            let style = if dashed {
                colour.mix(0.45).stroke_width(2)
            } else {
                colour.stroke_width(2)
            };
            series(&mut chart, format!("{}: {label}", r.name), style, 3, pts)?;
        }
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present()?;
    Ok(())
}
