//! # PZOBO and PZOBO-S — partial zeroth-order-like bilevel optimizer (paper 000, Sow, Ji &
//! Liang, "On the Convergence Theory for Hessian-Free Bilevel Algorithms", Alg. 1, eqs. (4),
//! (5) and (7); `docs/ALGORITHMS.md` "PZOBO and PZOBO-S")
//!
//! Per outer iteration at `x = x_k`, with `α` = [`PzoboConfig::inner_step`], `N` =
//! [`PzoboConfig::inner_steps`], `Q` = [`PzoboConfig::directions`] and `μ` =
//! [`PzoboConfig::smoothing_radius`]:
//!
//! 1. **Inner runs**: `y^{t+1} = y^t − α ∇_y G(x, y^t; S_t)`, `t = 0..N−1`, from `y^0 = y_0`,
//!    giving `y^N`; then for `j = 1..Q`, with `u_j ~ N(0, I_p)`, the same `N` steps at
//!    `x + μu_j` from the *same* `y_0` and along the *same* batches `S_0..S_{N−1}`, giving
//!    `y^N_j`. Where `y_0` comes from is [`InnerStart`].
//! 2. `δ_j = (y^N_j − y^N) / μ` (eq. (4): `Ĵ_N(x; u_j) = δ_j u_jᵀ ≈ ∂y^N/∂x`).
//! 3. `ĝ = ∇_x F(x, y^N; D_F) + (1/Q) Σ_j ⟨δ_j, ∇_y F(x, y^N; D_F)⟩ u_j` (eqs. (5), (7)).
//!
//! **PZOBO** (Alg. 1) is the deterministic method: [`PzoboConfig::inner_batch`] and
//! [`PzoboConfig::outer_batch`] are `None` and every `S_t`, `D_F` is the full data set.
//! **PZOBO-S** (paper 000 §2.3, Alg. 2 of its appendix) sets them: `S_0..S_{N−1}` are drawn
//! once per outer iteration and followed by all `Q + 1` runs (so `δ_j` is a difference of two
//! runs of one and the same SGD map, not of two independent noisy runs), and `D_F` is drawn
//! independently of them.
//!
//! The method is Hessian-free: no Hessian- or Jacobian-vector product is taken. If `y^N(x)` is
//! affine in `x` (a quadratic `g` with a fixed `y_0`), `δ_j = (∂y^N/∂x) u_j` exactly for every
//! `μ`, and since `E[u uᵀ] = I` the estimate is unbiased for `∇Φ_N(x) = ∇_x f + (∂y^N/∂x)ᵀ ∇_y f`
//! at `y^N` (Φ_N the hyperobjective of the `N`-step map); in general `μ` trades the smoothing
//! bias `O(μ)` against round-off `O(u_mach/μ)`.
//!
//! **Random draws** (all from `state.rng`, in this order): `S_0, …, S_{N−1}`, then `D_F`, then
//! `u_1, …, u_Q` (each `p` standard normals). A batch size of `None` draws nothing.
//!
//! **Oracle calls per iteration:** `(Q + 1)·N` gradients of `g` (`grad_g`), 1 gradient of `f`,
//! no HVP, no JVP, no bare function value; `samples_g = (Q + 1)·Σ_t |S_t|`,
//! `samples_f = |D_F|` (0 on a deterministic problem).
//!
//! `state.y` is set to `y^N` (the next warm start), `state.outer_loss` to `F(x, y^N; D_F)`;
//! `state.v` is not used.

use crate::validate::GRADIENT_DESCENT;
use crate::validate::{check_batch, check_count, check_step};
use bilevel_core::inner::{gradient_descent, InnerGd};
use bilevel_core::preflight::{Demands, Side};
use bilevel_core::tensor::{dot, scalar, vector};
use bilevel_core::{BilevelProblem, HypergradientEstimator, Oracle, Result, State};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

/// Where every inner run of an outer iteration starts (`y_0`; the same for all `Q + 1` runs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InnerStart {
    /// `y_0 = 0` at every outer iteration.
    Zeros,
    /// `y_0` = the lower-level iterate of the run's initial state, at every outer iteration
    /// (Alg. 1 line 3 of paper 000: `y_k^0 = y_0`). It is kept in `state.memory` on first use,
    /// so a resumed run starts from the same point.
    #[default]
    Initial,
    /// `y_0` = the previous outer iteration's `y^N` (`state.y`), a warm start.
    WarmStart,
}

/// Settings of [`Pzobo`] (PZOBO when both batches are `None`, PZOBO-S otherwise).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PzoboConfig {
    /// Inner (S)GD steps per run (`N`, ≥ 1).
    pub inner_steps: usize,
    /// Inner step size (`α`, > 0; `2/(L + μ_g)` in the paper's theory).
    pub inner_step: f64,
    /// Gaussian directions per outer iteration (`Q`, ≥ 1; the paper uses `Q = 1` with neural
    /// nets).
    pub directions: usize,
    /// Smoothing radius of the Jacobian estimator (`μ`, > 0).
    pub smoothing_radius: f64,
    /// Where the inner runs start.
    pub inner_start: InnerStart,
    /// Samples per inner SGD step, shared by all `Q + 1` runs (`|S_t|` = `S`; `None`: full batch,
    /// i.e. PZOBO).
    #[serde(with = "crate::table::batch")]
    pub inner_batch: Option<usize>,
    /// Samples of the outer gradients `∇F(x, y^N; D_F)` (`D_f`; `None`: full batch).
    #[serde(with = "crate::table::batch")]
    pub outer_batch: Option<usize>,
}

