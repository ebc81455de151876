//! What the model search reports while it runs, and how a caller stops it: every training
//! run is announced, every epoch forwarded, every scored candidate handed over (a caller that
//! keeps them can resume the search), and `Control::Stop` ends the search.

use super::candidate::Candidate;
use crate::error::{PalError, Result};
use crate::train::{Control, Progress, TrainReport};

/// What the search reports while it runs; answering [`Control::Stop`] ends it with
/// [`PalError::Cancelled`].
#[derive(Debug, Clone, PartialEq)]
pub enum SelectEvent<'a> {
    /// A training run starts: the `index`-th (from 1) of about `total`, and what it fits.
    Fit {
        index: usize,
        total: usize,
        what: &'a str,
    },
    /// An epoch of the current run ended.
    Epoch,
    /// A grid candidate's cross-validation finished; passed back to [`select`](super::select) as
    /// `done`, it is not trained again.
    Scored(&'a Candidate),
}

impl SelectEvent<'_> {
    /// A training run as a progress line, `[index/total] what`; `None` for other events.
    pub fn line(&self) -> Option<String> {
        match self {
            SelectEvent::Fit { index, total, what } => Some(format!("[{index}/{total}] {what}")),
            _ => None,
        }
    }
}

/// The callback of [`select`].
pub type OnSelect<'a> = dyn FnMut(SelectEvent<'_>) -> Control + 'a;

/// Counts the search's training runs and forwards events, so every run can be stopped.
pub(super) struct Runs<'a, 'b> {
    pub(super) done: usize,
    pub(super) total: usize,
    pub(super) on: &'a mut OnSelect<'b>,
}

impl Runs<'_, '_> {
    /// Announces the next run; `Err(Cancelled)` when the caller asks to stop.
    pub(super) fn start(&mut self, what: &str) -> Result<()> {
        self.done += 1;
        self.total = self.total.max(self.done);
        let ev = SelectEvent::Fit {
            index: self.done,
            total: self.total,
            what,
        };
        match (self.on)(ev) {
            Control::Continue => Ok(()),
            Control::Stop => Err(PalError::Cancelled),
        }
    }

    /// Counts `n` runs a resumed candidate does not need again.
    pub(super) fn skip(&mut self, n: usize) {
        self.done += n;
        self.total = self.total.max(self.done);
    }

    /// Hands a scored candidate to the caller.
    pub(super) fn scored(&mut self, c: &Candidate) -> Result<()> {
        match (self.on)(SelectEvent::Scored(c)) {
            Control::Continue => Ok(()),
            Control::Stop => Err(PalError::Cancelled),
        }
    }

    /// The progress callback of one training run.
    pub(super) fn epoch(&mut self, p: &Progress) -> Control {
        match p {
            Progress::Epoch(_) => (self.on)(SelectEvent::Epoch),
            Progress::Step { .. } => Control::Continue,
        }
    }
}

/// `Err(Cancelled)` when a run was stopped by the caller.
pub(super) fn finished(report: &TrainReport) -> Result<()> {
    if report.cancelled {
        Err(PalError::Cancelled)
    } else {
        Ok(())
    }
}
