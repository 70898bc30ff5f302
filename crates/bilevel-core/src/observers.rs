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

    fn row(record: &IterRecord) -> String {
        let opt = |v: Option<f64>| v.map(|v| format!("{v:e}")).unwrap_or_default();
        let c = &record.counts;
        let mut row = format!(
            "{},{:.6},{},{},{},{},{},{},{},{},{},{},{},{}",
            record.iter,
            record.wall_time_s,
            opt(record.outer_loss),
            opt(record.hypergrad_norm),
            c.f_values,
            c.g_values,
            c.grad_f,
            c.grad_g,
            c.hvp,
            c.jvp,
            c.map_values,
            c.map_vjps,
            c.samples_f,
            c.samples_g
        );
        for (_, v) in &record.metrics {
            row.push_str(&format!(",{v:e}"));
        }
        row
    }

    fn header(record: &IterRecord) -> String {
        let mut h = String::from(
            "iter,wall_time_s,outer_loss,hypergrad_norm,f_values,g_values,grad_f,grad_g,hvp,jvp,map_values,map_vjps,samples_f,samples_g",
        );
        for (name, _) in &record.metrics {
            h.push(',');
            h.push_str(name);
        }
        h
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
                writeln!(file, "{}", Self::header(record)).map_err(err)?;
            }
            self.file = Some(file);
        }
        let file = self.file.as_mut().expect("opened above");
        writeln!(file, "{}", Self::row(record)).map_err(|e| BilevelError::io(&self.path, e))
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
