//! # bilevel-problems
//!
//! The applications of the experiments in `docs/REPRODUCTION.md` as
//! [`bilevel_core::BilevelProblem`]s built from models and data, each an [`Application`]
//! (seeded start, evaluation metrics), plus the serde specs that build them ([`spec`]: the
//! `[problem]` table, one line per application). This crate never imports an algorithm: the
//! `bilevel-run` crate pairs applications with the methods of `bilevel-algorithms`.

pub mod adversarial_ls;
pub mod application;
pub mod common;
pub mod equilibrium;
pub mod error;
pub mod ho_l2;
pub mod ho_logreg_text;
pub mod hr_deep;
pub mod hr_shallow;
pub mod hyper_cleaning;
pub mod hyper_cleaning_cnn;
pub mod linear_ce;
pub mod liu_hard;
pub mod meta_learning;
pub mod poisoning;
pub mod quadratic;
pub mod spec;

pub use application::{Application, Metric};
pub use error::{ProblemError, Result};
pub use spec::{ApplicationVisitor, BuildContext, ProblemSpec};
