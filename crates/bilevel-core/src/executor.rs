//! The outer loop: runs a [`Solver`] from a [`State`] until a stopping rule fires, feeding
//! observers and writing checkpoints (argmin's `Executor`).
//!
//! Stopping is data ([`TerminationReason`]), not an error. Divergence to NaN/Inf stops the run
//! with [`TerminationReason::NonFinite`] and returns the last finite state; the last checkpoint
//! written is of a finite state too.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use crate::error::{BilevelError, Result};
use crate::observers::{IterRecord, Observe, ObserverMode};
use crate::preflight::{self, PreflightConfig, Warning};
use crate::problem::BilevelProblem;
use crate::second_order::{Oracle, SecondOrder};
use crate::solver::{ReportedPoint, Solver};
use crate::state::{State, StateRecord};
use crate::tensor::{norm, scalar};
use crate::termination::TerminationReason;

/// Stopping rules and the second-order mode.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecutorConfig {
    /// Total outer iterations (counted from 0, including those before a resume).
    pub max_iters: u64,
    /// Wall-clock budget of this invocation.
    pub time_budget: Option<Duration>,
    /// Stop when `‖ĝ_k‖ ≤ tol`.
    pub hypergrad_tol: Option<f64>,
    /// How the oracle forms second-order products.
    pub second_order: SecondOrder,
    /// How the method's settings are checked against the problem before the run
    /// ([`crate::preflight`]): the curvature estimate's size, and whether warnings are errors.
    pub preflight: PreflightConfig,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            max_iters: 100,
            time_budget: None,
            hypergrad_tol: None,
            second_order: SecondOrder::Exact,
            preflight: PreflightConfig::default(),
        }
    }
}

/// Where and how often to checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpointing {
    /// File the checkpoint is written to (atomically: temp file, then rename).
    pub path: PathBuf,
    /// Write every `every` iterations (0: only at the end), and always at the end.
    pub every: u64,
    /// What identifies the run (e.g. a hash of its problem, method and seeds): written into
    /// every checkpoint, and [`Executor::resume`] refuses a checkpoint of another run.
    pub run: Option<String>,
}

/// A checkpoint on disk: JSON with a SHA-256 `digest` of its content, so that a file that was
/// edited or damaged after it was written is refused on load.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Name of the solver that wrote it.
    pub solver: String,
    /// The algorithm's wall time before the checkpoint (as [`RunOutcome::elapsed_s`]).
    pub elapsed_s: f64,
    /// The state.
    pub state: StateRecord,
    /// The run it belongs to ([`Checkpointing::run`]).
    #[serde(default)]
    pub run: Option<String>,
}

/// The key of the digest in a checkpoint file.
const DIGEST: &str = "digest";

impl Checkpoint {
    /// SHA-256 (hex) of the checkpoint's JSON without the digest.
    fn digest(&self) -> Result<String> {
        use sha2::{Digest, Sha256};
        let text =
            serde_json::to_string(self).map_err(|e| BilevelError::Checkpoint(e.to_string()))?;
        Ok(Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }

    /// Reads a checkpoint file; fails if its digest is missing or does not match its content
    /// (the file was edited, damaged, or written by a version without digests).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| BilevelError::io(path, e))?;
        let bad = |why: String| BilevelError::Checkpoint(format!("{}: {why}", path.display()));
        let mut value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let stored = value
            .as_object_mut()
            .and_then(|o| o.remove(DIGEST))
            .and_then(|d| d.as_str().map(str::to_string))
            .ok_or_else(|| {
                bad("it has no digest (not written by this version of bilevel)".into())
            })?;
        let checkpoint: Self = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        if checkpoint.digest()? != stored {
            return Err(bad(
                "its content does not match its digest: it was edited or damaged after it was \
                 written"
                    .into(),
            ));
        }
        Ok(checkpoint)
    }

    /// Writes atomically (a crash leaves the previous checkpoint intact), with its digest.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut value =
            serde_json::to_value(self).map_err(|e| BilevelError::Checkpoint(e.to_string()))?;
        if let Some(object) = value.as_object_mut() {
            object.insert(DIGEST.into(), serde_json::Value::String(self.digest()?));
        }
        let text =
            serde_json::to_string(&value).map_err(|e| BilevelError::Checkpoint(e.to_string()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| BilevelError::io(dir, e))?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(|e| BilevelError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| BilevelError::io(path, e))
    }
}

