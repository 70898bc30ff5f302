//! IGFM: the inexact gradient-free method on the hyper-objective (paper 003, Chen–Xu–Zhang,
//! "Bilevel Optimization without Lower-level Strong Convexity from the Hyper-objective
//! Perspective", Alg. 2), with [`crate::sgm`] (Alg. 1) as the sub-routine `A` that evaluates
//! `φ̃(x) ≈ φ(x) = min_{y ∈ Y*(x)} f(x, y)`.
//!
//! At outer iteration `t`, with `η` = [`IgfmConfig::step`], `δ` =
//! [`IgfmConfig::smoothing_radius`] and `d_x = dim x`:
//!
//! 1. `u_t` uniform on the unit sphere of `ℝ^{d_x}` (`z/‖z‖`, `z ~ N(0, I)` from `state.rng`);
//! 2. `φ̃(x_t ± δu_t) = f(x_t ± δu_t, y_out^±)`, `y_out^± = SGM(x_t ± δu_t, y₀, K₀, K, τ, θ)`;
//!    every SGM call starts from the same `y₀` (Alg. 2 passes its input `y₀`), which is the run's
//!    initial [`State::y`] and is never overwritten — unless [`IgfmConfig::warm_start`] is set
//!    (a deviation from Alg. 2 as printed, off by default): then both calls of iteration `t`
//!    start from the mean of the previous iteration's `y_out^±`, which is kept in [`State::y`];
//! 3. `∇̂_t = (d_x / 2δ) (φ̃(x_t + δu_t) − φ̃(x_t − δu_t)) u_t`;
//! 4. `x_{t+1} = x_t − η ∇̂_t` (the [`OuterOptimizer::Sgd`] step of [`OuterLoop`]; [`igfm`]
//!    builds the pair; the problem's upper constraint, `ℝ^{d_x}` in the paper, is projected on).
//!
//! Alg. 2 returns `x_out` chosen uniformly from `{x_t}_{t=0}^{T−1}`. The horizon `T` is the
//! executor's, so the choice is made online by reservoir sampling: `x_t` replaces the kept
//! iterate with probability `1/(t+1)` (a draw `rng.index(t+1) == 0`, before `u_t` is drawn), which
//! leaves each of `x_0..x_{T−1}` kept with probability `1/T` whenever the run stops
//! ([`returned_iterate`]). The best iterate is also tracked ([`best_iterate`]), scored by
//! `(φ̃(x_t + δu_t) + φ̃(x_t − δu_t))/2` — no extra sub-routine call, within `C_φ δ` of `φ(x_t)`
//! for a `C_φ`-Lipschitz `φ` plus the sub-routine's error. Both live in the state, so a resumed run
//! keeps them.
//!
//! # State written per iteration
//!
//! [`State::memory`]: [`RETURNED_X`], [`RETURNED_Y`], [`BEST_X`], [`BEST_Y`], [`EVALUATED_X`],
//! [`LOWER_SOLUTION_PLUS`], [`LOWER_SOLUTION_MINUS`] (`y_out^±`); [`State::scalars`]:
//! [`BEST_VALUE`], [`VALUE_PLUS`], [`VALUE_MINUS`], [`FEASIBLE_STEPS`] (`|I⁺| + |I⁻|`);
//! [`State::outer_loss`] = the score above. [`State::v`] is left alone, and so is [`State::y`]
//! unless [`IgfmConfig::warm_start`] is set (then it is the mean of the last `y_out^±`).
//!
//! # What the method reports
//!
//! Its output is Alg. 2's `x_out` ([`Solver::reported_x`](bilevel_core::Solver::reported_x)),
//! paired with the mean of the `y_out^±` computed around it
//! ([`reported_y`](bilevel_core::Solver::reported_y)); metrics and a run's `final_x` /
//! `final_y` are those. The best-scored iterate (`"best"`) and the last iterate (`"last"`) are
//! reported beside it ([`Solver::reported_alternatives`](bilevel_core::Solver::reported_alternatives)).
//! Before issue #19 the run reported the last iterate, which on `liu-hard` swings between
//! 7e-4 and 0.15 from `x* = 1` (the two-point estimate's noise).
//!
//! # Oracle calls per iteration (always [`Batch::Full`])
//!
//! Two SGM solves plus one `f` value each: `f_values`: 2; `g_values`: `2(K + 1)`;
//! `grad_g`: `2K₀ + 2K − F`; `grad_f`: `F`, with `F = |I⁺| + |I⁻|` ([`FEASIBLE_STEPS`]); no HVP or
//! JVP (the method is Hessian-free and uses no `∇_x`).

