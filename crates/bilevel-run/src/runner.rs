//! The shared runner: one [`Application`] × one [`MethodSpec`] × one [`RunSpec`] → a
//! [`RunReport`]. The `bilevel` CLI and `xtask reproduce` both run experiments through
//! [`run_spec`] / [`run_application`].
//!
//! What a run writes (all optional, chosen by [`RunHooks`]):
//!
//! - `<checkpoint_dir>/checkpoint.json` — the executor's checkpoint (every
//!   [`RunSpec::checkpoint_every`] iterations, and always at the end: after `max_iters`, an
//!   interrupt, or a divergence, whose checkpoint holds the last finite state);
//! - `<checkpoint_dir>/records.jsonl` — one [`IterRecord`] per line (with the application's
//!   metrics), flushed as written, so a resumed run's report holds the records of the whole run;
//! - a CSV file (`iter,wall_time_s,outer_loss,hypergrad_norm,<oracle counts>,<metrics>`), flushed
//!   row by row; metric cells are empty on rows where the metrics were not evaluated.
//!
//! **Resume.** [`ResumeFrom::load`] reads a checkpoint directory. The run continues from the
//! checkpointed state (solver memories and RNG included), so on a deterministic backend
//! (ndarray) the final iterate is bit-identical to an uninterrupted run; records and CSV rows
//! written after the checkpoint (by a run that was killed) are dropped first.
//!
//! **Metrics.** [`Application::evaluate`] runs at the start of a fresh run (iteration 0), every
//! [`RunSpec::eval_every`] iterations, and at the end. Evaluation is not counted as oracle calls
//! and draws no random numbers, so it never changes the trajectory.

use std::cell::RefCell;
use std::fs::File;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bilevel_core::observers::ProgressBar;
use bilevel_core::preflight::{PreflightConfig, Warning};
use bilevel_core::second_order::SecondOrder;
use bilevel_core::tensor::{norm, to_vec};
use bilevel_core::{
    BilevelError, Checkpoint, Checkpointing, CsvWriter, Executor, ExecutorConfig, IterRecord,
    Observe, ObserverMode, OracleCounts, RunOutcome, Solver, State, TerminationReason,
};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use bilevel_problems::spec::{ApplicationVisitor, BuildContext, ProblemSpec};
use bilevel_problems::{Application, Metric, ProblemError, Result};

use crate::method::{MethodSpec, SolverVisitor};

mod sinks;

use sinks::{prepare_jsonl, BoxedObserver, CsvRows, KeepRecords, Sinks};

/// File name of the executor checkpoint inside a checkpoint directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";
/// File name of the JSON-lines record log inside a checkpoint directory.
pub const RECORDS_FILE: &str = "records.jsonl";

/// The `[run]` table: stopping rules, seed and cadences. Every key is optional.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSpec {
    /// Outer iterations in total, counted from 0 across resumes (default 100).
    pub max_iters: u64,
    /// Wall-clock budget of one invocation in seconds (default: none).
    pub time_budget_s: Option<f64>,
    /// Stop once `‖ĝ_k‖ ≤ grad_tolerance` (default: none).
    pub grad_tolerance: Option<f64>,
    /// Seed of the run's random source and of the initial point (default 0).
    pub seed: u64,
    /// Evaluate the application's metrics every this many iterations, and at the end
    /// (default 10).
    pub eval_every: u64,
    /// Write a checkpoint every this many iterations (default: only at the end).
    pub checkpoint_every: Option<u64>,
    /// Second-order products by central finite differences with this step instead of exact
    /// nested autodiff (default: exact).
    pub finite_difference_step: Option<f64>,
    /// Ignore the problem's hand-derived derivatives ([`BilevelProblem::closed_form`]) and use
    /// autodiff gradients and nested-autodiff products (default false: hand-derived where the
    /// problem has them, which is faster and equal to round-off).
    ///
    /// [`BilevelProblem::closed_form`]: bilevel_core::BilevelProblem::closed_form
    pub autodiff_only: bool,
    /// Hessian-vector products of the power iteration that estimates the inner curvature `L`
    /// before the run, against which steps are checked (`2/L`; see
    /// [`bilevel_core::preflight`]); 0 turns the check off (default 20).
    pub curvature_products: usize,
    /// Refuse to run where the check of the method against the problem only warns (a step
    /// above `2/L`, a batch size a deterministic problem ignores, an indefinite Hessian under
    /// CG) (default false).
    pub strict: bool,
}

