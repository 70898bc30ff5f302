//! The hypergrad-check modules on `Autodiff<NdArray<f64>>`.

checks_on!(
    bilevel_core::backend::NdArrayF64,
    bilevel_core::backend::ndarray_device
);