use crate::validate::SGM_ON_G;
use bilevel_core::preflight::Demands;
use bilevel_core::tensor::{scalar, vector};
use bilevel_core::{
    Batch, BilevelError, BilevelProblem, Constraint, HypergradientEstimator, Oracle, OuterLoop,
    OuterOptimizer, ReportedPoint, Result, State,
};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use crate::sgm::{Sgm, SgmConfig};

/// [`State::memory`] key of the uniformly chosen iterate `x_out` kept so far.
pub const RETURNED_X: &str = "igfm_returned_x";
/// [`State::memory`] key of the lower-level point paired with [`RETURNED_X`] (the mean of
/// `y_out^±` of the iteration that kept it).
pub const RETURNED_Y: &str = "igfm_returned_y";
/// [`State::memory`] key of the best-scored iterate so far.
pub const BEST_X: &str = "igfm_best_x";
/// [`State::memory`] key of the lower-level point paired with [`BEST_X`].
pub const BEST_Y: &str = "igfm_best_y";
/// [`State::scalars`] key of the best score so far.
pub const BEST_VALUE: &str = "igfm_best_value";
/// [`State::memory`] key of the last iterate `x_t` the estimate was taken at (before its step).
pub const EVALUATED_X: &str = "igfm_evaluated_x";
/// [`State::memory`] key of the last `y_out` at `x_t + δu_t`.
pub const LOWER_SOLUTION_PLUS: &str = "igfm_y_plus";
/// [`State::memory`] key of the last `y_out` at `x_t − δu_t`.
pub const LOWER_SOLUTION_MINUS: &str = "igfm_y_minus";
/// [`State::scalars`] key of the last `φ̃(x_t + δu_t)`.
pub const VALUE_PLUS: &str = "igfm_value_plus";
/// [`State::scalars`] key of the last `φ̃(x_t − δu_t)`.
pub const VALUE_MINUS: &str = "igfm_value_minus";
/// [`State::scalars`] key of the last iteration's `|I⁺| + |I⁻|` (SGM steps taken on `f`).
pub const FEASIBLE_STEPS: &str = "igfm_feasible_steps";

/// Settings of IGFM (paper 003, Alg. 2); the horizon `T` is the executor's `max_iters`.
///
/// Its serde form is the flat `[algorithm]` table of `igfm` ([`IgfmTable`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "IgfmTable", into = "IgfmTable")]
pub struct IgfmConfig {
    /// Outer step `η > 0`.
    pub step: f64,
    /// Smoothing radius `δ > 0` of the two-point estimate.
    pub smoothing_radius: f64,
    /// The sub-routine `A`: SGM's `K₀, K, τ, θ` and `Y`.
    pub lower_solver: SgmConfig,
    /// Start SGM at iteration `t` from the mean of iteration `t − 1`'s `y_out^±` instead of the
    /// run's `y₀`. Off (`false`) is Alg. 2 as printed. With few lower-level steps per call
    /// (paper 003 §7.2 runs 10) a cold start leaves `y` far from `Y*(x)` at every call, as AID
    /// and ITD without their warm starts would; the option lets IGFM accumulate lower-level
    /// progress across outer iterations the way those methods do.
    pub warm_start: bool,
}

impl Default for IgfmConfig {
    /// `η = 0.1` (the paper tunes it over `{1e2, …, 1e-5}`), `δ = 1e-3` (paper §7.1), default
    /// SGM.
    fn default() -> Self {
        Self {
            step: 0.1,
            smoothing_radius: 1e-3,
            lower_solver: SgmConfig::default(),
            warm_start: false,
        }
    }
}

/// The flat `[algorithm]` table of `igfm`, the serde form of [`IgfmConfig`]: `step`,
/// `smoothing_radius`, and SGM's keys with its step renamed `sgm_step`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IgfmTable {
    /// Outer step `η`.
    pub step: f64,
    /// Smoothing radius `δ`.
    pub smoothing_radius: f64,
    /// SGM step `τ`.
    pub sgm_step: f64,
    /// SGM `K₀`.
    pub lower_value_steps: usize,
    /// SGM `K`.
    pub switching_steps: usize,
    /// SGM `θ`.
    pub feasibility_threshold: f64,
    /// SGM's set `Y`.
    pub lower_constraint: Constraint,
    /// [`IgfmConfig::warm_start`].
    pub warm_start: bool,
}

impl Default for IgfmTable {
    fn default() -> Self {
        IgfmConfig::default().into()
    }
}

