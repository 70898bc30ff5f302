//! # BSA — bilevel stochastic approximation (Ghadimi & Wang 2018, "Approximation methods for
//! bilevel programming"; a baseline of paper 004)
//!
//! Per outer iteration at `x = x_k` (`docs/ALGORITHMS.md` "BSA"):
//!
//! 1. Inner SGD with decreasing steps from the previous iterate (warm start `y_0 = state.y`):
//!    `y_{t+1} = y_t − α_t ∇_y G(x, y_t; S_t)`, `α_t = α / (t + 1)^{power}`, `t = 0..T−1`,
//!    single-sample batches `S_t` by default. The schedule restarts at `t = 0` every outer
//!    iteration. Ghadimi & Wang's analysis uses steps of order `1/(μ_g t)` (`power = 1`,
//!    `α ∝ 1/μ_g`; the paper is not among the seed papers, so the exact constant is not
//!    restated here); with `α ≤ 1/L` for stability, a `power` below 1 forgets the warm start
//!    faster in practice.
//! 2. The randomized truncated Neumann hypergradient ([`RandomizedNeumann`]) at `y_T`:
//!    draw `p ~ U{0, …, Q−1}` and
//!    `v = Q η Π_{j=1}^{p} (I − η ∇²_yy G(x, y_T; ζ_j)) ∇_y F(x, y_T; ξ)`,
//!    `ĝ = ∇_x F(x, y_T; ξ) − ∇_x∇_y G(x, y_T; ζ_0) v`,
//!    with `η = 1/L_g` in the paper (`neumann_step`). Averaging over `p` and the independent
//!    samples, `E[v | y_T] = η Σ_{j=0}^{Q−1} (I − η∇²_yy g)^j ∇_y f`: the truncated Neumann
//!    series with `Q` terms (one fewer than stocBiO's `Q` products give).
//!
//! Batches are drawn with replacement from `state.rng` in the order `S_0..S_{T−1}` (inner),
//! `ξ`, `p`, `ζ_1..ζ_p`, `ζ_0` (Jacobian).
//!
//! **Oracle calls per iteration:** `T_k` gradients of `g`, 1 gradient of `f`, `p` HVPs, 1 JVP;
//! `samples_g = T_k·S + p·|ζ_j| + |ζ_0|`, `samples_f = |ξ|`. The drawn `p` is stored in
//! `state.scalars["neumann_products"]`.
//!
//! **Inner steps `T_k`.** Constant `T` by default (as paper 004 runs BSA), or growing as in
//! Ghadimi & Wang's analysis: [`BsaConfig::inner_steps_growth`] `= Some(c)` gives
//! `T_k = ⌈c (k + 1)^{1/2}⌉` at outer iteration `k` (0-based). The exponent 1/2 is the one that
//! makes BSA's complexities in paper 004's Table 1 consistent: `K = O(ε^{−2})` outer iterations
//! (`Gc(f, ε) = O(ε^{−2})`) and `Σ_{k<K} T_k = O(K^{3/2}) = O(ε^{−3})` inner samples
//! (`Gc(g, ε) = O(ε^{−3})`). (AID's growing schedule, `⌈c (k + 1)^{1/4}⌉`, is the deterministic
//! counterpart, [`crate::aid::InnerSteps::Increasing`].)

use crate::validate::{GRADIENT_DESCENT, NEUMANN};
use bilevel_core::preflight::{Demands, Side};
use bilevel_core::tensor::scalar;
use bilevel_core::{BilevelProblem, HypergradientEstimator, Oracle, Result, State};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use crate::validate::{check_batch, check_count, check_exponent, check_step};

/// Key of `state.scalars` holding the number `p` of HVPs the last estimate drew.
pub const NEUMANN_PRODUCTS: &str = "neumann_products";

