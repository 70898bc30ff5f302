//! The precision rules of `bilevel_core::backend` (one float precision per process and device
//! type), in a test binary of its own: it deliberately fixes the precisions, which are
//! process-wide.

use bilevel_core::backend::{flex_device, ndarray_device, FlexAutodiff, NdArrayF32, Precision};
use bilevel_core::tensor::{scalar, to_vec, vector};
use burn::tensor::{DType, Tensor};

/// One test, so that the order of the precision settings is fixed.
///
/// Mutations this catches: `tensor::vector` converting through `B::FloatElem` (f32 on Flex)
/// rounds `1 + 1e-12` to 1 and fails the round trip; `tensor::scalar` reading through
/// `into_scalar` does the same for the sum; a `fix_precision` that ignores the settings in
/// force lets the f32 requests below succeed.
#[test]
fn flex_computes_in_f64_once_fixed_and_a_conflicting_precision_is_an_error() {
    // Flex in f64: data and data-less tensors are f64, and host reads keep every digit.
    let device = flex_device(Precision::F64).unwrap();
    let values = [1.0 + 1e-12, -3.0e-300, 0.1];
    let v = vector::<FlexAutodiff>(&values, &device);
    assert_eq!(v.dtype(), DType::F64);
    assert_eq!(to_vec(v.clone()).unwrap(), values);
    assert_eq!(scalar(v.clone().slice(0..1).sum()), 1.0 + 1e-12);
    let zeros = Tensor::<FlexAutodiff, 1>::zeros([3], &device);
    assert_eq!(zeros.dtype(), DType::F64);
    // Asking again for f64 is fine; f32 in the same process is refused, naming both.
    assert!(flex_device(Precision::F64).is_ok());
    let err = flex_device(Precision::F32).unwrap_err().to_string();
    assert!(err.contains("f32") && err.contains("f64"), "{err}");

    // ndarray: after f32 work, f64 is refused instead of silently computing in f32.
    let nd = ndarray_device(Precision::F32).unwrap();
    let w = vector::<NdArrayF32>(&[1.0 + 1e-12], &nd);
    assert_eq!(to_vec(w).unwrap(), [1.0]);
    let err = ndarray_device(Precision::F64).unwrap_err().to_string();
    assert!(
        err.contains("ndarray") && err.contains("separate process"),
        "{err}"
    );
}
