//! `[algorithm]` tables: one serde variant per algorithm of `bilevel-algorithms`, selected by
//! `name = "<algorithm>"` (kebab-case), holding that algorithm's settings with documented
//! defaults and, for methods that run inside [`OuterLoop`], the outer step.
//!
//! ```toml
//! [algorithm]
//! name = "aid-cg"
//! inner_step = 0.1     # α
//! inner_steps = 10     # T
//! cg_steps = 10        # N
//! outer_step = 0.5     # β
//! optimizer = "sgd"    # or "adam"
//! ```
//!
//! Every key is optional (omitted keys take the default written next to each field below);
//! unknown keys are errors. Batch sizes are a number of samples or `"full"` (the whole data set;
//! on a deterministic problem every batch is the full one). [`MethodSpec::build_with`] hands the
//! configured [`Solver`] to a [`SolverVisitor`], which is how the runner stays generic.
//!
//! The outer step of [`OuterLoop`] methods (`outer_step`, `optimizer`, `outer_step_decay`):
//! `x ← P_X(x − β_k ĝ)`, `β_k = outer_step / (k + 1)^outer_step_decay` for `optimizer = "sgd"`,
//! or Adam with step `outer_step` and moments `(0.9, 0.999, 1e-8)` for `optimizer = "adam"`
//! (which takes no decay).

use bilevel_algorithms::aid::{Aid, AidConfig, InnerSteps, LinearSolver};
use bilevel_algorithms::anil::Anil;
use bilevel_algorithms::bsa::{Bsa, BsaConfig, RandomizedNeumann};
use bilevel_algorithms::fsla::{Fsla, FslaConfig};
use bilevel_algorithms::hoag::{Hoag, HoagConfig};
use bilevel_algorithms::hozog::{DirectionDistribution, Hozog, HozogConfig};
use bilevel_algorithms::igfm::{IgfmConfig, IgfmEstimator};
use bilevel_algorithms::itd::{Itd, ItdConfig};
use bilevel_algorithms::maml::{Maml, MamlConfig};
use bilevel_algorithms::pzobo::{InnerStart, Pzobo, PzoboConfig};
use bilevel_algorithms::sgm::{Sgm, SgmConfig};
use bilevel_algorithms::sid::{InnerStepSchedule, LowerLevel, Sid, SidConfig};
use bilevel_algorithms::stocbio::{HessianBatch, StocBio, StocBioConfig};
use bilevel_algorithms::ttsa::Ttsa;
use bilevel_core::tensor::scalar;
use bilevel_core::{
    Batch, BilevelError, BilevelProblem, Constraint, Oracle, OuterLoop, OuterOptimizer, Solver,
    State, StepSchedule,
};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use bilevel_problems::Result;

// ---------------------------------------------------------------------------------------------
// Small value types of the config format.
// ---------------------------------------------------------------------------------------------

/// A batch size: a number of samples (≥ 1), or `"full"` for the whole data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchSize {
    /// The whole data set (`"full"`).
    Full,
    /// This many samples, drawn with replacement.
    Samples(usize),
}

impl BatchSize {
    /// The algorithms' encoding: `None` is the full data set.
    pub fn get(self) -> Option<usize> {
        match self {
            BatchSize::Full => None,
            BatchSize::Samples(n) => Some(n),
        }
    }
}

