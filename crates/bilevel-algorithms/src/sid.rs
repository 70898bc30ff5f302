//! # SID + BSGM — stochastic implicit differentiation without warm start (paper 002, Grazzi,
//! Pontil & Salzo, "Bilevel optimization with a lower-level contraction", Alg. 1 (SID) and
//! Alg. 2 (BSGM)); AmIGO (Arbel & Mairal 2021), ALSET (Chen, Sun & Yin 2021) and ALSET† as
//! warm-start configurations of the same estimator, as in the paper's §7.3 baselines.
//!
//! The extraction of paper 002 lost its formulas; the rule is our reconstruction (also in
//! `docs/ALGORITHMS.md` "SID / BSGM, AmIGO, ALSET, ALSET†"). The lower level is the fixed
//! point `w*(x) = Ψ(w*(x), x)` of a contraction, given either by the problem
//! ([`LowerLevel::Contraction`], [`BilevelProblem::contraction_map`]) or as `argmin_w g` through
//! the gradient step `Ψ(w, x; ζ) = w − γ∇_w G(x, w; ζ)` ([`LowerLevel::GradientStep`], a
//! contraction for `0 < γ < 2/L_g` when `g` is `μ`-strongly convex and `L_g`-smooth). At
//! `x = x_k`, with steps `η_j` from [`InnerStepSchedule`] (the same sequence for both solvers,
//! as in the paper):
//!
//! 1. **LL** (stochastic Krasnoselskii–Mann): `w_0 = 0`,
//!    `w_{j+1} = (1 − η_j) w_j + η_j Ψ(w_j, x; ζ_j)`, `j < t` ([`SidConfig::inner_steps`]).
//! 2. **UL partial gradients**: `∇_w F(x, w_t; D)`, `∇_x F(x, w_t; D)` with `|D| = s`
//!    ([`SidConfig::batch_size`]), from one backward.
//! 3. **LS** (the linear system `v = ∂_wΨᵀ v + ∇_w f`): `v_0 = 0`,
//!    `v_{j+1} = (1 − η_j) v_j + η_j (∂_wΨ(w_t, x; ζ'_j)ᵀ v_j + ∇_w F)`, `j < k`
//!    ([`SidConfig::linear_steps`]).
//! 4. **Hypergradient** `ĝ = ∇_x F + ∂_xΨ(w_t, x; D')ᵀ v_k`, `|D'| = s`.
//!
//! For the gradient step, `∂_wΨᵀv = v − γ H v` and `∂_xΨᵀv = −γ J v` (`H = ∇²_ww G`,
//! `J = ∇_x∇_w G`); then `ĝ = ∇_x F − γ J v_k`, and `γ v_k` approximates `[∇²_ww g]⁻¹∇_w f`.
//!
//! **BSGM** ([`bsgm`]) is [`OuterLoop`] with the SGD step `x_{k+1} = P_X(x_k − β ĝ_k)`;
//! `OuterLoop` projects onto [`BilevelProblem::upper_constraint`].
//!
//! **Warm starts** (flags, off for SID): [`SidConfig::warm_start_inner`] starts the LL from
//! `w_0 = state.y` (≈ stocBiO, paper 002 §7.1's "BSGM with LL warm start"),
//! [`SidConfig::warm_start_linear`] starts the LS from `v_0 = state.v`. Named variants, as paper
//! 002's Tables 3–4 list them (columns WS = LL, LS; `t`; `k`):
//!
//! | variant | LL warm | LS warm | `t` | `k` | builder |
//! |---|---|---|---|---|---|
//! | SID / BSGM | N | N | any | any | [`SidConfig::default`] |
//! | LL warm start (≈ stocBiO) | Y | N | > 1 | any | [`SidConfig::warm_inner`] |
//! | AmIGO | Y | Y | any | any | [`SidConfig::amigo`] |
//! | ALSET (Chen, Sun & Yin 2021) | Y | N | 1 | > 1 | [`SidConfig::alset`] |
//! | ALSET† (paper 002 §7.3) | Y | Y | 1 | 1 | [`SidConfig::alset_dagger`] |
//!
//! ALSET is single-loop on the lower level only: one warm-started LL step per outer step, and a
//! linear system solved afresh (`v_0 = 0`) by `k` steps; ALSET† also warm-starts the linear
//! system and takes a single step of it. Without a flag the corresponding state vector is never
//! read. `state.y ← w_t`, `state.v ← v_k` and
//! `state.outer_loss ← F(x, w_t; D)` are written in every case.
//!
//! **Randomness**: the batches `ζ_0..ζ_{t−1}` ([`SidConfig::inner_batch`] samples of the inner
//! data each), `D` (outer data), `ζ'_j` ([`SidConfig::linear_batch`] samples each), `D'`
//! (inner data) are drawn from `state.rng` with replacement, mutually independent, in exactly
//! that order (paper 002 requires the four stages to be independent). `None` means the full data
//! set (and a deterministic problem always uses [`Batch::Full`]).
//! The paper takes one sample per LL/LS step and a large `s`: the defaults are
//! `inner_batch = linear_batch = Some(1)`.
//!
//! **Skipped product**: with a cold LS start `v_0 = 0`, the first LS step is exactly
//! `v_1 = η_0 ∇_w F` (`∂_wΨᵀ0 = 0`); its product is not computed and `ζ'_0` is not drawn.
//!
//! # Oracle calls and samples per outer iteration
//!
//! Let `k' = k − 1` with a cold LS start and `k' = k` with [`SidConfig::warm_start_linear`];
//! `b_in`, `b_lin` and `s` the batch sizes (the data-set size where `None`; 0 samples on a
//! deterministic loss).
//!
//! - [`LowerLevel::GradientStep`]: `grad_g = t`, `grad_f = 1`, `hvp = k'`, `jvp = 1`;
//! - [`LowerLevel::Contraction`]: `map_values = t`, `grad_f = 1`, `map_vjps = k' + 1`;
//! - both: `samples_g = t·b_in + k'·b_lin + s`, `samples_f = s`; no bare function values.

