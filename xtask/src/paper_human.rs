//! `cargo xtask paper`, real respondents: every paircomp set of psychotools/psychotree through
//! `pal data psychotools` and `pal report` with its defaults (`--k auto`: K, residual and epochs
//! by cross-validation), the table for docs/results.md and the README (`human` markers), and a
//! plot of new users' accuracy against n beside BTL and per-user logistic.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use crate::cmd::{pal, run, step};
use crate::runs::{Run, font, legend, pct, report, series, splice};

/// The sets, with a display name; the first three are the bar.
const SETS: [(&str, &str); 6] = [
    (
        "soundquality",
        "SoundQuality (listeners, 8 sound processings)",
    ),
    ("firstnames", "FirstNames (boys' names)"),
    ("topmodel", "Topmodel2007 (candidates)"),
    ("germanparties", "GermanParties2009 (parties)"),
    ("cems", "CEMSChoice (universities)"),
    ("europeanvalues", "EuropeanValuesStudy (policy goals)"),
];
const SHOTS: [f64; 4] = [1.0, 2.0, 5.0, 10.0];
/// Random splits of respondents and pairs the three sets are run on (`--seed 1..=SPLITS`).
const SPLITS: u64 = 5;

/// Builds and reports every set into `out/psychotools-*`; returns the runs.
pub fn run_sets(bin: &Path, out: &Path) -> Result<Vec<Run>> {
    SETS.iter()
        .map(|(set, name)| one(bin, out, set, name, 1))
        .collect()
}

/// One set built with split `seed` and reported.
fn one(bin: &Path, out: &Path, set: &str, name: &str, seed: u64) -> Result<Run> {
    let dir = out.join(format!("psychotools-{set}-split{seed}"));
    let d = dir.to_string_lossy().to_string();
    step(&format!(
        "building `psychotools --set {set} --seed {seed}` (real respondents)"
    ));
    let seed = seed.to_string();
    run(pal(
        bin,
        &[
            "data",
            "psychotools",
            "--set",
            set,
            "--seed",
            &seed,
            "--out",
            &d,
            "-q",
        ],
    ))?;
    report(bin, name, &dir, &["--shots", "1,2,5,10"])
}

/// Splits 2 ..= SPLITS of the three sets (split 1 is in `first`): the gaps' spread.
pub fn run_repeats(bin: &Path, out: &Path, first: &[Run]) -> Result<Vec<Vec<Run>>> {
    let mut all = Vec::new();
    for (i, (set, name)) in SETS.iter().take(3).enumerate() {
        let mut runs = vec![first[i].clone()];
        for seed in 2..=SPLITS {
            runs.push(one(bin, out, set, name, seed)?);
        }
        all.push(runs);
    }
    Ok(all)
}

/// PAL's gaps to the best baseline over repeated splits: mean ± standard error per column.
pub fn repeat_table(sets: &[Vec<Run>]) -> String {
    let mut md = format!(
        "The same gaps (points, PAL minus the best of BTL and per-user logistic) over {SPLITS} random splits\n\
         of respondents and pairs (`--seed 1` … `{SPLITS}`): mean ± standard error of the mean. One split holds\n\
         a quarter of the respondents as new users (48 of FirstNames' and Topmodel's 192, 10 of\n\
         SoundQuality's 40), so a single split's gap moves by 1–3 points from the split alone. Last column:\n\
         seen users' log-loss, PAL minus the best of BTL and per-user logistic (negative: PAL's probabilities\n\
         are better).\n\n\
         | data | seen | n=0 (covariates) | n=1 | n=2 | n=5 | n=10 | seen log-loss |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for runs in sets {
        // Mean ± standard error of `f` over the splits, `scale`d and printed with `digits`.
        let spread = |f: &dyn Fn(&Run) -> f64, scale: f64, digits: usize| -> String {
            let v: Vec<f64> = runs.iter().map(|r| scale * f(r)).collect();
            mean_se(&v).map_or("–".into(), |(mean, se)| {
                format!("{mean:+.digits$} ± {se:.digits$}")
            })
        };
        let gaps = |f: &dyn Fn(&Run) -> f64| spread(f, 100.0, 1);
        let name = runs[0].name.split(" (").next().unwrap_or("");
        let mut row = format!(
            "| {name} | {} |",
            gaps(&|r| r.seen("PAL") - r.seen("BTL").max(r.seen("per-user")))
        );
        row += &format!(
            " {} |",
            gaps(&|r| {
                let btl = r.report["btl_unseen"]["accuracy"]
                    .as_f64()
                    .unwrap_or(f64::NAN);
                r.report["cold_start"]["accuracy"]
                    .as_f64()
                    .unwrap_or(f64::NAN)
                    - btl
            })
        );
        for n in SHOTS {
            row += &format!(
                " {} |",
                gaps(&|r| r.at("pal_shots", n) - best_baseline(r, n))
            );
        }
        let ll = |r: &Run, m: &str| r.seen_metric(m, "seen_log_loss");
        row += &format!(
            " {} |",
            spread(
                &|r| ll(r, "PAL") - ll(r, "BTL").min(ll(r, "per-user")),
                1.0,
                3
            )
        );
        md += &row;
        md += "\n";
    }
    md
}

