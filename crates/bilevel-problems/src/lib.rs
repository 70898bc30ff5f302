//! # bilevel-problems
//!
//! The applications of `DESIGN.md` §6 as [`bilevel_core::BilevelProblem`]s built from models and
//! data, each an [`Application`] (seeded start, evaluation metrics), plus the serde specs that
//! build them and the runner that pairs them with an algorithm.

pub mod application;
pub mod error;
pub mod runner;
pub mod spec;

pub use application::{Application, Metric};
pub use error::{ProblemError, Result};
