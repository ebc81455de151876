//! One `pal report --json` run of `cargo xtask paper` and what the tables read from it, plus
//! the helpers both paper sections share (percentages, the plot font, README splicing).

use std::path::Path;

use anyhow::{Context, Result};
use plotters::style::FontStyle;
use serde_json::Value;

use crate::cmd::{output, pal, step};

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

#[derive(Clone)]
pub struct Run {
    pub name: String,
    pub items: usize,
    pub report: Value,
    pub card: Value,
}

impl Run {
    /// Seen users' accuracy of the first method whose name starts with `method_prefix`.
    pub fn seen(&self, method_prefix: &str) -> f64 {
        self.seen_metric(method_prefix, "seen_accuracy")
    }

    /// A seen-user figure (`seen_accuracy`, `seen_log_loss`, `seen_ece`) of a method.
    pub fn seen_metric(&self, method_prefix: &str, field: &str) -> f64 {
        self.report["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| {
                r["method"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(method_prefix))
            })
            .and_then(|r| r[field].as_f64())
            .unwrap_or(f64::NAN)
    }

    pub fn shots(&self, key: &str) -> Vec<(f64, f64)> {
        self.report[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["shots"].as_f64().unwrap_or(0.0),
                    p["accuracy"].as_f64().unwrap_or(f64::NAN),
                )
            })
            .collect()
    }

    pub fn at(&self, key: &str, n: f64) -> f64 {
        self.shots(key)
            .into_iter()
            .find(|(s, _)| *s == n)
            .map_or(f64::NAN, |p| p.1)
    }
}

/// Rows of a safetensors embedding store, read from its header.
fn rows_of(path: &Path) -> Result<usize> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let n = u64::from_le_bytes(bytes.get(..8).context("short file")?.try_into()?) as usize;
    let header: Value = serde_json::from_slice(bytes.get(8..8 + n).context("short header")?)?;
    header["embeddings"]["shape"][0]
        .as_u64()
        .map(|r| r as usize)
        .context("no `embeddings` tensor")
}

impl Run {
    /// A run from the `report.json` and `card.json` that [`report`] left in `dir`.
    pub fn load(name: &str, dir: &Path) -> Result<Run> {
        let read = |f: &str| -> Result<Value> {
            let p = dir.join(f);
            let bytes = std::fs::read(&p).with_context(|| {
                format!("{} (run `cargo xtask paper --human` first)", p.display())
            })?;
            Ok(serde_json::from_slice(&bytes)?)
        };
        Ok(Run {
            name: name.into(),
            items: rows_of(&dir.join("items.safetensors"))?,
            report: read("report.json")?,
            card: read("card.json")?,
        })
    }
}

pub fn report(bin: &Path, name: &str, dir: &Path, extra: &[&str]) -> Result<Run> {
    step(&format!("pal report on {name}"));
    let d = dir.to_str().context("utf-8 path")?;
    let mut args = vec!["report", "--json", "-q", "--data", d];
    if !extra.contains(&"--shots") {
        args.extend_from_slice(&["--shots", "1,2,5,10,20,50"]);
    }
    args.extend_from_slice(extra);
    let text = output(pal(bin, &args))?;
    let report: Value = serde_json::from_str(&text)?;
    // Kept beside the dataset, for a look at one run's full report.
    std::fs::write(dir.join("report.json"), &text)?;
    let card: Value = serde_json::from_slice(&std::fs::read(dir.join("card.json"))?)?;
    Ok(Run {
        name: name.into(),
        items: rows_of(&dir.join("items.safetensors"))?,
        report,
        card,
    })
}

pub fn pct(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else {
        format!("{:.1}%", 100.0 * x)
    }
}

/// Replaces the text between the `begin` and `end` markers of `path` with `md`.
pub fn splice(path: &Path, md: &str, begin: &str, end: &str) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let (Some(a), Some(b)) = (text.find(begin), text.find(end)) else {
        anyhow::bail!("README.md has no `{begin}` … `{end}` section");
    };
    let new = format!("{}{begin}\n{md}{}", &text[..a], &text[b..]);
    std::fs::write(path, new)?;
    Ok(())
}

pub fn font() -> Result<()> {
    let bytes =
        std::fs::read(FONT).with_context(|| format!("{FONT} (install fonts-dejavu-core)"))?;
    let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, leaked)
        .map_err(|_| anyhow::anyhow!("{FONT}: not a font"))?;
    Ok(())
}

/// Draws `pts` as a line with dots of `radius` and a legend entry.
pub fn series<X, Y>(
    chart: &mut plotters::chart::ChartContext<
        '_,
        plotters::prelude::BitMapBackend<'_>,
        plotters::coord::cartesian::Cartesian2d<X, Y>,
    >,
    label: String,
    style: plotters::style::ShapeStyle,
    radius: u32,
    pts: Vec<(f64, f64)>,
) -> Result<()>
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    use plotters::prelude::{Circle, LineSeries, PathElement};
    chart
        .draw_series(LineSeries::new(pts.clone(), style))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    chart.draw_series(
        pts.into_iter()
            .map(|p| Circle::new(p, radius, style.filled())),
    )?;
    Ok(())
}

/// Draws the chart's legend (black border, white box) at `position`.
pub fn legend<'a, X, Y>(
    chart: &mut plotters::chart::ChartContext<
        'a,
        plotters::prelude::BitMapBackend<'a>,
        plotters::coord::cartesian::Cartesian2d<X, Y>,
    >,
    position: plotters::chart::SeriesLabelPosition,
) -> Result<()>
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    use plotters::style::{BLACK, WHITE};
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .position(position)
        .draw()?;
    Ok(())
}
