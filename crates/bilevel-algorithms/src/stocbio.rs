//! # stocBiO — stochastic bilevel optimizer (paper 004, Ji, Yang & Liang, Alg. 2–3, eqs. (5)–(6))
//!
//! Per outer iteration at `x = x_k` (`docs/ALGORITHMS.md` "stocBiO"):
//!
//! 1. Inner SGD from the previous iterate (warm start `y_0 = state.y`):
//!    `y_{t+1} = y_t − α ∇_y G(x, y_t; S_t)`, `t = 0..T−1`, `|S_t| = S`.
//! 2. `v_0 = ∇_y F(x, y_T; D_F)`.
//! 3. Neumann series (Alg. 3): `r = v_0, acc = v_0`; for `j = 1..Q`:
//!    `r ← r − η ∇²_yy G(x, y_T; B_j) r`, `acc += r`; `v_Q = η·acc`, i.e.
//!    `v_Q = η Σ_{q=0}^{Q} Π_{j ≤ q} (I − η H(B_j)) v_0` (eq. 5, here indexed by the order in
//!    which the products are applied).
//! 4. `ĝ = ∇_x F(x, y_T; D_F) − ∇_x∇_y G(x, y_T; D_G) v_Q` (eq. 6).
//!
//! `S_t, D_F, B_1..B_Q, D_G` are mutually independent batches drawn with replacement from
//! `state.rng`, in exactly that order; a batch size of `None` means the full data set. Given
//! `y_T`, `E v_Q = η Σ_{q=0}^{Q} (I − η∇²_yy g)^q ∇_y f`, whose distance to
//! `[∇²_yy g]⁻¹∇_y f` is at most `(1 − ημ)^{Q+1} ‖∇_y f‖/μ` (Prop. 3).
//!
//! **Oracle calls per iteration:** `T` gradients of `g`, 1 gradient of `f`, `Q` HVPs, 1 JVP;
//! `samples_g = T·S + Σ_j |B_j| + |D_G|`, `samples_f = |D_F|`.
//!
//! **Hessian batches** ([`HessianBatch`]): all `|B_j|` equal, or Prop. 3's geometric schedule.
//! Prop. 3 sets `|B_{Q+1−i}| = B·Q·(1 − ημ)^{i−1}`, `i = 1..Q`; Alg. 3 applies `B_Q` first
//! (`r_{i−1} = r_i − η H(B_i) r_i` for `i = Q..1`), so the `j`-th product applied uses
//! `⌈B·Q·(1 − ημ)^{j−1}⌉` samples: the first product, which every later term of the series
//! contains, gets the largest batch. The paper needs `B ≥ 1/(Q(1 − ημ)^{Q−1})` so that every
//! batch has at least one sample; the ceiling guarantees that here.
//!
//! This follows the paper's formula; the authors' released code differs from it
//! (`docs/ALGORITHMS.md` "stocBiO").

use crate::validate::{check_batch, check_count, check_step};
use crate::validate::{GRADIENT_DESCENT, NEUMANN};
use bilevel_core::inner::{gradient_descent, InnerGd};
use bilevel_core::linear::neumann;
use bilevel_core::preflight::{Demands, Side};
use bilevel_core::tensor::scalar;
use bilevel_core::{BilevelError, BilevelProblem, HypergradientEstimator, Oracle, Result, State};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

/// Sizes of the Hessian batches `B_1..B_Q` of the Neumann series.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum HessianBatch {
    /// Every `B_j` has this many samples (`None`: the full data set).
    Fixed(Option<usize>),
    /// The `j`-th product applied (`j = 1..Q`) uses `⌈first · ratio^{j−1}⌉` samples
    /// (Prop. 3 of paper 004 with `first = B·Q`, `ratio = 1 − ημ`; see
    /// [`HessianBatch::proposition3`]).
    Geometric {
        /// Samples of the first product applied (`B·Q` in Prop. 3).
        first: usize,
        /// Decay factor per term, in `(0, 1]` (`1 − ημ` in Prop. 3).
        ratio: f64,
    },
}

impl HessianBatch {
    /// Prop. 3's schedule: `first = base·terms`, `ratio = 1 − neumann_step·strong_convexity`
    /// (`B`, `Q`, `η` and the inner strong-convexity constant `μ`).
    pub fn proposition3(
        base: usize,
        terms: usize,
        neumann_step: f64,
        strong_convexity: f64,
    ) -> Result<Self> {
        let ratio = 1.0 - neumann_step * strong_convexity;
        if !(ratio > 0.0 && ratio <= 1.0) {
            return Err(BilevelError::invalid(
                "hessian_batch",
                format!("Prop. 3 needs 0 ≤ ημ < 1, got η·μ = {}", 1.0 - ratio),
            ));
        }
        let first = base.checked_mul(terms).ok_or_else(|| {
            BilevelError::invalid("hessian_batch", "base · terms overflows usize")
        })?;
        let schedule = HessianBatch::Geometric { first, ratio };
        schedule.validate()?;
        Ok(schedule)
    }

