//! # FSLA — Fully Single Loop Algorithm (paper 001, Li, Gu & Huang, "A Fully Single Loop
//! Algorithm for Bilevel Optimization without Hessian Inverse", AAAI 2022, Alg. 1)
//!
//! The extraction of Alg. 1 garbles lines 6–10; this is our restatement of the rule (also in
//! `docs/ALGORITHMS.md` "FSLA"), with `λ = x` (upper), `ω = y` (lower). At outer iteration `k`
//! (0-based, `= state.iter`), with `δ` = [`FslaConfig::base_step`], `p` =
//! [`FslaConfig::step_decay`] (the paper's `p = 1/2`) and `c_τ, c_β, c_η` =
//! [`FslaConfig::inner_step_ratio`], [`FslaConfig::linear_step_ratio`],
//! [`FslaConfig::momentum_ratio`]:
//!
//! 1. `α_k = δ / (k + 1)^p`; `λ_{k+1} = P_Λ(λ_k − α_k d_k)` (`P_Λ` the problem's
//!    [`BilevelProblem::upper_constraint`], the identity when unconstrained);
//! 2. `τ, β, η = c_τ α_k, c_β α_k, c_η α_k` (the paper's `τ_{k+1}, β_{k+1}, η_{k+1}`);
//! 3. `ω_{k+1} = ω_k − τ ∂_ωG(λ_{k+1}, ω_k; ξ1)`;
//! 4. `v_{k+1} = β ∂_ωF(λ_{k+1}, ω_k; ξ2) + (I − β ∂²_ωG(λ_{k+1}, ω_k; ξ3)) v_k` — one step of
//!    the forward-mode recursion (8) of the paper, i.e. of `v ← v − β(Hv − ∇_y f)`;
//! 5. `h_{k+1}(ξ) = ∂_λF(λ_{k+1}, ω_{k+1}; ξ4) − ∂_ωλG(λ_{k+1}, ω_{k+1}; ξ5) v_{k+1}`;
//! 6. STORM (Cutkosky & Orabona 2019):
//!    `d_{k+1} = h_{k+1}(ξ_{k+1}) + (1 − η)(d_k − h_k(ξ_{k+1}))`, where
//!    `h_k(ξ_{k+1}) = ∂_λF(λ_k, ω_k; ξ4) − ∂_ωλG(λ_k, ω_k; ξ5) v_k` is the same estimator at the
//!    previous state `(λ_k, ω_k, v_k)` with the NEW samples `ξ4, ξ5`.
//!
//! **Which `α_k`, and why.** Alg. 1 loops `k = 0..K−1` and sets `α_k = δ/√k`, which is
//! undefined at its first iteration (`k = 0`); Theorem 5 states the rate for `α_k = δ/√k` with
//! `k ≥ 1`. We use `α_k = δ/√(k + 1)` with the 0-based `k = state.iter`: the sequence
//! `δ, δ/√2, δ/√3, …` of the theorem's `δ/√k`, `k = 1, 2, 3, …`, indexed from 0 (the first
//! step is `δ`, and `c_η δ ≤ 1` keeps `η_k ∈ (0, 1]`). Taking `δ/√k` literally would need
//! `k = 0` skipped or special-cased; shifting the index changes nothing else
//! ([`FslaConfig::steps_at`]).
//!
//! `d_0 = h_0 = ∂_λF(λ_0, ω_0; ξ4) − ∂_ωλG(λ_0, ω_0; ξ5) v_0` with fresh samples, computed by
//! [`Solver::init`], or by the first [`Solver::next_iter`] of a state that holds no `d` yet.
//!
//! **State.** `λ_k, ω_k, v_k` are [`State::x`], [`State::y`], [`State::v`]; `d_k` is
//! `state.memory[`[`DIRECTION`]`]`. The STORM correction needs the previous state, which is
//! exactly the incoming `(x, y, v)`, so `d` is the only extra memory and a clone or checkpoint of
//! the state resumes bit-identically. After an iteration [`State::hypergradient`] is `d_{k+1}`
//! (the direction of the next step, an estimate of `∇Φ(λ_{k+1})`) and [`State::outer_loss`] is
//! `F(λ_{k+1}, ω_{k+1}; ξ4)`, a mini-batch value.
//!
//! **Samples.** `ξ1..ξ5` are independent batches drawn from `state.rng` in that order, with
//! sizes [`FslaConfig::inner_batch`] (`ξ1`), [`FslaConfig::outer_batch`] (`ξ2` and `ξ4`),
//! [`FslaConfig::hessian_batch`] (`ξ3`) and [`FslaConfig::jacobian_batch`] (`ξ5`); `None` is the
//! full data set (and a deterministic problem always uses [`Batch::Full`], drawing nothing).
//! `d_0` draws `ξ4, ξ5` in that order.
//!
//! # Oracle calls per iteration (exact; tested)
//!
//! - `grad_g`: **1** (`∂_ωG` of the `ω` step; `grad_g_y`);
//! - `grad_f`: **3** (`∂_ωF(λ_{k+1}, ω_k; ξ2)` for `v`, `∂_λF` for `h_{k+1}` and for the
//!   correction `h_k`);
//! - `hvp`: **1** (`∂²_ωG(λ_{k+1}, ω_k; ξ3) v_k`);
//! - `jvp`: **2** (`∂_ωλG v` of `h_{k+1}` and of the correction `h_k`);
//! - no bare function values; `samples_g = |ξ1| + |ξ3| + 2|ξ5|`, `samples_f = |ξ2| + 2|ξ4|`.
//!
//! So the paper's "one HVP and one JVP per iteration" holds for the method itself; the STORM
//! correction adds one gradient of `F` and one JVP (both at the previous state). They are made
//! even when `η = 1`, where the correction is multiplied by 0, so the counts never depend on the
//! schedule. Computing `d_0` costs 1 `grad_f` and 1 `jvp`, once.
//!
//! # Lemma 2: the general form of approximate hypergradients
//!
//! [`general_form`] evaluates Lemma 2's `∇_λ f_K = ∂_λF(λ, ω_K) − Σ_{k<K} β_k s_k` in its
//! backward and forward modes ([`GeneralForm`]); [`ApproximateHypergradient`] builds the
//! sequences of back-propagation through `K` GD steps (BP), the `K`-term Neumann series (NS) and
//! `K` conjugate-gradient steps (CG) and evaluates them through [`general_form`]. With a constant
//! Hessian (a quadratic `g`) BP and NS agree, as the paper notes for its synthetic experiment.

