//! # TTSA — two-timescale stochastic approximation (Hong, Wai, Wang & Yang 2020, "A two-timescale
//! framework for bilevel optimization"; a baseline of paper 004)
//!
//! Per outer iteration `k` (0-based, `= state.iter`):
//!
//! 1. ONE inner SGD step from the previous iterate:
//!    `y_{k+1} = y_k − α_k ∇_y G(x_k, y_k; ζ_k)`, `α_k = α₀ (k + 1)^{−2/5}` (fast time scale: the
//!    larger step).
//! 2. Ghadimi & Wang's randomized Neumann hypergradient at the new `y_{k+1}`
//!    ([`crate::bsa::RandomizedNeumann`], the same code BSA uses): `p ~ U{0..Q−1}`,
//!    `ĝ = ∇_x F(ξ) − J(ζ_0) · Qη Π_{j=1}^{p} (I − ηH(ζ_j)) ∇_y F(ξ)`, all at `(x_k, y_{k+1})`.
//! 3. Outer step `x_{k+1} = P_X(x_k − β_k ĝ)`, `β_k = β₀ (k + 1)^{−3/5}` (slow time scale: the
//!    smaller step, so that `β_k / α_k → 0` and `y` tracks `y*(x_k)`): the
//!    [`bilevel_core::OuterLoop`] that [`ttsa`] builds.
//!
//! The inner (`y`) step is the larger one and the outer (`x`) step the smaller, as in Hong et
//! al.'s two-timescale analysis (`α_k ∝ k^{−2/5}` on the inner problem, `β_k ∝ k^{−3/5}` on the
//! outer one). They allow offsets (`α_k ∝ (k + k_α)^{−2/5}`, `β_k ∝ (k + k_β)^{−3/5}`); here both
//! are 1, matching [`StepSchedule::InversePower`]. [`check_time_scales`] refuses an inner step
//! that decays faster than the outer one (the time scales swapped); [`ttsa`] and the run
//! configuration call it. Versions of this crate before issue #19 had the two exponents swapped (inner 3/5, outer
//! 2/5), which makes the outer variable the *faster* one.
//!
//! **Oracle calls per iteration:** 1 gradient of `g`, 1 gradient of `f`, `p` HVPs, 1 JVP;
//! `samples_g = |ζ_k| + p·|ζ_j| + |ζ_0|`, `samples_f = |ξ|`; `p` is stored in
//! `state.scalars["neumann_products"]`. Batches are drawn from `state.rng` in the order `ζ_k`,
//! `ξ`, `p`, `ζ_1..ζ_p`, `ζ_0`.

use bilevel_core::preflight::Demands;
use bilevel_core::{
    BilevelError, BilevelProblem, HypergradientEstimator, Oracle, OuterLoop, OuterOptimizer,
    Result, State, StepSchedule,
};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use crate::bsa::{sgd_step, RandomizedNeumann};
use crate::validate::{check_batch, check_exponent, check_step};

/// Exponent of TTSA's outer step `β_k = β₀ (k + 1)^{−3/5}` (the slow time scale).
pub const OUTER_STEP_DECAY: f64 = 0.6;

/// Default exponent of TTSA's inner step `α_k = α₀ (k + 1)^{−2/5}` (the fast time scale).
pub const INNER_STEP_DECAY: f64 = 0.4;

/// Settings of [`Ttsa`]; its serde form is the flat `[algorithm]` table of `ttsa`
/// ([`TtsaTable`]: these keys with the [`RandomizedNeumann`] keys inlined).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "TtsaTable", into = "TtsaTable")]
pub struct TtsaConfig {
    /// Base inner step `α₀` (> 0).
    pub inner_step: f64,
    /// Exponent of the inner step `α_k = α₀ (k + 1)^{−power}` (≥ 0; 2/5 in Hong et al.). It
    /// must not exceed the outer step's exponent: the inner problem is the fast time scale.
    pub inner_step_decay: f64,
    /// Samples of the inner step (`None`: full batch; 1 in the paper).
    pub inner_batch: Option<usize>,
    /// The hypergradient at the new `y`.
    pub hypergradient: RandomizedNeumann,
}

/// The flat `[algorithm]` table of `ttsa`, the serde form of [`TtsaConfig`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TtsaTable {
    /// Base inner step `α₀`.
    pub inner_step: f64,
    /// `α_k = α₀ (k+1)^{−decay}` (2/5: the fast time scale).
    pub inner_step_decay: f64,
    /// Samples of the inner step.
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

impl Default for TtsaTable {
    fn default() -> Self {
        TtsaConfig::default().into()
    }
}