impl From<IgfmConfig> for IgfmTable {
    fn from(c: IgfmConfig) -> Self {
        let s = c.lower_solver;
        Self {
            step: c.step,
            smoothing_radius: c.smoothing_radius,
            sgm_step: s.step,
            lower_value_steps: s.lower_value_steps,
            switching_steps: s.switching_steps,
            feasibility_threshold: s.feasibility_threshold,
            lower_constraint: s.lower_constraint,
            warm_start: c.warm_start,
        }
    }
}

impl From<IgfmTable> for IgfmConfig {
    fn from(t: IgfmTable) -> Self {
        Self {
            step: t.step,
            smoothing_radius: t.smoothing_radius,
            lower_solver: SgmConfig {
                step: t.sgm_step,
                lower_value_steps: t.lower_value_steps,
                switching_steps: t.switching_steps,
                feasibility_threshold: t.feasibility_threshold,
                lower_constraint: t.lower_constraint,
            },
            warm_start: t.warm_start,
        }
    }
}

impl IgfmConfig {
    /// Checks every field; errors are [`BilevelError::InvalidParameter`] naming the table key
    /// (SGM's `step` is `sgm_step`).
    pub fn validate(&self) -> Result<()> {
        if !(self.step > 0.0 && self.step.is_finite()) {
            return Err(BilevelError::invalid(
                "step",
                format!("must be > 0 and finite, got {}", self.step),
            ));
        }
        if !(self.smoothing_radius > 0.0 && self.smoothing_radius.is_finite()) {
            return Err(BilevelError::invalid(
                "smoothing_radius",
                format!("must be > 0 and finite, got {}", self.smoothing_radius),
            ));
        }
        self.lower_solver.validate().map_err(|e| match e {
            BilevelError::InvalidParameter { name, reason } if name == "step" => {
                BilevelError::InvalidParameter {
                    name: "sgm_step".into(),
                    reason,
                }
            }
            e => e,
        })
    }
}

/// The zeroth-order estimate `∇̂_t` of IGFM (steps 1–3 of the module documentation), with the
/// returned and best iterates kept in the state.
#[derive(Clone, Debug, PartialEq)]
pub struct IgfmEstimator {
    config: IgfmConfig,
    sgm: Sgm,
}

impl IgfmEstimator {
    /// An estimator with a validated configuration.
    pub fn new(config: IgfmConfig) -> Result<Self> {
        config.validate()?;
        let sgm = Sgm::new(config.lower_solver.clone())?;
        Ok(Self { config, sgm })
    }

    /// The configuration.
    pub fn config(&self) -> &IgfmConfig {
        &self.config
    }
}

/// IGFM as printed: [`IgfmEstimator`] with the plain step `x_{t+1} = x_t − η ∇̂_t`.
pub fn igfm(config: IgfmConfig) -> Result<OuterLoop<IgfmEstimator>> {
    let step = config.step;
    Ok(OuterLoop::new(
        IgfmEstimator::new(config)?,
        OuterOptimizer::sgd(step),
    ))
}

/// The iterate Alg. 2 returns: uniform over `x_0..x_{T−1}` after `T` iterations (`None` before
/// the first).
pub fn returned_iterate<B: AutodiffBackend>(state: &State<B>) -> Option<Tensor<B, 1>> {
    state.memory.get(RETURNED_X).cloned()
}

/// The iterate with the lowest score `(φ̃(x_t + δu_t) + φ̃(x_t − δu_t))/2` so far, and the score.
pub fn best_iterate<B: AutodiffBackend>(state: &State<B>) -> Option<(Tensor<B, 1>, f64)> {
    Some((
        state.memory.get(BEST_X)?.clone(),
        *state.scalars.get(BEST_VALUE)?,
    ))
}

/// A direction uniform on the unit sphere of `ℝ^d`.
fn unit_direction<B: AutodiffBackend>(state: &mut State<B>, d: usize) -> Tensor<B, 1> {
    loop {
        let z = state.rng.normal_vec(d);
        let n = z.iter().map(|v| v * v).sum::<f64>().sqrt();
        // A zero draw has probability 0; redrawing keeps the direction uniform.
        if n > 0.0 {
            let u: Vec<f64> = z.iter().map(|v| v / n).collect();
            return vector(&u, &state.x.device());
        }
    }
}

impl<B: AutodiffBackend> HypergradientEstimator<B> for IgfmEstimator {
    fn name(&self) -> String {
        "igfm".into()
    }

    fn demands(&self) -> Demands {
        Demands::new().step("sgm_step", self.config.lower_solver.step, SGM_ON_G)
    }

    fn validate(&self) -> Result<()> {
        self.config.validate()
    }

