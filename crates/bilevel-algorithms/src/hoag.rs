//! HOAG: hyperparameter optimization with approximate gradient (Pedregosa 2016, Alg. 1, with the
//! adaptive step of the author's reference implementation `fabianp/hoag`).
//!
//! HOAG owns its outer step (backtracking on `f`), so it is a [`Solver`] rather than a
//! [`bilevel_core::HypergradientEstimator`]. One call of [`Solver::next_iter`] is one trial point.
//! With `α` = [`HoagConfig::inner_step`], the tolerance `ε_k` and the inverse step `L`:
//!
//! 1. **Inner solve to tolerance**: `y ← y − α ∇_y g(x_k, y)` from the previous `y` until
//!    `‖∇_y g(x_k, y)‖ ≤ ε_k` (absolute), at most [`HoagConfig::max_inner_steps`] gradient
//!    evaluations.
//! 2. `f_k = f(x_k, y)`, `∇_x f`, `∇_y f` from one gradient call.
//! 3. **Backtracking on increase**: once a point has been accepted, with value `f_ref` at
//!    `x_ref`, estimate `ĝ_ref` and tolerance `ε_ref`, the comparison of `f_k` with `f_ref` allows
//!    the margin `m_k = ‖v‖ (ε_ref + ε_k)`, `v` the last accepted linear-system solution: at a `y`
//!    with `‖∇_y g‖ ≤ ε` the first-order error of `f` is `|⟨∇_y f, y − y*⟩| ≈ |⟨v*, ∇_y g⟩| ≤
//!    ‖v*‖ ε`, and both values are inexact. (A margin of `ε_k` alone, as in the reference code,
//!    deadlocks here: a stale `f_ref` that came out too low by more than the shrinking margin
//!    rejects every later trial, however short.) If `f_k > f_ref + m_k`, `x_k` is **rejected**:
//!    `L ← 2L` and the next trial point is `x_{k+1} = P_X(x_ref − ĝ_ref / L)`; no linear solve
//!    is made, `v` is kept, and [`State::hypergradient`] is `ĝ_ref` (the estimate this step used).
//! 4. Otherwise (and always at the first trial) `x_k` is **accepted**:
//!    - CG on `H v = ∇_y f`, `H = ∇²_yy g(x_k, y)`, from the previous `v` (a zero `v` is not
//!      passed as a warm start), until `‖∇_y f − H v‖ ≤ ε_k` (absolute), at most
//!      [`HoagConfig::max_cg_steps`] updates;
//!    - `ĝ_k = ∇_x f − ∇_x∇_y g(x_k, y) · v`;
//!    - if `f` decreased sufficiently beyond the margin, `f_k ≤ f_ref − (L/2)‖x_k − x_ref‖² − m_k`
//!      (the descent-lemma test that the current `L` bounds the curvature along the step, made
//!      robust to the inexact values), the step grows mildly: `L ← 0.95 L` (the reference code's
//!      factor); otherwise `L` is kept;
//!    - `(x_ref, ĝ_ref, f_ref, ε_ref) ← (x_k, ĝ_k, f_k, ε_k)` and `x_{k+1} = P_X(x_k − ĝ_k / L)`.
//! 5. `ε_{k+1} = max(ρ ε_k, ε_min)` after every trial, accepted or not (geometric, hence summable
//!    down to the floor `ε_min` that round-off imposes; the reference code's "exponential"
//!    schedule, `ρ` = [`HoagConfig::tolerance_decay`]).
//!
//! `L`, `ε_k`, `f_ref`, `ε_ref` live in [`State::scalars`] and `x_ref`, `ĝ_ref` in
//! [`State::memory`] (keys below), so a checkpoint taken anywhere, even between a rejection and
//! its retry, resumes exactly. The first `L` is `1 /` [`HoagConfig::initial_outer_step`].
//!
//! Differences from the reference code: its tolerances are relative to the first gradient norms,
//! ours are absolute; it never rejects a point (it doubles `L` when `f` increases and moves on),
//! ours rejects and retries from the last accepted point; its increase test has the slack
//! `ε_k + ε_{k−1}(1 + ‖Δx‖)`, ours the scale-aware `m_k`; its first `L` comes from the first
//! `‖ĝ‖`.
//!
//! # Oracle calls per trial (always [`Batch::Full`])
//!
//! `grad_g`: `e_k` (inner gradient evaluations, `≤ max_inner_steps`); `grad_f`: 1; accepted:
//! `hvp` = CG products `p_k ≤ max_cg_steps + 1` (the `+1` is the initial residual of a nonzero
//! warm start), `jvp` = 1; rejected: no `hvp`, no `jvp`. `e_k`, `p_k` and whether the point was
//! accepted are reported in [`State::scalars`] under [`INNER_EVALUATIONS`], [`LINEAR_PRODUCTS`]
//! and [`ACCEPTED`].