use crate::validate::{check_batch, check_count, check_exponent};
use bilevel_core::preflight::{Demands, Side};
use bilevel_core::tensor::scalar;
use bilevel_core::{
    Batch, BilevelError, BilevelProblem, HypergradientEstimator, Oracle, OuterLoop, OuterOptimizer,
    Result, State,
};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

/// How the lower level `w*(x) = Ψ(w*(x), x)` is given.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum LowerLevel {
    /// The problem's own contraction map `Ψ(w, x; ζ)`
    /// ([`BilevelProblem::contraction_map`]; an error if the problem has none), differentiated by
    /// [`Oracle::map_vjp`].
    Contraction,
    /// `Ψ(w, x; ζ) = w − γ ∇_w G(x, w; ζ)` for a lower level `argmin_w g`: a contraction when
    /// `0 < γ < 2/L_g` and `g(x, ·)` is strongly convex. Products by HVP/JVP.
    GradientStep {
        /// `γ > 0`.
        step: f64,
    },
}

impl LowerLevel {
    /// Checks `γ > 0` and finite (whether `γ < 2/L_g` depends on the problem).
    pub fn validate(&self) -> Result<()> {
        match *self {
            LowerLevel::Contraction => Ok(()),
            LowerLevel::GradientStep { step } => {
                if !(step > 0.0 && step.is_finite()) {
                    return Err(BilevelError::invalid(
                        "lower_level_step",
                        format!("γ must be > 0 and finite, got {step}"),
                    ));
                }
                Ok(())
            }
        }
    }
}

/// The step sizes `η_j ∈ (0, 1]` of the LL and LS fixed-point iterations (`j = 0, 1, ...`,
/// restarting at every outer iteration).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum InnerStepSchedule {
    /// `η_j = η` (enough in the deterministic case, paper 002 Thm. 17).
    Constant {
        /// `η ∈ (0, 1]`.
        step: f64,
    },
    /// `η_j = η_0 · (c / (c + j))^p`. With `c = 1`: `η_0 / (j + 1)^p`. With `p = 1`:
    /// `β / (c + j)`, `β = η_0 c`, the schedule of paper 002 Thm. 8 (via Grazzi et al. 2021
    /// Thm. 4.2), which drives the MSE of stochastic solvers to zero as `t, k → ∞` when
    /// `β(1 − q) > 1` for the contraction constant `q` (for the gradient step, `1 − q = γμ`).
    Decreasing {
        /// `η_0 ∈ (0, 1]`.
        initial: f64,
        /// `c > 0`.
        offset: f64,
        /// `p ≥ 0`.
        power: f64,
    },
}

