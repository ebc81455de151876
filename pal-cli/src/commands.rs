//! The model commands of `pal`: synth, train, eval, adapt, export and report.

use std::path::Path;

use anyhow::{Context, Result, bail};
use pal_core::Control;
use pal_core::experiment::{self, ExperimentConfig, Stage};
use pal_core::pipeline::{self, POOLED_USER};
use pal_core::synth;
use pal_format::comparison as data;
use pal_format::dataset::{Dataset, ITEMS_FILE, PROMPTS_FILE, Split};
use pal_format::model_dir::TrainedModel;
use serde_json::json;

use crate::args::{self, Cli};
use crate::data_args::SynthArgs;
use crate::output::print;
use crate::progress::{TrainProgress, status};

pub fn synth_cmd(cli: &Cli, a: &SynthArgs) -> Result<()> {
    let cfg = a.config();
    status(
        cli.quiet,
        &format!("generating synthetic dataset into {}", a.out.display()),
    );
    let ds = synth::generate(&cfg)?;
    ds.write(&a.out, &cfg)?;
    let sizes: serde_json::Map<_, _> = ds
        .splits
        .iter()
        .map(|(s, r)| (s.file_name().to_string(), r.len().into()))
        .collect();
    print(
        cli,
        json!({"out": a.out, "sizes": sizes, "truth": a.out.join("truth")}),
        || {
            let mut s = format!("wrote {}\n", a.out.display());
            for (k, v) in &sizes {
                s += &format!("  {k:<20} {v} comparisons\n");
            }
            s + &format!(
                "  truth/               ground-truth model ({} users)\n",
                ds.truth.users.len()
            )
        },
    );
    Ok(())
}

fn load_data(dir: &Path) -> Result<Dataset> {
    Dataset::load(dir).with_context(|| format!("loading dataset {}", dir.display()))
}

pub fn train_cmd(cli: &Cli, a: &args::TrainArgs) -> Result<()> {
    let data = load_data(&a.data)?;
    let mut model_cfg = a.model.config(data.items.dim(), data.prompt_dim());
    let train_cfg = a.optim.config();
    let mut selection = None;
    let (model, report) = match a.model.selection().filter(|_| !a.btl) {
        Some(sel) => {
            // `--k auto`: cross-validate on train + val, then refit on them all.
            let mut rows = data.read(Split::Train)?;
            if data.has_split(Split::Val) {
                rows.extend(data.read(Split::Val)?);
            }
            status(
                cli.quiet,
                &format!(
                    "choosing K and the residual strength by {}-fold cross-validation on {} comparisons",
                    sel.folds,
                    rows.len()
                ),
            );
            let s = pal_core::select::select(
                &data,
                &model_cfg,
                &train_cfg,
                &rows,
                &sel,
                &[],
                &mut |ev| {
                    if let Some(line) = ev.line() {
                        status(cli.quiet, &line);
                    }
                    Control::Continue
                },
            )?;
            model_cfg = s.config(&model_cfg);
            let mut bar = TrainProgress::new(&model_cfg.name(), s.best().epochs, cli.quiet);
            let out = pal_core::select::fit_selected(
                &data,
                &model_cfg,
                &train_cfg,
                &rows,
                &s,
                None,
                &mut |p| bar.update(p),
            )?;
            bar.finish();
            selection = Some(s);
            out
        }
        None => {
            // BTL pools every user into one, so it reads rows; otherwise the splits stream.
            if a.btl {
                model_cfg.k = 1;
                model_cfg.residual = None;
            }
            let splits = if a.btl {
                let train = pipeline::pooled(&data.read(Split::Train)?);
                let val = data
                    .has_split(Split::Val)
                    .then(|| data.read(Split::Val).map(|v| pipeline::pooled(&v)))
                    .transpose()?;
                pipeline::EncodedSplits::from_rows(&data, &train, val.as_deref())?
            } else {
                pipeline::EncodedSplits::read(&data, true)?
            };
            status(
                cli.quiet,
                &format!(
                    "training {} on {} comparisons ({} users)",
                    model_cfg.name(),
                    splits.train.len(),
                    splits.users.len()
                ),
            );
            let mut bar = TrainProgress::new(&model_cfg.name(), train_cfg.epochs, cli.quiet);
            let out = pipeline::fit_encoded(
                &data,
                &model_cfg,
                &train_cfg,
                splits,
                a.checkpoint.as_deref(),
                &mut |p| bar.update(p),
            )?;
            bar.finish();
            out
        }
    };
    model.save(&a.out)?;
    let last = report.history.last();
    print(
        cli,
        json!({"model": a.out, "report": report, "params": model.weights.num_params(), "selection": selection}),
        || {
            selection
                .as_ref()
                .map_or(String::new(), |s| s.to_markdown() + "\n")
                + &format!(
                    "saved {} to {}\n  epochs {} (best {}{}), {:.0} samples/s, {:.1}s\n  final train loss {:.4}{}\n",
                    model_cfg.name(),
                    a.out.display(),
                    report.history.len(),
                    report.best_epoch,
                    if report.stopped_early {
                        ", stopped early"
                    } else {
                        ""
                    },
                    report.samples_per_second,
                    report.seconds,
                    last.map_or(f32::NAN, |s| s.train_loss),
                    last.and_then(|s| s.val_accuracy)
                        .map_or(String::new(), |v| format!(
                            ", val accuracy {:.1}%",
                            100.0 * v
                        )),
                )
        },
    );
    Ok(())
}