    fn estimate<P: BilevelProblem<B>>(
        &mut self,
        oracle: &mut Oracle<'_, B, P>,
        state: &mut State<B>,
    ) -> Result<Tensor<B, 1>> {
        let delta = self.config.smoothing_radius;
        let x = state.x.clone();
        let d = x.dims()[0];
        let keep_as_returned = state.rng.index(state.iter as usize + 1) == 0;
        if keep_as_returned {
            state.memory.insert(RETURNED_X.into(), x.clone());
        }
        let u = unit_direction(state, d);
        let mut evaluate = |point: Tensor<B, 1>| -> Result<(f64, Tensor<B, 1>, usize)> {
            let out = self.sgm.solve(oracle, &point, state.y.clone())?;
            let value = scalar(oracle.f_value(&point, &out.solution, &Batch::Full)?);
            Ok((value, out.solution, out.feasible_steps))
        };
        let (plus, y_plus, f_plus) = evaluate(x.clone().add(u.clone().mul_scalar(delta)))?;
        let (minus, y_minus, f_minus) = evaluate(x.clone().sub(u.clone().mul_scalar(delta)))?;
        let score = 0.5 * (plus + minus);
        let x_t = x.clone();
        // The lower-level point reported with x_t: the mean of y_out^± at x_t ± δu_t.
        let paired = y_plus.clone().add(y_minus.clone()).mul_scalar(0.5);
        if !score.is_finite() {
            return Err(BilevelError::NonFinite {
                what: "IGFM's φ̃(x ± δu)".into(),
            });
        }
        if state
            .scalars
            .get(BEST_VALUE)
            .is_none_or(|&best| score < best)
        {
            state.memory.insert(BEST_X.into(), x);
            state.memory.insert(BEST_Y.into(), paired.clone());
            state.scalars.insert(BEST_VALUE.into(), score);
        }
        if keep_as_returned {
            state.memory.insert(RETURNED_Y.into(), paired.clone());
        }
        if self.config.warm_start {
            state.y = paired;
        }
        state.memory.insert(EVALUATED_X.into(), x_t);
        state.memory.insert(LOWER_SOLUTION_PLUS.into(), y_plus);
        state.memory.insert(LOWER_SOLUTION_MINUS.into(), y_minus);
        state.scalars.insert(VALUE_PLUS.into(), plus);
        state.scalars.insert(VALUE_MINUS.into(), minus);
        state
            .scalars
            .insert(FEASIBLE_STEPS.into(), (f_plus + f_minus) as f64);
        state.outer_loss = Some(score);
        Ok(u.mul_scalar(d as f64 / (2.0 * delta) * (plus - minus)))
    }

    /// Alg. 2's output `x_out` ([`RETURNED_X`]); [`State::x`] before the first iteration.
    fn reported_x(&self, state: &State<B>) -> Tensor<B, 1> {
        returned_iterate(state).unwrap_or_else(|| state.x.clone())
    }

    /// The lower-level point paired with `x_out`: the mean of `y_out^±` computed at
    /// `x_out ± δu` in the iteration that kept it ([`RETURNED_Y`]). IGFM leaves [`State::y`] at
    /// the run's `y₀` (every SGM call restarts there), which is reported before the first
    /// iteration.
    fn reported_y(&self, state: &State<B>) -> Tensor<B, 1> {
        state
            .memory
            .get(RETURNED_Y)
            .cloned()
            .unwrap_or_else(|| state.y.clone())
    }

    /// `"best"`: the best-scored iterate ([`BEST_X`], [`BEST_Y`]); `"last"`: the last iterate
    /// the estimate was taken at ([`EVALUATED_X`], i.e. `x_{T−1}` after `T` iterations), with
    /// the mean of its `y_out^±`. Empty before the first iteration.
    fn reported_alternatives(&self, state: &State<B>) -> Vec<ReportedPoint<B>> {
        let mut points = Vec::new();
        if let (Some(x), Some(y)) = (state.memory.get(BEST_X), state.memory.get(BEST_Y)) {
            points.push(ReportedPoint {
                name: "best",
                x: x.clone(),
                y: y.clone(),
            });
        }
        if let (Some(x), Some(plus), Some(minus)) = (
            state.memory.get(EVALUATED_X),
            state.memory.get(LOWER_SOLUTION_PLUS),
            state.memory.get(LOWER_SOLUTION_MINUS),
        ) {
            points.push(ReportedPoint {
                name: "last",
                x: x.clone(),
                y: plus.clone().add(minus.clone()).mul_scalar(0.5),
            });
        }
        points
    }
}
