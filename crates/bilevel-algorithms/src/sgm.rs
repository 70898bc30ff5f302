//! SGM: the switching gradient method for the lower level without strong convexity (paper 003,
//! Chen–Xu–Zhang, "Bilevel Optimization without Lower-level Strong Convexity from the
//! Hyper-objective Perspective", Alg. 1; after Polyak's switching gradient method for
//! functionally constrained problems).
//!
//! At a fixed `x`, SGM approximates an optimistic lower-level solution
//! `argmin_{y ∈ Y*(x)} f(x, y)`, `Y*(x) = argmin_{y ∈ Y} g(x, y)`, reading the constraint
//! `y ∈ Y*(x)` as `g(x, y) ≤ g*(x)`. With `τ` = [`SgmConfig::step`], `K₀` =
//! [`SgmConfig::lower_value_steps`], `K` = [`SgmConfig::switching_steps`], `θ` =
//! [`SgmConfig::feasibility_threshold`] and `P_Y` the projection onto
//! [`SgmConfig::lower_constraint`]:
//!
//! 1. `ŷ₀ = y₀`; `ŷ_{k+1} = P_Y(ŷ_k − τ ∇_y g(x, ŷ_k))`, `k < K₀`; `ĝ*(x) = g(x, ŷ_{K₀})`.
//! 2. From `y₀` again (as printed: the second loop starts at `y₀`, not at `ŷ_{K₀}`), for `k < K`:
//!    if `g(x, y_k) − ĝ*(x) ≤ 2θ`, then `y_{k+1} = P_Y(y_k − τ ∇_y f(x, y_k))` and `k ∈ I`;
//!    otherwise `y_{k+1} = P_Y(y_k − τ ∇_y g(x, y_k))`.
//! 3. `y_out = (1/|I|) Σ_{k ∈ I} y_k` (the feasible iterates, not `y_K`).
//!
//! The paper's `∂_y` (subgradients) are gradients here. Theorem 6.1 (compact `Y` of diameter
//! `R`, `f`, `g` convex in `y` and Lipschitz, gradient dominance or weak sharp minimum) gives
//! `|f(x, y_out) − φ(x)| ≤ ζ` and `g(x, y_out) − g*(x) ≤ ζ` for suitable `τ, θ, K₀, K`
//! (its Appendix G is not in our copy). When no iterate is feasible (`I = ∅`) `y_out` is
//! undefined and [`Sgm::solve`] fails with [`BilevelError::InvalidParameter`] naming `K`/`θ`.
//!
//! # Oracle calls per solve (always [`Batch::Full`])
//!
//! - `grad_g`: `K₀ + (K − |I|)`;
//! - `grad_f`: `|I|` (each gives `∇_x f` and `∇_y f` from one backward; `∇_y f` is used);
//! - `g_values`: `K + 1` (`ĝ*(x)` and the test at every `y_k`);
//! - no `f` values, HVPs or JVPs. [`SgmOutput::feasible_steps`] reports `|I|`.

use crate::validate::SGM_ON_G;
use bilevel_core::preflight::Demands;
use bilevel_core::tensor::scalar;
use bilevel_core::{
    Batch, BilevelError, BilevelProblem, Constraint, Oracle, Result, Solver, State,
};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

/// Settings of [`Sgm`] (paper 003, Alg. 1).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgmConfig {
    /// Step `τ > 0` of every projected gradient step (on `g` and on `f`).
    pub step: f64,
    /// Steps `K₀ ≥ 1` of projected gradient descent on `g` that estimate `g*(x)`.
    pub lower_value_steps: usize,
    /// Switching steps `K ≥ 1`.
    pub switching_steps: usize,
    /// Threshold `θ > 0`: `y_k` counts as feasible when `g(x, y_k) − ĝ*(x) ≤ 2θ`.
    pub feasibility_threshold: f64,
    /// The lower-level set `Y` (compact in Theorem 6.1; [`Constraint::Unconstrained`] runs the
    /// same steps without projection).
    pub lower_constraint: Constraint,
}

impl Default for SgmConfig {
    /// `τ = 0.1`, `K₀ = 100`, `K = 1000`, `θ = 1e-2` (the middle of the paper's tuning grid
    /// `{1e-1, 1e-2, 1e-3}`, §7.1), `Y = ℝ^{d_y}`. `τ` and `K` are problem-dependent: the
    /// paper tunes its step sizes over a grid and gives no default.
    fn default() -> Self {
        Self {
            step: 0.1,
            lower_value_steps: 100,
            switching_steps: 1000,
            feasibility_threshold: 1e-2,
            lower_constraint: Constraint::Unconstrained,
        }
    }
}

impl SgmConfig {
    /// Checks every field; errors are [`BilevelError::InvalidParameter`].
    pub fn validate(&self) -> Result<()> {
        if !(self.step > 0.0 && self.step.is_finite()) {
            return Err(BilevelError::invalid(
                "step",
                format!("must be > 0 and finite, got {}", self.step),
            ));
        }
        if self.lower_value_steps == 0 {
            return Err(BilevelError::invalid(
                "lower_value_steps",
                "must be ≥ 1 (with no step ĝ*(x) = g(x, y₀) does not estimate g*(x))",
            ));
        }
        if self.switching_steps == 0 {
            return Err(BilevelError::invalid(
                "switching_steps",
                "must be ≥ 1 (with no step there is no iterate to average)",
            ));
        }
        if !(self.feasibility_threshold > 0.0 && self.feasibility_threshold.is_finite()) {
            return Err(BilevelError::invalid(
                "feasibility_threshold",
                format!("must be > 0 and finite, got {}", self.feasibility_threshold),
            ));
        }
        self.lower_constraint.validate()
    }
}

