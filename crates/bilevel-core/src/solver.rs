//! Outer solvers (argmin-style): a solver maps a [`State`] to the next one.
//!
//! Most algorithms split into a [`HypergradientEstimator`] (how `ĝ_k ≈ ∇Φ(x_k)` is formed,
//! including inner and linear solves and their warm starts) and an [`OuterOptimizer`] step
//! `x_{k+1} = P_X(x_k − β_k ĝ_k)` (or Adam), combined by [`OuterLoop`]. Algorithms whose outer
//! step is part of the method (HOAG's backtracking, FSLA's momentum) implement [`Solver`]
//! directly. Data flows one way: an estimator never reaches into the executor.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use crate::error::{BilevelError, Result};
use crate::preflight::Demands;
use crate::problem::BilevelProblem;
use crate::second_order::Oracle;
use crate::state::State;
use crate::tensor::check_finite;

/// One outer iteration of a bilevel method.
pub trait Solver<B: AutodiffBackend> {
    /// Name used in logs and result files.
    fn name(&self) -> String;

    /// Checks the configuration once, before the run.
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// What the method asks of the problem (batch sizes, stored vectors, steps on the inner
    /// curvature), checked against it once before a run ([`crate::preflight::check`]).
    /// Default: nothing.
    fn demands(&self) -> Demands {
        Demands::new()
    }

    /// Prepares a fresh state (not called when resuming from a checkpoint).
    fn init<P: BilevelProblem<B>>(
        &mut self,
        _oracle: &mut Oracle<'_, B, P>,
        state: State<B>,
    ) -> Result<State<B>> {
        Ok(state)
    }

    /// Computes `state_{k+1}` from `state_k`. Must set `hypergradient` and increment `iter`.
    fn next_iter<P: BilevelProblem<B>>(
        &mut self,
        oracle: &mut Oracle<'_, B, P>,
        state: State<B>,
    ) -> Result<State<B>>;

    /// The upper-level point the method returns at `state` — what metrics evaluate and a run
    /// reports as its `final_x`; by default the last iterate [`State::x`]. A method whose
    /// output is another iterate overrides it (IGFM returns Alg. 2's `x_out`, drawn uniformly
    /// from its iterates).
    fn reported_x(&self, state: &State<B>) -> Tensor<B, 1> {
        state.x.clone()
    }

    /// The lower-level point paired with [`Solver::reported_x`] (metrics and a run's
    /// `final_y`); by default [`State::y`]. A method that keeps its lower-level solution
    /// elsewhere (IGFM keeps `y_out^±` in [`State::memory`]) overrides it.
    fn reported_y(&self, state: &State<B>) -> Tensor<B, 1> {
        state.y.clone()
    }

    /// Further `(name, x, y)` points the method reports beside its output, e.g. IGFM's
    /// best-scored iterate (`"best"`) and its last iterate (`"last"`); a run evaluates the
    /// metrics at each at the end. Default: none.
    fn reported_alternatives(&self, _state: &State<B>) -> Vec<ReportedPoint<B>> {
        Vec::new()
    }
}

/// A named `(x, y)` point a method reports beside its output ([`Solver::reported_alternatives`]).
#[derive(Clone, Debug)]
pub struct ReportedPoint<B: AutodiffBackend> {
    /// Its name in reports (e.g. `"best"`).
    pub name: &'static str,
    /// The upper-level point.
    pub x: Tensor<B, 1>,
    /// The lower-level point paired with it.
    pub y: Tensor<B, 1>,
}

/// A hypergradient estimator `ĝ(x_k) ≈ ∇Φ(x_k)`.
pub trait HypergradientEstimator<B: AutodiffBackend> {
    /// Name used in logs and result files.
    fn name(&self) -> String;

    /// Checks the configuration once, before the run.
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// What the method asks of the problem (batch sizes, stored vectors, steps on the inner
    /// curvature), checked against it once before a run ([`crate::preflight::check`]).
    /// Default: nothing.
    fn demands(&self) -> Demands {
        Demands::new()
    }

    /// Checks the estimator against the outer update it runs under (called by
    /// [`OuterLoop`]'s [`Solver::validate`] after both validated alone). Default: any update
    /// fits; TTSA, whose two step schedules must decay in a given order, refuses the others.
    fn check_optimizer(&self, _optimizer: &OuterOptimizer) -> Result<()> {
        Ok(())
    }

    /// Estimates `∇Φ(state.x)`. May update `state.y`, `state.v` (warm starts), `state.rng`,
    /// `state.memory`, `state.scalars` and `state.outer_loss`; must not change `state.x`.
    fn estimate<P: BilevelProblem<B>>(
        &mut self,
        oracle: &mut Oracle<'_, B, P>,
        state: &mut State<B>,
    ) -> Result<Tensor<B, 1>>;

    /// What [`OuterLoop`] reports as [`Solver::reported_x`]; by default [`State::x`].
    fn reported_x(&self, state: &State<B>) -> Tensor<B, 1> {
        state.x.clone()
    }

    /// What [`OuterLoop`] reports as [`Solver::reported_y`]; by default [`State::y`].
    fn reported_y(&self, state: &State<B>) -> Tensor<B, 1> {
        state.y.clone()
    }

    /// What [`OuterLoop`] reports as [`Solver::reported_alternatives`]; by default none.
    fn reported_alternatives(&self, _state: &State<B>) -> Vec<ReportedPoint<B>> {
        Vec::new()
    }
}

/// Step-size schedule `β_k`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum StepSchedule {
    /// `β_k = β`.
    Constant,
    /// `β_k = β / (k + 1)^power` (e.g. TTSA's `k^{−3/5}`).
    InversePower {
        /// Exponent.
        power: f64,
    },
}