use crate::validate::GRADIENT_DESCENT;
use bilevel_core::linear::{conjugate_gradient, CgConfig};
use bilevel_core::preflight::Demands;
use bilevel_core::tensor::{check_finite, norm, scalar};
use bilevel_core::{Batch, BilevelError, BilevelProblem, Oracle, Result, Solver, State};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

/// [`State::scalars`] key of `L` (the outer step is `1/L`).
pub const LIPSCHITZ: &str = "hoag_lipschitz";
/// [`State::scalars`] key of the tolerance `ε_k` of the next trial.
pub const TOLERANCE: &str = "hoag_tolerance";
/// [`State::scalars`] key of `f_ref`, the value at the last accepted point.
pub const REFERENCE_LOSS: &str = "hoag_reference_loss";
/// [`State::scalars`] key of `ε_ref`, the tolerance `f_ref` was computed with.
pub const REFERENCE_TOLERANCE: &str = "hoag_reference_tolerance";
/// [`State::memory`] key of `x_ref`, the last accepted point.
pub const REFERENCE_X: &str = "hoag_reference_x";
/// [`State::memory`] key of `ĝ_ref`, the estimate at the last accepted point.
pub const REFERENCE_HYPERGRADIENT: &str = "hoag_reference_hypergradient";
/// [`State::scalars`] key of the last trial's inner gradient evaluations `e_k` (diagnostic).
pub const INNER_EVALUATIONS: &str = "hoag_inner_evaluations";
/// [`State::scalars`] key of the last trial's CG products `p_k` (diagnostic; 0 if rejected).
pub const LINEAR_PRODUCTS: &str = "hoag_linear_products";
/// [`State::scalars`] key of whether the last trial point was accepted (1) or rejected (0).
pub const ACCEPTED: &str = "hoag_accepted";

/// Factor applied to `L` when a trial point is rejected (the step halves).
const BACKTRACK: f64 = 2.0;
/// Factor applied to `L` after a sufficient decrease (the step grows by 1/0.95).
const GROWTH: f64 = 0.95;

/// Settings of [`Hoag`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HoagConfig {
    /// Inner GD step `α > 0`.
    pub inner_step: f64,
    /// Cap on inner gradient evaluations per trial (`≥ 1`).
    pub max_inner_steps: usize,
    /// Cap on CG updates per trial (`≥ 1`).
    pub max_cg_steps: usize,
    /// `ε_0 > 0`, absolute tolerance of the first inner solve and CG solve.
    pub initial_tolerance: f64,
    /// `ρ ∈ (0, 1)`: `ε_{k+1} = max(ρ ε_k, ε_min)`.
    pub tolerance_decay: f64,
    /// `ε_min ∈ [0, ε_0]`, the floor of `ε_k` (round-off limits how small a gradient can get).
    pub min_tolerance: f64,
    /// First outer step `1/L_0 > 0`.
    pub initial_outer_step: f64,
}

