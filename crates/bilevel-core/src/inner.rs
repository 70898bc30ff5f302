//! Lower-level solvers over `y`.
//!
//! Gradient descent `y_{t+1} = y_t − α ∇_y g(x, y_t; S_t)`, `t < T`, from a caller-supplied
//! `y_0` (warm start = pass the previous outer iteration's `y`). Each step asks `batches` for
//! its batch, so the same code runs GD (always [`Batch::Full`]) and SGD.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use crate::error::{BilevelError, Result};
use crate::problem::{Batch, BilevelProblem};
use crate::second_order::Oracle;

/// Settings of [`gradient_descent`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InnerGd {
    /// Step size `α`.
    pub step: f64,
    /// Number of steps `T`.
    pub steps: usize,
}

impl InnerGd {
    /// Checks `α > 0`.
    pub fn validate(&self) -> Result<()> {
        if !(self.step > 0.0 && self.step.is_finite()) {
            return Err(BilevelError::invalid(
                "inner_step",
                format!("must be > 0 and finite, got {}", self.step),
            ));
        }
        Ok(())
    }
}

/// Runs `T` (S)GD steps on `g(x, ·)` from `y0`; returns `y_T`.
pub fn gradient_descent<B: AutodiffBackend, P: BilevelProblem<B>>(
    oracle: &mut Oracle<'_, B, P>,
    x: &Tensor<B, 1>,
    y0: Tensor<B, 1>,
    cfg: &InnerGd,
    mut batches: impl FnMut(usize) -> Batch,
) -> Result<Tensor<B, 1>> {
    cfg.validate()?;
    let mut y = y0;
    for t in 0..cfg.steps {
        let grad = oracle.grad_g_y(x, &y, &batches(t))?;
        y = y.sub(grad.mul_scalar(cfg.step));
    }
    check_inner_iterate(&y)?;
    Ok(y)
}

/// The inner loop's result must be finite: a diverged inner loop is reported as such, not as a
/// non-finite value in whatever uses `y` next (a CG right-hand side, a loss).
fn check_inner_iterate<B: AutodiffBackend>(y: &Tensor<B, 1>) -> Result<()> {
    crate::tensor::check_finite(
        "the inner iterate y: the inner gradient descent diverged (lower `inner_step`)",
        y,
    )
}

/// One recorded inner step: the iterate `y_t` and the batch its gradient used.
#[derive(Clone, Debug)]
pub struct InnerStep<B: AutodiffBackend> {
    /// `y_t`, before the step.
    pub y: Tensor<B, 1>,
    /// `S_t`.
    pub batch: Batch,
}

/// Like [`gradient_descent`], also returning the iterates `y_0..y_{T−1}` (with their batches)
/// that reverse-mode (ITD) differentiation needs.
pub fn gradient_descent_trajectory<B: AutodiffBackend, P: BilevelProblem<B>>(
    oracle: &mut Oracle<'_, B, P>,
    x: &Tensor<B, 1>,
    y0: Tensor<B, 1>,
    cfg: &InnerGd,
    mut batches: impl FnMut(usize) -> Batch,
) -> Result<(Tensor<B, 1>, Vec<InnerStep<B>>)> {
    cfg.validate()?;
    let mut y = y0;
    let mut trajectory = Vec::with_capacity(cfg.steps);
    for t in 0..cfg.steps {
        let batch = batches(t);
        let grad = oracle.grad_g_y(x, &y, &batch)?;
        trajectory.push(InnerStep {
            y: y.clone(),
            batch,
        });
        y = y.sub(grad.mul_scalar(cfg.step));
    }
    check_inner_iterate(&y)?;
    Ok((y, trajectory))
}
