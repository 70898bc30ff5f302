//! # bilevel-core
//!
//! Traits and machinery for gradient-based bilevel optimization on burn:
//! `min_x Φ(x) = f(x, y*(x))`, `y*(x) = argmin_y g(x, y)`.
//!
//! - [`problem::BilevelProblem`]: inner/outer losses over flat `x`, `y` and a [`problem::Batch`],
//!   written once and evaluated on `B` and on `Autodiff<B>` (see [`lift`]).
//! - [`second_order::Oracle`]: counted gradients, exact `Hv`/`Jv` by nested autodiff (or a
//!   problem's hand-derived [`problem::ClosedForm`]), and finite-difference fallbacks.
//! - [`linear`]: CG, fixed point and Neumann solvers over an HVP closure.
//! - [`inner`]: (S)GD on the lower level with warm start.
//! - [`meta`]: the meta-learning layout of `y` (MAML, ANIL) and its start map `S(x)`.
//! - [`problems`]: closed-form quadratic test problems.
//!
//! Everything is generic over `B: AutodiffBackend` (e.g. `Autodiff<Flex>`); [`backend`] is the
//! one place in the workspace that picks a concrete backend and float precision.

pub mod backend;
pub mod constraint;
pub mod dense;
pub mod error;
pub mod executor;
#[cfg(feature = "wgpu")]
pub mod gpu;
pub mod inner;
pub mod lift;
pub mod linear;
pub mod meta;
pub mod observers;
pub mod preflight;
pub mod problem;
pub mod problems;
pub mod sampling;
pub mod second_order;
pub mod solver;
pub mod state;
pub mod tensor;
pub mod termination;
pub mod utc;

pub use constraint::Constraint;
pub use error::{BilevelError, Result};
pub use executor::{Checkpoint, Checkpointing, Executor, ExecutorConfig, MetricPoint, RunOutcome};
pub use lift::Lift;
pub use meta::MetaLayout;
pub use observers::{CsvWriter, IterRecord, Observe, ObserverMode, ProgressBar, Recorder};
pub use preflight::{Demands, PreflightConfig, Side, Warning};
pub use problem::{Batch, BilevelProblem, ClosedForm};
pub use second_order::{Gradient, Oracle, OracleCounts, SecondOrder};
pub use solver::{
    HypergradientEstimator, OuterLoop, OuterOptimizer, ReportedPoint, Solver, StepSchedule,
};
pub use state::{State, StateRecord};
pub use termination::TerminationReason;

/// How this build compiled burn-ndarray (for reports and provenance).
///
/// The workspace turns burn's default features off, so burn-ndarray runs every op on one core
/// without its SIMD kernels unless this crate's `ndarray-threads` (burn-ndarray's
/// `multi-threads`: rayon element-wise ops and matrixmultiply threaded over the physical cores,
/// or `MATMUL_NUM_THREADS`) or `ndarray-simd` (burn-ndarray's `simd`) features are on.
pub fn ndarray_build() -> &'static str {
    match (
        cfg!(feature = "ndarray-threads"),
        cfg!(feature = "ndarray-simd"),
    ) {
        (false, false) => "burn-ndarray single-threaded, no simd",
        (true, false) => "burn-ndarray multi-threads, no simd",
        (false, true) => "burn-ndarray single-threaded, simd",
        (true, true) => "burn-ndarray multi-threads, simd",
    }
}

/// How this build compiled burn-flex, and the rayon pool it runs on (for reports and provenance).
pub fn flex_build() -> String {
    let pool = match std::env::var("RAYON_NUM_THREADS") {
        Ok(n) => format!("RAYON_NUM_THREADS={n}"),
        Err(_) => "rayon pool of the hardware threads".into(),
    };
    format!("burn-flex simd + rayon, {pool}")
}