impl Default for RunSpec {
    fn default() -> Self {
        Self {
            max_iters: 100,
            time_budget_s: None,
            grad_tolerance: None,
            seed: 0,
            eval_every: 10,
            checkpoint_every: None,
            finite_difference_step: None,
            autodiff_only: false,
            curvature_products: PreflightConfig::default().curvature_products,
            strict: false,
        }
    }
}

impl RunSpec {
    /// Checks ranges; errors name the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &str, reason: String| Err(ProblemError::config(name, reason));
        if self.max_iters == 0 {
            return bad("run.max_iters", "must be ≥ 1".into());
        }
        if self.eval_every == 0 {
            return bad("run.eval_every", "must be ≥ 1".into());
        }
        if self.checkpoint_every == Some(0) {
            return bad(
                "run.checkpoint_every",
                "must be ≥ 1 (omit it to checkpoint only at the end)".into(),
            );
        }
        if let Some(t) = self.time_budget_s {
            if !(t > 0.0 && t.is_finite()) {
                return bad(
                    "run.time_budget_s",
                    format!("must be > 0 and finite, got {t}"),
                );
            }
        }
        if let Some(t) = self.grad_tolerance {
            if !(t >= 0.0 && t.is_finite()) {
                return bad(
                    "run.grad_tolerance",
                    format!("must be ≥ 0 and finite, got {t}"),
                );
            }
        }
        if let Some(e) = self.finite_difference_step {
            if !(e > 0.0 && e.is_finite()) {
                return bad(
                    "run.finite_difference_step",
                    format!("must be > 0 and finite, got {e}"),
                );
            }
        }
        if self.seed > i64::MAX as u64 {
            return bad(
                "run.seed",
                format!(
                    "must be at most {} (a TOML integer is 64-bit signed, and the run folder's \
                     config.toml must hold it), got {}",
                    i64::MAX,
                    self.seed
                ),
            );
        }
        if self.autodiff_only && self.finite_difference_step.is_some() {
            return bad(
                "run.autodiff_only",
                "conflicts with run.finite_difference_step (finite differences already use \
                 autodiff gradients); set one of them"
                    .into(),
            );
        }
        Ok(())
    }

    fn executor_config(&self) -> ExecutorConfig {
        ExecutorConfig {
            max_iters: self.max_iters,
            time_budget: self.time_budget_s.map(Duration::from_secs_f64),
            hypergrad_tol: self.grad_tolerance,
            second_order: match (self.finite_difference_step, self.autodiff_only) {
                (Some(eps), _) => SecondOrder::FiniteDifference { eps },
                (None, true) => SecondOrder::Autodiff,
                (None, false) => SecondOrder::Exact,
            },
            preflight: PreflightConfig {
                curvature_products: self.curvature_products,
                strict: self.strict,
            },
        }
    }
}

/// Where a resumed run continues from: a checkpoint and the records written up to it.
#[derive(Clone, Debug, PartialEq)]
pub struct ResumeFrom {
    /// The executor checkpoint.
    pub checkpoint: Checkpoint,
    /// Records of the interrupted run with `iter ≤ checkpoint.state.iter`.
    pub records: Vec<IterRecord>,
}

impl ResumeFrom {
    /// Reads `dir/checkpoint.json` and `dir/records.jsonl` (a torn last line is ignored;
    /// records after the checkpoint are dropped). A checkpoint past iteration 0 whose records
    /// are missing, or do not start at iteration 0, is an error: the resumed run's report would
    /// silently lack the iterations before the resume.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(CHECKPOINT_FILE);
        if !path.exists() {
            return Err(ProblemError::config(
                "resume",
                format!(
                    "no checkpoint at {}: the run wrote none yet (set run.checkpoint_every to \
                     checkpoint during a run)",
                    path.display()
                ),
            ));
        }
        let checkpoint = Checkpoint::load(&path)?;
        let iter = checkpoint.state.iter;
        let records_path = dir.join(RECORDS_FILE);
        let records: Vec<IterRecord> = read_records(&records_path)?
            .into_iter()
            .filter(|r| r.iter <= iter)
            .collect();
        if iter > 0 && records.first().is_none_or(|r| r.iter != 0) {
            return Err(ProblemError::config(
                "resume",
                format!(
                    "{} is missing or does not start at iteration 0, but the checkpoint is at \
                     iteration {iter}: the resumed run's report would lack the iterations \
                     before it; restore the file from a backup, or start the run again",
                    records_path.display()
                ),
            ));
        }
        Ok(Self {
            checkpoint,
            records,
        })
    }
}