use crate::validate::{check_batch, check_count, check_exponent, check_step};
use bilevel_core::preflight::{Demands, Side};
use bilevel_core::tensor::{check_finite, dot, scalar};
use bilevel_core::{Batch, BilevelError, BilevelProblem, Oracle, Result, Solver, State};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

/// [`State::memory`] key of the STORM direction `d_k`.
pub const DIRECTION: &str = "fsla_direction";

/// Settings of [`Fsla`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FslaConfig {
    /// `δ > 0`: the outer step is `α_k = δ / (k + 1)^p`.
    pub base_step: f64,
    /// `p ≥ 0` of `α_k = δ / (k + 1)^p` (the paper's `1/2`; `0` gives constant steps).
    pub step_decay: f64,
    /// `c_τ > 0`: the inner step is `τ = c_τ α_k` (needs `c_τ δ < 2/L_g` for a stable `ω`).
    pub inner_step_ratio: f64,
    /// `c_β > 0`: the step of the `v` recursion is `β = c_β α_k` (stable for `c_β δ < 2/L_g`).
    pub linear_step_ratio: f64,
    /// `c_η > 0`: the STORM weight is `η = c_η α_k`; `c_η δ ≤ 1` is required, so that
    /// `η_k ≤ 1` at every `k` (`α_k` never grows). `c_η δ = 1` with `p = 0` makes `d = h`.
    pub momentum_ratio: f64,
    /// Samples `ξ1` of `∂_ωG` in the `ω` step (`None`: the full data set).
    #[serde(with = "crate::table::batch")]
    pub inner_batch: Option<usize>,
    /// Samples `ξ2` and `ξ4` of each gradient of `F` (`None`: the full data set).
    #[serde(with = "crate::table::batch")]
    pub outer_batch: Option<usize>,
    /// Samples `ξ3` of the Hessian-vector product (`None`: the full data set).
    #[serde(with = "crate::table::batch")]
    pub hessian_batch: Option<usize>,
    /// Samples `ξ5` of the Jacobian-vector products (`None`: the full data set).
    #[serde(with = "crate::table::batch")]
    pub jacobian_batch: Option<usize>,
}

