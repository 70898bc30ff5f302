//! AID-BiO: approximate implicit differentiation (paper 004, Ji–Yang–Liang, Alg. 1 "AID";
//! AID-FP and AID-CG as in Grazzi et al. 2020; increasing inner steps as in Ghadimi–Wang 2018).
//!
//! At outer iteration `k`, with `α` = [`AidConfig::inner_step`]:
//!
//! 1. **Inner loop** (`T_k` steps of GD on `g(x_k, ·)`):
//!    `y ← y − α ∇_y g(x_k, y)`, from `y_k^0 = y_{k−1}^T` (warm start, the paper's choice) or from
//!    `0` ([`AidConfig::warm_start_inner`] off). `T_k = T` ([`InnerSteps::Constant`],
//!    "AID-BiO-constant") or `T_k = ⌈c (k+1)^{1/4}⌉` ([`InnerSteps::Increasing`],
//!    "AID-BiO-increasing", the schedule of Ghadimi–Wang's analysis; computed in `f64`).
//! 2. **Linear system** `H v = ∇_y f(x_k, y_k^T)`, `H = ∇²_yy g(x_k, y_k^T)`, by
//!    - [`LinearSolver::ConjugateGradient`]: `N` CG steps (the paper's rule), optionally stopping
//!      once `‖∇_y f − H v‖ ≤ tol · ‖∇_y f‖`, or
//!    - [`LinearSolver::FixedPoint`] (AID-FP): `N` steps of `v ← v − η (H v − ∇_y f)`,
//!
//!    from `v_k^0 = v_{k−1}^N` (warm start, [`AidConfig::warm_start_linear`]) or from `0`.
//! 3. **Hypergradient** `ĝ_k = ∇_x f(x_k, y_k^T) − ∇_x∇_y g(x_k, y_k^T) · v_k^N`.
//!
//! `y_k^T` and `v_k^N` are stored in [`State::y`] and [`State::v`] (whether or not the next
//! iteration warm-starts from them), and `f(x_k, y_k^T)` in [`State::outer_loss`]. The outer step
//! `x_{k+1} = x_k − β ĝ_k` is [`bilevel_core::OuterLoop`]'s.
//!
//! # Stochastic AID ([`AidBatches`])
//!
//! By default every oracle call uses the full data set
//! ([`Batch::Full`](bilevel_core::Batch::Full)): deterministic AID, as paper 004 states it.
//! With mini-batches — the stochastic AID-FP / AID-CG baselines of papers
//! 004 (§4) and 000 (§4.2, Fig. 3), after hypertorch's implementation — each inner step draws a
//! fresh batch `S_t` of `g`'s samples, `∇f(x_k, y_k^T)` (both `∇_x f` and the right-hand side
//! `∇_y f`) uses one batch `D_F` of `f`'s samples, the linear system's Hessian one batch `D_H`
//! for all `N` products (CG and the fixed point then solve one system `H(D_H) v = ∇_y f(D_F)`),
//! and the Jacobian product one batch `D_G`. The batches are drawn with replacement from
//! [`State::rng`] in the order `S_0, …, S_{T_k−1}, D_F, D_H, D_G`; a batch size of `None` draws
//! nothing, so full-batch AID's random stream (and results) do not change.
//!
//! # Oracle calls per iteration
//!
//! - `grad_g`: `T_k`;
//! - `grad_f`: 1;
//! - `hvp`: CG `N`, **plus 1** when it warm-starts from a nonzero `v` (the initial residual
//!   `∇_y f − H v₀` costs one product; from `v₀ = 0` it is free, so a zero `v` is not passed as a
//!   warm start); fixed point `N` from any `v₀`;
//! - `jvp`: 1;
//!
//! and no bare function values. CG makes fewer products only when it stops early (a tolerance was
//! set and met, an exactly zero residual, or non-positive curvature `pᵀHp`).

use crate::validate::{check_batch, FIXED_POINT, GRADIENT_DESCENT};
use bilevel_core::inner::{gradient_descent, InnerGd};
use bilevel_core::linear::{conjugate_gradient, fixed_point, CgConfig, FixedPointConfig};
use bilevel_core::preflight::{Demands, Side};
use bilevel_core::tensor::{norm, scalar};
use bilevel_core::{BilevelError, BilevelProblem, HypergradientEstimator, Oracle, Result, State};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