fn read_records(path: &Path) -> Result<Vec<IterRecord>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let file = File::open(path).map_err(|e| BilevelError::io(path, e))?;
    let lines = std::io::BufReader::new(file)
        .lines()
        .collect::<std::io::Result<Vec<String>>>()
        .map_err(|e| BilevelError::io(path, e))?;
    let last = lines.iter().rposition(|l| !l.trim().is_empty());
    let mut records = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<IterRecord>(line) {
            Ok(r) => records.push(r),
            // A run killed mid-write leaves a torn last line: stop there.
            Err(_) if Some(i) == last => break,
            Err(e) => {
                return Err(ProblemError::config(
                    "resume",
                    format!(
                        "{} line {} is damaged ({e}); only a torn last line is expected of an \
                         interrupted run: restore the file from a backup, or start the run again",
                        path.display(),
                        i + 1
                    ),
                ))
            }
        }
    }
    Ok(records)
}

/// Refuses records that do not cover the run up to its checkpoint: a resumed run's records
/// must be those of iterations `0, e, 2e, …` up to the checkpoint's iteration (`e` = the
/// record cadence; plus the checkpoint's own iteration for a run that ended), or its report
/// would silently lack some (e.g. a checkpoint of a later point of the run copied into the
/// folder).
fn check_records_cover(records: &[IterRecord], checkpoint_iter: u64, every: u64) -> Result<()> {
    let expected: Vec<u64> = (0..=checkpoint_iter)
        .step_by(every.max(1) as usize)
        .collect();
    let found: Vec<u64> = records.iter().map(|r| r.iter).collect();
    // A run that ended (and is extended now) also recorded its last iteration off the
    // cadence; one stopped before its first iteration may lack the starting record.
    let with_last: Vec<u64> = expected.iter().copied().chain([checkpoint_iter]).collect();
    if found != expected && found != with_last && !(checkpoint_iter == 0 && found.is_empty()) {
        let last = found.last().map_or("none".to_string(), |i| i.to_string());
        return Err(ProblemError::config(
            "resume",
            format!(
                "the records do not cover the run up to its checkpoint at iteration \
                 {checkpoint_iter}: {} records (the last at iteration {last}) where a record \
                 every {every} iterations gives {}; the checkpoint and {RECORDS_FILE} do not \
                 belong together — restore them from one run, or start the run again",
                found.len(),
                expected.len()
            ),
        ));
    }
    Ok(())
}

/// What a run adds besides the method and stopping rules: observers, files, interruption and
/// resumption. `RunHooks::default()` runs silently and writes nothing.
pub struct RunHooks<B: AutodiffBackend> {
    /// Show a progress bar (outer loss, `‖ĝ‖`, ETA) on stderr when it is a terminal.
    pub progress: bool,
    /// Write a CSV log here (appended to, after truncation to the checkpoint, when resuming).
    pub csv: Option<PathBuf>,
    /// A CSV row every this many iterations (default: [`RunSpec::eval_every`]).
    pub csv_every: Option<u64>,
    /// Further observers, with their modes.
    pub observers: Vec<(Box<dyn Observe<B>>, ObserverMode)>,
    /// Directory of `checkpoint.json` and `records.jsonl` (created if missing).
    pub checkpoint_dir: Option<PathBuf>,
    /// Stop cleanly (with a checkpoint) when this becomes true, e.g. from a Ctrl-C handler.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Continue a previous run instead of starting fresh.
    pub resume: Option<ResumeFrom>,
    /// What identifies the run in its checkpoints: a resume from a checkpoint of another run is
    /// refused. [`run_spec`] sets it (when `None`) to a hash of the problem and method tables
    /// and the seeds.
    pub run_id: Option<String>,
}

impl<B: AutodiffBackend> Default for RunHooks<B> {
    fn default() -> Self {
        Self {
            progress: false,
            csv: None,
            csv_every: None,
            observers: Vec::new(),
            checkpoint_dir: None,
            interrupt: None,
            resume: None,
            run_id: None,
        }
    }
}