/// The best baseline at `n` new-user pairs: per-user logistic at n, or BTL (needs none).
fn best_baseline(r: &Run, n: f64) -> f64 {
    let btl = r.report["btl_unseen"]["accuracy"]
        .as_f64()
        .unwrap_or(f64::NAN);
    r.at("per_user_shots", n).max(btl)
}

/// The chosen model in words, e.g. `K=2, λ=10`.
fn chosen(r: &Run) -> String {
    let sel = &r.report["selection"];
    let Some(c) = sel["candidates"]
        .as_array()
        .and_then(|c| c.get(sel["chosen"].as_u64()? as usize))
    else {
        return "–".into();
    };
    let layers = match c["layers"].as_u64() {
        Some(1) => ", linear map".to_string(),
        Some(n) => format!(", {n}-layer maps"),
        None => String::new(),
    };
    // λ is an f32 in the report: print it as one (0.3, not 0.30000001192092896).
    match c["residual"].as_f64().map(|l| l as f32) {
        Some(l) => format!("K={}, λ={l}{layers}", c["k"]),
        None => format!("K={}, no residual{layers}", c["k"]),
    }
}

/// A signed gap in points, bold when PAL is ahead ("–" when either is missing).
fn gap(pal: f64, base: f64) -> String {
    let g = 100.0 * (pal - base);
    if g.is_nan() {
        return "–".into();
    }
    if g >= 0.0 {
        format!("**+{g:.1}**")
    } else {
        format!("{g:.1}")
    }
}

/// `PAL% (gap)`, or `–` when PAL was not measured there (too few pairs per new user).
fn cell(pal: f64, base: f64) -> String {
    if pal.is_nan() {
        " – |".into()
    } else {
        format!(" {} ({}) |", pct(pal), gap(pal, base))
    }
}