impl Serialize for BatchSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match *self {
            BatchSize::Full => s.serialize_str("full"),
            BatchSize::Samples(n) => s.serialize_u64(n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for BatchSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = BatchSize;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a batch size (a number of samples ≥ 1) or \"full\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<BatchSize, E> {
                usize::try_from(v)
                    .map(BatchSize::Samples)
                    .map_err(|_| E::custom(format!("batch size {v} is too large")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<BatchSize, E> {
                if v < 0 {
                    return Err(E::custom(format!(
                        "batch size must be ≥ 1 or \"full\", got {v}"
                    )));
                }
                self.visit_u64(v as u64)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<BatchSize, E> {
                if v == "full" {
                    Ok(BatchSize::Full)
                } else {
                    Err(E::custom(format!(
                        "batch size must be a number of samples or \"full\", got \"{v}\""
                    )))
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The outer update of [`OuterLoop`] methods.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Projected SGD `x ← P_X(x − β_k ĝ)`.
    #[default]
    Sgd,
    /// Adam with moments `(0.9, 0.999, 1e-8)`, then the projection.
    Adam,
}

/// Where the inner runs of PZOBO / HOZOG start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InnerStartSpec {
    /// `y_0 = 0`.
    Zeros,
    /// The run's initial `y` at every outer iteration (paper 000, Alg. 1).
    #[default]
    Initial,
    /// The previous outer iteration's `y^N`.
    WarmStart,
}

impl From<InnerStartSpec> for InnerStart {
    fn from(s: InnerStartSpec) -> Self {
        match s {
            InnerStartSpec::Zeros => InnerStart::Zeros,
            InnerStartSpec::Initial => InnerStart::Initial,
            InnerStartSpec::WarmStart => InnerStart::WarmStart,
        }
    }
}

/// Distribution of HOZOG's directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirectionsSpec {
    /// `u ~ N(0, I)`.
    #[default]
    Gaussian,
    /// `u` uniform on the unit sphere, estimate scaled by `dim x`.
    UnitSphere,
}

/// How SID's lower level is posed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LowerLevelKind {
    /// `Ψ(w, x) = w − γ ∇_w g(x, w)` with `γ = lower_level_step`.
    #[default]
    GradientStep,
    /// The problem's own contraction map (an error if it has none).
    Contraction,
}

/// A closed convex set, as a table `{ kind = "box", lower = -1.0, upper = 1.0 }`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ConstraintSpec {
    /// The whole space.
    #[default]
    Unconstrained,
    /// `lower ≤ y_i ≤ upper`.
    Box {
        /// Lower bound.
        lower: f64,
        /// Upper bound.
        upper: f64,
    },
    /// `‖y‖_∞ ≤ radius`.
    LinfBall {
        /// Radius.
        radius: f64,
    },
    /// `‖y‖₂ ≤ radius`.
    L2Ball {
        /// Radius.
        radius: f64,
    },
}

impl From<ConstraintSpec> for Constraint {
    fn from(c: ConstraintSpec) -> Self {
        match c {
            ConstraintSpec::Unconstrained => Constraint::Unconstrained,
            ConstraintSpec::Box { lower, upper } => Constraint::Box { lower, upper },
            ConstraintSpec::LinfBall { radius } => Constraint::LInfBall { radius },
            ConstraintSpec::L2Ball { radius } => Constraint::L2Ball { radius },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Per-algorithm tables.
// ---------------------------------------------------------------------------------------------

/// Defines a `#[serde(default, deny_unknown_fields)]` struct whose `Default` uses the given
/// values; with `outer(step, decay)` it also gets the outer-step fields of [`OuterLoop`].
macro_rules! spec_struct {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $default:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }
    };
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $default:expr, )*
        }
        outer($step:expr, $decay:expr)
    ) => {
        spec_struct! {
            $(#[$meta])*
            $name {
                $( $(#[$fmeta])* $field: $ty = $default, )*
                /// Outer step `β` (> 0).
                outer_step: f64 = $step,
                /// `"sgd"` (default) or `"adam"`.
                optimizer: OptimizerKind = OptimizerKind::Sgd,
                /// `p ≥ 0` of the SGD schedule `β_k = β / (k + 1)^p` (0: constant; Adam: must be 0).
                outer_step_decay: f64 = $decay,
            }
        }

        impl $name {
            /// The outer update these fields describe.
            pub fn outer(&self) -> Result<OuterOptimizer> {
                outer_optimizer(self.outer_step, self.optimizer, self.outer_step_decay)
            }
        }
    };
}

fn outer_optimizer(step: f64, kind: OptimizerKind, decay: f64) -> Result<OuterOptimizer> {
    if !(step > 0.0 && step.is_finite()) {
        return Err(BilevelError::invalid(
            "outer_step",
            format!("must be > 0 and finite, got {step}"),
        )
        .into());
    }
    if !(decay >= 0.0 && decay.is_finite()) {
        return Err(BilevelError::invalid(
            "outer_step_decay",
            format!("must be ≥ 0 and finite, got {decay}"),
        )
        .into());
    }
    let optimizer = match kind {
        OptimizerKind::Sgd => OuterOptimizer::Sgd {
            lr: step,
            schedule: if decay == 0.0 {
                StepSchedule::Constant
            } else {
                StepSchedule::InversePower { power: decay }
            },
        },
        OptimizerKind::Adam => {
            if decay != 0.0 {
                return Err(BilevelError::invalid(
                    "outer_step_decay",
                    "Adam takes a constant step: remove `outer_step_decay` or use optimizer = \"sgd\"",
                )
                .into());
            }
            OuterOptimizer::adam(step)
        }
    };
    optimizer.validate()?;
    Ok(optimizer)
}

spec_struct! {
    /// `aid-cg`: AID-BiO with conjugate gradient (paper 004, Alg. 1).
    AidCgSpec {
        /// Inner GD step `α` (default 0.1).
        inner_step: f64 = 0.1,
        /// Inner steps `T` (default 10).
        inner_steps: usize = 10,
        /// If set to `c > 0`: `T_k = ⌈c (k+1)^{1/4}⌉` instead of `inner_steps` (AID-increasing).
        inner_steps_growth: Option<f64> = None,
        /// Warm-start the inner loop from the previous `y` (default true).
        warm_start_inner: bool = true,
        /// CG steps `N` (default 10).
        cg_steps: usize = 10,
        /// Relative CG residual tolerance, 0 = run all `N` (default 0).
        cg_tol: f64 = 0.0,
        /// Warm-start CG from the previous `v` (default true).
        warm_start_linear: bool = true,
    }
    outer(0.1, 0.0)
}

spec_struct! {
    /// `aid-fp`: AID-BiO with the fixed-point linear solver `v ← v − η(Hv − ∇_y f)`.
    AidFpSpec {
        /// Inner GD step `α` (default 0.1).
        inner_step: f64 = 0.1,
        /// Inner steps `T` (default 10).
        inner_steps: usize = 10,
        /// If set to `c > 0`: `T_k = ⌈c (k+1)^{1/4}⌉` instead of `inner_steps`.
        inner_steps_growth: Option<f64> = None,
        /// Warm-start the inner loop (default true).
        warm_start_inner: bool = true,
        /// Fixed-point step `η` (default 0.1).
        linear_step: f64 = 0.1,
        /// Fixed-point steps `N` (default 10).
        linear_steps: usize = 10,
        /// Warm-start the linear solver (default true).
        warm_start_linear: bool = true,
    }
    outer(0.1, 0.0)
}

spec_struct! {
    /// `itd`: ITD-BiO, reverse-mode differentiation through `T` inner steps (paper 004).
    ItdSpec {
        /// Inner GD step `α` (default 0.1).
        inner_step: f64 = 0.1,
        /// Inner steps `T` (default 10).
        inner_steps: usize = 10,
        /// Warm-start the inner loop (default true).
        warm_start: bool = true,
        /// Differentiate through the last `K` steps only (default: all).
        truncation: Option<usize> = None,
    }
    outer(0.1, 0.0)
}

spec_struct! {
    /// `hoag`: HOAG (Pedregosa 2016) with its own backtracking outer step.
    HoagSpec {
        /// Inner GD step `α` (default 0.1).
        inner_step: f64 = 0.1,
        /// Cap on inner gradient evaluations per trial (default 1000).
        max_inner_steps: usize = 1000,
        /// Cap on CG updates per trial (default 100).
        max_cg_steps: usize = 100,
        /// `ε_0`, absolute tolerance of the first solves (default 1e-2).
        initial_tolerance: f64 = 1e-2,
        /// `ρ ∈ (0, 1)`: `ε_{k+1} = max(ρ ε_k, ε_min)` (default 0.9).
        tolerance_decay: f64 = 0.9,
        /// `ε_min` (default 1e-12).
        min_tolerance: f64 = 1e-12,
        /// First outer step `1/L_0` (default 1).
        initial_outer_step: f64 = 1.0,
    }
}

spec_struct! {
    /// `stocbio`: stocBiO (paper 004, Alg. 2–3).
    StocBioSpec {
        /// Inner SGD steps `T` (default 10).
        inner_steps: usize = 10,
        /// Inner step `α` (default 0.1).
        inner_step: f64 = 0.1,
        /// Samples per inner step `S` (default 50).
        inner_batch: BatchSize = BatchSize::Samples(50),
        /// Samples of `∇F` (`D_f`, default 50).
        outer_batch: BatchSize = BatchSize::Samples(50),
        /// Samples of the JVP (`D_g`, default 50).
        jacobian_batch: BatchSize = BatchSize::Samples(50),
        /// Samples of each HVP `B_j` (default 50); the first batch if `hessian_batch_ratio` is set.
        hessian_batch: BatchSize = BatchSize::Samples(50),
        /// If set to `r ∈ (0, 1]`: the `j`-th HVP uses `⌈hessian_batch · r^{j−1}⌉` samples (Prop. 3).
        hessian_batch_ratio: Option<f64> = None,
        /// Neumann terms `Q` (default 10).
        neumann_terms: usize = 10,
        /// Neumann step `η` (default 0.5).
        neumann_step: f64 = 0.5,
    }
    outer(0.1, 0.0)
}

spec_struct! {
    /// `bsa`: BSA (Ghadimi & Wang 2018).
    BsaSpec {
        /// Inner SGD steps `T` (default 10).
        inner_steps: usize = 10,
        /// If set to `c > 0`: Ghadimi & Wang's growing `T_k = ⌈c (k+1)^{1/2}⌉` instead of
        /// `inner_steps`.
        inner_steps_growth: Option<f64> = None,
        /// Base inner step `α` (default 0.1).
        inner_step: f64 = 0.1,
        /// `α_t = α / (t+1)^decay` (default 1).
        inner_step_decay: f64 = 1.0,
        /// Samples per inner step (default 1).
        inner_batch: BatchSize = BatchSize::Samples(1),
        /// Samples of `∇F` (default 1).
        outer_batch: BatchSize = BatchSize::Samples(1),
        /// Samples of each HVP (default 1).
        hessian_batch: BatchSize = BatchSize::Samples(1),
        /// Samples of the JVP (default 1).
        jacobian_batch: BatchSize = BatchSize::Samples(1),
        /// Truncation `Q`: `p ~ U{0..Q−1}` HVPs (default 10).
        neumann_terms: usize = 10,
        /// Neumann step `η` (default 0.1).
        neumann_step: f64 = 0.1,
    }
    outer(0.1, 0.0)
}

spec_struct! {
    /// `ttsa`: TTSA (Hong et al. 2020): one inner step per outer step, two time scales.
    TtsaSpec {
        /// Base inner step `α₀` (default 0.1).
        inner_step: f64 = 0.1,
        /// `α_k = α₀ (k+1)^{−decay}` (default 0.4 = 2/5, Hong et al.'s fast inner time scale;
        /// must not exceed `outer_step_decay` under `optimizer = "sgd"`).
        inner_step_decay: f64 = 0.4,
        /// Samples of the inner step (default 1).
        inner_batch: BatchSize = BatchSize::Samples(1),
        /// Samples of `∇F` (default 1).
        outer_batch: BatchSize = BatchSize::Samples(1),
        /// Samples of each HVP (default 1).
        hessian_batch: BatchSize = BatchSize::Samples(1),
        /// Samples of the JVP (default 1).
        jacobian_batch: BatchSize = BatchSize::Samples(1),
        /// Truncation `Q` (default 10).
        neumann_terms: usize = 10,
        /// Neumann step `η` (default 0.1).
        neumann_step: f64 = 0.1,
    }
    outer(0.1, 0.6)
}

spec_struct! {
    /// `pzobo`: PZOBO (paper 000, Alg. 1), deterministic and Hessian-free.
    PzoboSpec {
        /// Inner GD steps `N` (default 10).
        inner_steps: usize = 10,
        /// Inner step `α` (default 0.1).
        inner_step: f64 = 0.1,
        /// Gaussian directions `Q` (default 1).
        directions: usize = 1,
        /// Smoothing radius `μ` (default 1e-3).
        smoothing_radius: f64 = 1e-3,
        /// `"initial"` (default), `"zeros"` or `"warm-start"`.
        inner_start: InnerStartSpec = InnerStartSpec::Initial,
    }
    outer(0.1, 0.0)
}

spec_struct! {
    /// `pzobo-s`: PZOBO-S, the stochastic variant (one batch sequence for all runs).
    PzoboSSpec {
        /// Inner SGD steps `N` (default 10).
        inner_steps: usize = 10,
        /// Inner step `α` (default 0.1).
        inner_step: f64 = 0.1,
        /// Gaussian directions `Q` (default 1).
        directions: usize = 1,
        /// Smoothing radius `μ` (default 1e-3).
        smoothing_radius: f64 = 1e-3,
        /// `"initial"` (default), `"zeros"` or `"warm-start"`.
        inner_start: InnerStartSpec = InnerStartSpec::Initial,
        /// Samples per inner step, shared by all runs (default 50).
        inner_batch: BatchSize = BatchSize::Samples(50),
        /// Samples of `∇F` (default 50).
        outer_batch: BatchSize = BatchSize::Samples(50),
    }
    outer(0.1, 0.0)
}

spec_struct! {
    /// `hozog`: HOZOG (Gu et al. 2021), zeroth order on `Φ_N(x)`.
    HozogSpec {
        /// Inner GD steps `N` (default 10).
        inner_steps: usize = 10,
        /// Inner step `α` (default 0.1).
        inner_step: f64 = 0.1,
        /// Random directions `Q` (default 10).
        directions: usize = 10,
        /// Smoothing radius `μ` (default 1e-3).
        smoothing_radius: f64 = 1e-3,
        /// `"gaussian"` (default) or `"unit-sphere"`.
        distribution: DirectionsSpec = DirectionsSpec::Gaussian,
        /// `"initial"` (default), `"zeros"` or `"warm-start"`.
        inner_start: InnerStartSpec = InnerStartSpec::Initial,
    }
    outer(0.1, 0.0)
}

spec_struct! {
    /// `fsla`: FSLA (paper 001, Alg. 1), single loop with STORM momentum; owns its outer step.
    FslaSpec {
        /// `δ`: `α_k = δ / (k+1)^p` (default 0.1).
        base_step: f64 = 0.1,
        /// `p` (default 0.5).
        step_decay: f64 = 0.5,
        /// `c_τ`: inner step `τ = c_τ α_k` (default 1).
        inner_step_ratio: f64 = 1.0,
        /// `c_β`: linear step `β = c_β α_k` (default 1).
        linear_step_ratio: f64 = 1.0,
        /// `c_η`: STORM weight `η = c_η α_k`, needs `c_η δ ≤ 1` (default 5).
        momentum_ratio: f64 = 5.0,
        /// Samples `ξ1` (default 50).
        inner_batch: BatchSize = BatchSize::Samples(50),
        /// Samples `ξ2`, `ξ4` (default 50).
        outer_batch: BatchSize = BatchSize::Samples(50),
        /// Samples `ξ3` (default 50).
        hessian_batch: BatchSize = BatchSize::Samples(50),
        /// Samples `ξ5` (default 50).
        jacobian_batch: BatchSize = BatchSize::Samples(50),
    }
}

spec_struct! {
    /// `sid-bsgm`: SID estimator in BSGM (paper 002, Alg. 1–2), no warm start by default.
    SidSpec {
        /// `"gradient-step"` (default) or `"contraction"`.
        lower_level: LowerLevelKind = LowerLevelKind::GradientStep,
        /// `γ` of the gradient step `Ψ = w − γ∇_w g` (default 0.1).
        lower_level_step: f64 = 0.1,
        /// LL fixed-point steps `t` (default 10).
        inner_steps: usize = 10,
        /// LS fixed-point steps `k` (default 10).
        linear_steps: usize = 10,
        /// Samples `s` of `∇F` and `∂_xΨᵀv` (default 50).
        batch_size: BatchSize = BatchSize::Samples(50),
        /// Samples per LL step (default 1).
        inner_batch: BatchSize = BatchSize::Samples(1),
        /// Samples per LS step (default 1).
        linear_batch: BatchSize = BatchSize::Samples(1),
        /// `η_0 ∈ (0, 1]` of both fixed-point solvers (default 1).
        fixed_point_step: f64 = 1.0,
        /// `p`: `η_j = η_0 (c/(c+j))^p`, 0 = constant (default 0).
        fixed_point_step_decay: f64 = 0.0,
        /// `c` of the decreasing schedule (default 1).
        fixed_point_step_offset: f64 = 1.0,
        /// Start the LL from the previous `w` (default false).
        warm_start_inner: bool = false,
        /// Start the LS from the previous `v` (default false).
        warm_start_linear: bool = false,
    }
    outer(0.1, 0.0)
}

spec_struct! {
    /// `amigo`: AmIGO (Arbel & Mairal 2021) = SID with warm starts on LL and LS.
    AmigoSpec {
        /// `"gradient-step"` (default) or `"contraction"`.
        lower_level: LowerLevelKind = LowerLevelKind::GradientStep,
        /// `γ` of the gradient step (default 0.1).
        lower_level_step: f64 = 0.1,
        /// LL steps `t` (default 10).
        inner_steps: usize = 10,
        /// LS steps `k` (default 10).
        linear_steps: usize = 10,
        /// Samples `s` (default 50).
        batch_size: BatchSize = BatchSize::Samples(50),
        /// Samples per LL step (default 1).
        inner_batch: BatchSize = BatchSize::Samples(1),
        /// Samples per LS step (default 1).
        linear_batch: BatchSize = BatchSize::Samples(1),
        /// `η_0` (default 1).
        fixed_point_step: f64 = 1.0,
        /// `p`, 0 = constant (default 0).
        fixed_point_step_decay: f64 = 0.0,
        /// `c` (default 1).
        fixed_point_step_offset: f64 = 1.0,
    }
    outer(0.1, 0.0)
}

spec_struct! {
    /// `alset`: ALSET (Chen, Sun & Yin 2021) as paper 002 runs it (Tables 3-4: warm start on the
    /// lower level only) = SID with one warm-started LL step (`t = 1`) and a cold linear solve
    /// of `k` steps per outer step.
    AlsetSpec {
        /// `"gradient-step"` (default) or `"contraction"`.
        lower_level: LowerLevelKind = LowerLevelKind::GradientStep,
        /// `γ` of the gradient step (default 0.1).
        lower_level_step: f64 = 0.1,
        /// LS steps `k` of the cold linear solve (default 10; ≥ 2, since with `k = 1` the cold
        /// solve is `v = η ∇_w F`, no inverse at all).
        linear_steps: usize = 10,
        /// Samples `s` (default 50).
        batch_size: BatchSize = BatchSize::Samples(50),
        /// Samples of the LL step (default 1).
        inner_batch: BatchSize = BatchSize::Samples(1),
        /// Samples per LS step (default 1).
        linear_batch: BatchSize = BatchSize::Samples(1),
        /// `η_0 ∈ (0, 1]` of both fixed-point solvers (default 1).
        fixed_point_step: f64 = 1.0,
        /// `p`: `η_j = η_0 (c/(c+j))^p` over the LS steps, 0 = constant (default 0).
        fixed_point_step_decay: f64 = 0.0,
        /// `c` of the decreasing schedule (default 1).
        fixed_point_step_offset: f64 = 1.0,
    }
    outer(0.1, 0.0)
}

spec_struct! {
    /// `alset-dagger`: ALSET† (paper 002 §7.3) = SID with `t = k = 1` and warm starts on both the
    /// lower level and the linear system.
    AlsetDaggerSpec {
        /// `"gradient-step"` (default) or `"contraction"`.
        lower_level: LowerLevelKind = LowerLevelKind::GradientStep,
        /// `γ` of the gradient step (default 0.1).
        lower_level_step: f64 = 0.1,
        /// Samples `s` (default 50).
        batch_size: BatchSize = BatchSize::Samples(50),
        /// Samples of the LL step (default 1).
        inner_batch: BatchSize = BatchSize::Samples(1),
        /// Samples of the LS step (default 1).
        linear_batch: BatchSize = BatchSize::Samples(1),
        /// `η` of both single steps (default 1).
        fixed_point_step: f64 = 1.0,
    }
    outer(0.1, 0.0)
}

spec_struct! {
    /// `maml`: MAML (Finn, Abbeel & Levine 2017; `first_order = true`: first-order MAML). The
    /// inner loop adapts a copy of all of `θ` per task; needs a problem in the MAML layout
    /// (`kind = "meta-learning"` with `adapt = "maml"`).
    MamlSpec {
        /// Per-task inner GD step `α` (default 0.01).
        inner_step: f64 = 0.01,
        /// Inner steps `T` (default 5).
        inner_steps: usize = 5,
        /// Drop every second-order term (first-order MAML; default false).
        first_order: bool = false,
        /// Tasks per meta-batch, drawn without replacement (default `"full"`: every task).
        tasks_per_batch: BatchSize = BatchSize::Full,
    }
    outer(0.1, 0.0)
}

/// `anil`: ANIL (Raghu, Raghu, Bengio & Vinyals 2020): MAML with the inner loop on the head
/// only; the same keys as [`MamlSpec`]; needs a problem in the ANIL layout
/// (`kind = "meta-learning"` with `adapt = "anil"`).
pub type AnilSpec = MamlSpec;

spec_struct! {
    /// `sgm`: paper 003's switching gradient method (Alg. 1) at the FIXED initial `x`: every
    /// iteration runs one SGM solve from the previous output, so `f(x₀, y_out) ≈ φ(x₀)`; the
    /// upper variable never moves (SGM is IGFM's lower-level sub-routine, not an outer method).
    SgmSpec {
        /// Step `τ` (default 0.1).
        step: f64 = 0.1,
        /// `K₀` (default 100).
        lower_value_steps: usize = 100,
        /// `K` (default 1000).
        switching_steps: usize = 1000,
        /// `θ` (default 1e-2).
        feasibility_threshold: f64 = 1e-2,
        /// The set `Y` (default unconstrained).
        lower_constraint: ConstraintSpec = ConstraintSpec::Unconstrained,
    }
}

spec_struct! {
    /// `igfm`: IGFM (paper 003, Alg. 2) with SGM as its sub-routine; plain step `x ← x − η∇̂`.
    IgfmSpec {
        /// Outer step `η` (default 0.1).
        step: f64 = 0.1,
        /// Smoothing radius `δ` (default 1e-3).
        smoothing_radius: f64 = 1e-3,
        /// SGM step `τ` (default 0.1).
        sgm_step: f64 = 0.1,
        /// SGM `K₀` (default 100).
        lower_value_steps: usize = 100,
        /// SGM `K` (default 1000).
        switching_steps: usize = 1000,
        /// SGM `θ` (default 1e-2).
        feasibility_threshold: f64 = 1e-2,
        /// SGM's set `Y` (default unconstrained).
        lower_constraint: ConstraintSpec = ConstraintSpec::Unconstrained,
    }
}

// ---------------------------------------------------------------------------------------------
// The enum.
// ---------------------------------------------------------------------------------------------

/// The `[algorithm]` table: `name = "<algorithm>"` plus that algorithm's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case", deny_unknown_fields)]
pub enum MethodSpec {
    /// AID-BiO with CG (paper 004).
    AidCg(AidCgSpec),
    /// AID-BiO with the fixed-point solver (Grazzi et al. 2020).
    AidFp(AidFpSpec),
    /// ITD-BiO (paper 004).
    Itd(ItdSpec),
    /// HOAG (Pedregosa 2016).
    Hoag(HoagSpec),
    /// stocBiO (paper 004).
    Stocbio(StocBioSpec),
    /// BSA (Ghadimi & Wang 2018).
    Bsa(BsaSpec),
    /// TTSA (Hong et al. 2020).
    Ttsa(TtsaSpec),
    /// PZOBO (paper 000).
    Pzobo(PzoboSpec),
    /// PZOBO-S (paper 000).
    PzoboS(PzoboSSpec),
    /// HOZOG (Gu et al. 2021).
    Hozog(HozogSpec),
    /// FSLA (paper 001).
    Fsla(FslaSpec),
    /// SID + BSGM (paper 002).
    SidBsgm(SidSpec),
    /// AmIGO (Arbel & Mairal 2021).
    Amigo(AmigoSpec),
    /// ALSET (Chen, Sun & Yin 2021; LL warm start only, paper 002's Tables 3-4).
    Alset(AlsetSpec),
    /// ALSET† (paper 002 §7.3; warm starts on LL and LS, `t = k = 1`).
    AlsetDagger(AlsetDaggerSpec),
    /// MAML / first-order MAML (Finn et al. 2017).
    Maml(MamlSpec),
    /// ANIL (Raghu et al. 2020).
    Anil(AnilSpec),
    /// SGM at a fixed `x` (paper 003, Alg. 1).
    Sgm(SgmSpec),
    /// IGFM (paper 003, Alg. 2).
    Igfm(IgfmSpec),
}

/// One line of `bilevel list`: name, description, source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodInfo {
    /// The `name` of the `[algorithm]` table.
    pub name: &'static str,
    /// What it does, in one line.
    pub description: &'static str,
    /// Where it comes from.
    pub paper: &'static str,
}

/// Every algorithm a config can name, in the order of [`MethodSpec`].
pub const METHODS: &[MethodInfo] = &[
    MethodInfo {
        name: "aid-cg",
        description: "implicit differentiation, warm-started inner GD + conjugate gradient",
        paper: "Ji, Yang & Liang 2021 (paper 004), Alg. 1",
    },
    MethodInfo {
        name: "aid-fp",
        description: "implicit differentiation, inner GD + fixed-point linear solver",
        paper: "Grazzi et al. 2020; paper 004",
    },
    MethodInfo {
        name: "itd",
        description: "iterative differentiation (reverse mode) through T inner GD steps",
        paper: "Ji, Yang & Liang 2021 (paper 004), Prop. 2",
    },
    MethodInfo {
        name: "hoag",
        description: "inexact implicit gradient with decreasing tolerances and backtracking",
        paper: "Pedregosa 2016",
    },
    MethodInfo {
        name: "stocbio",
        description: "stochastic AID: inner SGD + Neumann series with mini-batch HVPs",
        paper: "Ji, Yang & Liang 2021 (paper 004), Alg. 2-3",
    },
    MethodInfo {
        name: "bsa",
        description: "inner SGD + randomized truncated Neumann estimator",
        paper: "Ghadimi & Wang 2018",
    },
    MethodInfo {
        name: "ttsa",
        description: "two time scales: one inner SGD step per outer step",
        paper: "Hong, Wai, Wang & Yang 2020",
    },
    MethodInfo {
        name: "pzobo",
        description: "Hessian-free: zeroth-order Jacobian of the inner GD map",
        paper: "Sow, Ji & Liang 2022 (paper 000), Alg. 1",
    },
    MethodInfo {
        name: "pzobo-s",
        description: "stochastic PZOBO: all runs share one SGD batch sequence",
        paper: "Sow, Ji & Liang 2022 (paper 000), §2.3",
    },
    MethodInfo {
        name: "hozog",
        description: "zeroth-order gradient of the unrolled hyper-objective",
        paper: "Gu et al. 2021",
    },
    MethodInfo {
        name: "fsla",
        description: "fully single loop with a v recursion and STORM momentum",
        paper: "Li, Gu & Huang 2022 (paper 001), Alg. 1",
    },
    MethodInfo {
        name: "sid-bsgm",
        description: "stochastic implicit differentiation without warm start, projected SGD",
        paper: "Grazzi, Pontil & Salzo 2023 (paper 002), Alg. 1-2",
    },
    MethodInfo {
        name: "amigo",
        description: "SID with warm starts on the lower level and the linear system",
        paper: "Arbel & Mairal 2021",
    },
    MethodInfo {
        name: "alset",
        description:
            "SID with one warm-started LL step and a cold k-step linear solve per outer step",
        paper: "Chen, Sun & Yin 2021, as run in paper 002 §7.3 (Tables 3-4)",
    },
    MethodInfo {
        name: "alset-dagger",
        description: "ALSET†: SID with one warm-started LL step and one warm-started LS step",
        paper: "Grazzi, Pontil & Salzo 2023 (paper 002), §7.3",
    },
    MethodInfo {
        name: "maml",
        description: "MAML: differentiate T inner steps of every task's copy of θ from θ \
                      (meta-learning, adapt = \"maml\")",
        paper: "Finn, Abbeel & Levine 2017, Alg. 1 (first_order: §5.2)",
    },
    MethodInfo {
        name: "anil",
        description: "ANIL: MAML with the inner loop on the head only \
                      (meta-learning, adapt = \"anil\")",
        paper: "Raghu, Raghu, Bengio & Vinyals 2020",
    },
    MethodInfo {
        name: "sgm",
        description: "switching gradient method on the lower level at a fixed x (evaluates φ(x))",
        paper: "Chen, Xu & Zhang 2023 (paper 003), Alg. 1",
    },
    MethodInfo {
        name: "igfm",
        description: "inexact gradient-free method on φ with SGM as sub-routine",
        paper: "Chen, Xu & Zhang 2023 (paper 003), Alg. 2",
    },
];

/// Receives the solver a [`MethodSpec`] configures.
pub trait SolverVisitor<B: AutodiffBackend> {
    /// What the visit returns.
    type Output;
    /// Called once with the configured, validated solver.
    fn visit<S: Solver<B>>(self, solver: S) -> Result<Self::Output>;
}

fn check_fraction(name: &str, v: f64) -> Result<()> {
    if !(v > 0.0 && v <= 1.0) {
        return Err(BilevelError::invalid(name, format!("must lie in (0, 1], got {v}")).into());
    }
    Ok(())
}

fn maml_config(
    inner_step: f64,
    inner_steps: usize,
    first_order: bool,
    tasks_per_batch: BatchSize,
) -> MamlConfig {
    MamlConfig {
        inner_step,
        inner_steps,
        first_order,
        tasks_per_batch: tasks_per_batch.get(),
    }
}

fn sid_config(
    lower_level: LowerLevelKind,
    lower_level_step: f64,
    inner_steps: usize,
    linear_steps: usize,
    batches: [BatchSize; 3],
    schedule: (f64, f64, f64),
    warm: (bool, bool),
) -> SidConfig {
    let (step, decay, offset) = schedule;
    SidConfig {
        lower_level: match lower_level {
            LowerLevelKind::GradientStep => LowerLevel::GradientStep {
                step: lower_level_step,
            },
            LowerLevelKind::Contraction => LowerLevel::Contraction,
        },
        inner_steps,
        linear_steps,
        batch_size: batches[0].get(),
        inner_batch: batches[1].get(),
        linear_batch: batches[2].get(),
        inner_step_schedule: if decay == 0.0 {
            InnerStepSchedule::Constant { step }
        } else {
            InnerStepSchedule::Decreasing {
                initial: step,
                offset,
                power: decay,
            }
        },
        warm_start_inner: warm.0,
        warm_start_linear: warm.1,
    }
}

fn sgm_config(
    step: f64,
    lower_value_steps: usize,
    switching_steps: usize,
    feasibility_threshold: f64,
    lower_constraint: ConstraintSpec,
) -> SgmConfig {
    SgmConfig {
        step,
        lower_value_steps,
        switching_steps,
        feasibility_threshold,
        lower_constraint: lower_constraint.into(),
    }
}

fn aid_config(
    inner_step: f64,
    inner_steps: usize,
    growth: Option<f64>,
    warm: (bool, bool),
    linear_solver: LinearSolver,
) -> AidConfig {
    AidConfig {
        inner_step,
        inner_steps: match growth {
            Some(scale) => InnerSteps::Increasing { scale },
            None => InnerSteps::Constant { steps: inner_steps },
        },
        warm_start_inner: warm.0,
        linear_solver,
        warm_start_linear: warm.1,
    }
}

fn neumann(
    outer_batch: BatchSize,
    hessian_batch: BatchSize,
    jacobian_batch: BatchSize,
    neumann_terms: usize,
    neumann_step: f64,
) -> RandomizedNeumann {
    RandomizedNeumann {
        outer_batch: outer_batch.get(),
        hessian_batch: hessian_batch.get(),
        jacobian_batch: jacobian_batch.get(),
        neumann_terms,
        neumann_step,
    }
}

impl MethodSpec {
    /// The `name` of the table (kebab-case).
    pub fn name(&self) -> &'static str {
        match self {
            MethodSpec::AidCg(_) => "aid-cg",
            MethodSpec::AidFp(_) => "aid-fp",
            MethodSpec::Itd(_) => "itd",
            MethodSpec::Hoag(_) => "hoag",
            MethodSpec::Stocbio(_) => "stocbio",
            MethodSpec::Bsa(_) => "bsa",
            MethodSpec::Ttsa(_) => "ttsa",
            MethodSpec::Pzobo(_) => "pzobo",
            MethodSpec::PzoboS(_) => "pzobo-s",
            MethodSpec::Hozog(_) => "hozog",
            MethodSpec::Fsla(_) => "fsla",
            MethodSpec::SidBsgm(_) => "sid-bsgm",
            MethodSpec::Amigo(_) => "amigo",
            MethodSpec::Alset(_) => "alset",
            MethodSpec::AlsetDagger(_) => "alset-dagger",
            MethodSpec::Maml(_) => "maml",
            MethodSpec::Anil(_) => "anil",
            MethodSpec::Sgm(_) => "sgm",
            MethodSpec::Igfm(_) => "igfm",
        }
    }

    /// The method with every setting at its default, for each name in [`METHODS`].
    pub fn default_for(name: &str) -> Option<Self> {
        Some(match name {
            "aid-cg" => MethodSpec::AidCg(Default::default()),
            "aid-fp" => MethodSpec::AidFp(Default::default()),
            "itd" => MethodSpec::Itd(Default::default()),
            "hoag" => MethodSpec::Hoag(Default::default()),
            "stocbio" => MethodSpec::Stocbio(Default::default()),
            "bsa" => MethodSpec::Bsa(Default::default()),
            "ttsa" => MethodSpec::Ttsa(Default::default()),
            "pzobo" => MethodSpec::Pzobo(Default::default()),
            "pzobo-s" => MethodSpec::PzoboS(Default::default()),
            "hozog" => MethodSpec::Hozog(Default::default()),
            "fsla" => MethodSpec::Fsla(Default::default()),
            "sid-bsgm" => MethodSpec::SidBsgm(Default::default()),
            "amigo" => MethodSpec::Amigo(Default::default()),
            "alset" => MethodSpec::Alset(Default::default()),
            "alset-dagger" => MethodSpec::AlsetDagger(Default::default()),
            "maml" => MethodSpec::Maml(Default::default()),
            "anil" => MethodSpec::Anil(Default::default()),
            "sgm" => MethodSpec::Sgm(Default::default()),
            "igfm" => MethodSpec::Igfm(Default::default()),
            _ => return None,
        })
    }

    /// The outer update of an [`OuterLoop`] method (`None` for HOAG, FSLA and SGM, which own
    /// their steps); fails on an out-of-range `outer_step` / `outer_step_decay`.
    pub fn outer(&self) -> Result<Option<OuterOptimizer>> {
        Ok(Some(match self {
            MethodSpec::AidCg(s) => s.outer()?,
            MethodSpec::AidFp(s) => s.outer()?,
            MethodSpec::Itd(s) => s.outer()?,
            MethodSpec::Stocbio(s) => s.outer()?,
            MethodSpec::Bsa(s) => s.outer()?,
            MethodSpec::Ttsa(s) => s.outer()?,
            MethodSpec::Pzobo(s) => s.outer()?,
            MethodSpec::PzoboS(s) => s.outer()?,
            MethodSpec::Hozog(s) => s.outer()?,
            MethodSpec::SidBsgm(s) => s.outer()?,
            MethodSpec::Amigo(s) => s.outer()?,
            MethodSpec::Alset(s) => s.outer()?,
            MethodSpec::AlsetDagger(s) => s.outer()?,
            MethodSpec::Maml(s) => s.outer()?,
            MethodSpec::Anil(s) => s.outer()?,
            MethodSpec::Igfm(s) => {
                outer_optimizer(s.step, OptimizerKind::Sgd, 0.0).map_err(|_| {
                    BilevelError::invalid("step", format!("must be > 0 and finite, got {}", s.step))
                })?
            }
            MethodSpec::Hoag(_) | MethodSpec::Fsla(_) | MethodSpec::Sgm(_) => return Ok(None),
        }))
    }

    /// Checks every setting with the algorithm's own validation; the error names the key.
    pub fn validate(&self) -> Result<()> {
        self.build_with(Validate)
    }

    /// Configures the solver and hands it to `visitor` (the solver is validated first).
    pub fn build_with<B: AutodiffBackend, V: SolverVisitor<B>>(
        &self,
        visitor: V,
    ) -> Result<V::Output> {
        let outer = self.outer()?;
        let outer = || outer.expect("OuterLoop methods have an outer optimizer");
        fn go<B: AutodiffBackend, S: Solver<B>, V: SolverVisitor<B>>(
            solver: S,
            visitor: V,
        ) -> Result<V::Output> {
            solver.validate()?;
            visitor.visit(solver)
        }
        match self {
            MethodSpec::AidCg(s) => {
                let cfg = aid_config(
                    s.inner_step,
                    s.inner_steps,
                    s.inner_steps_growth,
                    (s.warm_start_inner, s.warm_start_linear),
                    LinearSolver::ConjugateGradient {
                        steps: s.cg_steps,
                        tol: s.cg_tol,
                    },
                );
                go(OuterLoop::new(Aid::new(cfg)?, outer()), visitor)
            }
            MethodSpec::AidFp(s) => {
                let cfg = aid_config(
                    s.inner_step,
                    s.inner_steps,
                    s.inner_steps_growth,
                    (s.warm_start_inner, s.warm_start_linear),
                    LinearSolver::FixedPoint {
                        step: s.linear_step,
                        steps: s.linear_steps,
                    },
                );
                go(OuterLoop::new(Aid::new(cfg)?, outer()), visitor)
            }
            MethodSpec::Itd(s) => {
                let cfg = ItdConfig {
                    inner_step: s.inner_step,
                    inner_steps: s.inner_steps,
                    warm_start: s.warm_start,
                    truncation: s.truncation,
                };
                go(OuterLoop::new(Itd::new(cfg)?, outer()), visitor)
            }
            MethodSpec::Hoag(s) => {
                let cfg = HoagConfig {
                    inner_step: s.inner_step,
                    max_inner_steps: s.max_inner_steps,
                    max_cg_steps: s.max_cg_steps,
                    initial_tolerance: s.initial_tolerance,
                    tolerance_decay: s.tolerance_decay,
                    min_tolerance: s.min_tolerance,
                    initial_outer_step: s.initial_outer_step,
                };
                go(Hoag::new(cfg)?, visitor)
            }
            MethodSpec::Stocbio(s) => {
                let hessian_batch = match (s.hessian_batch_ratio, s.hessian_batch) {
                    (None, b) => HessianBatch::Fixed(b.get()),
                    (Some(ratio), BatchSize::Samples(first)) => {
                        HessianBatch::Geometric { first, ratio }
                    }
                    (Some(_), BatchSize::Full) => {
                        return Err(BilevelError::invalid(
                            "hessian_batch",
                            "a geometric schedule (hessian_batch_ratio) needs a number of samples, not \"full\"",
                        )
                        .into())
                    }
                };
                let cfg = StocBioConfig {
                    inner_steps: s.inner_steps,
                    inner_step: s.inner_step,
                    inner_batch: s.inner_batch.get(),
                    outer_batch: s.outer_batch.get(),
                    jacobian_batch: s.jacobian_batch.get(),
                    hessian_batch,
                    neumann_terms: s.neumann_terms,
                    neumann_step: s.neumann_step,
                };
                go(OuterLoop::new(StocBio::new(cfg), outer()), visitor)
            }
            MethodSpec::Bsa(s) => {
                let cfg = BsaConfig {
                    inner_steps: s.inner_steps,
                    inner_steps_growth: s.inner_steps_growth,
                    inner_step: s.inner_step,
                    inner_step_decay: s.inner_step_decay,
                    inner_batch: s.inner_batch.get(),
                    hypergradient: neumann(
                        s.outer_batch,
                        s.hessian_batch,
                        s.jacobian_batch,
                        s.neumann_terms,
                        s.neumann_step,
                    ),
                };
                go(OuterLoop::new(Bsa::new(cfg), outer()), visitor)
            }
            MethodSpec::Ttsa(s) => {
                let cfg = bilevel_algorithms::ttsa::TtsaConfig {
                    inner_step: s.inner_step,
                    inner_step_decay: s.inner_step_decay,
                    inner_batch: s.inner_batch.get(),
                    hypergradient: neumann(
                        s.outer_batch,
                        s.hessian_batch,
                        s.jacobian_batch,
                        s.neumann_terms,
                        s.neumann_step,
                    ),
                };
                go(OuterLoop::new(Ttsa::new(cfg), outer()), visitor)
            }
            MethodSpec::Pzobo(s) => {
                let cfg = PzoboConfig {
                    inner_steps: s.inner_steps,
                    inner_step: s.inner_step,
                    directions: s.directions,
                    smoothing_radius: s.smoothing_radius,
                    inner_start: s.inner_start.into(),
                    inner_batch: None,
                    outer_batch: None,
                };
                go(OuterLoop::new(Pzobo::new(cfg)?, outer()), visitor)
            }
            MethodSpec::PzoboS(s) => {
                let cfg = PzoboConfig {
                    inner_steps: s.inner_steps,
                    inner_step: s.inner_step,
                    directions: s.directions,
                    smoothing_radius: s.smoothing_radius,
                    inner_start: s.inner_start.into(),
                    inner_batch: s.inner_batch.get(),
                    outer_batch: s.outer_batch.get(),
                };
                go(OuterLoop::new(Pzobo::new(cfg)?, outer()), visitor)
            }
            MethodSpec::Hozog(s) => {
                let cfg = HozogConfig {
                    inner_steps: s.inner_steps,
                    inner_step: s.inner_step,
                    directions: s.directions,
                    smoothing_radius: s.smoothing_radius,
                    distribution: match s.distribution {
                        DirectionsSpec::Gaussian => DirectionDistribution::Gaussian,
                        DirectionsSpec::UnitSphere => DirectionDistribution::UnitSphere,
                    },
                    inner_start: s.inner_start.into(),
                };
                go(OuterLoop::new(Hozog::new(cfg)?, outer()), visitor)
            }
            MethodSpec::Fsla(s) => {
                let cfg = FslaConfig {
                    base_step: s.base_step,
                    step_decay: s.step_decay,
                    inner_step_ratio: s.inner_step_ratio,
                    linear_step_ratio: s.linear_step_ratio,
                    momentum_ratio: s.momentum_ratio,
                    inner_batch: s.inner_batch.get(),
                    outer_batch: s.outer_batch.get(),
                    hessian_batch: s.hessian_batch.get(),
                    jacobian_batch: s.jacobian_batch.get(),
                };
                go(Fsla::new(cfg)?, visitor)
            }
            MethodSpec::SidBsgm(s) => {
                let cfg = sid_config(
                    s.lower_level,
                    s.lower_level_step,
                    s.inner_steps,
                    s.linear_steps,
                    [s.batch_size, s.inner_batch, s.linear_batch],
                    (
                        s.fixed_point_step,
                        s.fixed_point_step_decay,
                        s.fixed_point_step_offset,
                    ),
                    (s.warm_start_inner, s.warm_start_linear),
                );
                go(OuterLoop::new(Sid::new(cfg), outer()), visitor)
            }
            MethodSpec::Amigo(s) => {
                let cfg = sid_config(
                    s.lower_level,
                    s.lower_level_step,
                    s.inner_steps,
                    s.linear_steps,
                    [s.batch_size, s.inner_batch, s.linear_batch],
                    (
                        s.fixed_point_step,
                        s.fixed_point_step_decay,
                        s.fixed_point_step_offset,
                    ),
                    (true, true),
                );
                go(OuterLoop::new(Sid::new(cfg), outer()), visitor)
            }
            MethodSpec::Alset(s) => {
                check_fraction("fixed_point_step", s.fixed_point_step)?;
                if s.linear_steps < 2 {
                    return Err(BilevelError::invalid(
                        "linear_steps",
                        format!(
                            "ALSET solves the linear system afresh each step: k = {} leaves \
                             v = η∇_w F with no inverse; use k ≥ 2 (or alset-dagger, which \
                             warm-starts it)",
                            s.linear_steps
                        ),
                    )
                    .into());
                }
                let cfg = sid_config(
                    s.lower_level,
                    s.lower_level_step,
                    1,
                    s.linear_steps,
                    [s.batch_size, s.inner_batch, s.linear_batch],
                    (
                        s.fixed_point_step,
                        s.fixed_point_step_decay,
                        s.fixed_point_step_offset,
                    ),
                    (true, false),
                );
                go(OuterLoop::new(Sid::new(cfg), outer()), visitor)
            }
            MethodSpec::AlsetDagger(s) => {
                check_fraction("fixed_point_step", s.fixed_point_step)?;
                let cfg = sid_config(
                    s.lower_level,
                    s.lower_level_step,
                    1,
                    1,
                    [s.batch_size, s.inner_batch, s.linear_batch],
                    (s.fixed_point_step, 0.0, 1.0),
                    (true, true),
                );
                go(OuterLoop::new(Sid::new(cfg), outer()), visitor)
            }
            MethodSpec::Maml(s) => {
                let cfg = maml_config(
                    s.inner_step,
                    s.inner_steps,
                    s.first_order,
                    s.tasks_per_batch,
                );
                go(OuterLoop::new(Maml::new(cfg)?, outer()), visitor)
            }
            MethodSpec::Anil(s) => {
                let cfg = maml_config(
                    s.inner_step,
                    s.inner_steps,
                    s.first_order,
                    s.tasks_per_batch,
                );
                go(OuterLoop::new(Anil::new(cfg)?, outer()), visitor)
            }
            MethodSpec::Sgm(s) => {
                let cfg = sgm_config(
                    s.step,
                    s.lower_value_steps,
                    s.switching_steps,
                    s.feasibility_threshold,
                    s.lower_constraint,
                );
                go(SgmAtFixedX::new(cfg)?, visitor)
            }
            MethodSpec::Igfm(s) => {
                let cfg = IgfmConfig {
                    step: s.step,
                    smoothing_radius: s.smoothing_radius,
                    lower_solver: sgm_config(
                        s.sgm_step,
                        s.lower_value_steps,
                        s.switching_steps,
                        s.feasibility_threshold,
                        s.lower_constraint,
                    ),
                };
                go(OuterLoop::new(IgfmEstimator::new(cfg)?, outer()), visitor)
            }
        }
    }
}

/// A visitor that only validates (the backend is irrelevant: no tensor is created, so the
/// process's precision is not fixed by it).
struct Validate;

type ValidationBackend = bilevel_core::backend::FlexAutodiff;

impl SolverVisitor<ValidationBackend> for Validate {
    type Output = ();
    fn visit<S: Solver<ValidationBackend>>(self, _solver: S) -> Result<()> {
        Ok(())
    }
}

/// `sgm` as a runnable method: one SGM solve (paper 003, Alg. 1) per iteration at the fixed
/// initial `x`, from the previous output `y`; `outer_loss = f(x, y_out)`. No hypergradient.
#[derive(Clone, Debug, PartialEq)]
pub struct SgmAtFixedX {
    sgm: Sgm,
}

impl SgmAtFixedX {
    /// A solver with a validated configuration.
    pub fn new(config: SgmConfig) -> Result<Self> {
        Ok(Self {
            sgm: Sgm::new(config)?,
        })
    }
}

impl<B: AutodiffBackend> Solver<B> for SgmAtFixedX {
    fn name(&self) -> String {
        "sgm".into()
    }

    fn validate(&self) -> bilevel_core::Result<()> {
        self.sgm.config().validate()
    }

    fn next_iter<P: BilevelProblem<B>>(
        &mut self,
        oracle: &mut Oracle<'_, B, P>,
        mut state: State<B>,
    ) -> bilevel_core::Result<State<B>> {
        let out = self.sgm.solve(oracle, &state.x, state.y.clone())?;
        let value = scalar(oracle.f_value(&state.x, &out.solution, &Batch::Full)?);
        state.y = out.solution;
        state.outer_loss = Some(value);
        state.hypergradient = None;
        state.iter += 1;
        Ok(state)
    }
}