/// The outcome of a run, serialisable as `report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The problem's experiment id.
    pub problem: String,
    /// The method's `name`.
    pub method: String,
    /// [`RunSpec::seed`].
    pub seed: u64,
    /// Records at iteration 0, every `eval_every` iterations and at the end, each with the
    /// application's metrics (in [`Application::metric_names`] order).
    pub records: Vec<IterRecord>,
    /// Why the run stopped (`NonFinite`: the final state is the last finite one).
    pub termination: TerminationReason,
    /// Metrics at the final state: [`Application::metric_names`], then
    /// [`Application::final_metric_names`] (end-of-run metrics; absent when interrupted).
    pub final_metrics: Vec<Metric>,
    /// The algorithm's wall time, including time before a resume (metric evaluation and
    /// checkpoint writes left out).
    pub wall_time_s: f64,
    /// Completed outer iterations.
    pub iterations: u64,
    /// Oracle calls of the whole run.
    pub counts: OracleCounts,
    /// The method's output: its final upper-level point ([`Solver::reported_x`]: the last
    /// iterate for most methods, Alg. 2's `x_out` for IGFM).
    pub final_x: Vec<f64>,
    /// The lower-level point paired with `final_x` ([`Solver::reported_y`]).
    pub final_y: Vec<f64>,
    /// Further points the method reports beside its output, with the metrics at each
    /// ([`Solver::reported_alternatives`]; e.g. IGFM's `best` and `last` iterates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<ReportedMetrics>,
    /// What the check of the method's settings against the problem found before the run
    /// ([`bilevel_core::preflight`]): steps above `2/L`, ignored batch sizes, ….
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
}

/// The metrics at a point a method reports beside its output ([`RunReport::alternatives`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportedMetrics {
    /// The point's name (e.g. `best`).
    pub name: String,
    /// Its upper-level variable.
    pub x: Vec<f64>,
    /// The application's metrics there.
    pub metrics: Vec<Metric>,
}

impl RunReport {
    /// Whether the run ended normally (max iterations, convergence or time budget).
    pub fn is_complete(&self) -> bool {
        matches!(
            self.termination,
            TerminationReason::MaxItersReached
                | TerminationReason::Converged
                | TerminationReason::Timeout
        )
    }

    /// The value of metric `name` at the end.
    pub fn final_metric(&self, name: &str) -> Option<f64> {
        self.final_metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }
}

/// Builds the problem of `problem` and runs `method` on it (see [`run_application`]). The
/// method and run settings are checked before the problem is built (which may load data).
pub fn run_spec<B: AutodiffBackend>(
    problem: &ProblemSpec,
    method: &MethodSpec,
    run: &RunSpec,
    ctx: &BuildContext<B>,
    hooks: RunHooks<B>,
) -> Result<RunReport> {
    method.validate()?;
    run.validate()?;
    let mut hooks = hooks;
    if hooks.run_id.is_none() {
        hooks.run_id = Some(run_id(problem, method, run.seed, ctx.seed)?);
    }
    problem.build_with(ctx, RunOnBuilt { method, run, hooks })
}

/// SHA-256 of what determines a run's trajectory: the problem and method tables and the seeds.
fn run_id(problem: &ProblemSpec, method: &MethodSpec, seed: u64, data_seed: u64) -> Result<String> {
    let text = serde_json::to_string(&(problem, method, seed, data_seed))
        .map_err(|e| BilevelError::Checkpoint(format!("cannot identify the run: {e}")))?;
    Ok(bilevel_data::checksum::sha256_bytes(text.as_bytes()))
}

struct RunOnBuilt<'a, B: AutodiffBackend> {
    method: &'a MethodSpec,
    run: &'a RunSpec,
    hooks: RunHooks<B>,
}

impl<B: AutodiffBackend> ApplicationVisitor<B> for RunOnBuilt<'_, B> {
    type Output = RunReport;
    fn visit<P: Application<B>>(self, problem: P) -> Result<RunReport> {
        run_checked(&problem, self.method, self.run, self.hooks)
    }
}

/// Runs `method` on `problem` under `run`, with the observers, files, interruption and
/// resumption of `hooks`.
///
/// Errors (never panics) on an invalid method or run spec, a method the problem cannot support
/// (e.g. `lower_level = "contraction"` on a problem without a contraction map), a checkpoint from
/// another method or problem, or a failed metric evaluation. Divergence to NaN/Inf is not an
/// error: the report's termination is [`TerminationReason::NonFinite`] and its final state (and
/// the last checkpoint) is the last finite one.
pub fn run_application<B: AutodiffBackend, P: Application<B>>(
    problem: &P,
    method: &MethodSpec,
    run: &RunSpec,
    hooks: RunHooks<B>,
) -> Result<RunReport> {
    run.validate()?;
    run_checked(problem, method, run, hooks)
}