/// Ghadimi & Wang's randomized truncated Neumann hypergradient estimator (shared by BSA and
/// TTSA): `ĝ = ∇_x F(ξ) − J(ζ_0) · Qη Π_{j=1}^{p} (I − ηH(ζ_j)) ∇_y F(ξ)`, `p ~ U{0..Q−1}`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RandomizedNeumann {
    /// Samples of the outer gradient `∇F(x, y; ξ)` (`None`: full batch).
    pub outer_batch: Option<usize>,
    /// Samples of each Hessian-vector product `ζ_j` (`None`: full batch).
    pub hessian_batch: Option<usize>,
    /// Samples of the Jacobian-vector product `ζ_0` (`None`: full batch).
    pub jacobian_batch: Option<usize>,
    /// Truncation `Q` (≥ 1): `p` is uniform on `0..Q−1`.
    pub neumann_terms: usize,
    /// Step `η` (> 0; `1/L_g` in the paper).
    pub neumann_step: f64,
}

impl Default for RandomizedNeumann {
    /// Single samples everywhere (as in Ghadimi & Wang and paper 004's baselines), `Q = 10`,
    /// `η = 0.1`.
    fn default() -> Self {
        Self {
            outer_batch: Some(1),
            hessian_batch: Some(1),
            jacobian_batch: Some(1),
            neumann_terms: 10,
            neumann_step: 0.1,
        }
    }
}

impl RandomizedNeumann {
    /// These demands after those of inner SGD with `inner_step` on `inner_batch` (BSA's and
    /// TTSA's whole demands).
    pub fn demands_after_sgd(&self, inner_step: f64, inner_batch: Option<usize>) -> Demands {
        Demands::new()
            .step("inner_step", inner_step, GRADIENT_DESCENT)
            .batch("inner_batch", Side::Inner, inner_batch)
            .and(self.demands())
    }

    /// Its batch sizes and Neumann step, for [`bilevel_core::preflight`].
    pub fn demands(&self) -> Demands {
        Demands::new()
            .step("neumann_step", self.neumann_step, NEUMANN)
            .batch("outer_batch", Side::Outer, self.outer_batch)
            .batch("hessian_batch", Side::Inner, self.hessian_batch)
            .batch("jacobian_batch", Side::Inner, self.jacobian_batch)
    }

    /// Checks batch sizes, `Q ≥ 1` and `η > 0`.
    pub fn validate(&self) -> Result<()> {
        check_batch("outer_batch", self.outer_batch)?;
        check_batch("hessian_batch", self.hessian_batch)?;
        check_batch("jacobian_batch", self.jacobian_batch)?;
        check_count("neumann_terms", self.neumann_terms)?;
        check_step("neumann_step", self.neumann_step)
    }

    /// The estimate at `(state.x, y)`. Draws from `state.rng`; sets `state.v` to `v`,
    /// `state.outer_loss` to `F(x, y; ξ)` and `state.scalars["neumann_products"]` to `p`.
    pub fn estimate<B: AutodiffBackend, P: BilevelProblem<B>>(
        &self,
        oracle: &mut Oracle<'_, B, P>,
        state: &mut State<B>,
        y: &Tensor<B, 1>,
    ) -> Result<Tensor<B, 1>> {
        self.validate()?;
        let inner_len = oracle.problem().inner_len();
        let outer_len = oracle.problem().outer_len();
        let x = &state.x;
        let rng = &mut state.rng;

        let outer_batch = rng.batch(outer_len, self.outer_batch);
        let grad_f = oracle.grad_f(x, y, &outer_batch)?;
        let products = rng.index(self.neumann_terms);
        let mut r = grad_f.y;
        for _ in 0..products {
            let batch = rng.batch(inner_len, self.hessian_batch);
            let hr = oracle.hvp(x, y, &r, &batch)?;
            r = r.sub(hr.mul_scalar(self.neumann_step));
        }
        let v = r.mul_scalar(self.neumann_terms as f64 * self.neumann_step);
        let jacobian_batch = rng.batch(inner_len, self.jacobian_batch);
        let jv = oracle.jvp(x, y, &v, &jacobian_batch)?;
        let estimate = grad_f.x.sub(jv);

        state.outer_loss = Some(scalar(grad_f.value));
        state
            .scalars
            .insert(NEUMANN_PRODUCTS.to_string(), products as f64);
        state.v = v;
        Ok(estimate)
    }
}