impl Default for HoagConfig {
    /// `α = 0.1`, 1000 inner and 100 CG steps at most, `ε_0 = 1e-2`, `ρ = 0.9`,
    /// `ε_min = 1e-12` (the reference code's values), first step 1.
    fn default() -> Self {
        Self {
            inner_step: 0.1,
            max_inner_steps: 1000,
            max_cg_steps: 100,
            initial_tolerance: 1e-2,
            tolerance_decay: 0.9,
            min_tolerance: 1e-12,
            initial_outer_step: 1.0,
        }
    }
}

impl HoagConfig {
    /// Checks every field; errors are [`BilevelError::InvalidParameter`].
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(BilevelError::invalid(
                    name,
                    format!("must be > 0 and finite, got {v}"),
                ))
            }
        };
        positive("inner_step", self.inner_step)?;
        positive("initial_tolerance", self.initial_tolerance)?;
        positive("initial_outer_step", self.initial_outer_step)?;
        if self.max_inner_steps == 0 {
            return Err(BilevelError::invalid("max_inner_steps", "must be ≥ 1"));
        }
        if self.max_cg_steps == 0 {
            return Err(BilevelError::invalid("max_cg_steps", "must be ≥ 1"));
        }
        if !(self.tolerance_decay > 0.0 && self.tolerance_decay < 1.0) {
            return Err(BilevelError::invalid(
                "tolerance_decay",
                format!(
                    "must lie in (0, 1) for summable tolerances, got {}",
                    self.tolerance_decay
                ),
            ));
        }
        if !(self.min_tolerance >= 0.0 && self.min_tolerance <= self.initial_tolerance) {
            return Err(BilevelError::invalid(
                "min_tolerance",
                format!(
                    "must lie in [0, initial_tolerance = {}], got {}",
                    self.initial_tolerance, self.min_tolerance
                ),
            ));
        }
        Ok(())
    }
}

/// The HOAG solver (see the module documentation for the rule and its oracle counts).
#[derive(Clone, Debug, PartialEq)]
pub struct Hoag {
    config: HoagConfig,
}

impl Hoag {
    /// A solver with a validated configuration.
    pub fn new(config: HoagConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &HoagConfig {
        &self.config
    }

    /// GD on `g(x, ·)` from `y` until `‖∇_y g‖ ≤ tol`; returns `y` and the gradient evaluations.
    fn inner_solve<B: AutodiffBackend, P: BilevelProblem<B>>(
        &self,
        oracle: &mut Oracle<'_, B, P>,
        x: &Tensor<B, 1>,
        mut y: Tensor<B, 1>,
        tol: f64,
    ) -> Result<(Tensor<B, 1>, usize)> {
        let mut evaluations = 0;
        while evaluations < self.config.max_inner_steps {
            let grad = oracle.grad_g_y(x, &y, &Batch::Full)?;
            evaluations += 1;
            let grad_norm = norm(&grad);
            if !grad_norm.is_finite() {
                return Err(BilevelError::NonFinite {
                    what: "HOAG inner gradient".into(),
                });
            }
            if grad_norm <= tol {
                break;
            }
            y = y.sub(grad.mul_scalar(self.config.inner_step));
        }
        Ok((y, evaluations))
    }
}

fn memory<B: AutodiffBackend>(state: &State<B>, key: &str) -> Result<Tensor<B, 1>> {
    state.memory.get(key).cloned().ok_or_else(|| {
        BilevelError::invalid(
            "state",
            format!("HOAG state has `{REFERENCE_LOSS}` but no memory `{key}`"),
        )
    })
}

impl<B: AutodiffBackend> Solver<B> for Hoag {
    fn name(&self) -> String {
        "hoag".into()
    }

    fn demands(&self) -> Demands {
        Demands::new()
            .step("inner_step", self.config.inner_step, GRADIENT_DESCENT)
            .conjugate_gradient("max_cg_steps")
    }

