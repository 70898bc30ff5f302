//! # bilevel-algorithms
//!
//! One file per algorithm, each opening with its update rule and the paper it comes from
//! (all of them summarised in `docs/ALGORITHMS.md`). Estimators implement
//! [`bilevel_core::HypergradientEstimator`] and run inside [`bilevel_core::OuterLoop`];
//! methods whose outer step is part of the method implement [`bilevel_core::Solver`] directly.

pub mod aid;
pub mod anil;
pub mod bsa;
pub mod fsla;
pub mod hoag;
pub mod hozog;
pub mod igfm;
pub mod itd;
pub mod maml;
pub mod pzobo;
pub mod sgm;
pub mod sid;
pub mod stocbio;
pub mod table;
pub mod ttsa;
mod validate;
