//! `liu-hard`: Liu et al. (2020)'s instance without lower-level strong convexity (paper 003,
//! Example 5.3; `docs/REPRODUCTION.md` `liu-hard`), as an application.
//!
//! `min (x − y₂)² + (y₁ − 1)²` over `y ∈ argmin y₁² − 2x y₁`; the optimistic solution is
//! `x* = 1`, `φ(x) = (x − 1)²` (see [`bilevel_core::problems::LiuHard`] for the closed forms and
//! why AID/ITD stall at `(1 + y₂⁰)/2`). Deterministic: both levels take only
//! [`bilevel_core::Batch::Full`].

use bilevel_core::problems::LiuHard;
use bilevel_core::tensor::{check_len, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, Lift};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

use crate::application::{Application, Metric};
use crate::error::{ProblemError, Result};

/// The `[problem]` table of `kind = "liu-hard"`: the starting point (the instance has no other
/// parameters). Every field is optional.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiuHardSpec {
    /// Initial upper variable `x⁰` (default 0).
    pub x0: f64,
    /// Initial lower variable `(y₁⁰, y₂⁰)` (default `[0, 0]`). Gradient steps on `g` never move
    /// `y₂`, so AID/ITD stall at `(1 + y₂⁰)/2`.
    pub y0: [f64; 2],
}

impl Default for LiuHardSpec {
    fn default() -> Self {
        Self {
            x0: 0.0,
            y0: [0.0, 0.0],
        }
    }
}

impl LiuHardSpec {
    /// Checks that the starting point is finite.
    pub fn validate(&self) -> Result<()> {
        if !self.x0.is_finite() {
            return Err(ProblemError::config(
                "x0",
                format!("must be finite, got {}; the default is 0", self.x0),
            ));
        }
        if !self.y0.iter().all(|v| v.is_finite()) {
            return Err(ProblemError::config(
                "y0",
                format!("must be finite, got {:?}; the default is [0, 0]", self.y0),
            ));
        }
        Ok(())
    }

    /// Builds the problem on `device`.
    pub fn build<B: Backend>(&self, device: &B::Device) -> Result<LiuHardProblem<B>> {
        self.validate()?;
        Ok(LiuHardProblem {
            inner: LiuHard::new(device),
            spec: self.clone(),
        })
    }
}

/// The `liu-hard` application: [`LiuHard`] with a configured starting point.
#[derive(Clone, Debug)]
pub struct LiuHardProblem<B: Backend> {
    inner: LiuHard<B>,
    spec: LiuHardSpec,
}

impl<B: Backend> LiuHardProblem<B> {
    /// `[x_error, phi, ll_distance]` at host `x` (length 1) and `y` (length 2).
    pub fn closed_form_metrics(x: f64, y: [f64; 2]) -> [f64; 3] {
        [
            (x - LiuHard::<B>::OPTIMAL_X).abs(),
            LiuHard::<B>::hyper_objective(x),
            LiuHard::<B>::distance_to_lower_solutions(x, y),
        ]
    }
}

impl<B: Backend> BilevelProblem<B> for LiuHardProblem<B> {
    fn x_dim(&self) -> usize {
        self.inner.x_dim()
    }
    fn y_dim(&self) -> usize {
        self.inner.y_dim()
    }
    fn device(&self) -> B::Device {
        self.inner.device()
    }
    fn inner_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        self.inner.inner_loss(x, y, batch)
    }
    fn outer_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        self.inner.outer_loss(x, y, batch)
    }
}

impl<B: AutodiffBackend> Application<B> for LiuHardProblem<B> {
    fn id(&self) -> &'static str {
        "liu-hard"
    }

    fn describe(&self) -> String {
        format!(
            "liu-hard: Liu et al. (2020)'s instance (paper 003, Example 5.3), analytic, no data: \
             min (x − y₂)² + (y₁ − 1)² s.t. y ∈ argmin y₁² − 2x y₁; x* = 1, φ(x) = (x − 1)²; \
             start x⁰ = {}, y⁰ = {:?}",
            self.spec.x0, self.spec.y0
        )
    }

    /// The configured `(x⁰, y⁰)`; the instance is deterministic, so the seed is not used.
    fn initial_point(&self, _seed: u64) -> Result<(Tensor<B, 1>, Tensor<B, 1>)> {
        let device = self.device();
        Ok((
            vector(&[self.spec.x0], &device),
            vector(&self.spec.y0, &device),
        ))
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec!["x_error", "phi", "ll_distance"]
    }

    /// `x_error = |x − 1|`, `phi = φ(x) = (x − 1)²`, `ll_distance = dist(y, Y*(x)) = |y₁ − x|`.
    fn evaluate(&self, x: &Tensor<B, 1>, y: &Tensor<B, 1>) -> Result<Vec<Metric>> {
        check_len("x", x, 1)?;
        check_len("y", y, 2)?;
        let xh = to_vec(x.clone())?[0];
        let yh = to_vec(y.clone())?;
        let [e, p, d] = Self::closed_form_metrics(xh, [yh[0], yh[1]]);
        Ok(vec![
            Metric::new("x_error", e),
            Metric::new("phi", p),
            Metric::new("ll_distance", d),
        ])
    }
}
