//! Small helpers between flat burn vectors and host `f64` data.

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor, TensorData};

use crate::error::{BilevelError, Result};

/// Builds a 1-D tensor from `f64` values, in the device's float precision.
///
/// Goes through `TensorData::new` (not `from_floats`, which rounds through `f32`) and lets
/// `from_data` convert to the device's default float dtype once: converting to `B::FloatElem`
/// first would round through f32 on Flex, whose `FloatElem` is f32 even in f64 mode (see
/// [`crate::backend`]).
pub fn vector<B: Backend>(values: &[f64], device: &B::Device) -> Tensor<B, 1> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
}

/// Builds a row-major 2-D tensor from `f64` values.
pub fn matrix<B: Backend>(
    values: &[f64],
    rows: usize,
    cols: usize,
    device: &B::Device,
) -> Result<Tensor<B, 2>> {
    if values.len() != rows * cols {
        return Err(BilevelError::ShapeMismatch {
            what: "matrix data".into(),
            expected: vec![rows, cols],
            got: vec![values.len()],
        });
    }
    Ok(Tensor::from_data(
        TensorData::new(values.to_vec(), [rows, cols]),
        device,
    ))
}

/// Reads any tensor back to the host as `f64` values (row-major).
pub fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f64>> {
    let data = t
        .into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .map_err(|e| BilevelError::Backend(format!("{e:?}")))?;
    Ok(data)
}

/// Reads a one-element tensor as `f64`.
///
/// Reads the data in its own dtype: `into_scalar` would go through `B::FloatElem`, which is f32
/// on Flex even when the tensor holds f64.
pub fn scalar<B: Backend, const D: usize>(t: Tensor<B, D>) -> f64 {
    t.into_data().iter::<f64>().next().unwrap_or(f64::NAN)
}

/// `A v` for a matrix `A` (`m × n`) and a vector `v` (`n`).
pub fn matvec<B: Backend>(a: Tensor<B, 2>, v: Tensor<B, 1>) -> Tensor<B, 1> {
    let [m, n] = a.dims();
    a.matmul(v.reshape([n, 1])).reshape([m])
}

/// `Aᵀ v` for a matrix `A` (`m × n`) and a vector `v` (`m`).
pub fn tmatvec<B: Backend>(a: Tensor<B, 2>, v: Tensor<B, 1>) -> Tensor<B, 1> {
    let [m, n] = a.dims();
    v.reshape([1, m]).matmul(a).reshape([n])
}

/// `⟨a, b⟩` as a host scalar (synchronises the device).
pub fn dot<B: Backend>(a: &Tensor<B, 1>, b: &Tensor<B, 1>) -> f64 {
    scalar(a.clone().mul(b.clone()).sum())
}

/// Euclidean norm as a host scalar (synchronises the device).
pub fn norm<B: Backend>(a: &Tensor<B, 1>) -> f64 {
    dot(a, a).sqrt()
}

/// `‖a − b‖ / max(‖b‖, floor)`: the relative error used by every numerical check.
pub fn rel_err<B: Backend>(a: &Tensor<B, 1>, b: &Tensor<B, 1>) -> f64 {
    let diff = a.clone().sub(b.clone());
    norm(&diff) / norm(b).max(1e-300)
}

/// Relative error between host vectors.
pub fn rel_err_host(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>();
    num.sqrt() / den.sqrt().max(1e-300)
}

/// Fails unless `t` is a 1-D tensor of length `len`.
pub fn check_len<B: Backend>(what: &str, t: &Tensor<B, 1>, len: usize) -> Result<()> {
    let [n] = t.dims();
    if n != len {
        return Err(BilevelError::ShapeMismatch {
            what: what.into(),
            expected: vec![len],
            got: vec![n],
        });
    }
    Ok(())
}

/// Fails if any entry of `t` is NaN or infinite (synchronises the device).
pub fn check_finite<B: Backend, const D: usize>(what: &str, t: &Tensor<B, D>) -> Result<()> {
    let finite = t.clone().is_finite().all().into_scalar().elem::<bool>();
    if finite {
        Ok(())
    } else {
        Err(BilevelError::NonFinite { what: what.into() })
    }
}