    fn validate(&self) -> Result<()> {
        self.config.validate()
    }

    fn next_iter<P: BilevelProblem<B>>(
        &mut self,
        oracle: &mut Oracle<'_, B, P>,
        mut state: State<B>,
    ) -> Result<State<B>> {
        let cfg = self.config;
        let tol = state
            .scalars
            .get(TOLERANCE)
            .copied()
            .unwrap_or(cfg.initial_tolerance);
        let mut lipschitz = state
            .scalars
            .get(LIPSCHITZ)
            .copied()
            .unwrap_or(1.0 / cfg.initial_outer_step);
        let x = state.x.clone();
        let (y, evaluations) = self.inner_solve(oracle, &x, state.y.clone(), tol)?;
        let gf = oracle.grad_f(&x, &y, &Batch::Full)?;
        let loss = scalar(gf.value);
        if !loss.is_finite() {
            return Err(BilevelError::NonFinite {
                what: "HOAG outer loss".into(),
            });
        }
        let reference = state.scalars.get(REFERENCE_LOSS).copied();
        // m_k = ‖v‖(ε_ref + ε_k) bounds the first-order errors of both inexact values (step 3).
        let margin = match reference {
            Some(_) => {
                let ref_tol = state
                    .scalars
                    .get(REFERENCE_TOLERANCE)
                    .copied()
                    .unwrap_or(tol);
                norm(&state.v) * (ref_tol + tol)
            }
            None => 0.0,
        };
        let rejected = matches!(reference, Some(f_ref) if loss > f_ref + margin);
        let (base, direction, products) = if rejected {
            lipschitz *= BACKTRACK;
            (
                memory(&state, REFERENCE_X)?,
                memory(&state, REFERENCE_HYPERGRADIENT)?,
                0,
            )
        } else {
            let rhs_norm = norm(&gf.y);
            let v0 = (norm(&state.v) > 0.0).then(|| state.v.clone());
            let solve = conjugate_gradient(
                |z| oracle.hvp(&x, &y, z, &Batch::Full),
                &gf.y,
                v0,
                &CgConfig {
                    max_iters: cfg.max_cg_steps,
                    tol: if rhs_norm > 0.0 { tol / rhs_norm } else { 0.0 },
                },
            )?;
            let jv = oracle.jvp(&x, &y, &solve.solution, &Batch::Full)?;
            let grad = gf.x.sub(jv);
            check_finite("HOAG hypergradient", &grad)?;
            if let Some(f_ref) = reference {
                let step = x.clone().sub(memory(&state, REFERENCE_X)?);
                let sq = norm(&step).powi(2);
                if loss <= f_ref - 0.5 * lipschitz * sq - margin {
                    lipschitz *= GROWTH;
                }
            }
            state.scalars.insert(REFERENCE_LOSS.into(), loss);
            state.scalars.insert(REFERENCE_TOLERANCE.into(), tol);
            state.memory.insert(REFERENCE_X.into(), x.clone());
            state
                .memory
                .insert(REFERENCE_HYPERGRADIENT.into(), grad.clone());
            state.v = solve.solution;
            (x, grad, solve.products)
        };
        let next = base.sub(direction.clone().mul_scalar(1.0 / lipschitz));
        state.x = oracle.problem().upper_constraint().project(next);
        state.y = y;
        state.hypergradient = Some(direction);
        state.outer_loss = Some(loss);
        let scalars = &mut state.scalars;
        scalars.insert(LIPSCHITZ.into(), lipschitz);
        scalars.insert(
            TOLERANCE.into(),
            (tol * cfg.tolerance_decay).max(cfg.min_tolerance),
        );
        scalars.insert(INNER_EVALUATIONS.into(), evaluations as f64);
        scalars.insert(LINEAR_PRODUCTS.into(), products as f64);
        scalars.insert(ACCEPTED.into(), if rejected { 0.0 } else { 1.0 });
        state.iter += 1;
        Ok(state)
    }
}