impl From<TtsaConfig> for TtsaTable {
    fn from(c: TtsaConfig) -> Self {
        let n = c.hypergradient;
        Self {
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

impl From<TtsaTable> for TtsaConfig {
    fn from(t: TtsaTable) -> Self {
        Self {
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

impl Default for TtsaConfig {
    /// `α₀ = 0.1`, decay 2/5 ([`INNER_STEP_DECAY`]), single samples,
    /// [`RandomizedNeumann::default`].
    fn default() -> Self {
        Self {
            inner_step: 0.1,
            inner_step_decay: INNER_STEP_DECAY,
            inner_batch: Some(1),
            hypergradient: RandomizedNeumann::default(),
        }
    }
}

impl TtsaConfig {
    /// Checks every field; the first bad one is reported as
    /// [`bilevel_core::BilevelError::InvalidParameter`].
    pub fn validate(&self) -> Result<()> {
        check_step("inner_step", self.inner_step)?;
        check_exponent("inner_step_decay", self.inner_step_decay)?;
        check_batch("inner_batch", self.inner_batch)?;
        self.hypergradient.validate()
    }

    /// The inner step `α_k = α₀ (k + 1)^{−power}` of outer iteration `k` (0-based).
    pub fn inner_step_at(&self, k: u64) -> f64 {
        self.inner_step * (k as f64 + 1.0).powf(-self.inner_step_decay)
    }
}

/// Refuses time scales the wrong way round: TTSA's inner step `α₀ (k + 1)^{−a}` must decay no
/// faster than its outer step `β₀ (k + 1)^{−b}` (`a ≤ b`), or the outer variable moves on the
/// faster time scale and `y` cannot track `y*(x_k)`. [`Ttsa`]'s
/// [`HypergradientEstimator::check_optimizer`] calls it with the outer SGD schedule's exponent
/// (0 for a constant step), so [`OuterLoop`]'s validation refuses swapped time scales. Adam's
/// step adapts to the gradient and has no exponent to compare: it is accepted (TTSA's analysis
/// does not cover it).
pub fn check_time_scales(inner_step_decay: f64, outer_step_decay: f64) -> Result<()> {
    if inner_step_decay > outer_step_decay {
        return Err(BilevelError::invalid(
            "inner_step_decay",
            format!(
                "TTSA's inner step is the fast time scale: its decay ({inner_step_decay}) must not \
                 exceed the outer step's ({outer_step_decay}); Hong et al. take 2/5 and 3/5"
            ),
        ));
    }
    Ok(())
}

/// The TTSA hypergradient estimator: one inner SGD step, then the randomized Neumann estimate.
/// Use [`ttsa`] for the complete method with its outer step schedule.
///
/// Updates `state.y` to `y_{k+1}`, `state.v`, `state.outer_loss` and
/// `state.scalars["neumann_products"]`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ttsa {
    /// Settings.
    pub config: TtsaConfig,
}

impl Ttsa {
    /// An estimator with a validated configuration (an error names the offending key).
    pub fn new(config: TtsaConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }
}

/// TTSA ready to run: [`Ttsa`] inside an [`OuterLoop`] with
/// `OuterOptimizer::Sgd { lr: outer_step, schedule: InversePower { power: 3/5 } }`, i.e.
/// `β_k = β₀ (k + 1)^{−3/5}` with `β₀ = outer_step`.
pub fn ttsa(config: TtsaConfig, outer_step: f64) -> Result<OuterLoop<Ttsa>> {
    Ok(OuterLoop::new(
        Ttsa::new(config)?,
        OuterOptimizer::Sgd {
            lr: outer_step,
            schedule: StepSchedule::InversePower {
                power: OUTER_STEP_DECAY,
            },
        },
    ))
}

impl<B: AutodiffBackend> HypergradientEstimator<B> for Ttsa {
    fn name(&self) -> String {
        "ttsa".into()
    }

    fn demands(&self) -> Demands {
        let c = &self.config;
        c.hypergradient
            .demands_after_sgd(c.inner_step, c.inner_batch)
    }

    fn validate(&self) -> Result<()> {
        self.config.validate()
    }

    fn check_optimizer(&self, optimizer: &OuterOptimizer) -> Result<()> {
        match *optimizer {
            OuterOptimizer::Sgd { schedule, .. } => {
                let outer = match schedule {
                    StepSchedule::Constant => 0.0,
                    StepSchedule::InversePower { power } => power,
                };
                check_time_scales(self.config.inner_step_decay, outer)
            }
            OuterOptimizer::Adam { .. } => Ok(()),
        }
    }

    fn estimate<P: BilevelProblem<B>>(
        &mut self,
        oracle: &mut Oracle<'_, B, P>,
        state: &mut State<B>,
    ) -> Result<Tensor<B, 1>> {
        let cfg = self.config;
        cfg.validate()?;
        let step = cfg.inner_step_at(state.iter);
        let y = sgd_step(oracle, state, state.y.clone(), step, cfg.inner_batch)?;
        let estimate = cfg.hypergradient.estimate(oracle, state, &y)?;
        state.y = y;
        Ok(estimate)
    }
}