/// Number of inner gradient steps `T_k` at outer iteration `k`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum InnerSteps {
    /// `T_k = T` (AID-BiO-constant, paper 004).
    Constant {
        /// `T ≥ 1`.
        steps: usize,
    },
    /// `T_k = ⌈c (k+1)^{1/4}⌉` (AID-BiO-increasing, Ghadimi–Wang 2018).
    Increasing {
        /// `c > 0`.
        scale: f64,
    },
}

impl InnerSteps {
    /// `T_k` for the 0-based outer iteration `k`.
    pub fn at(&self, k: u64) -> usize {
        match *self {
            InnerSteps::Constant { steps } => steps,
            InnerSteps::Increasing { scale } => {
                (scale * (k as f64 + 1.0).powf(0.25)).ceil().max(1.0) as usize
            }
        }
    }

    /// Checks `T ≥ 1`, or `c > 0` and finite.
    pub fn validate(&self) -> Result<()> {
        match *self {
            InnerSteps::Constant { steps: 0 } => Err(BilevelError::invalid(
                "inner_steps",
                "must be ≥ 1 (with no inner step y never moves)",
            )),
            InnerSteps::Increasing { scale } if !(scale > 0.0 && scale.is_finite()) => {
                Err(BilevelError::invalid(
                    "inner_steps_growth",
                    format!("must be > 0 and finite, got {scale}"),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// How AID solves `∇²_yy g · v = ∇_y f`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum LinearSolver {
    /// Conjugate gradient (AID-CG, the rule of paper 004 Alg. 1).
    ConjugateGradient {
        /// Number of CG updates `N ≥ 1` (one Hessian-vector product each).
        steps: usize,
        /// Stop early when `‖∇_y f − H v‖ ≤ tol · ‖∇_y f‖`; with `0` that test is off, but CG
        /// still stops early on an exactly zero residual or a direction of non-positive or
        /// rounding-level curvature (`bilevel_core::linear::conjugate_gradient`).
        tol: f64,
    },
    /// Fixed point `v ← v − η (H v − ∇_y f)` (AID-FP); contracts for `0 < η < 2/λ_max(H)`.
    FixedPoint {
        /// Step `η > 0`.
        step: f64,
        /// Number of updates `N ≥ 1` (one Hessian-vector product each).
        steps: usize,
    },
}

impl LinearSolver {
    /// `N`, the number of updates.
    pub fn steps(&self) -> usize {
        match *self {
            LinearSolver::ConjugateGradient { steps, .. }
            | LinearSolver::FixedPoint { steps, .. } => steps,
        }
    }

    /// Checks `N ≥ 1`, `tol ≥ 0`, `η > 0`.
    pub fn validate(&self) -> Result<()> {
        if self.steps() == 0 {
            let key = match self {
                LinearSolver::ConjugateGradient { .. } => "cg_steps",
                LinearSolver::FixedPoint { .. } => "linear_steps",
            };
            return Err(BilevelError::invalid(
                key,
                "must be ≥ 1 (with no update v is never solved for)",
            ));
        }
        match *self {
            LinearSolver::ConjugateGradient { tol, .. } if !(tol >= 0.0 && tol.is_finite()) => Err(
                BilevelError::invalid("cg_tol", format!("must be ≥ 0 and finite, got {tol}")),
            ),
            LinearSolver::FixedPoint { step, .. } if !(step > 0.0 && step.is_finite()) => Err(
                BilevelError::invalid("linear_step", format!("must be > 0 and finite, got {step}")),
            ),
            _ => Ok(()),
        }
    }
}

/// Mini-batch sizes of stochastic AID (module documentation, "Stochastic AID"); `None` is the
/// full data set, and the default (all `None`) is deterministic AID.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AidBatches {
    /// Samples of each inner GD step (`S_t`, a fresh draw per step).
    pub inner: Option<usize>,
    /// Samples of `∇f(x_k, y_k^T)` (`D_F`: `∇_x f` and the linear system's right-hand side).
    pub outer: Option<usize>,
    /// Samples of the linear system's Hessian (`D_H`, one draw for all `N` products).
    pub hessian: Option<usize>,
    /// Samples of the Jacobian-vector product `∇_x∇_y g · v` (`D_G`).
    pub jacobian: Option<usize>,
}

impl AidBatches {
    /// Checks that every mini-batch has at least one sample.
    pub fn validate(&self) -> Result<()> {
        check_batch("inner_batch", self.inner)?;
        check_batch("outer_batch", self.outer)?;
        check_batch("hessian_batch", self.hessian)?;
        check_batch("jacobian_batch", self.jacobian)
    }
}

/// Settings of [`Aid`]; its serde form is the `[algorithm]` table of `aid-cg` / `aid-fp` (see
/// [`AidTable`]).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "AidTable", into = "AidTable")]
pub struct AidConfig {
    /// Inner GD step `α > 0` (contracts for `α < 2/L_g`).
    pub inner_step: f64,
    /// Inner steps `T_k`.
    pub inner_steps: InnerSteps,
    /// Start the inner loop from the previous `y_k^T` (paper 004) instead of `0`.
    pub warm_start_inner: bool,
    /// Solver of `H v = ∇_y f` and its `N`.
    pub linear_solver: LinearSolver,
    /// Start the linear solver from the previous `v_k^N` (paper 004) instead of `0`.
    pub warm_start_linear: bool,
    /// Mini-batch sizes (default: all full, deterministic AID).
    pub batches: AidBatches,
}

impl Default for AidConfig {
    /// Paper 004's AID-BiO-constant with warm starts: `α = 0.1`, `T = 10`, `N = 10` CG steps.
    fn default() -> Self {
        Self {
            inner_step: 0.1,
            inner_steps: InnerSteps::Constant { steps: 10 },
            warm_start_inner: true,
            linear_solver: LinearSolver::ConjugateGradient {
                steps: 10,
                tol: 0.0,
            },
            warm_start_linear: true,
            batches: AidBatches::default(),
        }
    }
}

/// The flat `[algorithm]` table of `aid-cg` / `aid-fp`, the serde form of [`AidConfig`]:
///
/// ```toml
/// inner_step = 0.1            # α
/// inner_steps = 10            # T (or inner_steps_growth = c: T_k = ⌈c (k+1)^{1/4}⌉)
/// warm_start_inner = true
/// cg_steps = 10               # aid-cg: N CG steps, stop early at cg_tol (0: only on
///                             # a zero residual or non-positive curvature)
/// cg_tol = 0.0
/// # linear_step = 0.1         # aid-fp: N = linear_steps fixed-point steps of size η
/// # linear_steps = 10
/// warm_start_linear = true
/// # inner_batch = 100         # stochastic AID: samples per inner step, of ∇f, of the
/// # outer_batch = 100         # linear system's Hessian and of the Jacobian product
/// # hessian_batch = 100       # (each a number or "full", the default)
/// # jacobian_batch = 100
/// ```
///
/// The CG keys and the fixed-point keys select the solver and cannot be combined.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AidTable {
    /// Inner GD step `α`.
    pub inner_step: f64,
    /// Inner steps `T` (ignored when `inner_steps_growth` is set).
    pub inner_steps: usize,
    /// `c > 0`: `T_k = ⌈c (k+1)^{1/4}⌉` instead of `inner_steps` (AID-increasing).
    pub inner_steps_growth: Option<f64>,
    /// Warm-start the inner loop.
    pub warm_start_inner: bool,
    /// CG steps `N` (aid-cg).
    pub cg_steps: Option<usize>,
    /// Relative CG residual tolerance, 0 = run all `N` (aid-cg).
    pub cg_tol: Option<f64>,
    /// Fixed-point step `η` (aid-fp).
    pub linear_step: Option<f64>,
    /// Fixed-point steps `N` (aid-fp).
    pub linear_steps: Option<usize>,
    /// Warm-start the linear solver.
    pub warm_start_linear: bool,
    /// Samples per inner step (`"full"`: the whole data set).
    #[serde(with = "crate::table::batch")]
    pub inner_batch: Option<usize>,
    /// Samples of `∇f`.
    #[serde(with = "crate::table::batch")]
    pub outer_batch: Option<usize>,
    /// Samples of the linear system's Hessian.
    #[serde(with = "crate::table::batch")]
    pub hessian_batch: Option<usize>,
    /// Samples of the Jacobian-vector product.
    #[serde(with = "crate::table::batch")]
    pub jacobian_batch: Option<usize>,
}

impl Default for AidTable {
    /// [`AidConfig::default`]'s keys with no solver key set (= CG with `N = 10`, `tol = 0`), so
    /// that a table naming the fixed-point keys alone selects AID-FP.
    fn default() -> Self {
        Self {
            cg_steps: None,
            cg_tol: None,
            ..AidConfig::default().into()
        }
    }
}

impl From<AidConfig> for AidTable {
    fn from(c: AidConfig) -> Self {
        let (inner_steps, inner_steps_growth) = match c.inner_steps {
            InnerSteps::Constant { steps } => (steps, None),
            InnerSteps::Increasing { scale } => (10, Some(scale)),
        };
        let (cg_steps, cg_tol, linear_step, linear_steps) = match c.linear_solver {
            LinearSolver::ConjugateGradient { steps, tol } => (Some(steps), Some(tol), None, None),
            LinearSolver::FixedPoint { step, steps } => (None, None, Some(step), Some(steps)),
        };
        Self {
            inner_step: c.inner_step,
            inner_steps,
            inner_steps_growth,
            warm_start_inner: c.warm_start_inner,
            cg_steps,
            cg_tol,
            linear_step,
            linear_steps,
            warm_start_linear: c.warm_start_linear,
            inner_batch: c.batches.inner,
            outer_batch: c.batches.outer,
            hessian_batch: c.batches.hessian,
            jacobian_batch: c.batches.jacobian,
        }
    }
}

impl TryFrom<AidTable> for AidConfig {
    type Error = BilevelError;

    fn try_from(t: AidTable) -> Result<Self> {
        let cg = t.cg_steps.is_some() || t.cg_tol.is_some();
        let fixed_point = t.linear_step.is_some() || t.linear_steps.is_some();
        let linear_solver = match (cg, fixed_point) {
            (true, true) => {
                return Err(BilevelError::invalid(
                    if t.cg_steps.is_some() { "cg_steps" } else { "cg_tol" },
                    "the CG keys (cg_steps, cg_tol: aid-cg) and the fixed-point keys                      (linear_step, linear_steps: aid-fp) cannot be combined",
                ))
            }
            // Keys left out take the defaults of `AidConfig::fixed_point` / `AidConfig::default`.
            (false, true) => match AidConfig::fixed_point().linear_solver {
                LinearSolver::FixedPoint { step, steps } => LinearSolver::FixedPoint {
                    step: t.linear_step.unwrap_or(step),
                    steps: t.linear_steps.unwrap_or(steps),
                },
                other => other,
            },
            _ => match AidConfig::default().linear_solver {
                LinearSolver::ConjugateGradient { steps, tol } => {
                    LinearSolver::ConjugateGradient {
                        steps: t.cg_steps.unwrap_or(steps),
                        tol: t.cg_tol.unwrap_or(tol),
                    }
                }
                other => other,
            },
        };
        Ok(Self {
            inner_step: t.inner_step,
            inner_steps: match t.inner_steps_growth {
                Some(scale) => InnerSteps::Increasing { scale },
                None => InnerSteps::Constant {
                    steps: t.inner_steps,
                },
            },
            warm_start_inner: t.warm_start_inner,
            linear_solver,
            warm_start_linear: t.warm_start_linear,
            batches: AidBatches {
                inner: t.inner_batch,
                outer: t.outer_batch,
                hessian: t.hessian_batch,
                jacobian: t.jacobian_batch,
            },
        })
    }
}

impl AidConfig {
    /// AID-FP's defaults: [`AidConfig::default`] with `N = 10` fixed-point steps of `η = 0.1`.
    pub fn fixed_point() -> Self {
        Self {
            linear_solver: LinearSolver::FixedPoint {
                step: 0.1,
                steps: 10,
            },
            ..Self::default()
        }
    }

    /// Checks every field; errors are [`BilevelError::InvalidParameter`].
    pub fn validate(&self) -> Result<()> {
        if !(self.inner_step > 0.0 && self.inner_step.is_finite()) {
            return Err(BilevelError::invalid(
                "inner_step",
                format!("must be > 0 and finite, got {}", self.inner_step),
            ));
        }
        self.inner_steps.validate()?;
        self.linear_solver.validate()?;
        self.batches.validate()
    }
}

/// The AID-BiO hypergradient estimator (see the module documentation for the rule and its
/// oracle counts).
#[derive(Clone, Debug, PartialEq)]
pub struct Aid {
    config: AidConfig,
}

impl Aid {
    /// An estimator with a validated configuration.
    pub fn new(config: AidConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &AidConfig {
        &self.config
    }
}

impl<B: AutodiffBackend> HypergradientEstimator<B> for Aid {
    fn name(&self) -> String {
        let solver = match self.config.linear_solver {
            LinearSolver::ConjugateGradient { .. } => "aid-cg",
            LinearSolver::FixedPoint { .. } => "aid-fp",
        };
        match self.config.inner_steps {
            InnerSteps::Constant { .. } => solver.to_string(),
            InnerSteps::Increasing { .. } => format!("{solver}-increasing"),
        }
    }

    fn demands(&self) -> Demands {
        let c = &self.config;
        let b = &c.batches;
        let d = Demands::new()
            .step("inner_step", c.inner_step, GRADIENT_DESCENT)
            .batch("inner_batch", Side::Inner, b.inner)
            .batch("outer_batch", Side::Outer, b.outer)
            .batch("hessian_batch", Side::Inner, b.hessian)
            .batch("jacobian_batch", Side::Inner, b.jacobian);
        match c.linear_solver {
            LinearSolver::ConjugateGradient { .. } => d.conjugate_gradient("cg_steps"),
            LinearSolver::FixedPoint { step, .. } => d.step("linear_step", step, FIXED_POINT),
        }
    }

    fn validate(&self) -> Result<()> {
        self.config.validate()
    }

    fn estimate<P: BilevelProblem<B>>(
        &mut self,
        oracle: &mut Oracle<'_, B, P>,
        state: &mut State<B>,
    ) -> Result<Tensor<B, 1>> {
        let cfg = self.config;
        let x = state.x.clone();
        let y0 = if cfg.warm_start_inner {
            state.y.clone()
        } else {
            state.y.zeros_like()
        };
        let inner = InnerGd {
            step: cfg.inner_step,
            steps: cfg.inner_steps.at(state.iter),
        };
        // S_0..S_{T−1} (drawn as the steps ask for them, so that no list of T batches is
        // kept), then D_F, D_H, D_G; a `None` size draws nothing (Batch::Full).
        let (inner_len, outer_len) = (oracle.problem().inner_len(), oracle.problem().outer_len());
        let b = cfg.batches;
        let rng = &mut state.rng;
        let y = gradient_descent(oracle, &x, y0, &inner, |_| rng.batch(inner_len, b.inner))?;
        let outer_batch = state.rng.batch(outer_len, b.outer);
        let hessian_batch = state.rng.batch(inner_len, b.hessian);
        let jacobian_batch = state.rng.batch(inner_len, b.jacobian);
        let gf = oracle.grad_f(&x, &y, &outer_batch)?;
        let hvp =
            |oracle: &mut Oracle<'_, B, P>, z: &Tensor<B, 1>| oracle.hvp(&x, &y, z, &hessian_batch);
        let report = match cfg.linear_solver {
            LinearSolver::ConjugateGradient { steps, tol } => {
                // A zero warm start would cost a product for a residual we already know (= b).
                let v0 = (cfg.warm_start_linear && norm(&state.v) > 0.0).then(|| state.v.clone());
                conjugate_gradient(
                    |z| hvp(oracle, z),
                    &gf.y,
                    v0,
                    &CgConfig {
                        max_iters: steps,
                        tol,
                    },
                )?
            }
            LinearSolver::FixedPoint { step, steps } => {
                let v0 = cfg.warm_start_linear.then(|| state.v.clone());
                fixed_point(
                    |z| hvp(oracle, z),
                    &gf.y,
                    v0,
                    &FixedPointConfig {
                        step,
                        max_iters: steps,
                        tol: 0.0,
                    },
                )?
            }
        };
        let v = report.solution;
        let jv = oracle.jvp(&x, &y, &v, &jacobian_batch)?;
        state.outer_loss = Some(scalar(gf.value));
        state.y = y;
        state.v = v;
        Ok(gf.x.sub(jv))
    }
}
