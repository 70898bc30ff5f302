//! Where a run's records go: the report's list, `records.jsonl` and the metrics CSV, fed by
//! observers that share them with the runner.

use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bilevel_core::{BilevelError, CsvWriter, IterRecord, Observe, State, TerminationReason};
use bilevel_problems::{ProblemError, Result};
use burn::tensor::backend::AutodiffBackend;

/// Shared sinks: the records of the report and the files they are mirrored to.
pub(super) struct Sinks {
    pub(super) records: Vec<IterRecord>,
    pub(super) jsonl: Option<(PathBuf, File)>,
    pub(super) csv: Option<CsvWriter>,
    pub(super) error: Option<BilevelError>,
}

impl Sinks {
    pub(super) fn keep(&mut self, record: &IterRecord) {
        self.records.push(record.clone());
        if let Some((path, file)) = &mut self.jsonl {
            let line = serde_json::to_string(record).unwrap_or_default();
            if let Err(e) = writeln!(file, "{line}").and_then(|_| file.flush()) {
                self.error.get_or_insert(BilevelError::io(path, e));
            }
        }
    }

    /// A CSV row (metric cells empty where not evaluated).
    pub(super) fn csv_row(&mut self, record: &IterRecord) {
        if let Some(csv) = &mut self.csv {
            if let Err(e) = csv.write(record) {
                self.error.get_or_insert(e);
            }
        }
    }
}

pub(super) fn prepare_jsonl(path: &Path, records: &[IterRecord]) -> Result<File> {
    let io = |e: std::io::Error| ProblemError::from(BilevelError::io(path, e));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = File::create(path).map_err(io)?;
    for r in records {
        let line = serde_json::to_string(r)
            .map_err(|e| ProblemError::from(BilevelError::Checkpoint(e.to_string())))?;
        writeln!(file, "{line}").map_err(io)?;
    }
    file.flush().map_err(io)?;
    Ok(file)
}

/// Forwards records to the shared sinks (records + JSONL at `eval_every`).
pub(super) struct KeepRecords(pub(super) Rc<RefCell<Sinks>>);

impl<B: AutodiffBackend> Observe<B> for KeepRecords {
    fn observe_iter(&mut self, _state: &State<B>, record: &IterRecord) -> bilevel_core::Result<()> {
        let mut sinks = self.0.borrow_mut();
        sinks.keep(record);
        match sinks.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Forwards records to the CSV file.
pub(super) struct CsvRows(pub(super) Rc<RefCell<Sinks>>);

impl<B: AutodiffBackend> Observe<B> for CsvRows {
    fn observe_iter(&mut self, _state: &State<B>, record: &IterRecord) -> bilevel_core::Result<()> {
        let mut sinks = self.0.borrow_mut();
        sinks.csv_row(record);
        match sinks.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Lets boxed observers from [`RunHooks::observers`] be added to the executor.
pub(super) struct BoxedObserver<B: AutodiffBackend>(pub(super) Box<dyn Observe<B>>);

impl<B: AutodiffBackend> Observe<B> for BoxedObserver<B> {
    fn observe_start(&mut self, solver: &str, state: &State<B>) -> bilevel_core::Result<()> {
        self.0.observe_start(solver, state)
    }
    fn observe_iter(&mut self, state: &State<B>, record: &IterRecord) -> bilevel_core::Result<()> {
        self.0.observe_iter(state, record)
    }
    fn observe_end(
        &mut self,
        state: &State<B>,
        reason: &TerminationReason,
    ) -> bilevel_core::Result<()> {
        self.0.observe_end(state, reason)
    }
}