impl InnerStepSchedule {
    /// The paper's `η_j = β / (c + j)` with `η_0 = β / c` (needs `β ≤ c`).
    pub fn harmonic(scale: f64, offset: f64) -> Self {
        InnerStepSchedule::Decreasing {
            initial: scale / offset,
            offset,
            power: 1.0,
        }
    }

    /// `η_j` for the 0-based step `j`.
    pub fn at(&self, j: usize) -> f64 {
        match *self {
            InnerStepSchedule::Constant { step } => step,
            InnerStepSchedule::Decreasing {
                initial,
                offset,
                power,
            } => initial * (offset / (offset + j as f64)).powf(power),
        }
    }

    /// Checks `η_0 ∈ (0, 1]`, `c > 0`, `p ≥ 0` (all finite); then every `η_j ∈ (0, 1]`.
    pub fn validate(&self) -> Result<()> {
        let check_unit = |name: &str, v: f64| {
            if !(v > 0.0 && v <= 1.0) {
                return Err(BilevelError::invalid(
                    name,
                    format!("a fixed-point step must lie in (0, 1], got {v}"),
                ));
            }
            Ok(())
        };
        match *self {
            InnerStepSchedule::Constant { step } => check_unit("fixed_point_step", step),
            InnerStepSchedule::Decreasing {
                initial,
                offset,
                power,
            } => {
                check_unit("fixed_point_step", initial)?;
                if !(offset > 0.0 && offset.is_finite()) {
                    return Err(BilevelError::invalid(
                        "fixed_point_step_offset",
                        format!("must be > 0 and finite, got {offset}"),
                    ));
                }
                check_exponent("fixed_point_step_decay", power)
            }
        }
    }
}

/// Settings of [`Sid`]. Build with a struct literal over [`Default`], then pick a variant with
/// [`SidConfig::warm_inner`], [`SidConfig::amigo`], [`SidConfig::alset`] or
/// [`SidConfig::alset_dagger`].
///
/// Its serde form is the flat `[algorithm]` table of `sid-bsgm`, `amigo`, `alset` and
/// `alset-dagger` ([`SidTable`]).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "SidTable", into = "SidTable")]
pub struct SidConfig {
    /// The contraction `Ψ`.
    pub lower_level: LowerLevel,
    /// LL fixed-point steps per outer iteration (`t`, ≥ 1).
    pub inner_steps: usize,
    /// LS fixed-point steps per outer iteration (`k`, ≥ 1).
    pub linear_steps: usize,
    /// Samples of `∇F` and of `∂_xΨᵀv` (`s`; `None`: full data set).
    pub batch_size: Option<usize>,
    /// Samples of each LL evaluation `Ψ(w_j, x; ζ_j)` (`None`: full data set).
    pub inner_batch: Option<usize>,
    /// Samples of each LS product `∂_wΨ(w_t, x; ζ'_j)ᵀv_j` (`None`: full data set).
    pub linear_batch: Option<usize>,
    /// Steps `η_j` of both fixed-point solvers.
    pub inner_step_schedule: InnerStepSchedule,
    /// Start the LL from `state.y` instead of 0.
    pub warm_start_inner: bool,
    /// Start the LS from `state.v` instead of 0.
    pub warm_start_linear: bool,
}

impl Default for SidConfig {
    /// SID without warm start: gradient step `γ = 0.1`, `t = k = 10`, `s = 50`, one sample per
    /// LL/LS step, constant `η = 1` (paper 002 §7.3 found constant steps as good as decreasing
    /// ones after tuning). Steps are problem dependent: tune them.
    fn default() -> Self {
        Self {
            lower_level: LowerLevel::GradientStep { step: 0.1 },
            inner_steps: 10,
            linear_steps: 10,
            batch_size: Some(50),
            inner_batch: Some(1),
            linear_batch: Some(1),
            inner_step_schedule: InnerStepSchedule::Constant { step: 1.0 },
            warm_start_inner: false,
            warm_start_linear: false,
        }
    }
}

