//! Observers: read-only views of a run (argmin's `Observe`). They never change state.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::tensor::backend::AutodiffBackend;

use crate::error::{BilevelError, Result};
use crate::second_order::OracleCounts;
use crate::state::State;
use crate::termination::TerminationReason;

/// What is known about one completed outer iteration.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IterRecord {
    /// Completed outer iterations.
    pub iter: u64,
    /// Seconds since the run started (including time before a resume).
    pub wall_time_s: f64,
    /// `f(x, y)` where the algorithm evaluated it this iteration.
    pub outer_loss: Option<f64>,
    /// `‖ĝ_k‖`.
    pub hypergrad_norm: Option<f64>,
    /// Oracle calls so far.
    pub counts: OracleCounts,
    /// User metrics registered on the executor (name, value), in registration order.
    pub metrics: Vec<(String, f64)>,
}

/// When an observer is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObserverMode {
    /// Every iteration.
    Always,
    /// Every `n`-th iteration (and the last).
    Every(u64),
    /// Only at start and end.
    Never,
}

impl ObserverMode {
    pub(crate) fn wants(&self, iter: u64) -> bool {
        match *self {
            ObserverMode::Always => true,
            ObserverMode::Every(n) => n > 0 && iter % n == 0,
            ObserverMode::Never => false,
        }
    }
}

/// Receives the run's events; every method defaults to doing nothing.
pub trait Observe<B: AutodiffBackend> {
    /// Before the first iteration (also after a resume).
    fn observe_start(&mut self, _solver: &str, _state: &State<B>) -> Result<()> {
        Ok(())
    }
    /// After an iteration selected by the observer's mode.
    fn observe_iter(&mut self, _state: &State<B>, _record: &IterRecord) -> Result<()> {
        Ok(())
    }
    /// When the run stops.
    fn observe_end(&mut self, _state: &State<B>, _reason: &TerminationReason) -> Result<()> {
        Ok(())
    }
}

/// Keeps every observed record in memory; clone the handle before adding it to an executor.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    records: Arc<Mutex<Vec<IterRecord>>>,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The records so far.
    pub fn records(&self) -> Vec<IterRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl<B: AutodiffBackend> Observe<B> for Recorder {
    fn observe_iter(&mut self, _state: &State<B>, record: &IterRecord) -> Result<()> {
        if let Ok(mut r) = self.records.lock() {
            r.push(record.clone());
        }
        Ok(())
    }
}

/// The header of a metrics CSV: `iter,wall_time_s,outer_loss,hypergrad_norm`, the oracle
/// counters ([`OracleCounts::COLUMNS`]), then `metric_names`. The one definition of the format,
/// shared by [`CsvWriter`] and the run folders' `metrics.csv`.
pub fn csv_header(metric_names: &[&str]) -> String {
    let mut h = String::from("iter,wall_time_s,outer_loss,hypergrad_norm");
    for name in OracleCounts::COLUMNS.iter().chain(metric_names) {
        h.push(',');
        h.push_str(name);
    }
    h
}

/// One row of [`csv_header`]'s format for `record`; the metric cells are empty unless
/// `with_metrics` (an iteration whose metrics were not evaluated).
pub fn csv_row(record: &IterRecord, with_metrics: bool) -> String {
    let opt = |v: Option<f64>| v.map(|v| format!("{v:e}")).unwrap_or_default();
    let mut row = format!(
        "{},{:.6},{},{}",
        record.iter,
        record.wall_time_s,
        opt(record.outer_loss),
        opt(record.hypergrad_norm)
    );
    for c in record.counts.values() {
        row.push_str(&format!(",{c}"));
    }
    for (_, v) in &record.metrics {
        row.push(',');
        if with_metrics {
            row.push_str(&format!("{v:e}"));
        }
    }
    row
}

/// Appends one CSV row per observed iteration:
/// `iter,wall_time_s,outer_loss,hypergrad_norm,<counts…>,<metrics…>`.
///
/// The header is written when the file is created; appending to an existing file (a resumed
/// run) keeps it.
pub struct CsvWriter {
    path: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl CsvWriter {
    /// Writes to `path` (created, or appended to if it exists).
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            file: None,
        }
    }
}

impl<B: AutodiffBackend> Observe<B> for CsvWriter {
    fn observe_iter(&mut self, _state: &State<B>, record: &IterRecord) -> Result<()> {
        let err = |e: std::io::Error| BilevelError::io(&self.path, e);
        if self.file.is_none() {
            let exists = self.path.exists();
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(err)?;
            let mut file = std::io::BufWriter::new(file);
            if !exists {
                let names: Vec<&str> = record.metrics.iter().map(|(n, _)| n.as_str()).collect();
                writeln!(file, "{}", csv_header(&names)).map_err(err)?;
            }
            self.file = Some(file);
        }
        let file = self.file.as_mut().expect("opened above");
        writeln!(file, "{}", csv_row(record, true)).map_err(|e| BilevelError::io(&self.path, e))
    }

    fn observe_end(&mut self, _state: &State<B>, _reason: &TerminationReason) -> Result<()> {
        if let Some(f) = self.file.as_mut() {
            f.flush().map_err(|e| BilevelError::io(&self.path, e))?;
        }
        Ok(())
    }
}

/// A terminal progress bar with the outer loss, `‖ĝ‖` and an ETA.
pub struct ProgressBar {
    bar: indicatif::ProgressBar,
}

impl ProgressBar {
    /// A bar for a run of `max_iters` iterations (hidden when stderr is not a terminal).
    pub fn new(max_iters: u64) -> Self {
        let bar = indicatif::ProgressBar::new(max_iters);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Self { bar }
    }
}

impl<B: AutodiffBackend> Observe<B> for ProgressBar {
    fn observe_start(&mut self, solver: &str, state: &State<B>) -> Result<()> {
        self.bar.set_prefix(solver.to_string());
        self.bar.set_position(state.iter);
        Ok(())
    }

    fn observe_iter(&mut self, _state: &State<B>, record: &IterRecord) -> Result<()> {
        self.bar.set_position(record.iter);
        let loss = record
            .outer_loss
            .map(|v| format!("f={v:.4e}"))
            .unwrap_or_default();
        let grad = record
            .hypergrad_norm
            .map(|v| format!("‖ĝ‖={v:.3e}"))
            .unwrap_or_default();
        self.bar.set_message(format!("{loss} {grad}"));
        Ok(())
    }

    fn observe_end(&mut self, _state: &State<B>, reason: &TerminationReason) -> Result<()> {
        self.bar.finish_with_message(format!("{reason}"));
        Ok(())
    }
}