impl Default for FslaConfig {
    /// `δ = 0.1`, `p = 1/2` (the paper's schedule), `c_τ = c_β = 1`, `c_η = 5` (`η_0 = 0.5`),
    /// batches of 50. The constants are problem dependent: tune them.
    fn default() -> Self {
        Self {
            base_step: 0.1,
            step_decay: 0.5,
            inner_step_ratio: 1.0,
            linear_step_ratio: 1.0,
            momentum_ratio: 5.0,
            inner_batch: Some(50),
            outer_batch: Some(50),
            hessian_batch: Some(50),
            jacobian_batch: Some(50),
        }
    }
}

/// The step sizes of one FSLA iteration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepSizes {
    /// `α_k`, the outer step.
    pub outer: f64,
    /// `τ = c_τ α_k`, the inner step.
    pub inner: f64,
    /// `β = c_β α_k`, the step of the `v` recursion.
    pub linear: f64,
    /// `η = c_η α_k ∈ (0, 1]`, the STORM weight.
    pub momentum: f64,
}

impl FslaConfig {
    /// Checks every field; the first bad one is reported as
    /// [`BilevelError::InvalidParameter`].
    pub fn validate(&self) -> Result<()> {
        check_step("base_step", self.base_step)?;
        check_exponent("step_decay", self.step_decay)?;
        check_step("inner_step_ratio", self.inner_step_ratio)?;
        check_step("linear_step_ratio", self.linear_step_ratio)?;
        check_step("momentum_ratio", self.momentum_ratio)?;
        let first = self.momentum_ratio * self.base_step;
        if first > 1.0 {
            return Err(BilevelError::invalid(
                "momentum_ratio",
                format!(
                    "η_0 = momentum_ratio · base_step = {first} exceeds 1 (the STORM weight must \
                     lie in (0, 1]); use momentum_ratio ≤ 1/base_step = {}",
                    1.0 / self.base_step
                ),
            ));
        }
        check_batch("inner_batch", self.inner_batch)?;
        check_batch("outer_batch", self.outer_batch)?;
        check_batch("hessian_batch", self.hessian_batch)?;
        check_batch("jacobian_batch", self.jacobian_batch)
    }

    /// The step sizes of outer iteration `k` (0-based): `α_k = δ/(k + 1)^p`, i.e. Theorem 5's
    /// `δ/√k` for `k = 1, 2, …` with the index shifted to start at 0 (module documentation).
    pub fn steps_at(&self, k: u64) -> StepSizes {
        let outer = self.base_step * (k as f64 + 1.0).powf(-self.step_decay);
        StepSizes {
            outer,
            inner: self.inner_step_ratio * outer,
            linear: self.linear_step_ratio * outer,
            // α_k ≤ δ and c_η δ ≤ 1: the clamp only removes round-off above 1.
            momentum: (self.momentum_ratio * outer).min(1.0),
        }
    }
}

/// The FSLA solver (see the module documentation for the rule, its state and oracle counts).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fsla {
    config: FslaConfig,
}