/// How SID's lower level is posed in a table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LowerLevelKind {
    /// `Ψ(w, x) = w − γ ∇_w g(x, w)` with `γ = lower_level_step`.
    #[default]
    GradientStep,
    /// The problem's own contraction map (an error if it has none).
    Contraction,
}

/// The flat `[algorithm]` table of the SID family, the serde form of [`SidConfig`]:
///
/// ```toml
/// lower_level = "gradient-step"   # or "contraction"
/// lower_level_step = 0.1          # γ of Ψ = w − γ∇_w g
/// inner_steps = 10                # t
/// linear_steps = 10               # k
/// batch_size = 50                 # s (or "full")
/// inner_batch = 1
/// linear_batch = 1
/// fixed_point_step = 1.0          # η_0 ∈ (0, 1]
/// fixed_point_step_decay = 0.0    # p: η_j = η_0 (c/(c+j))^p, 0 = constant
/// fixed_point_step_offset = 1.0   # c
/// warm_start_inner = false
/// warm_start_linear = false
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SidTable {
    /// `"gradient-step"` or `"contraction"`.
    pub lower_level: LowerLevelKind,
    /// `γ` of the gradient step.
    pub lower_level_step: f64,
    /// LL fixed-point steps `t`.
    pub inner_steps: usize,
    /// LS fixed-point steps `k`.
    pub linear_steps: usize,
    /// Samples `s` of `∇F` and `∂_xΨᵀv`.
    #[serde(with = "crate::table::batch")]
    pub batch_size: Option<usize>,
    /// Samples per LL step.
    #[serde(with = "crate::table::batch")]
    pub inner_batch: Option<usize>,
    /// Samples per LS step.
    #[serde(with = "crate::table::batch")]
    pub linear_batch: Option<usize>,
    /// `η_0 ∈ (0, 1]` of both fixed-point solvers.
    pub fixed_point_step: f64,
    /// `p ≥ 0` (0: constant steps).
    pub fixed_point_step_decay: f64,
    /// `c > 0` of the decreasing schedule.
    pub fixed_point_step_offset: f64,
    /// Start the LL from the previous `w`.
    pub warm_start_inner: bool,
    /// Start the LS from the previous `v`.
    pub warm_start_linear: bool,
}

impl Default for SidTable {
    fn default() -> Self {
        SidConfig::default().into()
    }
}

impl From<SidConfig> for SidTable {
    fn from(c: SidConfig) -> Self {
        let (lower_level, lower_level_step) = match c.lower_level {
            LowerLevel::GradientStep { step } => (LowerLevelKind::GradientStep, step),
            LowerLevel::Contraction => (LowerLevelKind::Contraction, 0.1),
        };
        let (step, decay, offset) = match c.inner_step_schedule {
            InnerStepSchedule::Constant { step } => (step, 0.0, 1.0),
            InnerStepSchedule::Decreasing {
                initial,
                offset,
                power,
            } => (initial, power, offset),
        };
        Self {
            lower_level,
            lower_level_step,
            inner_steps: c.inner_steps,
            linear_steps: c.linear_steps,
            batch_size: c.batch_size,
            inner_batch: c.inner_batch,
            linear_batch: c.linear_batch,
            fixed_point_step: step,
            fixed_point_step_decay: decay,
            fixed_point_step_offset: offset,
            warm_start_inner: c.warm_start_inner,
            warm_start_linear: c.warm_start_linear,
        }
    }
}

impl From<SidTable> for SidConfig {
    fn from(t: SidTable) -> Self {
        Self {
            lower_level: match t.lower_level {
                LowerLevelKind::GradientStep => LowerLevel::GradientStep {
                    step: t.lower_level_step,
                },
                LowerLevelKind::Contraction => LowerLevel::Contraction,
            },
            inner_steps: t.inner_steps,
            linear_steps: t.linear_steps,
            batch_size: t.batch_size,
            inner_batch: t.inner_batch,
            linear_batch: t.linear_batch,
            inner_step_schedule: if t.fixed_point_step_decay == 0.0 {
                InnerStepSchedule::Constant {
                    step: t.fixed_point_step,
                }
            } else {
                InnerStepSchedule::Decreasing {
                    initial: t.fixed_point_step,
                    offset: t.fixed_point_step_offset,
                    power: t.fixed_point_step_decay,
                }
            },
            warm_start_inner: t.warm_start_inner,
            warm_start_linear: t.warm_start_linear,
        }
    }
}

