//! Progress reporting on stderr: a bar on a terminal, one line per epoch otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use pal_core::train::{Control, Progress};

/// Shows training progress; silent when `quiet`.
pub struct TrainProgress {
    bar: Option<ProgressBar>,
    quiet: bool,
    label: String,
}

impl TrainProgress {
    pub fn new(label: &str, epochs: usize, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(epochs as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] epoch {pos}/{len} {msg} ({elapsed}, eta {eta})",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            bar
        });
        Self {
            bar,
            quiet,
            label: label.to_string(),
        }
    }

    pub fn update(&mut self, p: &Progress) -> Control {
        match p {
            Progress::Step {
                step, steps, loss, ..
            } => {
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("step {step}/{steps} loss {loss:.4}"));
                }
            }
            Progress::Epoch(s) => {
                let val = match (s.val_loss, s.val_accuracy) {
                    (Some(l), Some(a)) => format!(" val loss {l:.4} acc {:.1}%", 100.0 * a),
                    _ => String::new(),
                };
                let line = format!(
                    "{} epoch {:>3}: train loss {:.4}{val} ({:.2}s)",
                    self.label, s.epoch, s.train_loss, s.seconds
                );
                match &self.bar {
                    Some(bar) => {
                        bar.inc(1);
                        bar.set_message(val);
                    }
                    None if !self.quiet => eprintln!("{line}"),
                    None => {}
                }
            }
        }
        Control::Continue
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A one-off status line on stderr.
pub fn status(quiet: bool, msg: &str) {
    if !quiet {
        eprintln!("{msg}");
    }
}

/// A count bar for stages like embedding (`stage done/total`); on a pipe, one line per stage end.
pub struct CountProgress {
    bar: Option<ProgressBar>,
    quiet: bool,
    stage: String,
}

impl CountProgress {
    pub fn new(quiet: bool) -> Self {
        Self {
            bar: None,
            quiet,
            stage: String::new(),
        }
    }

    pub fn update(&mut self, stage: &str, done: usize, total: usize) {
        if self.quiet {
            return;
        }
        if self.stage != stage {
            self.finish();
            self.stage = stage.to_string();
            self.bar = std::io::stderr().is_terminal().then(|| {
                let bar = ProgressBar::new(total as u64);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(stage.to_string());
                bar
            });
        }
        match &self.bar {
            Some(b) => b.set_position(done as u64),
            None if done == total => eprintln!("{stage}: {done}/{total}"),
            None => {}
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
    }
}