/// The result of a run.
#[derive(Debug)]
pub struct RunOutcome<B: AutodiffBackend> {
    /// The final (finite) state.
    pub state: State<B>,
    /// Why the run stopped.
    pub termination: TerminationReason,
    /// The algorithm's wall time, including time before a resume and excluding time spent
    /// evaluating metrics, in observers and writing checkpoints.
    pub elapsed_s: f64,
    /// The method's output at the final state ([`Solver::reported_x`] and
    /// [`Solver::reported_y`]); for most methods `(state.x, state.y)`, for IGFM Alg. 2's
    /// returned iterate.
    pub reported: ReportedPoint<B>,
    /// Further points the method reports beside its output ([`Solver::reported_alternatives`]).
    pub alternatives: Vec<ReportedPoint<B>>,
    /// What the check of the method's settings against the problem found before the run
    /// ([`crate::preflight::check`]; also printed to stderr as `warning: …`).
    pub warnings: Vec<Warning>,
}

impl<B: AutodiffBackend> RunOutcome<B> {
    /// The outcome, or an error if the run diverged ([`TerminationReason::NonFinite`]):
    /// `Executor::run(..)?.into_result()?` for callers that treat divergence as a failure.
    /// [`Executor::run`] itself returns `Ok` on divergence so that the last finite state (and
    /// its checkpoint) is not lost; check [`RunOutcome::termination`] or call this.
    pub fn into_result(self) -> Result<Self> {
        match &self.termination {
            TerminationReason::NonFinite(what) => Err(BilevelError::NonFinite {
                what: format!(
                    "{what} (after iteration {}; the last finite state is in the outcome's \
                     checkpoint, if one was written)",
                    self.state.iter
                ),
            }),
            _ => Ok(self),
        }
    }
}

/// What a metric sees after an iteration: the state and the method's reported point at that
/// state ([`Solver::reported_x`], [`Solver::reported_y`]), so a metric evaluates the method's
/// output (IGFM's returned iterate, not its last one) without access to the solver.
#[derive(Debug)]
pub struct MetricPoint<'s, B: AutodiffBackend> {
    /// The state after the iteration.
    pub state: &'s State<B>,
    /// The method's reported upper-level point.
    pub x: Tensor<B, 1>,
    /// The lower-level point paired with it.
    pub y: Tensor<B, 1>,
}

/// A group of named metrics computed together every `every` iterations.
struct MetricGroup<'a, B: AutodiffBackend> {
    names: Vec<String>,
    every: u64,
    compute: MetricFn<'a, B>,
}

type MetricFn<'a, B> = Box<dyn FnMut(&MetricPoint<'_, B>) -> Result<Vec<f64>> + 'a>;

/// Runs a solver on a problem.
pub struct Executor<'a, B: AutodiffBackend, P: BilevelProblem<B>, S: Solver<B>> {
    problem: &'a P,
    solver: S,
    config: ExecutorConfig,
    observers: Vec<(Box<dyn Observe<B> + 'a>, ObserverMode)>,
    metrics: Vec<MetricGroup<'a, B>>,
    checkpointing: Option<Checkpointing>,
    interrupt: Option<Arc<AtomicBool>>,
}

impl<'a, B: AutodiffBackend, P: BilevelProblem<B>, S: Solver<B>> Executor<'a, B, P, S> {
    /// An executor with default settings.
    pub fn new(problem: &'a P, solver: S) -> Self {
        Self {
            problem,
            solver,
            config: ExecutorConfig::default(),
            observers: Vec::new(),
            metrics: Vec::new(),
            checkpointing: None,
            interrupt: None,
        }
    }

    /// Adjusts the configuration.
    pub fn configure(mut self, f: impl FnOnce(ExecutorConfig) -> ExecutorConfig) -> Self {
        self.config = f(self.config);
        self
    }

    /// Adds an observer.
    pub fn add_observer(mut self, observer: impl Observe<B> + 'a, mode: ObserverMode) -> Self {
        self.observers.push((Box::new(observer), mode));
        self
    }