impl SidConfig {
    /// Checks every field; the first bad one is reported as
    /// [`BilevelError::InvalidParameter`].
    pub fn validate(&self) -> Result<()> {
        self.lower_level.validate()?;
        check_count("inner_steps", self.inner_steps)?;
        check_count("linear_steps", self.linear_steps)?;
        check_batch("batch_size", self.batch_size)?;
        check_batch("inner_batch", self.inner_batch)?;
        check_batch("linear_batch", self.linear_batch)?;
        self.inner_step_schedule.validate()
    }

    /// Warm start on the LL only (≈ stocBiO; paper 002 §7.1).
    pub fn warm_inner(self) -> Self {
        Self {
            warm_start_inner: true,
            warm_start_linear: false,
            ..self
        }
    }

    /// AmIGO (Arbel & Mairal 2021): warm starts on the LL and the LS.
    pub fn amigo(self) -> Self {
        Self {
            warm_start_inner: true,
            warm_start_linear: true,
            ..self
        }
    }

    /// ALSET (Chen, Sun & Yin 2021) as paper 002 runs it (Tables 3–4: WS = Y, N): one
    /// warm-started LL step per outer iteration (`t = 1`) and a cold linear solve
    /// (`v_0 = 0`) of this config's `k = linear_steps` steps (keep `k > 1`: with `k = 1` the
    /// cold solve is `v = η_0 ∇_w F` alone, the identity in place of the inverse Hessian).
    pub fn alset(self) -> Self {
        Self {
            inner_steps: 1,
            ..self.warm_inner()
        }
    }

    /// ALSET† (paper 002 §7.3): one LL step and one LS step per outer iteration (`t = k = 1`),
    /// both warm-started.
    pub fn alset_dagger(self) -> Self {
        Self {
            inner_steps: 1,
            linear_steps: 1,
            ..self.amigo()
        }
    }

    /// The variant's name: `sid`, `sid-warm-ll`, `sid-warm-ls`, `amigo`, `alset` (LL warm start
    /// only, `t = 1`) or `alset-dagger` (both warm starts, `t = k = 1`).
    pub fn variant_name(&self) -> &'static str {
        match (self.warm_start_inner, self.warm_start_linear) {
            (false, false) => "sid",
            (true, false) if self.inner_steps == 1 => "alset",
            (true, false) => "sid-warm-ll",
            (false, true) => "sid-warm-ls",
            (true, true) if self.inner_steps == 1 && self.linear_steps == 1 => "alset-dagger",
            (true, true) => "amigo",
        }
    }
}

/// The SID hypergradient estimator (see the module docs) and its warm-start variants; run it
/// in [`OuterLoop`] (see [`bsgm`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sid {
    /// Settings.
    pub config: SidConfig,
}

impl Sid {
    /// An estimator with a validated configuration (an error names the offending key).
    pub fn new(config: SidConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }
}

/// BSGM (paper 002, Alg. 2): SID inside [`OuterLoop`] with projected SGD.
pub type Bsgm = OuterLoop<Sid>;

/// BSGM with outer step `β`: `x_{k+1} = P_X(x_k − β ĝ_k)`, `ĝ_k` from [`Sid`] with `config`
/// (any variant). For a decreasing `β_k`, build `OuterLoop::new(Sid::new(c),
/// OuterOptimizer::Sgd { .. })` directly.
pub fn bsgm(config: SidConfig, outer_step: f64) -> Result<Bsgm> {
    Ok(OuterLoop::new(
        Sid::new(config)?,
        OuterOptimizer::sgd(outer_step),
    ))
}

/// `(1 − η) a + η b`, exact at `η = 1`.
fn average<B: AutodiffBackend>(a: Tensor<B, 1>, b: Tensor<B, 1>, eta: f64) -> Tensor<B, 1> {
    if eta == 1.0 {
        b
    } else {
        a.mul_scalar(1.0 - eta).add(b.mul_scalar(eta))
    }
}

impl<B: AutodiffBackend> HypergradientEstimator<B> for Sid {
    fn name(&self) -> String {
        self.config.variant_name().into()
    }

