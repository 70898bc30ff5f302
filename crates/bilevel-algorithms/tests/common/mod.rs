#![allow(dead_code, missing_docs)]
//! Helpers shared by the algorithm tests: the backend alias and tensor shorthands here, and one
//! module of problems and host-side replicas per algorithm family.

pub mod fsla;
pub mod hessian_free;
pub mod implicit;
pub mod meta;
pub mod nonconvex;
pub mod sid;
pub mod stochastic;

use bilevel_core::{BilevelError, Result};
use burn::backend::{Autodiff, NdArray};
use burn::tensor::Tensor;

/// The backend every f64 test runs on; swap here to run the suite elsewhere.
pub type TestBackend = Autodiff<NdArray<f64>>;

pub fn dev() -> burn::tensor::Device<TestBackend> {
    Default::default()
}

pub fn t(values: &[f64]) -> Tensor<TestBackend, 1> {
    bilevel_core::tensor::vector(values, &dev())
}

pub fn host(t: &Tensor<TestBackend, 1>) -> Vec<f64> {
    bilevel_core::tensor::to_vec(t.clone()).unwrap()
}

/// Whether `r` failed with `InvalidParameter` naming `name`.
pub fn is_invalid<T>(r: Result<T>, name: &str) -> bool {
    matches!(r, Err(BilevelError::InvalidParameter { name: n, .. }) if n == name)
}