/// [`run_application`] with `run` already checked; `method` is checked when its solver is built.
fn run_checked<B: AutodiffBackend, P: Application<B>>(
    problem: &P,
    method: &MethodSpec,
    run: &RunSpec,
    hooks: RunHooks<B>,
) -> Result<RunReport> {
    if problem.x_dim() == 0 || problem.y_dim() == 0 {
        return Err(BilevelError::ShapeMismatch {
            what: format!("dimensions of problem `{}` (x, y)", problem.id()),
            expected: vec![1, 1],
            got: vec![problem.x_dim(), problem.y_dim()],
        }
        .into());
    }
    method.build_with(Runner {
        problem,
        method,
        run,
        hooks,
    })
}

/// The application's metric values at `(x, y)`, checked against `names`.
fn evaluate_at<B: AutodiffBackend, P: Application<B>>(
    problem: &P,
    x: &Tensor<B, 1>,
    y: &Tensor<B, 1>,
    names: &[&'static str],
) -> Result<Vec<f64>> {
    let metrics = problem.evaluate(x, y)?;
    if metrics.len() != names.len() {
        return Err(BilevelError::ShapeMismatch {
            what: format!("metrics of `{}` ({names:?})", problem.id()),
            expected: vec![names.len()],
            got: vec![metrics.len()],
        }
        .into());
    }
    Ok(metrics.into_iter().map(|m| m.value).collect())
}

enum Start<B: AutodiffBackend> {
    Fresh(State<B>),
    Resume(Checkpoint),
}

struct Runner<'a, B: AutodiffBackend, P: Application<B>> {
    problem: &'a P,
    method: &'a MethodSpec,
    run: &'a RunSpec,
    hooks: RunHooks<B>,
}