impl Fsla {
    /// A solver with a validated configuration.
    pub fn new(config: FslaConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &FslaConfig {
        &self.config
    }

    /// `d_0 = h_0` at the state's `(x, y, v)` with fresh `ξ4, ξ5`, stored in `state.memory`
    /// unless a `d` is there already.
    fn ensure_direction<B: AutodiffBackend, P: BilevelProblem<B>>(
        &self,
        oracle: &mut Oracle<'_, B, P>,
        state: &mut State<B>,
    ) -> Result<()> {
        if state.memory.contains_key(DIRECTION) {
            return Ok(());
        }
        let outer_batch = state
            .rng
            .batch(oracle.problem().outer_len(), self.config.outer_batch);
        let jacobian_batch = state
            .rng
            .batch(oracle.problem().inner_len(), self.config.jacobian_batch);
        let (h, value) = estimator(
            oracle,
            &state.x,
            &state.y,
            &state.v,
            &outer_batch,
            &jacobian_batch,
        )?;
        check_finite("FSLA d_0", &h)?;
        state.outer_loss = Some(value);
        state.hypergradient = Some(h.clone());
        state.memory.insert(DIRECTION.into(), h);
        Ok(())
    }
}

impl<B: AutodiffBackend> Solver<B> for Fsla {
    fn name(&self) -> String {
        "fsla".into()
    }

    fn demands(&self) -> Demands {
        let c = &self.config;
        let first = c.steps_at(0);
        Demands::new()
            .step(
                "inner_step_ratio",
                first.inner,
                "FSLA's first inner step (inner_step_ratio × base_step)",
            )
            .step(
                "linear_step_ratio",
                first.linear,
                "FSLA's first v step (linear_step_ratio × base_step)",
            )
            .batch("inner_batch", Side::Inner, c.inner_batch)
            .batch("outer_batch", Side::Outer, c.outer_batch)
            .batch("hessian_batch", Side::Inner, c.hessian_batch)
            .batch("jacobian_batch", Side::Inner, c.jacobian_batch)
    }

    fn validate(&self) -> Result<()> {
        self.config.validate()
    }

    fn init<P: BilevelProblem<B>>(
        &mut self,
        oracle: &mut Oracle<'_, B, P>,
        mut state: State<B>,
    ) -> Result<State<B>> {
        self.ensure_direction(oracle, &mut state)?;
        Ok(state)
    }

