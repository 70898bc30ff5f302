//! # bilevel-run
//!
//! Where applications and algorithms meet: `bilevel-problems` builds the applications and
//! never imports an algorithm, `bilevel-algorithms` implements the methods and knows no
//! application, and this crate pairs them.
//!
//! - [`method`]: the `[algorithm]` tables of a config, one per algorithm, and the registry
//!   ([`method::METHODS`]) from which `bilevel list`, the config parser and `xtask reproduce`
//!   are derived;
//! - [`runner`]: one application × one method × one [`RunSpec`] → a [`RunReport`], with
//!   checkpoints, records, a metrics CSV and bit-identical resume; used by the `bilevel` CLI
//!   and `xtask reproduce`.
//!
//! Errors are [`bilevel_problems::ProblemError`] (re-exported as [`ProblemError`]).

pub mod method;
pub mod runner;

pub use bilevel_problems::{ProblemError, Result};
pub use method::{MethodSpec, SolverVisitor};
pub use runner::{run_application, run_spec, ResumeFrom, RunHooks, RunReport, RunSpec};