/// One SGD step `y − step · ∇_y G(x, y; S)` with a batch of `batch` samples from `state.rng`.
pub(crate) fn sgd_step<B: AutodiffBackend, P: BilevelProblem<B>>(
    oracle: &mut Oracle<'_, B, P>,
    state: &mut State<B>,
    y: Tensor<B, 1>,
    step: f64,
    batch: Option<usize>,
) -> Result<Tensor<B, 1>> {
    let batch = state.rng.batch(oracle.problem().inner_len(), batch);
    let grad = oracle.grad_g_y(&state.x, &y, &batch)?;
    Ok(y.sub(grad.mul_scalar(step)))
}

/// Settings of [`Bsa`]; its serde form is the flat `[algorithm]` table of `bsa`
/// ([`BsaTable`]: these keys with the [`RandomizedNeumann`] keys inlined).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "BsaTable", into = "BsaTable")]
pub struct BsaConfig {
    /// Inner SGD steps per outer iteration (`T`, ≥ 1), unless `inner_steps_growth` is set.
    pub inner_steps: usize,
    /// `Some(c)` (`c > 0`): Ghadimi & Wang's growing `T_k = ⌈c (k + 1)^{1/2}⌉` instead of
    /// `inner_steps` (module documentation); `None` (default): constant `T`.
    pub inner_steps_growth: Option<f64>,
    /// Base inner step `α` (> 0): step `t` uses `α / (t + 1)^{inner_step_decay}`.
    pub inner_step: f64,
    /// Exponent of the inner step decay (≥ 0; 1 in Ghadimi & Wang's analysis).
    pub inner_step_decay: f64,
    /// Samples per inner step (`None`: full batch; 1 in the paper).
    pub inner_batch: Option<usize>,
    /// The hypergradient at `y_T`.
    pub hypergradient: RandomizedNeumann,
}

/// The flat `[algorithm]` table of `bsa`, the serde form of [`BsaConfig`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BsaTable {
    /// Inner SGD steps `T` (unless `inner_steps_growth` is set).
    pub inner_steps: usize,
    /// `c > 0`: `T_k = ⌈c (k+1)^{1/2}⌉` instead of `inner_steps`.
    pub inner_steps_growth: Option<f64>,
    /// Base inner step `α`.
    pub inner_step: f64,
    /// `α_t = α / (t+1)^decay`.
    pub inner_step_decay: f64,
    /// Samples per inner step.
    #[serde(with = "crate::table::batch")]
    pub inner_batch: Option<usize>,
    /// Samples of `∇F` (`ξ`).
    #[serde(with = "crate::table::batch")]
    pub outer_batch: Option<usize>,
    /// Samples of each HVP (`ζ_j`).
    #[serde(with = "crate::table::batch")]
    pub hessian_batch: Option<usize>,
    /// Samples of the JVP (`ζ_0`).
    #[serde(with = "crate::table::batch")]
    pub jacobian_batch: Option<usize>,
    /// Truncation `Q`: `p ~ U{0..Q−1}` HVPs.
    pub neumann_terms: usize,
    /// Neumann step `η`.
    pub neumann_step: f64,
}

impl Default for BsaTable {
    fn default() -> Self {
        BsaConfig::default().into()
    }
}

impl From<BsaConfig> for BsaTable {
    fn from(c: BsaConfig) -> Self {
        let n = c.hypergradient;
        Self {
            inner_steps: c.inner_steps,
            inner_steps_growth: c.inner_steps_growth,
            inner_step: c.inner_step,
            inner_step_decay: c.inner_step_decay,
            inner_batch: c.inner_batch,
            outer_batch: n.outer_batch,
            hessian_batch: n.hessian_batch,
            jacobian_batch: n.jacobian_batch,
            neumann_terms: n.neumann_terms,
            neumann_step: n.neumann_step,
        }
    }
}