    fn next_iter<P: BilevelProblem<B>>(
        &mut self,
        oracle: &mut Oracle<'_, B, P>,
        mut state: State<B>,
    ) -> Result<State<B>> {
        let cfg = self.config;
        cfg.validate()?;
        self.ensure_direction(oracle, &mut state)?;
        let steps = cfg.steps_at(state.iter);
        let d = state.memory[DIRECTION].clone();
        let (x, y, v) = (state.x.clone(), state.y.clone(), state.v.clone());

        let inner_len = oracle.problem().inner_len();
        let outer_len = oracle.problem().outer_len();
        let rng = &mut state.rng;
        let xi1 = rng.batch(inner_len, cfg.inner_batch);
        let xi2 = rng.batch(outer_len, cfg.outer_batch);
        let xi3 = rng.batch(inner_len, cfg.hessian_batch);
        let xi4 = rng.batch(outer_len, cfg.outer_batch);
        let xi5 = rng.batch(inner_len, cfg.jacobian_batch);

        let x_next = oracle
            .problem()
            .upper_constraint()
            .project(x.clone().sub(d.clone().mul_scalar(steps.outer)));
        let grad_y = oracle.grad_g_y(&x_next, &y, &xi1)?;
        let y_next = y.clone().sub(grad_y.mul_scalar(steps.inner));
        let v_next = linear_step(oracle, &x_next, &y, &v, steps.linear, &xi2, &xi3)?;
        let (h_next, value) = estimator(oracle, &x_next, &y_next, &v_next, &xi4, &xi5)?;
        let (h_prev, _) = estimator(oracle, &x, &y, &v, &xi4, &xi5)?;
        let d_next = h_next.add(d.sub(h_prev).mul_scalar(1.0 - steps.momentum));
        check_finite("FSLA direction d", &d_next)?;

        state.x = x_next;
        state.y = y_next;
        state.v = v_next;
        state.memory.insert(DIRECTION.into(), d_next.clone());
        state.hypergradient = Some(d_next);
        state.outer_loss = Some(value);
        state.iter += 1;
        Ok(state)
    }
}

/// One step of FSLA's `v` recursion (Alg. 1 line 7, the paper's eq. (8)):
/// `v ← β ∂_ωF(x, y; outer_batch) + (I − β ∂²_ωG(x, y; hessian_batch)) v`, i.e. one fixed-point
/// step `v ← v − β(Hv − ∇_y f)` towards `v* = H⁻¹∇_y f`. Costs 1 `grad_f` and 1 `hvp`.
pub fn linear_step<B: AutodiffBackend, P: BilevelProblem<B>>(
    oracle: &mut Oracle<'_, B, P>,
    x: &Tensor<B, 1>,
    y: &Tensor<B, 1>,
    v: &Tensor<B, 1>,
    step: f64,
    outer_batch: &Batch,
    hessian_batch: &Batch,
) -> Result<Tensor<B, 1>> {
    let grad_f = oracle.grad_f(x, y, outer_batch)?;
    let hv = oracle.hvp(x, y, v, hessian_batch)?;
    Ok(v.clone().add(grad_f.y.sub(hv).mul_scalar(step)))
}

/// FSLA's hypergradient estimator (Alg. 1 line 8)
/// `h = ∂_λF(x, y; outer_batch) − ∂_ωλG(x, y; jacobian_batch) v`, and the value
/// `F(x, y; outer_batch)`. Costs 1 `grad_f` and 1 `jvp`.
pub fn estimator<B: AutodiffBackend, P: BilevelProblem<B>>(
    oracle: &mut Oracle<'_, B, P>,
    x: &Tensor<B, 1>,
    y: &Tensor<B, 1>,
    v: &Tensor<B, 1>,
    outer_batch: &Batch,
    jacobian_batch: &Batch,
) -> Result<(Tensor<B, 1>, f64)> {
    let grad_f = oracle.grad_f(x, y, outer_batch)?;
    let jv = oracle.jvp(x, y, v, jacobian_batch)?;
    Ok((grad_f.x.sub(jv), scalar(grad_f.value)))
}

/// Lemma 2's two modes of `s_k` in `∇_λ f_K = ∂_λF(λ, ω_K) − Σ_{k=0}^{K−1} β_k s_k`
/// (paper 001), given states `ω_0..ω_K` and coefficients `β_0..β_{K−1}`.
#[derive(Clone, Debug)]
pub enum GeneralForm<B: AutodiffBackend> {
    /// `s_k = ∂_ωλG(λ, ω_k) Π_{s=k+1}^{K−1} (I − β_s ∂²_ωG(λ, ω_s)) p_K`, the factors applied to
    /// `p_K` from `s = K−1` down to `s = k+1` (reverse accumulation, BP's chain rule).
    Backward {
        /// `p_K`.
        direction: Tensor<B, 1>,
    },
    /// `s_k = ∂_ωλG(λ, ω_K) Π_{s=k+1}^{K−1} (I − β_s ∂²_ωG(λ, ω_s)) p_k`, the factors applied
    /// to `p_k` from `s = k+1` up to `s = K−1`: `Σ β_k s_k = ∂_ωλG(λ, ω_K) v_K` with the
    /// recursion (8) `v_{k+1} = (I − β_k ∂²_ωG(λ, ω_k)) v_k + β_k p_k`, `v_0 = 0`.
    Forward {
        /// `p_0..p_{K−1}`.
        directions: Vec<Tensor<B, 1>>,
    },
}

/// Evaluates Lemma 2's general form at `x = λ`: `outer_partial − Σ_{k<K} β_k s_k`, where
/// `outer_partial = ∂_λF(λ, ω_K)` is supplied by the caller (it usually comes with `p_K` from
/// one gradient call), `states = [ω_0..ω_K]` and `coefficients = [β_0..β_{K−1}]`.
///
/// Every product uses `batch`. Oracle calls: backward `K` JVPs and `K − 1` HVPs (one
/// `hvp_jvp` per state `ω_1..ω_{K−1}`, a `jvp` at `ω_0`); forward `K − 1` HVPs (none from
/// `v_0 = 0`) and 1 JVP at `ω_K`. `K = 0` returns `outer_partial`.
pub fn general_form<B: AutodiffBackend, P: BilevelProblem<B>>(
    oracle: &mut Oracle<'_, B, P>,
    x: &Tensor<B, 1>,
    outer_partial: Tensor<B, 1>,
    states: &[Tensor<B, 1>],
    coefficients: &[f64],
    form: &GeneralForm<B>,
    batch: &Batch,
) -> Result<Tensor<B, 1>> {
    let k_len = coefficients.len();
    if states.len() != k_len + 1 {
        return Err(BilevelError::invalid(
            "states",
            format!(
                "Lemma 2 needs K + 1 = {} states ω_0..ω_K for K = {k_len} coefficients, got {}",
                k_len + 1,
                states.len()
            ),
        ));
    }
    if k_len == 0 {
        return Ok(outer_partial);
    }
    match form {
        GeneralForm::Backward { direction } => {
            let mut grad = outer_partial;
            let mut a = direction.clone();
            for t in (0..k_len).rev() {
                let beta = coefficients[t];
                if t > 0 {
                    let (ha, ja) = oracle.hvp_jvp(x, &states[t], &a, batch)?;
                    grad = grad.sub(ja.mul_scalar(beta));
                    a = a.sub(ha.mul_scalar(beta));
                } else {
                    let ja = oracle.jvp(x, &states[0], &a, batch)?;
                    grad = grad.sub(ja.mul_scalar(beta));
                }
            }
            Ok(grad)
        }
        GeneralForm::Forward { directions } => {
            if directions.len() != k_len {
                return Err(BilevelError::invalid(
                    "directions",
                    format!(
                        "the forward mode needs K = {k_len} directions p_0..p_{{K−1}}, got {}",
                        directions.len()
                    ),
                ));
            }
            let mut v = directions[0].clone().mul_scalar(coefficients[0]);
            for k in 1..k_len {
                let beta = coefficients[k];
                let hv = oracle.hvp(x, &states[k], &v, batch)?;
                v = v
                    .sub(hv.mul_scalar(beta))
                    .add(directions[k].clone().mul_scalar(beta));
            }
            let jv = oracle.jvp(x, &states[k_len], &v, batch)?;
            Ok(outer_partial.sub(jv))
        }
    }
}

/// The three approximate hypergradients that Lemma 2 unifies, each evaluated through
/// [`general_form`] (deterministic: every call uses the batch passed to
/// [`ApproximateHypergradient::estimate`]).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ApproximateHypergradient {
    /// BP: `K` GD steps `ω_{k+1} = ω_k − η ∇_ωG(λ, ω_k)` from the given `ω_0`, differentiated
    /// by the chain rule: backward mode, states `ω_0..ω_K`, `β_k = η`, `p_K = ∂_ωF(λ, ω_K)`.
    /// Calls: `K` `grad_g`, 1 `grad_f`, `K − 1` HVPs, `K` JVPs.
    BackPropagation {
        /// GD step `η`.
        inner_step: f64,
        /// `K ≥ 1`.
        steps: usize,
    },
    /// NS: `[∂²_ωG]⁻¹ ≈ β Σ_{k<K} (I − β ∂²_ωG)^k` at the given `ω̂`: backward mode, all states
    /// `ω̂`, `β_k = β`, `p_K = ∂_ωF(λ, ω̂)`. Calls: 1 `grad_f`, `K − 1` HVPs, `K` JVPs.
    NeumannSeries {
        /// `β`.
        step: f64,
        /// `K ≥ 1`.
        terms: usize,
    },
    /// CG: `K` conjugate-gradient steps on `∂²_ωG z = ∂_ωF` from `z = 0` at the given `ω̂`,
    /// `z_{k+1} = (I − α_k H) z_k + α_k (b + γ_k q_{k−1})` (`q` the conjugate directions):
    /// forward mode, all states `ω̂`, `β_k = α_k`, `p_k = b + γ_k q_{k−1}`. Stops early at an
    /// exactly zero residual or non-positive curvature. Calls: 1 `grad_f`, `K` HVPs for the CG
    /// run and `K − 1` for the forward recursion, 1 JVP.
    ConjugateGradient {
        /// `K ≥ 1`.
        steps: usize,
    },
}

