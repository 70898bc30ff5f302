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
//! - [`problems`]: closed-form quadratic test problems.
//!
//! Everything is generic over `B: AutodiffBackend` (e.g. `Autodiff<NdArray<f64>>`); nothing
//! here hard-codes a backend.

pub mod constraint;
pub mod dense;
pub mod error;
pub mod executor;
#[cfg(feature = "wgpu")]
pub mod gpu;
pub mod inner;
pub mod lift;
pub mod linear;
pub mod observers;
pub mod problem;
pub mod problems;
pub mod sampling;
pub mod second_order;
pub mod solver;
pub mod state;
pub mod tensor;

pub use constraint::Constraint;
pub use error::{BilevelError, Result};
pub use executor::{
    Checkpoint, Checkpointing, Executor, ExecutorConfig, RunOutcome, TerminationReason,
};
pub use lift::Lift;
pub use observers::{CsvWriter, IterRecord, Observe, ObserverMode, ProgressBar, Recorder};
pub use problem::{Batch, BilevelProblem, ClosedForm};
pub use second_order::{Gradient, Oracle, OracleCounts, SecondOrder};
pub use solver::{HypergradientEstimator, OuterLoop, OuterOptimizer, Solver, StepSchedule};
pub use state::{State, StateRecord};

/// The README's Rust snippets, compiled as doctests so the documentation cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