impl From<BsaTable> for BsaConfig {
    fn from(t: BsaTable) -> Self {
        Self {
            inner_steps: t.inner_steps,
            inner_steps_growth: t.inner_steps_growth,
            inner_step: t.inner_step,
            inner_step_decay: t.inner_step_decay,
            inner_batch: t.inner_batch,
            hypergradient: RandomizedNeumann {
                outer_batch: t.outer_batch,
                hessian_batch: t.hessian_batch,
                jacobian_batch: t.jacobian_batch,
                neumann_terms: t.neumann_terms,
                neumann_step: t.neumann_step,
            },
        }
    }
}

impl Default for BsaConfig {
    /// `T = 10`, `α = 0.1`, decay exponent 1, single samples, [`RandomizedNeumann::default`].
    fn default() -> Self {
        Self {
            inner_steps: 10,
            inner_steps_growth: None,
            inner_step: 0.1,
            inner_step_decay: 1.0,
            inner_batch: Some(1),
            hypergradient: RandomizedNeumann::default(),
        }
    }
}

impl BsaConfig {
    /// Checks every field; the first bad one is reported as
    /// [`bilevel_core::BilevelError::InvalidParameter`].
    pub fn validate(&self) -> Result<()> {
        check_count("inner_steps", self.inner_steps)?;
        if let Some(c) = self.inner_steps_growth {
            check_step("inner_steps_growth", c)?;
        }
        check_step("inner_step", self.inner_step)?;
        check_exponent("inner_step_decay", self.inner_step_decay)?;
        check_batch("inner_batch", self.inner_batch)?;
        self.hypergradient.validate()
    }

    /// `T_k`, the inner steps of outer iteration `k` (0-based): `inner_steps`, or
    /// `⌈c (k + 1)^{1/2}⌉` with `c = inner_steps_growth` (computed in `f64`, at least 1).
    pub fn inner_steps_at(&self, k: u64) -> usize {
        match self.inner_steps_growth {
            None => self.inner_steps,
            Some(c) => (c * (k as f64 + 1.0).sqrt()).ceil().max(1.0) as usize,
        }
    }

    /// The inner step `α_t = α / (t + 1)^{power}` of inner step `t` (0-based).
    pub fn inner_step_at(&self, t: usize) -> f64 {
        self.inner_step * (t as f64 + 1.0).powf(-self.inner_step_decay)
    }
}

/// The BSA hypergradient estimator (see the module docs); run it in
/// [`bilevel_core::OuterLoop`] (Ghadimi & Wang use projected SGD with a constant or
/// decreasing outer step).
///
/// Updates `state.y` to `y_T` (the next warm start), `state.v`, `state.outer_loss` and
/// `state.scalars["neumann_products"]` (see [`RandomizedNeumann::estimate`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bsa {
    /// Settings.
    pub config: BsaConfig,
}

impl Bsa {
    /// An estimator with a validated configuration (an error names the offending key).
    pub fn new(config: BsaConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }
}

impl<B: AutodiffBackend> HypergradientEstimator<B> for Bsa {
    fn name(&self) -> String {
        "bsa".into()
    }

    fn demands(&self) -> Demands {
        let c = &self.config;
        c.hypergradient
            .demands_after_sgd(c.inner_step, c.inner_batch)
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
        let mut y = state.y.clone();
        for t in 0..cfg.inner_steps_at(state.iter) {
            y = sgd_step(oracle, state, y, cfg.inner_step_at(t), cfg.inner_batch)?;
        }
        let estimate = cfg.hypergradient.estimate(oracle, state, &y)?;
        state.y = y;
        Ok(estimate)
    }
}
