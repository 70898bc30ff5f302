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
    /// The algorithm's seconds since the run started, including time before a resume and
    /// excluding time spent evaluating metrics, in observers and writing checkpoints.
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
    /// Every `n`-th iteration, and the last one of a run that ends (not of an interrupted run,
    /// which continues later), with every metric evaluated.
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

/// One row of [`csv_header`]'s format for `record`; a metric cell is empty where the value is
/// NaN (the metric was not evaluated at that iteration).
pub fn csv_row(record: &IterRecord) -> String {
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
        if !v.is_nan() {
            row.push_str(&format!("{v:e}"));
        }
    }
    row
}

/// The one metrics-CSV writer: one row per observed iteration,
/// `iter,wall_time_s,outer_loss,hypergrad_norm,<counts…>,<metrics…>` ([`csv_header`],
/// [`csv_row`]), each row flushed as written so a killed run leaves every row it wrote.
///
/// - [`CsvWriter::new`]: appends to `path`, writing the header first if the file is new;
/// - [`CsvWriter::create`]: a fresh file with the header of these metrics;
/// - [`CsvWriter::resume`]: continues a file after a checkpoint at iteration `iter`, keeping
///   the header and the complete rows up to `iter` and dropping the rows a killed run wrote
///   after its checkpoint (replaced atomically: a crash leaves the old file or the new one);
///
/// A metric cell is empty where the record's value is NaN: the metric was not evaluated at
/// that iteration ([`crate::Executor::add_metrics`]' cadence).
pub struct CsvWriter {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl CsvWriter {
    /// Writes to `path` (created, or appended to if it exists).
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            file: None,
        }
    }

    /// Creates (or overwrites) `path` with the header for `metric_names`.
    pub fn create(path: impl AsRef<Path>, metric_names: &[&str]) -> Result<Self> {
        let path = path.as_ref();
        Self::replace(path, &[csv_header(metric_names)])?;
        Self::open_append(path)
    }

    /// Continues `path` after a checkpoint at iteration `iter`: keeps its header and its
    /// complete rows with `iter ≤ iter` (a partial last line is dropped), or starts it with the
    /// header of `metric_names` if it is missing or empty.
    pub fn resume(path: impl AsRef<Path>, metric_names: &[&str], iter: u64) -> Result<Self> {
        let path = path.as_ref();
        let err = |e: std::io::Error| BilevelError::io(path, e);
        let mut kept = vec![csv_header(metric_names)];
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(err)?;
            let complete = text.rfind('\n').map_or("", |end| &text[..end]);
            kept.extend(
                complete
                    .lines()
                    .skip(1)
                    .filter(|l| {
                        l.split(',')
                            .next()
                            .and_then(|i| i.parse::<u64>().ok())
                            .is_some_and(|i| i <= iter)
                    })
                    .map(str::to_string),
            );
        }
        Self::replace(path, &kept)?;
        Self::open_append(path)
    }

    /// Writes `record` as one row and flushes it.
    pub fn write(&mut self, record: &IterRecord) -> Result<()> {
        if self.file.is_none() {
            let exists = self.path.metadata().is_ok_and(|m| m.len() > 0);
            if !exists {
                let names: Vec<&str> = record.metrics.iter().map(|(n, _)| n.as_str()).collect();
                Self::replace(&self.path, &[csv_header(&names)])?;
            }
            self.file = Self::open_append(&self.path)?.file;
        }
        let path = &self.path;
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| BilevelError::io(path, "not open"))?;
        writeln!(file, "{}", csv_row(record))
            .and_then(|_| file.flush())
            .map_err(|e| BilevelError::io(path, e))
    }

    fn open_append(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| BilevelError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Some(file),
        })
    }

    /// Writes `lines` to `path` atomically (a temporary file, then a rename).
    fn replace(path: &Path, lines: &[String]) -> Result<()> {
        let err = |e: std::io::Error| BilevelError::io(path, e);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = path.with_extension("csv.tmp");
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&tmp, text).map_err(|e| BilevelError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

impl<B: AutodiffBackend> Observe<B> for CsvWriter {
    fn observe_iter(&mut self, _state: &State<B>, record: &IterRecord) -> Result<()> {
        self.write(record)
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
