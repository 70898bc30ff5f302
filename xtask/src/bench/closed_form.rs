//! The hand-derived Hessian-vector product of hyper-cleaning's inner objective (linear model,
//! softmax cross-entropy, per-sample weights), the reference the exact (nested autodiff) and
//! finite-difference products are timed against.
//!
//! `g(λ, W) = (1/n) Σ_i s_i CE(x_iᵀW, ỹ_i) + C_r ‖W‖²`, `s_i = σ(λ_i)`, `W ∈ ℝ^{d×c}`. The Hessian
//! of `CE(z, t)` in the logits `z` is `diag(p) − p pᵀ` with `p = softmax(z)`, whatever the
//! (one-hot) target, so
//!
//! `H = (1/n) Σ_i s_i (x_i x_iᵀ) ⊗ (diag(p_i) − p_i p_iᵀ) + 2 C_r I`, and for `V ∈ ℝ^{d×c}`:
//! `U = X V`, `r_i = s_i (p_i ⊙ u_i − p_i ⟨p_i, u_i⟩)`, `H v = vec((1/n) Xᵀ R + 2 C_r V)`.
//!
//! `P` (softmax of `X W`) and `s` depend on `(λ, W)` only: a linear solve at fixed `(λ, W)`
//! (CG, Neumann) computes them once ([`LinearCeHessian::new`]) and then pays two `n×d×c`
//! matmuls per product ([`LinearCeHessian::apply`]); the nested-autodiff product pays four.

use bilevel_problems::linear_ce::RowBlocks;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// How the products with `X` and `Xᵀ` are formed.
pub(crate) enum Layout<C: Backend> {
    /// `Xᵀ` as a transposed view of `X` (burn-ndarray copies it into standard layout per matmul).
    TransposedView,
    /// `Xᵀ` stored contiguous, made once per problem with [`contiguous_transpose`].
    Contiguous(Tensor<C, 2>),
    /// `X` in row blocks with contiguous transposes (`bilevel_problems::linear_ce::RowBlocks`,
    /// what the problem's own closed form uses): every matmul copies a block, not all of `X`.
    Blocked(RowBlocks<C>),
}

/// `H` at a fixed `(λ, W)`, ready to be applied to vectors.
pub(crate) struct LinearCeHessian<C: Backend> {
    /// `X`, `[n, d]`.
    features: Tensor<C, 2>,
    layout: Layout<C>,
    /// `softmax(X W)`, `[n, c]`.
    probs: Tensor<C, 2>,
    /// `s_i = σ(λ_i) / n`, `[n, 1]` (the mean's `1/n` folded in).
    weights: Tensor<C, 2>,
    reg: f64,
    dims: (usize, usize, usize),
}

impl<C: Backend> LinearCeHessian<C> {
    /// Computes `P = softmax(X W)` and `σ(λ)/n` (with the products of `layout`).
    pub(crate) fn new(
        features: Tensor<C, 2>,
        layout: Layout<C>,
        lambda: Tensor<C, 1>,
        y: Tensor<C, 1>,
        classes: usize,
        reg: f64,
    ) -> Self {
        let [n, d] = features.dims();
        let w = y.reshape([d, classes]);
        let z = match &layout {
            Layout::Blocked(blocks) => blocks.times(w),
            _ => features.clone().matmul(w),
        };
        let z = z.clone().sub(z.max_dim(1));
        let e = z.exp();
        let probs = e.clone().div(e.sum_dim(1));
        let weights = lambda
            .neg()
            .exp()
            .add_scalar(1.0)
            .recip()
            .mul_scalar(1.0 / n as f64)
            .reshape([n, 1]);
        Self {
            features,
            layout,
            probs,
            weights,
            reg,
            dims: (n, d, classes),
        }
    }

    /// `X A`.
    fn times(&self, a: Tensor<C, 2>) -> Tensor<C, 2> {
        match &self.layout {
            Layout::Blocked(blocks) => blocks.times(a),
            _ => self.features.clone().matmul(a),
        }
    }

    /// `Xᵀ G`.
    fn t_times(&self, g: Tensor<C, 2>) -> Tensor<C, 2> {
        match &self.layout {
            Layout::TransposedView => self.features.clone().transpose().matmul(g),
            Layout::Contiguous(t) => t.clone().matmul(g),
            Layout::Blocked(blocks) => blocks.t_times(g),
        }
    }

    /// `H v` for a flat `v` of length `d·c`.
    pub(crate) fn apply(&self, v: Tensor<C, 1>) -> Tensor<C, 1> {
        let (_, d, c) = self.dims;
        let v = v.reshape([d, c]);
        let u = self.times(v.clone());
        let pu = self.probs.clone().mul(u);
        let r = pu
            .clone()
            .sub(self.probs.clone().mul(pu.sum_dim(1)))
            .mul(self.weights.clone());
        self.t_times(r)
            .add(v.mul_scalar(2.0 * self.reg))
            .reshape([d * c])
    }
}

/// A standard-layout `Xᵀ` (through the host, so the copy does not depend on how a backend
/// treats strided tensors).
pub(crate) fn contiguous_transpose<C: Backend>(features: &Tensor<C, 2>) -> Tensor<C, 2> {
    let device = features.device();
    Tensor::from_data(features.clone().transpose().into_data(), &device)
}