    /// Adds a named metric computed at the method's reported point after each recorded
    /// iteration (e.g. the exact `Φ` of a closed-form problem); it appears in every
    /// [`IterRecord`]. Metrics must not call the problem's oracle: they are not counted.
    pub fn add_metric(
        self,
        name: &str,
        mut metric: impl FnMut(&MetricPoint<'_, B>) -> f64 + 'a,
    ) -> Self {
        self.add_metrics(&[name], 1, move |point| Ok(vec![metric(point)]))
    }

    /// Adds metrics that are computed together (e.g. an application's evaluation, which
    /// returns test accuracy and loss from one pass), at the method's reported point, on
    /// records whose iteration is a multiple of `every` (≥ 1); on other records their values
    /// are NaN ("not evaluated"). An error from `compute`, or a result of the wrong length,
    /// ends the run with that error. Metrics must not call the problem's oracle.
    pub fn add_metrics(
        mut self,
        names: &[&str],
        every: u64,
        compute: impl FnMut(&MetricPoint<'_, B>) -> Result<Vec<f64>> + 'a,
    ) -> Self {
        self.metrics.push(MetricGroup {
            names: names.iter().map(|n| n.to_string()).collect(),
            every: every.max(1),
            compute: Box::new(compute),
        });
        self
    }

    /// Writes checkpoints.
    pub fn checkpointing(mut self, c: Checkpointing) -> Self {
        self.checkpointing = Some(c);
        self
    }

    /// Stops cleanly (with a checkpoint) when `flag` becomes true, e.g. from a Ctrl-C handler.
    pub fn interrupt_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.interrupt = Some(flag);
        self
    }

    /// Continues from a checkpoint written by the same solver on the same problem (and, when
    /// [`Checkpointing::run`] is set, by the same run), at most at `max_iters`.
    pub fn resume(self, checkpoint: &Checkpoint) -> Result<RunOutcome<B>> {
        let name = self.solver.name();
        if checkpoint.solver != name {
            return Err(BilevelError::Checkpoint(format!(
                "written by solver `{}`, but this run uses `{name}`",
                checkpoint.solver
            )));
        }
        if let Some(run) = self.checkpointing.as_ref().and_then(|c| c.run.as_ref()) {
            if checkpoint.run.as_ref() != Some(run) {
                return Err(BilevelError::Checkpoint(
                    "it belongs to another run (its problem, method or seeds differ from this \
                     run's)"
                        .into(),
                ));
            }
        }
        if checkpoint.state.iter > self.config.max_iters {
            return Err(BilevelError::Checkpoint(format!(
                "it is at iteration {}, past this run's max_iters = {}",
                checkpoint.state.iter, self.config.max_iters
            )));
        }
        checkpoint
            .state
            .check_dims(self.problem.x_dim(), self.problem.y_dim())?;
        let state = State::from_record(&checkpoint.state, &self.problem.device());
        self.run_inner(state, true, checkpoint.elapsed_s)
    }

    /// Runs from a fresh state (the solver's `init` is called first).
    pub fn run(self, state: State<B>) -> Result<RunOutcome<B>> {
        self.run_inner(state, false, 0.0)
    }

    fn run_inner(
        mut self,
        state: State<B>,
        resumed: bool,
        elapsed_before: f64,
    ) -> Result<RunOutcome<B>> {
        self.solver.validate()?;
        crate::tensor::check_len("x0", &state.x, self.problem.x_dim())?;
        crate::tensor::check_len("y0", &state.y, self.problem.y_dim())?;
        let mut oracle = Oracle::with_mode(self.problem, self.config.second_order);
        oracle.validate()?;
        oracle.set_counts(state.counts);
        let warnings = preflight::check(
            self.problem,
            &self.solver.demands(),
            &state.x,
            &state.y,
            self.config.preflight,
        )?;
        for w in &warnings {
            eprintln!("warning: {w}");
        }
        if let Some(flag) = &self.interrupt {
            oracle.set_interrupt(Arc::clone(flag));
        }
        let name = self.solver.name();
        // The run's clock counts the algorithm's time only: time spent evaluating metrics,
        // in observers and writing checkpoints is set aside (`aside`), so that wall times and
        // time-to-target compare methods, not how often they were evaluated. The time budget
        // is on the plain wall clock.
        let start = Instant::now();
        let mut aside = Duration::ZERO;
        let elapsed = |start: &Instant, aside: Duration| {
            elapsed_before + start.elapsed().saturating_sub(aside).as_secs_f64()
        };

        let mut state = if resumed {
            state
        } else {
            self.solver.init(&mut oracle, state)?
        };
        for (obs, _) in &mut self.observers {
            obs.observe_start(&name, &state)?;
        }
        let first_iter = state.iter;
        let termination = loop {
            if state.iter >= self.config.max_iters {
                break TerminationReason::MaxItersReached;
            }
            if let Some(flag) = &self.interrupt {
                if flag.load(Ordering::SeqCst) {
                    break TerminationReason::Interrupted;
                }
            }
            let next = match self.solver.next_iter(&mut oracle, state.clone()) {
                Ok(next) => next,
                Err(BilevelError::NonFinite { what }) => break TerminationReason::NonFinite(what),
                // Noticed between two oracle calls: the run ends at the last completed
                // iteration, whose state (not the half-done one) is checkpointed.
                Err(BilevelError::Interrupted) => break TerminationReason::Interrupted,
                Err(e) => return Err(e),
            };
            let mut next = next;
            next.counts = oracle.counts();
            let grad_norm = next.hypergradient.as_ref().map(norm);
            let x_norm = norm(&next.x);
            if !x_norm.is_finite() {
                break TerminationReason::NonFinite("x".into());
            }
            if grad_norm.is_some_and(|g| !g.is_finite()) {
                break TerminationReason::NonFinite("hypergradient".into());
            }
            if next.outer_loss.is_some_and(|l| !l.is_finite()) {
                break TerminationReason::NonFinite("outer loss".into());
            }
            state = next;
            let now = elapsed(&start, aside);
            let bookkeeping = Instant::now();
            let wanted: Vec<bool> = self
                .observers
                .iter()
                .map(|(_, m)| m.wants(state.iter))
                .collect();
            if wanted.iter().any(|w| *w) {
                let record = self.record(&state, now, grad_norm, false)?;
                for ((obs, _), want) in self.observers.iter_mut().zip(wanted) {
                    if want {
                        obs.observe_iter(&state, &record)?;
                    }
                }
            }
            if let Some(c) = &self.checkpointing {
                if c.every > 0 && state.iter % c.every == 0 {
                    Self::write_checkpoint(c, &name, &state, now)?;
                }
            }
            aside += bookkeeping.elapsed();
            if let (Some(tol), Some(g)) = (self.config.hypergrad_tol, grad_norm) {
                if g <= tol {
                    break TerminationReason::Converged;
                }
            }
            if let Some(budget) = self.config.time_budget {
                if start.elapsed() >= budget {
                    break TerminationReason::Timeout;
                }
            }
        };
        let end = elapsed(&start, aside);
        if let Some(c) = &self.checkpointing {
            Self::write_checkpoint(c, &name, &state, end)?;
        }
        // `ObserverMode::Every(n)` observers also see the last iteration of a run that ends,
        // with every metric evaluated (an interrupted run continues later: its next iteration
        // is not the last).
        let unseen: Vec<bool> = self
            .observers
            .iter()
            .map(|(_, m)| matches!(m, ObserverMode::Every(_)) && !m.wants(state.iter))
            .collect();
        if termination != TerminationReason::Interrupted
            && state.iter > first_iter
            && unseen.iter().any(|u| *u)
        {
            let grad_norm = state.hypergradient.as_ref().map(norm);
            let record = self.record(&state, end, grad_norm, true)?;
            for ((obs, _), unseen) in self.observers.iter_mut().zip(unseen) {
                if unseen {
                    obs.observe_iter(&state, &record)?;
                }
            }
        }
        for (obs, _) in &mut self.observers {
            obs.observe_end(&state, &termination)?;
        }
        let elapsed_s = end;
        Ok(RunOutcome {
            reported: ReportedPoint {
                name: "returned",
                x: self.solver.reported_x(&state),
                y: self.solver.reported_y(&state),
            },
            alternatives: self.solver.reported_alternatives(&state),
            warnings,
            state,
            termination,
            elapsed_s,
        })
    }

    /// The record of `state` (whose `‖ĝ‖` is `hypergrad_norm`), with the metrics on their
    /// cadence, or all of them (`all_metrics`).
    fn record(
        &mut self,
        state: &State<B>,
        wall_time_s: f64,
        hypergrad_norm: Option<f64>,
        all_metrics: bool,
    ) -> Result<IterRecord> {
        Ok(IterRecord {
            iter: state.iter,
            wall_time_s,
            outer_loss: state.outer_loss,
            hypergrad_norm,
            counts: state.counts,
            metrics: self.evaluate_metrics(state, all_metrics)?,
        })
    }

    /// The metric groups' values at the state's reported point (NaN where a group is off its
    /// cadence, unless `all`), named, in the order they were added.
    fn evaluate_metrics(&mut self, state: &State<B>, all: bool) -> Result<Vec<(String, f64)>> {
        let mut values = Vec::new();
        let mut point = None;
        for group in &mut self.metrics {
            if !all && state.iter % group.every != 0 {
                values.extend(group.names.iter().map(|n| (n.clone(), f64::NAN)));
                continue;
            }
            let point = point.get_or_insert_with(|| MetricPoint {
                state,
                x: self.solver.reported_x(state),
                y: self.solver.reported_y(state),
            });
            let got = (group.compute)(point)?;
            if got.len() != group.names.len() {
                return Err(BilevelError::ShapeMismatch {
                    what: format!("values of the metrics {:?}", group.names),
                    expected: vec![group.names.len()],
                    got: vec![got.len()],
                });
            }
            values.extend(group.names.iter().cloned().zip(got));
        }
        Ok(values)
    }

    fn write_checkpoint(
        c: &Checkpointing,
        solver: &str,
        state: &State<B>,
        elapsed_s: f64,
    ) -> Result<()> {
        Checkpoint {
            solver: solver.to_string(),
            elapsed_s,
            state: state.to_record()?,
            run: c.run.clone(),
        }
        .save(&c.path)
    }
}

/// Reads `f(x, y)` of the state's last evaluation, or evaluates it (uncounted) — for metrics.
pub fn outer_value<B: AutodiffBackend, P: BilevelProblem<B>>(problem: &P, state: &State<B>) -> f64 {
    scalar(problem.outer_loss::<B>(
        state.x.clone(),
        state.y.clone(),
        &crate::problem::Batch::Full,
    ))
}
