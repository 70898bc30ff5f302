#![allow(dead_code, missing_docs)]
//! Shared test helpers.

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