impl StepSchedule {
    /// The multiplier of the base step at iteration `k` (0-based).
    pub fn factor(&self, k: u64) -> f64 {
        match *self {
            StepSchedule::Constant => 1.0,
            StepSchedule::InversePower { power } => (k as f64 + 1.0).powf(-power),
        }
    }
}

/// The outer update applied to `ĝ_k`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum OuterOptimizer {
    /// `x ← x − β_k ĝ`.
    Sgd {
        /// Base step `β`.
        lr: f64,
        /// Schedule of `β_k`.
        schedule: StepSchedule,
    },
    /// Adam (Kingma & Ba) on `ĝ`, with bias correction; moments live in the state.
    Adam {
        /// Step.
        lr: f64,
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// Denominator floor.
        eps: f64,
    },
}

impl OuterOptimizer {
    /// Plain SGD with a constant step.
    pub fn sgd(lr: f64) -> Self {
        OuterOptimizer::Sgd {
            lr,
            schedule: StepSchedule::Constant,
        }
    }

    /// Adam with the usual defaults `(0.9, 0.999, 1e-8)`.
    pub fn adam(lr: f64) -> Self {
        OuterOptimizer::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &str, reason: &str| Err(BilevelError::invalid(name, reason));
        match *self {
            OuterOptimizer::Sgd { lr, schedule } => {
                // lr = 0 keeps x at x₀ while the estimator still runs: a frozen-x control.
                if !(lr >= 0.0 && lr.is_finite()) {
                    return bad("outer_lr", "must be ≥ 0 and finite (0 freezes x)");
                }
                if let StepSchedule::InversePower { power } = schedule {
                    if !(power >= 0.0 && power.is_finite()) {
                        return bad("schedule.power", "must be ≥ 0 and finite");
                    }
                }
            }
            OuterOptimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => {
                if !(lr > 0.0 && lr.is_finite()) {
                    return bad("outer_lr", "must be > 0 and finite");
                }
                if !((0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2)) {
                    return bad("beta1/beta2", "must lie in [0, 1)");
                }
                if eps.is_nan() || eps <= 0.0 {
                    return bad("eps", "must be > 0");
                }
            }
        }
        Ok(())
    }

    /// Returns `x_{k+1}` (before projection) from `x_k = state.x` and `ĝ`, updating the
    /// optimizer's memories in `state`.
    pub fn step<B: AutodiffBackend>(
        &self,
        state: &mut State<B>,
        grad: Tensor<B, 1>,
    ) -> Tensor<B, 1> {
        match *self {
            OuterOptimizer::Sgd { lr, schedule } => state
                .x
                .clone()
                .sub(grad.mul_scalar(lr * schedule.factor(state.iter))),
            OuterOptimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => {
                let m = state
                    .memory_or_zeros("adam_m", &grad)
                    .mul_scalar(beta1)
                    .add(grad.clone().mul_scalar(1.0 - beta1));
                let s = state
                    .memory_or_zeros("adam_v", &grad)
                    .mul_scalar(beta2)
                    .add(grad.powi_scalar(2).mul_scalar(1.0 - beta2));
                let t = state.iter as i32 + 1;
                let m_hat = m.clone().mul_scalar(1.0 / (1.0 - beta1.powi(t)));
                let s_hat = s.clone().mul_scalar(1.0 / (1.0 - beta2.powi(t)));
                state.memory.insert("adam_m".into(), m);
                state.memory.insert("adam_v".into(), s);
                state
                    .x
                    .clone()
                    .sub(m_hat.div(s_hat.sqrt().add_scalar(eps)).mul_scalar(lr))
            }
        }
    }
}

/// Estimator + outer optimizer: `x_{k+1} = P_X(opt(x_k, ĝ_k))`.
#[derive(Clone, Debug)]
pub struct OuterLoop<E> {
    /// The hypergradient estimator.
    pub estimator: E,
    /// The outer update.
    pub optimizer: OuterOptimizer,
}

impl<E> OuterLoop<E> {
    /// Combines an estimator with an outer optimizer.
    pub fn new(estimator: E, optimizer: OuterOptimizer) -> Self {
        Self {
            estimator,
            optimizer,
        }
    }
}

impl<B: AutodiffBackend, E: HypergradientEstimator<B>> Solver<B> for OuterLoop<E> {
    fn name(&self) -> String {
        self.estimator.name()
    }

    fn validate(&self) -> Result<()> {
        self.estimator.validate()?;
        self.optimizer.validate()?;
        self.estimator.check_optimizer(&self.optimizer)
    }

    fn demands(&self) -> Demands {
        self.estimator.demands()
    }

    fn next_iter<P: BilevelProblem<B>>(
        &mut self,
        oracle: &mut Oracle<'_, B, P>,
        mut state: State<B>,
    ) -> Result<State<B>> {
        let grad = self.estimator.estimate(oracle, &mut state)?;
        check_finite("hypergradient estimate", &grad)?;
        let x = self.optimizer.step(&mut state, grad.clone());
        state.x = oracle.problem().upper_constraint().project(x);
        state.hypergradient = Some(grad);
        state.iter += 1;
        Ok(state)
    }

    fn reported_x(&self, state: &State<B>) -> Tensor<B, 1> {
        self.estimator.reported_x(state)
    }

    fn reported_y(&self, state: &State<B>) -> Tensor<B, 1> {
        self.estimator.reported_y(state)
    }

    fn reported_alternatives(&self, state: &State<B>) -> Vec<ReportedPoint<B>> {
        self.estimator.reported_alternatives(state)
    }
}
