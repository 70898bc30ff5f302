//! # HOZOG — hyperparameter optimization with zeroth-order hyper-gradients (Gu, Liu, Zhang,
//! Geng & Huang 2021, reference \[18\] of paper 000; the Hessian-free baseline of paper 000 §4)
//!
//! HOZOG treats the whole unrolled hyperobjective `Φ_N(x) = f(x, y^N(x))` as a black box, with
//! `y^N(x)` the output of `N` GD steps `y^{t+1} = y^t − α ∇_y g(x, y^t)` from `y_0`, and
//! estimates its gradient from function values only (paper 000 eq. (3), averaged over `Q`
//! directions). With `α` = [`HozogConfig::inner_step`], `N` = [`HozogConfig::inner_steps`],
//! `Q` = [`HozogConfig::directions`], `μ` = [`HozogConfig::smoothing_radius`] and `p = dim x`:
//!
//! - [`DirectionDistribution::Gaussian`] (the default; Nesterov–Spokoiny Gaussian smoothing, as
//!   paper 000 eq. (3) states the zeroth-order oracle): `u_j ~ N(0, I_p)` and
//!   `ĝ = (1/Q) Σ_j [(Φ_N(x + μu_j) − Φ_N(x)) / μ] u_j`.
//! - [`DirectionDistribution::UnitSphere`] (the average random gradient estimator of the HOZOG
//!   paper itself, as we read it: directions uniform on the unit sphere, scaled by `p`):
//!   `u_j ~ U(S^{p−1})` and `ĝ = (p/Q) Σ_j [(Φ_N(x + μu_j) − Φ_N(x)) / μ] u_j`.
//!
//! Both are unbiased for the gradient of a smoothed `Φ_N` (`E[u uᵀ] = I`, resp. `p·E[u uᵀ] = I`),
//! and for a quadratic `Φ_N` (quadratic `f` and `g`, fixed `y_0`) unbiased for `∇Φ_N` itself:
//! the `O(μ)` curvature term `(μ/2)(uᵀ∇²Φ_N u) u` is odd in `u`.
//!
//! All `Q + 1` inner runs start from the same `y_0` ([`InnerStart`]) and use full batches (paper
//! 000 notes that no stochastic HOZOG exists; on a finite-sum problem every evaluation averages
//! over the whole data set).
//!
//! **Random draws** (all from `state.rng`): `u_1, …, u_Q`, each from `p` standard normals
//! (normalised for the unit sphere).
//!
//! **Oracle calls per iteration:** `(Q + 1)·N` gradients of `g`, `Q + 1` values of `f`
//! (`f_values`), no gradient of `f`, no HVP, no JVP.
//!
//! `state.y` is set to `y^N(x)`, `state.outer_loss` to `Φ_N(x)`; `state.v` is not used.

use crate::validate::GRADIENT_DESCENT;
use bilevel_core::inner::{gradient_descent, InnerGd};
use bilevel_core::preflight::Demands;
use bilevel_core::tensor::{scalar, vector};
use bilevel_core::{
    Batch, BilevelError, BilevelProblem, HypergradientEstimator, Oracle, Result, State,
};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use crate::pzobo::inner_start;
pub use crate::pzobo::InnerStart;
use crate::validate::{check_count, check_step};

/// The distribution of the random directions `u_j`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirectionDistribution {
    /// `u ~ N(0, I_p)`, estimate scaled by 1.
    #[default]
    Gaussian,
    /// `u` uniform on the unit sphere of `R^p`, estimate scaled by `p`.
    UnitSphere,
}

/// Settings of [`Hozog`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HozogConfig {
    /// Inner GD steps per evaluation of `Φ_N` (`N`, ≥ 1).
    pub inner_steps: usize,
    /// Inner step size (`α`, > 0).
    pub inner_step: f64,
    /// Random directions per outer iteration (`Q`, ≥ 1).
    pub directions: usize,
    /// Smoothing radius of the finite differences (`μ`, > 0).
    pub smoothing_radius: f64,
    /// Distribution of the directions.
    pub distribution: DirectionDistribution,
    /// Where the inner runs start.
    pub inner_start: InnerStart,
}

impl Default for HozogConfig {
    /// `N = 10`, `α = 0.1`, `Q = 10`, `μ = 1e-3`, Gaussian directions, fixed `y_0`.
    fn default() -> Self {
        Self {
            inner_steps: 10,
            inner_step: 0.1,
            directions: 10,
            smoothing_radius: 1e-3,
            distribution: DirectionDistribution::Gaussian,
            inner_start: InnerStart::Initial,
        }
    }
}

impl HozogConfig {
    /// Checks every field; the first bad one is reported as
    /// [`BilevelError::InvalidParameter`].
    pub fn validate(&self) -> Result<()> {
        check_count("inner_steps", self.inner_steps)?;
        check_step("inner_step", self.inner_step)?;
        check_count("directions", self.directions)?;
        check_step("smoothing_radius", self.smoothing_radius)
    }
}

/// The HOZOG hypergradient estimator (see the module docs); run it in
/// [`bilevel_core::OuterLoop`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hozog {
    config: HozogConfig,
}

impl Hozog {
    /// An estimator with a validated configuration.
    pub fn new(config: HozogConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &HozogConfig {
        &self.config
    }
}

impl<B: AutodiffBackend> HypergradientEstimator<B> for Hozog {
    fn name(&self) -> String {
        "hozog".into()
    }

    fn demands(&self) -> Demands {
        Demands::new().step("inner_step", self.config.inner_step, GRADIENT_DESCENT)
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
        cfg.validate()?;
        let x = state.x.clone();
        let y0 = inner_start(cfg.inner_start, state, "hozog_y0");
        let inner = InnerGd {
            step: cfg.inner_step,
            steps: cfg.inner_steps,
        };
        let phi = |oracle: &mut Oracle<'_, B, P>, at: &Tensor<B, 1>| -> Result<_> {
            let y = gradient_descent(oracle, at, y0.clone(), &inner, |_| Batch::Full)?;
            let value = scalar(oracle.f_value(at, &y, &Batch::Full)?);
            Ok((value, y))
        };
        let (phi_x, y) = phi(oracle, &x)?;
        if !phi_x.is_finite() {
            return Err(BilevelError::NonFinite {
                what: "Φ_N(x)".into(),
            });
        }

        let p = x.dims()[0];
        let device = x.device();
        let mu = cfg.smoothing_radius;
        let scale = match cfg.distribution {
            DirectionDistribution::Gaussian => 1.0,
            DirectionDistribution::UnitSphere => p as f64,
        } / cfg.directions as f64;
        let mut estimate = x.zeros_like();
        for _ in 0..cfg.directions {
            let mut u = state.rng.normal_vec(p);
            if cfg.distribution == DirectionDistribution::UnitSphere {
                let norm = u.iter().map(|v| v * v).sum::<f64>().sqrt();
                // A zero draw has probability 0; keep it rather than divide by 0.
                if norm > 0.0 {
                    u.iter_mut().for_each(|v| *v /= norm);
                }
            }
            let u = vector::<B>(&u, &device);
            let (phi_j, _) = phi(oracle, &x.clone().add(u.clone().mul_scalar(mu)))?;
            estimate = estimate.add(u.mul_scalar(scale * (phi_j - phi_x) / mu));
        }

        state.outer_loss = Some(phi_x);
        state.y = y;
        Ok(estimate)
    }
}