    /// Checks sizes (≥ 1) and the ratio (in `(0, 1]`).
    pub fn validate(&self) -> Result<()> {
        match *self {
            HessianBatch::Fixed(size) => check_batch("hessian_batch", size),
            HessianBatch::Geometric { first, ratio } => {
                if first == 0 {
                    return Err(BilevelError::invalid("hessian_batch", "must be ≥ 1"));
                }
                if !(ratio > 0.0 && ratio <= 1.0) {
                    return Err(BilevelError::invalid(
                        "hessian_batch_ratio",
                        format!("must lie in (0, 1], got {ratio}"),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Size of the batch of the `j`-th product applied (`j ≥ 1`); `None` is the full data set.
    pub fn size(&self, j: usize) -> Option<usize> {
        match *self {
            HessianBatch::Fixed(size) => size,
            HessianBatch::Geometric { first, ratio } => {
                let exponent = j.saturating_sub(1).min(i32::MAX as usize) as i32;
                let exact = first as f64 * ratio.powi(exponent);
                // A relative slack so that a product that is an integer up to round-off
                // (e.g. 10·0.8 = 8.000000000000002) is not rounded up.
                Some(((exact * (1.0 - 1e-12)).ceil() as usize).max(1))
            }
        }
    }
}

/// Settings of [`StocBio`]; its serde form is the flat `[algorithm]` table of `stocbio`
/// ([`StocBioTable`]).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "StocBioTable", into = "StocBioTable")]
pub struct StocBioConfig {
    /// Inner SGD steps per outer iteration (`T`, ≥ 1).
    pub inner_steps: usize,
    /// Inner step size (`α`, > 0).
    pub inner_step: f64,
    /// Samples per inner step (`S`; `None`: full batch).
    pub inner_batch: Option<usize>,
    /// Samples of the outer gradient `∇F(x, y_T; D_F)` (`D_f`; `None`: full batch).
    pub outer_batch: Option<usize>,
    /// Samples of the Jacobian-vector product (`D_g`; `None`: full batch).
    pub jacobian_batch: Option<usize>,
    /// Samples of each Hessian-vector product `B_j`.
    pub hessian_batch: HessianBatch,
    /// Hessian-vector products in the Neumann series (`Q`, ≥ 1).
    pub neumann_terms: usize,
    /// Step of the Neumann series (`η`, > 0; the series converges for `η < 2/L`).
    pub neumann_step: f64,
}

impl Default for StocBioConfig {
    /// `T = 10`, `α = 0.1`, batches of 50 (the paper's hyper-cleaning setting), `Q = 10`,
    /// `η = 0.5` (its 20 Newsgroups setting). Steps are problem dependent: tune them.
    fn default() -> Self {
        Self {
            inner_steps: 10,
            inner_step: 0.1,
            inner_batch: Some(50),
            outer_batch: Some(50),
            jacobian_batch: Some(50),
            hessian_batch: HessianBatch::Fixed(Some(50)),
            neumann_terms: 10,
            neumann_step: 0.5,
        }
    }
}

/// The flat `[algorithm]` table of `stocbio`, the serde form of [`StocBioConfig`]: the same
/// keys, batch sizes as a number or `"full"`, and the Hessian batches as `hessian_batch = B`
/// plus, for Prop. 3's geometric schedule, `hessian_batch_ratio = r` (the `j`-th HVP uses
/// `⌈B · r^{j−1}⌉` samples).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StocBioTable {
    /// Inner SGD steps `T`.
    pub inner_steps: usize,
    /// Inner step `α`.
    pub inner_step: f64,
    /// Samples per inner step `S`.
    #[serde(with = "crate::table::batch")]
    pub inner_batch: Option<usize>,
    /// Samples of `∇F` (`D_f`).
    #[serde(with = "crate::table::batch")]
    pub outer_batch: Option<usize>,
    /// Samples of the JVP (`D_g`).
    #[serde(with = "crate::table::batch")]
    pub jacobian_batch: Option<usize>,
    /// Samples of each HVP, or of the first with `hessian_batch_ratio`.
    #[serde(with = "crate::table::batch")]
    pub hessian_batch: Option<usize>,
    /// `r ∈ (0, 1]` of the geometric schedule (Prop. 3); unset: fixed batches.
    pub hessian_batch_ratio: Option<f64>,
    /// Neumann terms `Q`.
    pub neumann_terms: usize,
    /// Neumann step `η`.
    pub neumann_step: f64,
}

impl Default for StocBioTable {
    fn default() -> Self {
        StocBioConfig::default().into()
    }
}

impl From<StocBioConfig> for StocBioTable {
    fn from(c: StocBioConfig) -> Self {
        let (hessian_batch, hessian_batch_ratio) = match c.hessian_batch {
            HessianBatch::Fixed(size) => (size, None),
            HessianBatch::Geometric { first, ratio } => (Some(first), Some(ratio)),
        };
        Self {
            inner_steps: c.inner_steps,
            inner_step: c.inner_step,
            inner_batch: c.inner_batch,
            outer_batch: c.outer_batch,
            jacobian_batch: c.jacobian_batch,
            hessian_batch,
            hessian_batch_ratio,
            neumann_terms: c.neumann_terms,
            neumann_step: c.neumann_step,
        }
    }
}

impl TryFrom<StocBioTable> for StocBioConfig {
    type Error = BilevelError;

    fn try_from(t: StocBioTable) -> Result<Self> {
        let hessian_batch = match (t.hessian_batch_ratio, t.hessian_batch) {
            (None, size) => HessianBatch::Fixed(size),
            (Some(ratio), Some(first)) => HessianBatch::Geometric { first, ratio },
            (Some(_), None) => {
                return Err(BilevelError::invalid(
                    "hessian_batch",
                    "a geometric schedule (hessian_batch_ratio) needs a number of samples,                      not \"full\"",
                ))
            }
        };
        Ok(Self {
            inner_steps: t.inner_steps,
            inner_step: t.inner_step,
            inner_batch: t.inner_batch,
            outer_batch: t.outer_batch,
            jacobian_batch: t.jacobian_batch,
            hessian_batch,
            neumann_terms: t.neumann_terms,
            neumann_step: t.neumann_step,
        })
    }
}

impl StocBioConfig {
    /// Checks every field; the first bad one is reported as
    /// [`BilevelError::InvalidParameter`].
    pub fn validate(&self) -> Result<()> {
        check_count("inner_steps", self.inner_steps)?;
        check_step("inner_step", self.inner_step)?;
        check_batch("inner_batch", self.inner_batch)?;
        check_batch("outer_batch", self.outer_batch)?;
        check_batch("jacobian_batch", self.jacobian_batch)?;
        self.hessian_batch.validate()?;
        check_count("neumann_terms", self.neumann_terms)?;
        check_step("neumann_step", self.neumann_step)
    }
}

/// The stocBiO hypergradient estimator (see the module docs); run it in
/// [`bilevel_core::OuterLoop`] with an SGD or Adam outer step.
///
/// Updates `state.y` to `y_T` (the next warm start), `state.v` to `v_Q` (kept for inspection
/// only: every series starts from `v_0 = ∇_y F`) and `state.outer_loss` to `F(x, y_T; D_F)`,
/// a mini-batch estimate of `f`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StocBio {
    /// Settings.
    pub config: StocBioConfig,
}

impl StocBio {
    /// An estimator with a validated configuration (an error names the offending key).
    pub fn new(config: StocBioConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }
}

impl<B: AutodiffBackend> HypergradientEstimator<B> for StocBio {
    fn name(&self) -> String {
        "stocbio".into()
    }

    fn demands(&self) -> Demands {
        let c = &self.config;
        Demands::new()
            .step("inner_step", c.inner_step, GRADIENT_DESCENT)
            .step("neumann_step", c.neumann_step, NEUMANN)
            .batch("inner_batch", Side::Inner, c.inner_batch)
            .batch("outer_batch", Side::Outer, c.outer_batch)
            .batch("jacobian_batch", Side::Inner, c.jacobian_batch)
            // The first Neumann product's batch is the largest (ratio ≤ 1).
            .batch("hessian_batch", Side::Inner, c.hessian_batch.size(0))
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
        let x = &state.x;
        let rng = &mut state.rng;

        let inner = InnerGd {
            step: cfg.inner_step,
            steps: cfg.inner_steps,
        };
        let y = gradient_descent(oracle, x, state.y.clone(), &inner, |_| {
            rng.batch(inner_len, cfg.inner_batch)
        })?;

        let outer_batch = rng.batch(outer_len, cfg.outer_batch);
        let grad_f = oracle.grad_f(x, &y, &outer_batch)?;
        let series = neumann(
            |j, r| {
                let batch = rng.batch(inner_len, cfg.hessian_batch.size(j));
                oracle.hvp(x, &y, r, &batch)
            },
            &grad_f.y,
            cfg.neumann_step,
            cfg.neumann_terms,
        )?;
        let v = series.solution;
        let jacobian_batch = rng.batch(inner_len, cfg.jacobian_batch);
        let jv = oracle.jvp(x, &y, &v, &jacobian_batch)?;
        let estimate = grad_f.x.sub(jv);

        state.outer_loss = Some(scalar(grad_f.value));
        state.y = y;
        state.v = v;
        Ok(estimate)
    }
}