impl Default for PzoboConfig {
    /// Deterministic PZOBO with `N = 10`, `α = 0.1`, `Q = 1` (paper 000's choice for neural
    /// nets), `μ = 1e-3` and the paper's fixed `y_0`. Steps are problem dependent: tune them.
    fn default() -> Self {
        Self {
            inner_steps: 10,
            inner_step: 0.1,
            directions: 1,
            smoothing_radius: 1e-3,
            inner_start: InnerStart::Initial,
            inner_batch: None,
            outer_batch: None,
        }
    }
}

impl PzoboConfig {
    /// PZOBO-S: [`PzoboConfig::default`] with `batch` samples per inner step and of `∇F`.
    pub fn stochastic(batch: usize) -> Self {
        Self {
            inner_batch: Some(batch),
            outer_batch: Some(batch),
            ..Self::default()
        }
    }
}

impl PzoboConfig {
    /// Checks every field; the first bad one is reported as
    /// [`bilevel_core::BilevelError::InvalidParameter`].
    pub fn validate(&self) -> Result<()> {
        check_count("inner_steps", self.inner_steps)?;
        check_step("inner_step", self.inner_step)?;
        check_count("directions", self.directions)?;
        check_step("smoothing_radius", self.smoothing_radius)?;
        check_batch("inner_batch", self.inner_batch)?;
        check_batch("outer_batch", self.outer_batch)
    }

    /// Whether this is PZOBO-S (some batch is a mini-batch).
    pub fn is_stochastic(&self) -> bool {
        self.inner_batch.is_some() || self.outer_batch.is_some()
    }
}

/// The PZOBO / PZOBO-S hypergradient estimator (see the module docs); run it in
/// [`bilevel_core::OuterLoop`] with the paper's plain outer step `x ← x − β ĝ`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pzobo {
    config: PzoboConfig,
}

impl Pzobo {
    /// An estimator with a validated configuration.
    pub fn new(config: PzoboConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &PzoboConfig {
        &self.config
    }
}

impl<B: AutodiffBackend> HypergradientEstimator<B> for Pzobo {
    fn name(&self) -> String {
        if self.config.is_stochastic() {
            "pzobo-s".into()
        } else {
            "pzobo".into()
        }
    }

    fn demands(&self) -> Demands {
        let c = &self.config;
        Demands::new()
            .step("inner_step", c.inner_step, GRADIENT_DESCENT)
            .batch("inner_batch", Side::Inner, c.inner_batch)
            .batch("outer_batch", Side::Outer, c.outer_batch)
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
        let inner_len = oracle.problem().inner_len();
        let outer_len = oracle.problem().outer_len();
        let x = state.x.clone();
        let y0 = inner_start(cfg.inner_start, state, "pzobo_y0");
        let inner = InnerGd {
            step: cfg.inner_step,
            steps: cfg.inner_steps,
        };
        // One batch sequence for all Q + 1 runs: δ_j differentiates one SGD map.
        let batches: Vec<_> = (0..cfg.inner_steps)
            .map(|_| state.rng.batch(inner_len, cfg.inner_batch))
            .collect();
        let y = gradient_descent(oracle, &x, y0.clone(), &inner, |t| batches[t].clone())?;
        let outer_batch = state.rng.batch(outer_len, cfg.outer_batch);
        let grad_f = oracle.grad_f(&x, &y, &outer_batch)?;

        let device = x.device();
        let (mu, q) = (cfg.smoothing_radius, cfg.directions as f64);
        let mut estimate = grad_f.x;
        for _ in 0..cfg.directions {
            let u = vector::<B>(&state.rng.normal_vec(x.dims()[0]), &device);
            let shifted = x.clone().add(u.clone().mul_scalar(mu));
            let y_j =
                gradient_descent(oracle, &shifted, y0.clone(), &inner, |t| batches[t].clone())?;
            // ⟨δ_j, ∇_y F⟩ with δ_j = (y^N_j − y^N)/μ.
            let coefficient = dot(&y_j.sub(y.clone()), &grad_f.y) / mu;
            estimate = estimate.add(u.mul_scalar(coefficient / q));
        }

        state.outer_loss = Some(scalar(grad_f.value));
        state.y = y;
        Ok(estimate)
    }
}

/// `y_0` of this outer iteration's inner runs (see [`InnerStart`]); `key` names the memory that
/// holds the run's initial iterate for [`InnerStart::Initial`].
pub(crate) fn inner_start<B: AutodiffBackend>(
    start: InnerStart,
    state: &mut State<B>,
    key: &str,
) -> Tensor<B, 1> {
    match start {
        InnerStart::Zeros => state.y.zeros_like(),
        InnerStart::WarmStart => state.y.clone(),
        InnerStart::Initial => state
            .memory
            .entry(key.to_string())
            .or_insert_with(|| state.y.clone())
            .clone(),
    }
}