pub fn table(runs: &[Run]) -> String {
    let mut md = String::from(
        "Real paired comparisons made by survey respondents (R's psychotools / psychotree data, read from\n\
         Debian's packages without R), one split (`--seed 1`): one-hot items, 25% of the respondents held out as new users, the rest\n\
         split 70/10/20 per respondent. `pal report` with no tuning flags: K, the residual strength λ and the\n\
         epochs are chosen by 3-fold cross-validation on the seen respondents' train + val pairs. Seen: accuracy\n\
         on held-out pairs (ECE: expected calibration error, 10 bins). New users: PAL fitted from n pairs each,\n\
         and its gap to the best of BTL (which needs no pairs) and per-user logistic at that n; n = 0: parameters\n\
         predicted from the respondent's covariates alone (ridge regression on the seen respondents'), gap to BTL.\n\n\
         | data | respondents | chosen | PAL seen | BTL | per-user | PAL ECE | n=0 (covariates) | n=1 | n=2 | n=5 | n=10 |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in runs {
        let resp = &r.card["respondents"];
        let seen = r.seen("PAL");
        let ece = r.report["rows"][0]["seen_ece"].as_f64().unwrap_or(f64::NAN);
        let mut row = format!(
            "| {} | {} ({} pairs) | {} | {} | {} | {} | {:.3} |",
            r.name,
            resp["total"],
            resp["comparisons"],
            chosen(r),
            pct(seen),
            pct(r.seen("BTL")),
            pct(r.seen("per-user")),
            ece
        );
        let btl = r.report["btl_unseen"]["accuracy"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let cold = r.report["cold_start"]["accuracy"]
            .as_f64()
            .unwrap_or(f64::NAN);
        row += &cell(cold, btl);
        for n in SHOTS {
            let p = r.at("pal_shots", n);
            row += &cell(p, best_baseline(r, n));
        }
        md += &row;
        md += "\n";
    }
    md
}

/// Mean and standard error of the mean of the finite values in `v`.
fn mean_se(v: &[f64]) -> Option<(f64, f64)> {
    let g: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if g.is_empty() {
        return None;
    }
    let n = g.len() as f64;
    let mean = g.iter().sum::<f64>() / n;
    let sd = (g.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    Some((mean, sd / n.sqrt()))
}

/// A run's figure at n new-user pairs.
type Figure = dyn Fn(&Run, f64) -> f64;

/// New users' accuracy against n for the three sets: each line the mean over the splits
/// in `sets`, each bar ± one standard error.
pub fn plot(path: &Path, sets: &[Vec<Run>]) -> Result<()> {
    font()?;
    let root = BitMapBackend::new(path, (960, 380)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 3));
    for (area, runs) in panels.iter().zip(sets) {
        let title = format!(
            "{} (mean of {} splits)",
            runs[0].name.split(" (").next().unwrap_or(""),
            runs.len()
        );
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(40)
            .build_cartesian_2d((0.9f64..11f64).log_scale(), 0.45f64..0.9f64)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|x| {
                // Only the measured n, so the log scale's crowded 6…10 stay readable.
                let n = x.round();
                if (x - n).abs() < 1e-6 && SHOTS.contains(&n) {
                    format!("{n:.0}")
                } else {
                    String::new()
                }
            })
            .light_line_style(WHITE)
            .x_desc("pairs per new user (n)")
            .y_desc("accuracy")
            .draw()?;
        let btl = |r: &Run, _: f64| {
            r.report["btl_unseen"]["accuracy"]
                .as_f64()
                .unwrap_or(f64::NAN)
        };
        let pal = |r: &Run, n: f64| r.at("pal_shots", n);
        let per_user = |r: &Run, n: f64| r.at("per_user_shots", n);
        // PAL last, so it is drawn on top where the lines meet.
        let lines: [(&str, RGBColor, &Figure); 3] = [
            ("BTL", RED, &btl),
            ("per-user logistic", RGBColor(0, 140, 0), &per_user),
            ("PAL (--k auto)", BLUE, &pal),
        ];
        for (label, colour, at) in lines {
            let pts: Vec<(f64, f64, f64)> = SHOTS
                .iter()
                .filter_map(|&n| {
                    let v: Vec<f64> = runs.iter().map(|r| at(r, n)).collect();
                    mean_se(&v).map(|(m, se)| (n, m, se))
                })
                .collect();
            let style = colour.stroke_width(2);
            series(
                &mut chart,
                label.into(),
                style,
                3,
                pts.iter().map(|p| (p.0, p.1)).collect(),
            )?;
            chart.draw_series(
                pts.iter()
                    .map(|&(n, m, se)| PathElement::new(vec![(n, m - se), (n, m + se)], style)),
            )?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    }
    root.present()?;
    Ok(())
}

/// Writes the README's `human` section.
pub fn splice_readme(path: &Path, md: &str) -> Result<()> {
    splice(path, md, "<!-- human:begin -->", "<!-- human:end -->")
}

/// `cargo xtask paper --human --render`: the tables and the plot again from the reports the last
/// run kept in `runs/paper/psychotools-*-split*/report.json`, without training.
pub fn render_only(root: &Path) -> Result<()> {
    let out = root.join("runs/paper");
    let load = |set: &str, name: &str, seed: u64| {
        Run::load(name, &out.join(format!("psychotools-{set}-split{seed}")))
    };
    let runs = SETS
        .iter()
        .map(|(set, name)| load(set, name, 1))
        .collect::<Result<Vec<_>>>()?;
    let repeats = SETS
        .iter()
        .take(3)
        .map(|(set, name)| (1..=SPLITS).map(|seed| load(set, name, seed)).collect())
        .collect::<Result<Vec<Vec<_>>>>()?;
    write(root, &runs, &repeats)?;
    Ok(())
}

/// `cargo xtask paper --human`: only these sets; writes their README section,
/// `docs/results-human.md` and the plot.
pub fn run_only(bin: &Path, root: &Path) -> Result<()> {
    crate::assets::fetch(root)?;
    let out = root.join("runs/paper");
    std::fs::create_dir_all(&out)?;
    let runs = run_sets(bin, &out)?;
    let repeats = run_repeats(bin, &out, &runs)?;
    write(root, &runs, &repeats)?;
    Ok(())
}

/// The table into `docs/results-human.md` and the README, the plot into `docs/plots/`; returns
/// the table.
pub fn write(root: &Path, runs: &[Run], repeats: &[Vec<Run>]) -> Result<String> {
    let plots = root.join("docs/plots");
    std::fs::create_dir_all(&plots)?;
    plot(&plots.join("human_shots.png"), repeats)?;
    let md = table(runs)
        + "\n"
        + &repeat_table(repeats)
        + "\n![new users on real respondents: accuracy against n, mean of the splits ± one standard error](docs/plots/human_shots.png)\n";
    std::fs::write(
        root.join("docs/results-human.md"),
        format!(
            "# Results on real respondents\n\nRegenerate with `cargo xtask paper --human`.\n\n{md}"
        ),
    )?;
    splice_readme(&root.join("README.md"), &md)?;
    println!("{md}");
    step("done: docs/results-human.md, the README's `human` section, docs/plots/human_shots.png");
    Ok(md)
}