pub fn eval_cmd(cli: &Cli, a: &args::EvalArgs) -> Result<()> {
    let model = TrainedModel::load(&a.model)
        .with_context(|| format!("loading model {}", a.model.display()))?;
    let data = load_data(&a.data)?;
    let split = Split::from(a.split);
    let mut rows = data.read(split)?;
    if model.users == [POOLED_USER] {
        rows = pipeline::pooled(&rows);
    }
    let report = pipeline::evaluate(&model, &data, &rows, split.file_name())?;
    let shots = if a.shots.is_empty() {
        vec![]
    } else {
        let pool = data.read(Split::UnseenTrain)?;
        let held = data.read(Split::UnseenTest)?;
        pipeline::shots_curve(
            &model,
            &data,
            &pool,
            &held,
            &a.shots,
            &a.fewshot.config(),
            &mut |n| status(cli.quiet, &format!("few-shot fitting with n = {n}")),
        )?
    };
    print(
        cli,
        json!({"split": split, "report": report, "shots": shots}),
        || {
            let mut s = format!(
                "{}: {} comparisons, accuracy {:.2}%, log-loss {:.4}\n",
                split.file_name(),
                report.n,
                100.0 * report.accuracy,
                report.log_loss
            );
            if a.per_user {
                for u in &report.per_user {
                    s += &format!(
                        "  {:<16} {:>5} pairs  {:.1}%\n",
                        u.user,
                        u.n,
                        100.0 * u.accuracy
                    );
                }
            }
            for p in &shots {
                s += &format!(
                    "  unseen users, n = {:>3}: accuracy {:.2}% ({} users)\n",
                    p.shots,
                    100.0 * p.accuracy,
                    p.users
                );
            }
            s
        },
    );
    Ok(())
}

pub fn adapt_cmd(cli: &Cli, a: &args::AdaptArgs) -> Result<()> {
    let model = TrainedModel::load(&a.model)
        .with_context(|| format!("loading model {}", a.model.display()))?;
    let data = load_data(&a.data)?;
    let path = a
        .pairs
        .clone()
        .unwrap_or_else(|| data.split_path(Split::UnseenTrain));
    let mut rows = data::read_jsonl(&path)?;
    if let Some(n) = a.shots {
        rows = pipeline::first_n_per_user(&rows, n);
    }
    if rows.is_empty() {
        bail!("{}: no comparisons for few-shot fitting", path.display());
    }
    let before = model.users.len();
    let adapted = pipeline::adapt(&model, &data, &rows, &a.fewshot.config())?;
    adapted.save(&a.out)?;
    let new: Vec<_> = adapted.users[before..]
        .iter()
        .zip(&adapted.weights.user_logits[before..])
        .map(|(u, l)| json!({"user": u, "weights": pal_core::reference::softmax(l)}))
        .collect();
    print(
        cli,
        json!({"model": a.out, "pairs": rows.len(), "new_users": new}),
        || {
            let mut s = format!(
                "fitted {} new users from {} comparisons; saved {}\n",
                new.len(),
                rows.len(),
                a.out.display()
            );
            for v in new.iter().take(10) {
                s += &format!(
                    "  {}  w = {}\n",
                    v["user"].as_str().unwrap_or(""),
                    v["weights"]
                );
            }
            s
        },
    );
    Ok(())
}

