//! Liu et al. (2020)'s hard instance without lower-level strong convexity (paper 003,
//! Example 5.3; `docs/REPRODUCTION.md` `liu-hard`):
//!
//! `min_{x ∈ ℝ, y ∈ Y*(x)} f(x, y) = (x − y₂)² + (y₁ − 1)²`,
//! `Y*(x) = argmin_{y ∈ ℝ²} g(x, y) = y₁² − 2x y₁`.
//!
//! `g` does not depend on `y₂`, so the lower level is convex but not strongly convex:
//! `Y*(x) = {(x, s) : s ∈ ℝ}`, `g*(x) = −x²`, `g(x, y) − g*(x) = (y₁ − x)²`. The optimistic
//! hyper-objective minimises `f` over that line: `y₂ = x` cancels the first term, so
//! `φ(x) = (x − 1)²`, and the optimistic solution is `x* = 1`, `y* = (1, 1)`, `φ* = 0`.
//! (The paper states the instance and that it satisfies the gradient-dominance condition
//! (Assumption 5.1); `φ` and `x*` follow from the definitions of its §3.1.)
//!
//! **Why implicit methods stall.** `∇_{y₂} g ≡ 0`, so gradient steps on `g` never move `y₂` from
//! its initial value `s₀`, and `∇²_yy g = diag(2, 0)` is singular. AID (with `v₁ = ∂_{y₁}f / 2`,
//! the only component that `∇_x∇_y g · v = −2v₁` reads) and ITD (with `∂y₁/∂x = c`) both follow
//! the gradient of `(x − s₀)² + c (x − 1)²` once `y₁ = x`, which is stationary at
//! `(s₀ + c)/(1 + c)` — `(1 + s₀)/2` for AID and fully unrolled ITD — instead of at `x* = 1`
//! ([`LiuHard::frozen_y2_stationary_point`]).

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::lift::Lift;
use crate::problem::{Batch, BilevelProblem};

/// Example 5.3 of paper 003: `f = (x − y₂)² + (y₁ − 1)²`, `g = y₁² − 2x y₁`, `x ∈ ℝ`,
/// `y ∈ ℝ²` (deterministic; see the module documentation for the closed forms).
#[derive(Clone, Debug)]
pub struct LiuHard<B: Backend> {
    device: B::Device,
}

impl<B: Backend> LiuHard<B> {
    /// The optimistic bilevel solution `x* = 1`.
    pub const OPTIMAL_X: f64 = 1.0;

    /// The instance on `device` (it holds no data).
    pub fn new(device: &B::Device) -> Self {
        Self {
            device: device.clone(),
        }
    }

    /// `f(x, y) = (x − y₂)² + (y₁ − 1)²` in host `f64`.
    pub fn upper_value(x: f64, y: [f64; 2]) -> f64 {
        (x - y[1]).powi(2) + (y[0] - 1.0).powi(2)
    }

    /// `g(x, y) = y₁² − 2x y₁` in host `f64`.
    pub fn lower_value(x: f64, y: [f64; 2]) -> f64 {
        y[0] * y[0] - 2.0 * x * y[0]
    }

    /// The lower-level optimal value `g*(x) = −x²` (attained on `y₁ = x`, any `y₂`).
    pub fn lower_optimal_value(x: f64) -> f64 {
        -x * x
    }

    /// `dist(y, Y*(x)) = |y₁ − x|`.
    pub fn distance_to_lower_solutions(x: f64, y: [f64; 2]) -> f64 {
        (y[0] - x).abs()
    }

    /// The optimistic lower-level solution `argmin_{y ∈ Y*(x)} f(x, y) = (x, x)`.
    pub fn optimistic_lower_solution(x: f64) -> [f64; 2] {
        [x, x]
    }

    /// The hyper-objective `φ(x) = min_{y ∈ Y*(x)} f(x, y) = (x − 1)²`.
    pub fn hyper_objective(x: f64) -> f64 {
        (x - 1.0).powi(2)
    }

    /// Where a method stalls that keeps `y₂` at its initial value `initial_y2` (every method
    /// that moves `y` by gradient steps on `g` only) and estimates `∂y₁/∂x` as
    /// `y1_sensitivity = c`: the stationary point `(s₀ + c)/(1 + c)` of `(x − s₀)² + c(x − 1)²`.
    /// `c = 1` for AID with an exact `v₁`; `c = 1 − (1 − 2α)^T` for ITD through `T` steps of size
    /// `α` from a warm start at `y₁ = x`.
    pub fn frozen_y2_stationary_point(initial_y2: f64, y1_sensitivity: f64) -> f64 {
        (initial_y2 + y1_sensitivity) / (1.0 + y1_sensitivity)
    }
}

impl<B: Backend> BilevelProblem<B> for LiuHard<B> {
    fn x_dim(&self) -> usize {
        1
    }

    fn y_dim(&self) -> usize {
        2
    }

    fn device(&self) -> B::Device {
        self.device.clone()
    }

    fn inner_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        _batch: &Batch,
    ) -> Tensor<C, 1> {
        let y1 = y.narrow(0, 0, 1);
        y1.clone()
            .powi_scalar(2)
            .sub(x.mul(y1).mul_scalar(2.0))
            .sum()
    }

    fn outer_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        _batch: &Batch,
    ) -> Tensor<C, 1> {
        let y1 = y.clone().narrow(0, 0, 1);
        let y2 = y.narrow(0, 1, 1);
        x.sub(y2)
            .powi_scalar(2)
            .add(y1.sub_scalar(1.0).powi_scalar(2))
            .sum()
    }
}
