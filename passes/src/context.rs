//! What a pass sees besides the graph: calibration data, the seed, a progress reporter,
//! and the record of what it did (which the manager turns into a ledger entry).

use crate::pass::PassError;
use compc_runtime::Tensor;

/// The message for work that cannot run without calibration data; `what` names the work
/// (an option, a method), so every pass says it the same way.
pub fn needs_calibration(what: &str) -> String {
    format!("{what} needs calibration data (give --calib CALIB.npz)")
}

/// Calibration samples: one tensor per model input, named as the input, first axis =
/// samples (the `--calib` .npz).
#[derive(Clone, Debug, Default)]
pub struct CalibData {
    pub tensors: Vec<(String, Tensor)>,
}

/// Free-form record a pass writes while it runs.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PassRecord {
    /// Nodes the pass created, rewrote or removed.
    pub nodes_touched: usize,
    /// One line each: what was done and where ("folded 12 constant subgraphs").
    pub notes: Vec<String>,
    /// Measured error of a lossy pass, by metric name ("max_abs_output_error" → value).
    pub errors: Vec<(String, f64)>,
}

pub struct PassContext<'a> {
    pub calib: Option<&'a CalibData>,
    pub seed: u64,
    /// Show progress bars on long work (off in tests and when stderr is not a terminal).
    pub progress: bool,
    pub record: PassRecord,
}

impl<'a> PassContext<'a> {
    /// The calibration data, or the error that `what` needs it.
    pub fn calibration(&self, what: &str) -> Result<&'a CalibData, PassError> {
        self.calib
            .ok_or_else(|| PassError::Invalid(needs_calibration(what)))
    }

    pub fn new() -> Self {
        PassContext {
            calib: None,
            seed: 0,
            progress: false,
            record: PassRecord::default(),
        }
    }

    pub fn touch(&mut self, n: usize) {
        self.record.nodes_touched += n;
    }

    pub fn note(&mut self, s: impl Into<String>) {
        self.record.notes.push(s.into());
    }

    pub fn measured(&mut self, metric: impl Into<String>, value: f64) {
        self.record.errors.push((metric.into(), value));
    }

    /// A progress bar of `len` steps, hidden unless progress is on.
    pub fn progress_bar(&self, len: u64, what: &str) -> indicatif::ProgressBar {
        if !self.progress {
            return indicatif::ProgressBar::hidden();
        }
        let pb = indicatif::ProgressBar::new(len);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({elapsed})")
        {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(what.to_string());
        pb
    }
}

impl Default for PassContext<'_> {
    fn default() -> Self {
        Self::new()
    }
}