impl ApproximateHypergradient {
    /// Checks steps `> 0` and counts `≥ 1`.
    pub fn validate(&self) -> Result<()> {
        match *self {
            ApproximateHypergradient::BackPropagation { inner_step, steps } => {
                check_step("inner_step", inner_step)?;
                check_count("steps", steps)
            }
            ApproximateHypergradient::NeumannSeries { step, terms } => {
                check_step("step", step)?;
                check_count("terms", terms)
            }
            ApproximateHypergradient::ConjugateGradient { steps } => check_count("steps", steps),
        }
    }

    /// The estimate at `x = λ`; `y` is `ω_0` for BP and `ω̂` for NS and CG.
    pub fn estimate<B: AutodiffBackend, P: BilevelProblem<B>>(
        &self,
        oracle: &mut Oracle<'_, B, P>,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        batch: &Batch,
    ) -> Result<Tensor<B, 1>> {
        self.validate()?;
        match *self {
            ApproximateHypergradient::BackPropagation { inner_step, steps } => {
                let mut states = vec![y.clone()];
                for _ in 0..steps {
                    let last = states.last().cloned().unwrap_or_else(|| y.clone());
                    let grad = oracle.grad_g_y(x, &last, batch)?;
                    states.push(last.sub(grad.mul_scalar(inner_step)));
                }
                let grad_f = oracle.grad_f(x, &states[steps], batch)?;
                let form = GeneralForm::Backward {
                    direction: grad_f.y,
                };
                let coefficients = vec![inner_step; steps];
                general_form(oracle, x, grad_f.x, &states, &coefficients, &form, batch)
            }
            ApproximateHypergradient::NeumannSeries { step, terms } => {
                let grad_f = oracle.grad_f(x, y, batch)?;
                let states = vec![y.clone(); terms + 1];
                let form = GeneralForm::Backward {
                    direction: grad_f.y,
                };
                let coefficients = vec![step; terms];
                general_form(oracle, x, grad_f.x, &states, &coefficients, &form, batch)
            }
            ApproximateHypergradient::ConjugateGradient { steps } => {
                let grad_f = oracle.grad_f(x, y, batch)?;
                let b = grad_f.y;
                let (coefficients, directions) = cg_sequences(oracle, x, y, &b, steps, batch)?;
                let states = vec![y.clone(); coefficients.len() + 1];
                let form = GeneralForm::Forward { directions };
                general_form(oracle, x, grad_f.x, &states, &coefficients, &form, batch)
            }
        }
    }
}