impl<B: AutodiffBackend, P: Application<B>> SolverVisitor<B> for Runner<'_, B, P> {
    type Output = RunReport;

    fn visit<S: Solver<B>>(self, solver: S) -> Result<RunReport> {
        let Runner {
            problem,
            method,
            run,
            hooks,
        } = self;
        let names = problem.metric_names();
        let resume_iter = hooks.resume.as_ref().map(|r| r.checkpoint.state.iter);
        if let Some(r) = &hooks.resume {
            r.checkpoint
                .state
                .check_dims(problem.x_dim(), problem.y_dim())?;
            // (A checkpoint past max_iters is refused by the executor, naming max_iters.)
            if r.checkpoint.state.iter <= run.max_iters {
                check_records_cover(&r.records, r.checkpoint.state.iter, run.eval_every)?;
            }
        }

        let jsonl = match &hooks.checkpoint_dir {
            Some(dir) => {
                let path = dir.join(RECORDS_FILE);
                let records = hooks
                    .resume
                    .as_ref()
                    .map(|r| r.records.as_slice())
                    .unwrap_or_default();
                Some((path.clone(), prepare_jsonl(&path, records)?))
            }
            None => None,
        };
        let csv = match &hooks.csv {
            Some(path) => Some(match resume_iter {
                Some(iter) => CsvWriter::resume(path, &names, iter)?,
                None => CsvWriter::create(path, &names)?,
            }),
            None => None,
        };
        let sinks = Rc::new(RefCell::new(Sinks {
            records: hooks
                .resume
                .as_ref()
                .map(|r| r.records.clone())
                .unwrap_or_default(),
            jsonl,
            csv,
            error: None,
        }));

        let start = match &hooks.resume {
            Some(r) => Start::Resume(r.checkpoint.clone()),
            None => {
                let (x0, y0) = problem.initial_point(run.seed)?;
                let state = State::new(x0, y0, run.seed);
                let values = evaluate_at(
                    problem,
                    &solver.reported_x(&state),
                    &solver.reported_y(&state),
                    &names,
                )?;
                let record = IterRecord {
                    iter: 0,
                    wall_time_s: 0.0,
                    outer_loss: None,
                    hypergrad_norm: None,
                    counts: OracleCounts::default(),
                    metrics: names.iter().map(|n| n.to_string()).zip(values).collect(),
                };
                let mut s = sinks.borrow_mut();
                s.keep(&record);
                s.csv_row(&record);
                if let Some(e) = s.error.take() {
                    return Err(e.into());
                }
                Start::Fresh(state)
            }
        };

        let eval_every = run.eval_every;
        let mut executor = Executor::new(problem, solver).configure(|_| run.executor_config());
        if !names.is_empty() {
            let metric_names = names.clone();
            executor = executor.add_metrics(&names, eval_every, move |point| {
                evaluate_at(problem, &point.x, &point.y, &metric_names).map_err(|e| match e {
                    ProblemError::Bilevel(e) => e,
                    other => BilevelError::Evaluation(other.to_string()),
                })
            });
        }
        executor = executor.add_observer(
            KeepRecords(Rc::clone(&sinks)),
            ObserverMode::Every(eval_every),
        );
        if hooks.csv.is_some() {
            executor = executor.add_observer(
                CsvRows(Rc::clone(&sinks)),
                ObserverMode::Every(hooks.csv_every.unwrap_or(eval_every).max(1)),
            );
        }
        if hooks.progress {
            executor = executor.add_observer(ProgressBar::new(run.max_iters), ObserverMode::Always);
        }
        for (obs, mode) in hooks.observers {
            executor = executor.add_observer(BoxedObserver(obs), mode);
        }
        if let Some(dir) = &hooks.checkpoint_dir {
            executor = executor.checkpointing(Checkpointing {
                path: dir.join(CHECKPOINT_FILE),
                every: run.checkpoint_every.unwrap_or(0),
                run: hooks.run_id.clone(),
            });
        }
        if let Some(flag) = hooks.interrupt {
            executor = executor.interrupt_flag(flag);
        }
        let outcome: RunOutcome<B> = match start {
            Start::Resume(checkpoint) => executor.resume(&checkpoint)?,
            Start::Fresh(state) => executor.run(state)?,
        };

        let state = &outcome.state;
        let last = sinks.borrow().records.last().cloned();
        let final_values = match last.filter(|r| r.iter == state.iter) {
            Some(r) if r.metrics.iter().all(|(_, v)| !v.is_nan()) || names.is_empty() => {
                r.metrics.iter().map(|(_, v)| *v).collect()
            }
            _ => {
                let values =
                    evaluate_at(problem, &outcome.reported.x, &outcome.reported.y, &names)?;
                // An interrupted run continues later: its records must not hold an off-cadence
                // row that an uninterrupted run would not have.
                if outcome.termination != TerminationReason::Interrupted {
                    let record = IterRecord {
                        iter: state.iter,
                        wall_time_s: outcome.elapsed_s,
                        outer_loss: state.outer_loss,
                        hypergrad_norm: state.hypergradient.as_ref().map(norm),
                        counts: state.counts,
                        metrics: names
                            .iter()
                            .map(|n| n.to_string())
                            .zip(values.iter().copied())
                            .collect(),
                    };
                    let mut s = sinks.borrow_mut();
                    s.keep(&record);
                    // The CSV's last row is the final state, with its metrics.
                    s.csv_row(&record);
                    if let Some(e) = s.error.take() {
                        return Err(e.into());
                    }
                }
                values
            }
        };
        let mut final_metrics: Vec<Metric> = names
            .iter()
            .zip(final_values)
            .map(|(n, v)| Metric::new(n, v))
            .collect();
        // End-of-run metrics (a run that was interrupted continues later, and is evaluated
        // when it ends).
        let final_names = problem.final_metric_names();
        if !final_names.is_empty() && outcome.termination != TerminationReason::Interrupted {
            let extra = problem.evaluate_final(&outcome.reported.x, &outcome.reported.y)?;
            let got: Vec<&str> = extra.iter().map(|m| m.name.as_str()).collect();
            if got != final_names {
                return Err(BilevelError::ShapeMismatch {
                    what: format!("end-of-run metrics of `{}` ({final_names:?})", problem.id()),
                    expected: vec![final_names.len()],
                    got: vec![extra.len()],
                }
                .into());
            }
            final_metrics.extend(extra);
        }
        let records = std::mem::take(&mut sinks.borrow_mut().records);
        let final_y = to_vec(outcome.reported.y.clone())?;
        let final_x = to_vec(outcome.reported.x.clone())?;
        let alternatives = outcome
            .alternatives
            .iter()
            .map(|point| {
                let values = evaluate_at(problem, &point.x, &point.y, &names)?;
                Ok(ReportedMetrics {
                    name: point.name.to_string(),
                    x: to_vec(point.x.clone())?,
                    metrics: names
                        .iter()
                        .zip(values)
                        .map(|(n, v)| Metric::new(n, v))
                        .collect(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RunReport {
            problem: problem.id().to_string(),
            method: method.name().to_string(),
            seed: run.seed,
            records,
            termination: outcome.termination.clone(),
            final_metrics,
            wall_time_s: outcome.elapsed_s,
            iterations: state.iter,
            counts: state.counts,
            final_x,
            final_y,
            alternatives,
            warnings: outcome.warnings.clone(),
        })
    }
}