/// What one SGM solve returns.
#[derive(Clone, Debug)]
pub struct SgmOutput<B: AutodiffBackend> {
    /// `y_out`, the mean of the feasible iterates `{y_k : k ∈ I}`.
    pub solution: Tensor<B, 1>,
    /// `ĝ*(x) = g(x, ŷ_{K₀})`, the estimate of the lower-level optimal value.
    pub lower_value_estimate: f64,
    /// `|I|`, the number of steps taken on `f` (iterates that passed the test).
    pub feasible_steps: usize,
    /// `y_K`, the last switching iterate (not the output; for diagnostics).
    pub last_iterate: Tensor<B, 1>,
}

/// The switching gradient method (see the module documentation for the rule and its counts).
#[derive(Clone, Debug, PartialEq)]
pub struct Sgm {
    config: SgmConfig,
}

impl Sgm {
    /// A solver with a validated configuration.
    pub fn new(config: SgmConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &SgmConfig {
        &self.config
    }

    /// Runs Alg. 1 at `x` from `y0` (which should lie in `Y`: it is used unprojected, as
    /// printed).
    pub fn solve<B: AutodiffBackend, P: BilevelProblem<B>>(
        &self,
        oracle: &mut Oracle<'_, B, P>,
        x: &Tensor<B, 1>,
        y0: Tensor<B, 1>,
    ) -> Result<SgmOutput<B>> {
        let cfg = &self.config;
        let full = Batch::Full;
        let project = |y: Tensor<B, 1>| cfg.lower_constraint.project(y);

        let mut y_hat = y0.clone();
        for _ in 0..cfg.lower_value_steps {
            let grad = oracle.grad_g_y(x, &y_hat, &full)?;
            y_hat = project(y_hat.sub(grad.mul_scalar(cfg.step)));
        }
        let lower_value_estimate = scalar(oracle.g_value(x, &y_hat, &full)?);

        let mut y = y0;
        let mut feasible_sum: Option<Tensor<B, 1>> = None;
        let mut feasible_steps = 0usize;
        for _ in 0..cfg.switching_steps {
            let gap = scalar(oracle.g_value(x, &y, &full)?) - lower_value_estimate;
            let grad = if gap <= 2.0 * cfg.feasibility_threshold {
                feasible_steps += 1;
                feasible_sum = Some(match feasible_sum {
                    Some(sum) => sum.add(y.clone()),
                    None => y.clone(),
                });
                oracle.grad_f(x, &y, &full)?.y
            } else {
                oracle.grad_g_y(x, &y, &full)?
            };
            y = project(y.sub(grad.mul_scalar(cfg.step)));
        }
        let solution = feasible_sum
            .ok_or_else(|| {
                BilevelError::invalid(
                    "switching_steps/feasibility_threshold",
                    format!(
                        "no iterate of {} passed g(x, y_k) − ĝ*(x) ≤ 2θ = {:e}, so y_out is \
                         undefined: raise K or θ",
                        cfg.switching_steps,
                        2.0 * cfg.feasibility_threshold
                    ),
                )
            })?
            .mul_scalar(1.0 / feasible_steps as f64);
        Ok(SgmOutput {
            solution,
            lower_value_estimate,
            feasible_steps,
            last_iterate: y,
        })
    }
}

/// `sgm` as a runnable method: one SGM solve (Alg. 1) per iteration at the fixed initial `x`,
/// from the previous output `y`; `outer_loss = f(x, y_out)`, so a run shows `f(x₀, y_out) → φ(x₀)`.
/// No hypergradient: the upper variable never moves (SGM is IGFM's lower-level sub-routine,
/// not an outer method).
#[derive(Clone, Debug, PartialEq)]
pub struct SgmAtFixedX {
    sgm: Sgm,
}

impl SgmAtFixedX {
    /// A solver with a validated configuration.
    pub fn new(config: SgmConfig) -> Result<Self> {
        Ok(Self {
            sgm: Sgm::new(config)?,
        })
    }
}

impl<B: AutodiffBackend> Solver<B> for SgmAtFixedX {
    fn name(&self) -> String {
        "sgm".into()
    }

    fn demands(&self) -> Demands {
        Demands::new().step("step", self.sgm.config().step, SGM_ON_G)
    }

    fn validate(&self) -> Result<()> {
        self.sgm.config().validate()
    }

    fn next_iter<P: BilevelProblem<B>>(
        &mut self,
        oracle: &mut Oracle<'_, B, P>,
        mut state: State<B>,
    ) -> Result<State<B>> {
        let out = self.sgm.solve(oracle, &state.x, state.y.clone())?;
        let value = scalar(oracle.f_value(&state.x, &out.solution, &Batch::Full)?);
        state.y = out.solution;
        state.outer_loss = Some(value);
        state.hypergradient = None;
        state.iter += 1;
        Ok(state)
    }
}