pub fn export_cmd(cli: &Cli, a: &args::ExportArgs) -> Result<()> {
    let model = TrainedModel::load(&a.model)
        .with_context(|| format!("loading model {}", a.model.display()))?;
    let mut manifest = pal_format::bundle::export(&model, &a.out)?;
    let stores = [
        (&a.items, ITEMS_FILE, model.weights.config.d_item),
        (&a.prompts, PROMPTS_FILE, model.weights.config.d_prompt),
    ];
    for (path, file, dim) in stores {
        let Some(path) = path else { continue };
        let store = pal_core::EmbeddingStore::load(path)?;
        if store.dim() != dim {
            bail!(
                "{}: embedding dimension {} does not match the model's {dim}",
                path.display(),
                store.dim()
            );
        }
        store.save(&a.out.join(file))?;
        if file == ITEMS_FILE {
            manifest.items_file = Some(file.into());
        } else {
            manifest.prompts_file = Some(file.into());
        }
    }
    manifest.write(&a.out)?;
    print(cli, serde_json::to_value(&manifest)?, || {
        format!("wrote bundle {}\n", a.out.display())
    });
    Ok(())
}

pub fn report_cmd(cli: &Cli, a: &args::ReportArgs) -> Result<()> {
    let data = load_data(&a.data)?;
    let cfg = ExperimentConfig {
        model: a.model.config(data.items.dim(), data.prompt_dim()),
        train: a.optim.config(),
        fewshot: a.fewshot.config(),
        shots: a.shots.clone(),
        selection: a.model.selection(),
    };
    let mut bar: Option<TrainProgress> = None;
    let (model, report) = experiment::run(&data, &cfg, &mut |stage| match stage {
        Stage::Begin(name) => {
            if let Some(b) = bar.take() {
                b.finish();
            }
            status(cli.quiet, &format!("== {name}"));
            bar = Some(TrainProgress::new(name, cfg.train.epochs, cli.quiet));
        }
        Stage::Train(p) => {
            if let Some(b) = bar.as_mut() {
                b.update(p);
            }
        }
    })?;
    if let Some(b) = bar.take() {
        b.finish();
    }
    if let Some(dir) = &a.save_model {
        model.save(dir)?;
    }
    if let Some(dir) = &a.plots {
        write_plots(dir, &report)?;
    }
    print(cli, serde_json::to_value(&report)?, || report.to_markdown());
    Ok(())
}

fn write_plots(dir: &Path, r: &experiment::ExperimentReport) -> Result<()> {
    use crate::plot::{Series, line_chart};
    std::fs::create_dir_all(dir)?;
    let h = &r.training.history;
    let mut curves = vec![Series {
        name: "train loss",
        points: h
            .iter()
            .map(|s| (s.epoch as f64, s.train_loss as f64))
            .collect(),
    }];
    if h.iter().all(|s| s.val_loss.is_some()) {
        curves.push(Series {
            name: "val loss",
            points: h
                .iter()
                .map(|s| (s.epoch as f64, s.val_loss.unwrap_or(0.0) as f64))
                .collect(),
        });
    }
    std::fs::write(
        dir.join("training.svg"),
        line_chart("Training curve", "epoch", "loss", &curves, false),
    )?;
    let shots = |v: &[pipeline::ShotPoint]| -> Vec<(f64, f64)> {
        v.iter()
            .map(|p| (p.shots as f64, 100.0 * p.accuracy as f64))
            .collect()
    };
    std::fs::write(
        dir.join("shots.svg"),
        line_chart(
            "Unseen users: accuracy vs shots",
            "pairs per new user (log scale)",
            "accuracy %",
            &[
                Series {
                    name: "PAL (weights only)",
                    points: shots(&r.pal_shots),
                },
                Series {
                    name: "per-user logistic",
                    points: shots(&r.per_user_shots),
                },
            ],
            true,
        ),
    )?;
    Ok(())
}
