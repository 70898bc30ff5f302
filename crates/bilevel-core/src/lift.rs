//! Lifting problem data onto the backend a loss is evaluated on.
//!
//! A problem stores its data once, on the user's backend `B`. The oracle evaluates losses on
//! `B` (first-order gradients) and on `Autodiff<B>` (exact Hessian-vector and mixed
//! Jacobian-vector products by a double backward, see [`crate::second_order`]). Losses are
//! therefore written once, generic over `C: Lift<B>`, and move their constants onto `C` with
//! [`Lift::lift`]. Lifted constants are untracked: they carry no gradient.

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// A backend that tensors of `B` can be moved onto without copying: `B` itself or `Autodiff<B>`.
pub trait Lift<B: Backend>: Backend {
    /// Moves a float tensor of `B` onto this backend (as a constant).
    fn lift<const D: usize>(t: Tensor<B, D>) -> Tensor<Self, D>;
    /// Moves an integer tensor of `B` onto this backend.
    fn lift_int<const D: usize>(t: Tensor<B, D, Int>) -> Tensor<Self, D, Int>;
}

impl<B: Backend> Lift<B> for B {
    fn lift<const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
        t
    }
    fn lift_int<const D: usize>(t: Tensor<B, D, Int>) -> Tensor<B, D, Int> {
        t
    }
}

impl<B: Backend> Lift<B> for Autodiff<B> {
    fn lift<const D: usize>(t: Tensor<B, D>) -> Tensor<Self, D> {
        Tensor::from_inner(t)
    }
    fn lift_int<const D: usize>(t: Tensor<B, D, Int>) -> Tensor<Self, D, Int> {
        Tensor::from_inner(t)
    }
}
