//! `quadratic`: FSLA's synthetic least-squares bilevel problem (paper 001, synthetic experiment;
//! `docs/REPRODUCTION.md` `quadratic`), with closed-form evaluation.
//!
//! `g(λ, ω; S) = (1/2|S|) Σ_{i∈S} (a_λ,iᵀλ + a_ω,iᵀω − b_i)²`,
//! `f(λ, ω; S) = (1/2|S|) Σ_{i∈S} (a_o,iᵀω − b_o,i)²` with Gaussian designs and labels from a
//! planted point plus noise ([`bilevel_core::problems::LeastSquaresBilevel`]). `x = λ`,
//! `y = ω`; both objectives are stochastic over their rows, so stochastic methods can draw
//! [`bilevel_core::Batch::Indices`]. The full-data problem is quadratic, so `∇Φ(x)`, `Φ(x)`,
//! `y*(x)` and the stationary point `x*` are known exactly and reported as metrics.

use bilevel_core::problems::{LeastSquaresBilevel, LeastSquaresSpec, QuadraticForm};
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{check_len, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, Lift};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

use crate::application::{Application, Metric};
use crate::error::{ProblemError, Result};

/// The `[problem]` table of `kind = "quadratic"`. Every field is optional; the defaults are
/// the experiment's sizes (dimension 5, 10⁴ rows per level; `docs/REPRODUCTION.md` `quadratic`).
///
/// The instance (designs, planted point, noise) is drawn from the run's seed
/// ([`crate::spec::BuildContext::seed`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuadraticSpec {
    /// Length of the upper variable `λ = x` (default 5).
    pub x_dim: usize,
    /// Length of the lower variable `ω = y` (default 5).
    pub y_dim: usize,
    /// Rows of the inner data `(A_λ, A_ω, b)` (default 10 000; at least `y_dim`).
    pub inner_rows: usize,
    /// Rows of the outer data `(A_o, b_o)` (default 10 000).
    pub outer_rows: usize,
    /// Standard deviation of the label noise (default 0.1).
    pub noise: f64,
}

impl Default for QuadraticSpec {
    fn default() -> Self {
        Self {
            x_dim: 5,
            y_dim: 5,
            inner_rows: 10_000,
            outer_rows: 10_000,
            noise: 0.1,
        }
    }
}

/// Largest dimension accepted (the closed form factorises dense `y_dim × y_dim` and
/// `x_dim × x_dim` matrices on every evaluation).
pub const MAX_DIM: usize = 1_000;
/// Largest number of rows accepted per level.
pub const MAX_ROWS: usize = 10_000_000;

impl QuadraticSpec {
    /// Checks the ranges of every field.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("x_dim", self.x_dim), ("y_dim", self.y_dim)] {
            if v == 0 || v > MAX_DIM {
                return Err(ProblemError::config(
                    name,
                    format!("must be between 1 and {MAX_DIM}, got {v}; the default is 5"),
                ));
            }
        }
        if self.inner_rows < self.y_dim || self.inner_rows > MAX_ROWS {
            return Err(ProblemError::config(
                "inner_rows",
                format!(
                    "must be between y_dim = {} (so that the inner Hessian AᵀA/n is positive \
                     definite) and {MAX_ROWS}, got {}; the default is 10000",
                    self.y_dim, self.inner_rows
                ),
            ));
        }
        if self.outer_rows == 0 || self.outer_rows > MAX_ROWS {
            return Err(ProblemError::config(
                "outer_rows",
                format!(
                    "must be between 1 and {MAX_ROWS}, got {}; the default is 10000",
                    self.outer_rows
                ),
            ));
        }
        if !(self.noise >= 0.0 && self.noise.is_finite()) {
            return Err(ProblemError::config(
                "noise",
                format!(
                    "must be finite and ≥ 0, got {}; the default is 0.1",
                    self.noise
                ),
            ));
        }
        Ok(())
    }

    /// The instance description of `bilevel-core` for a seed.
    pub fn least_squares(&self, seed: u64) -> LeastSquaresSpec {
        LeastSquaresSpec {
            x_dim: self.x_dim,
            y_dim: self.y_dim,
            inner_rows: self.inner_rows,
            outer_rows: self.outer_rows,
            noise: self.noise,
            seed,
        }
    }

    /// Draws the instance of `seed` on `device`.
    pub fn build<B: Backend>(&self, seed: u64, device: &B::Device) -> Result<QuadraticProblem<B>> {
        self.validate()?;
        let inner = LeastSquaresBilevel::random(&self.least_squares(seed), device)?;
        QuadraticProblem::new(inner, self.clone(), seed)
    }
}