    fn demands(&self) -> Demands {
        let c = &self.config;
        let d = Demands::new()
            .batch("batch_size", Side::Inner, c.batch_size)
            .batch("batch_size", Side::Outer, c.batch_size)
            .batch("inner_batch", Side::Inner, c.inner_batch)
            .batch("linear_batch", Side::Inner, c.linear_batch);
        match c.lower_level {
            LowerLevel::GradientStep { step } => d.step(
                "lower_level_step",
                step,
                "the lower-level map Ψ = w − γ∇g (a contraction only below 2/L)",
            ),
            LowerLevel::Contraction => d,
        }
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
        let problem = oracle.problem();
        let (inner_len, outer_len) = (problem.inner_len(), problem.outer_len());
        let zeros = || Tensor::<B, 1>::zeros([problem.y_dim()], &state.x.device());
        let x = state.x.clone();
        let schedule = cfg.inner_step_schedule;

        // 1. LL: w_{j+1} = (1 − η_j) w_j + η_j Ψ(w_j, x; ζ_j).
        let mut w = if cfg.warm_start_inner {
            state.y.clone()
        } else {
            zeros()
        };
        for j in 0..cfg.inner_steps {
            let batch = state.rng.batch(inner_len, cfg.inner_batch);
            let psi = match cfg.lower_level {
                LowerLevel::Contraction => oracle.map_value(&x, &w, &batch)?,
                LowerLevel::GradientStep { step } => {
                    let grad = oracle.grad_g_y(&x, &w, &batch)?;
                    w.clone().sub(grad.mul_scalar(step))
                }
            };
            w = average(w, psi, schedule.at(j));
        }

        // 2. ∇_w F, ∇_x F at w_t on an independent batch D of size s.
        let outer_batch = state.rng.batch(outer_len, cfg.batch_size);
        let grad_f = oracle.grad_f(&x, &w, &outer_batch)?;

        // 3. LS: v_{j+1} = (1 − η_j) v_j + η_j (∂_wΨ(w_t, x; ζ'_j)ᵀ v_j + ∇_w F).
        let mut v = if cfg.warm_start_linear {
            state.v.clone()
        } else {
            zeros()
        };
        for j in 0..cfg.linear_steps {
            let eta = schedule.at(j);
            if j == 0 && !cfg.warm_start_linear {
                // ∂_wΨᵀ v_0 = 0: v_1 = η_0 ∇_w F, no product and no sample needed.
                v = grad_f.y.clone().mul_scalar(eta);
                continue;
            }
            let batch = state.rng.batch(inner_len, cfg.linear_batch);
            let transported = self.vjp_w(oracle, &x, &w, &v, &batch)?;
            v = average(v, transported.add(grad_f.y.clone()), eta);
        }

        // 4. ĝ = ∇_x F + ∂_xΨ(w_t, x; D')ᵀ v_k on an independent batch D' of size s.
        let jacobian_batch = state.rng.batch(inner_len, cfg.batch_size);
        let cross = match cfg.lower_level {
            LowerLevel::Contraction => oracle.map_vjp(&x, &w, &v, &jacobian_batch)?.1,
            LowerLevel::GradientStep { step } => {
                oracle.jvp(&x, &w, &v, &jacobian_batch)?.mul_scalar(-step)
            }
        };
        let estimate = grad_f.x.add(cross);

        state.outer_loss = Some(scalar(grad_f.value));
        state.y = w;
        state.v = v;
        Ok(estimate)
    }
}

impl Sid {
    /// `∂_wΨ(w, x; batch)ᵀ v`.
    fn vjp_w<B: AutodiffBackend, P: BilevelProblem<B>>(
        &self,
        oracle: &mut Oracle<'_, B, P>,
        x: &Tensor<B, 1>,
        w: &Tensor<B, 1>,
        v: &Tensor<B, 1>,
        batch: &Batch,
    ) -> Result<Tensor<B, 1>> {
        match self.config.lower_level {
            LowerLevel::Contraction => Ok(oracle.map_vjp(x, w, v, batch)?.0),
            LowerLevel::GradientStep { step } => {
                let hv = oracle.hvp(x, w, v, batch)?;
                Ok(v.clone().sub(hv.mul_scalar(step)))
            }
        }
    }
}
