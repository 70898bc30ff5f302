//! ITD-BiO: iterative differentiation through the inner loop (paper 004, Ji–Yang–Liang, Alg. 1
//! "ITD" and Prop. 2; truncated back-propagation as in Shaban et al. 2019).
//!
//! At outer iteration `k`, with `α` = [`ItdConfig::inner_step`] and `T` =
//! [`ItdConfig::inner_steps`]:
//!
//! 1. **Inner loop**: `y_{t+1} = y_t − α ∇_y g(x_k, y_t)`, `t = 0..T−1`, from `y_0 = y_{k−1}^T`
//!    (warm start, paper 004) or `0`; the iterates are recorded.
//! 2. **Reverse accumulation** of `ĝ_k = ∂f(x_k, y_T(x_k))/∂x_k` through the recorded steps
//!    (`y_0` is a constant: the warm start is not differentiated through):
//!    `a = ∇_y f(x_k, y_T)`, `ĝ = ∇_x f(x_k, y_T)`; for `t = T−1, …, T−K`:
//!    `ĝ ← ĝ − α J(y_t) a`, then `a ← a − α H(y_t) a`, with `H(y_t) a = ∇²_yy g(x_k, y_t) · a` and
//!    `J(y_t) a = ∇_x∇_y g(x_k, y_t) · a`, both from one double backward
//!    ([`Oracle::hvp_jvp`]).
//!
//! `K = T` (full ITD) or `K` = [`ItdConfig::truncation`] (truncated ITD: only the last `K` steps
//! are differentiated, as if `y_{T−K}` did not depend on `x`; only those `K` iterates are kept in
//! memory). `y_T` goes to [`State::y`] and `f(x_k, y_T)` to [`State::outer_loss`]; [`State::v`] is
//! not used.
//!
//! # Oracle calls per iteration (always [`Batch::Full`])
//!
//! `grad_g`: `T`; `grad_f`: 1; `hvp`: `K`; `jvp`: `K` (one `hvp_jvp` per differentiated step,
//! including the last one, whose `H a` is not needed but comes from the same double backward);
//! no bare function values.

use crate::validate::GRADIENT_DESCENT;
use bilevel_core::inner::{gradient_descent, gradient_descent_trajectory, InnerGd, InnerStep};
use bilevel_core::preflight::Demands;
use bilevel_core::tensor::scalar;
use bilevel_core::{
    Batch, BilevelError, BilevelProblem, HypergradientEstimator, Oracle, Result, State,
};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

/// Settings of [`Itd`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ItdConfig {
    /// Inner GD step `α > 0`.
    pub inner_step: f64,
    /// Inner steps `T ≥ 1`.
    pub inner_steps: usize,
    /// Start the inner loop from the previous `y_T` (paper 004) instead of `0`.
    pub warm_start: bool,
    /// Differentiate through the last `K` steps only (`1 ≤ K ≤ T`); `None` = all `T`.
    pub truncation: Option<usize>,
}

impl Default for ItdConfig {
    /// Paper 004's ITD-BiO with warm start: `α = 0.1`, `T = 10`, full back-propagation.
    fn default() -> Self {
        Self {
            inner_step: 0.1,
            inner_steps: 10,
            warm_start: true,
            truncation: None,
        }
    }
}

impl ItdConfig {
    /// Checks every field; errors are [`BilevelError::InvalidParameter`].
    pub fn validate(&self) -> Result<()> {
        if !(self.inner_step > 0.0 && self.inner_step.is_finite()) {
            return Err(BilevelError::invalid(
                "inner_step",
                format!("must be > 0 and finite, got {}", self.inner_step),
            ));
        }
        if self.inner_steps == 0 {
            return Err(BilevelError::invalid(
                "inner_steps",
                "must be ≥ 1 (with no inner step ĝ would ignore the lower level)",
            ));
        }
        if let Some(k) = self.truncation {
            if k == 0 || k > self.inner_steps {
                return Err(BilevelError::invalid(
                    "truncation",
                    format!(
                        "must lie in 1..=inner_steps = 1..={}, got {k}",
                        self.inner_steps
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `K`, the number of differentiated steps.
    pub fn differentiated_steps(&self) -> usize {
        self.truncation.unwrap_or(self.inner_steps)
    }
}

/// Reverse accumulation through recorded GD steps `y_{t+1} = y_t − α∇_y g(x, y_t)`: from
/// `(ĝ, a) = (∇_x f, ∇_y f)` at `y_T`, for `t = T−1, …, 0`: `ĝ ← ĝ − α J(y_t) a`,
/// `a ← a − α H(y_t) a` (one [`Oracle::hvp_jvp`] per step). Returns `(ĝ, a_0)`: `a_0` is the
/// adjoint of `y_0`, which MAML-type estimators transport back to `x` (`crate::maml`).
pub(crate) fn reverse_accumulate<B: AutodiffBackend, P: BilevelProblem<B>>(
    oracle: &mut Oracle<'_, B, P>,
    x: &Tensor<B, 1>,
    trajectory: &[InnerStep<B>],
    mut grad: Tensor<B, 1>,
    mut adjoint: Tensor<B, 1>,
    step: f64,
) -> Result<(Tensor<B, 1>, Tensor<B, 1>)> {
    for t in trajectory.iter().rev() {
        let (hv, jv) = oracle.hvp_jvp(x, &t.y, &adjoint, &t.batch)?;
        grad = grad.sub(jv.mul_scalar(step));
        adjoint = adjoint.sub(hv.mul_scalar(step));
    }
    Ok((grad, adjoint))
}

/// The ITD-BiO hypergradient estimator (see the module documentation for the rule and its
/// oracle counts).
#[derive(Clone, Debug, PartialEq)]
pub struct Itd {
    config: ItdConfig,
}

impl Itd {
    /// An estimator with a validated configuration.
    pub fn new(config: ItdConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &ItdConfig {
        &self.config
    }
}

impl<B: AutodiffBackend> HypergradientEstimator<B> for Itd {
    fn name(&self) -> String {
        match self.config.truncation {
            None => "itd".into(),
            Some(k) => format!("itd-truncated-{k}"),
        }
    }

    fn demands(&self) -> Demands {
        let c = &self.config;
        let (key, kept) = match c.truncation {
            Some(k) => ("truncation", k.min(c.inner_steps)),
            None => ("inner_steps", c.inner_steps),
        };
        Demands::new()
            .step("inner_step", c.inner_step, GRADIENT_DESCENT)
            .stored(key, kept.saturating_add(1))
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
        let y0 = if cfg.warm_start {
            state.y.clone()
        } else {
            state.y.zeros_like()
        };
        let kept = cfg.differentiated_steps();
        // The first T − K steps are not differentiated, so their iterates are not stored.
        let head = InnerGd {
            step: cfg.inner_step,
            steps: cfg.inner_steps - kept,
        };
        let y_head = gradient_descent(oracle, &x, y0, &head, |_| Batch::Full)?;
        let tail = InnerGd {
            step: cfg.inner_step,
            steps: kept,
        };
        let (y, trajectory) =
            gradient_descent_trajectory(oracle, &x, y_head, &tail, |_| Batch::Full)?;
        let gf = oracle.grad_f(&x, &y, &Batch::Full)?;
        let (grad, _) = reverse_accumulate(oracle, &x, &trajectory, gf.x, gf.y, cfg.inner_step)?;
        state.outer_loss = Some(scalar(gf.value));
        state.y = y;
        Ok(grad)
    }
}