/// CG on `H z = b` from `z = 0`, returning Lemma 2's `β_k = α_k` and `p_k = b + γ_k q_{k−1}`
/// (`q_{−1} = 0`) for the steps it made.
fn cg_sequences<B: AutodiffBackend, P: BilevelProblem<B>>(
    oracle: &mut Oracle<'_, B, P>,
    x: &Tensor<B, 1>,
    y: &Tensor<B, 1>,
    b: &Tensor<B, 1>,
    steps: usize,
    batch: &Batch,
) -> Result<(Vec<f64>, Vec<Tensor<B, 1>>)> {
    let mut coefficients = Vec::with_capacity(steps);
    let mut directions = Vec::with_capacity(steps);
    let mut r = b.clone();
    let mut rr = dot(&r, &r);
    let mut q = r.clone();
    // p_k = b + γ_k q_{k−1}; γ_0 q_{−1} = 0.
    let mut p = b.clone();
    for _ in 0..steps {
        if rr == 0.0 {
            break;
        }
        let hq = oracle.hvp(x, y, &q, batch)?;
        let curvature = dot(&q, &hq);
        if curvature.is_nan() || curvature <= 0.0 {
            break;
        }
        let alpha = rr / curvature;
        coefficients.push(alpha);
        directions.push(p);
        r = r.sub(hq.mul_scalar(alpha));
        let rr_next = dot(&r, &r);
        let gamma = rr_next / rr;
        p = b.clone().add(q.clone().mul_scalar(gamma));
        q = r.clone().add(q.mul_scalar(gamma));
        rr = rr_next;
    }
    if !rr.is_finite() {
        return Err(BilevelError::NonFinite {
            what: "CG residual".into(),
        });
    }
    Ok((coefficients, directions))
}