/// The `quadratic` application: a [`LeastSquaresBilevel`] instance plus its stationary point.
#[derive(Clone, Debug)]
pub struct QuadraticProblem<B: Backend> {
    inner: LeastSquaresBilevel<B>,
    x_star: Vec<f64>,
    phi_star: f64,
    spec: QuadraticSpec,
    seed: u64,
}

impl<B: Backend> QuadraticProblem<B> {
    /// Wraps an instance; computes `x*` and `Φ(x*)` (fails if `∇²Φ` is singular).
    pub fn new(inner: LeastSquaresBilevel<B>, spec: QuadraticSpec, seed: u64) -> Result<Self> {
        let form = inner.closed_form();
        let x_star = form.x_star()?;
        let phi_star = form.phi(&x_star)?;
        Ok(Self {
            inner,
            x_star,
            phi_star,
            spec,
            seed,
        })
    }

    /// The closed form of the full-data problem.
    pub fn closed_form(&self) -> &QuadraticForm {
        self.inner.closed_form()
    }

    /// The stationary point `x*` of `Φ`.
    pub fn x_star(&self) -> &[f64] {
        &self.x_star
    }

    /// `Φ(x*)`.
    pub fn phi_star(&self) -> f64 {
        self.phi_star
    }

    /// The wrapped problem of `bilevel-core`.
    pub fn inner(&self) -> &LeastSquaresBilevel<B> {
        &self.inner
    }

    /// `[grad_norm, phi_gap, y_error]` at host vectors `x`, `y`.
    pub fn closed_form_metrics(&self, x: &[f64], y: &[f64]) -> Result<[f64; 3]> {
        let form = self.closed_form();
        let grad = form.hypergradient(x)?;
        let grad_norm = grad.iter().map(|v| v * v).sum::<f64>().sqrt();
        let phi_gap = form.phi(x)? - self.phi_star;
        let y_star = form.y_star(x)?;
        let y_error = y
            .iter()
            .zip(&y_star)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        Ok([grad_norm, phi_gap, y_error])
    }
}

impl<B: Backend> BilevelProblem<B> for QuadraticProblem<B> {
    fn x_dim(&self) -> usize {
        self.inner.x_dim()
    }
    fn y_dim(&self) -> usize {
        self.inner.y_dim()
    }
    fn device(&self) -> B::Device {
        self.inner.device()
    }
    fn inner_len(&self) -> Option<usize> {
        self.inner.inner_len()
    }
    fn outer_len(&self) -> Option<usize> {
        self.inner.outer_len()
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

impl<B: AutodiffBackend> Application<B> for QuadraticProblem<B> {
    fn id(&self) -> &'static str {
        "quadratic"
    }

    fn describe(&self) -> String {
        format!(
            "quadratic: FSLA's synthetic least-squares bilevel problem (paper 001), generated \
             data (seed {}): x = λ ∈ R^{}, y = ω ∈ R^{}, inner ‖A_λ λ + A_ω ω − b‖²/2n over {} \
             Gaussian rows, outer ‖A_o ω − b_o‖²/2n over {} rows, label noise σ = {}; exact \
             hypergradient known in closed form",
            self.seed,
            self.spec.x_dim,
            self.spec.y_dim,
            self.spec.inner_rows,
            self.spec.outer_rows,
            self.spec.noise
        )
    }

    /// `x0 ~ N(0, I)` from the seed, `y0 = 0`.
    fn initial_point(&self, seed: u64) -> Result<(Tensor<B, 1>, Tensor<B, 1>)> {
        let mut rng = Rng::seed(seed);
        let device = self.device();
        Ok((
            vector(&rng.normal_vec(self.x_dim()), &device),
            vector(&vec![0.0; self.y_dim()], &device),
        ))
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec!["grad_norm", "phi_gap", "y_error"]
    }

    /// `grad_norm = ‖∇Φ(x)‖`, `phi_gap = Φ(x) − Φ(x*)`, `y_error = ‖y − y*(x)‖`, all in closed
    /// form on the full data.
    fn evaluate(&self, x: &Tensor<B, 1>, y: &Tensor<B, 1>) -> Result<Vec<Metric>> {
        check_len("x", x, self.x_dim())?;
        check_len("y", y, self.y_dim())?;
        let xh = to_vec(x.clone())?;
        let yh = to_vec(y.clone())?;
        let [g, p, e] = self.closed_form_metrics(&xh, &yh)?;
        Ok(vec![
            Metric::new("grad_norm", g),
            Metric::new("phi_gap", p),
            Metric::new("y_error", e),
        ])
    }
}
