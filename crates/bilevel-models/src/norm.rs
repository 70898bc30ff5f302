//! Batch normalisation with *batch* statistics, twice differentiable on every backend level.
//!
//! [`BatchNorm2d`] normalises a `[n, c, h, w]` tensor per channel with the mean and the biased
//! variance of the current batch (over `n · h · w` values), then applies a learnable affine map
//! `γ · x̂ + β`:
//!
//! `x̂ = (x − mean) / sqrt(var + ε)`, `ε = 1e-5` by default.
//!
//! This is the *transductive* batch norm of MAML-style few-shot learning: the statistics of the
//! support (or query) set are used in training and at test time alike, and no running averages
//! are kept. `γ` and `β` are [`Param`]s, so they are part of the flat parameter vector of
//! [`crate::flat`]; there is no other state.
//!
//! # Why not `burn::nn::BatchNorm`
//! burn's `BatchNorm` chooses its statistics from the backend: on an autodiff backend it uses the
//! batch statistics (and updates running averages), on a plain backend it uses the running
//! averages. A bilevel problem evaluates the same loss on `B` (values), `Autodiff<B>` (gradients)
//! and `Autodiff<Autodiff<B>>` (exact HVP/JVP), so with burn's layer the value `g(x, y)` would not
//! be the function whose gradient the oracle returns — and the running averages would make the
//! loss depend on how often it was evaluated. The running averages are also not parameters, so
//! they would fall outside the flat vectors `x`, `y`. This layer has none of these problems: it
//! computes the same function on every backend.
//!
//! # Differentiability
//! Written with elementary tensor ops only (`sum_dim` + `mul_scalar` for means, `sqrt`, `recip`,
//! broadcasting `sub`/`mul`/`add`), whose backward passes are themselves recorded when the inner
//! backend is an autodiff backend. Means use `mul_scalar(1/m)` rather than `div_scalar` (whose
//! backward rounds the divisor through f32, see `docs/ARCHITECTURE.md`, "Numerics on burn
//! 0.21").

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Configuration of a [`BatchNorm2d`] layer.
#[derive(Config, Debug)]
pub struct BatchNorm2dConfig {
    /// Number of channels `c`.
    pub num_features: usize,
    /// `ε` added to the variance before the square root.
    #[config(default = 1e-5)]
    pub epsilon: f64,
}

impl BatchNorm2dConfig {
    /// A layer with `γ = 1`, `β = 0` (lazily initialised, so [`crate::flat::unflatten`] on a
    /// fresh layer draws nothing).
    pub fn init<B: Backend>(&self, device: &B::Device) -> BatchNorm2d<B> {
        BatchNorm2d {
            gamma: Initializer::Ones.init([self.num_features], device),
            beta: Initializer::Zeros.init([self.num_features], device),
            epsilon: self.epsilon,
        }
    }
}

/// Batch normalisation over `[n, c, h, w]` with batch statistics and an affine map (see the
/// module docs).
///
/// Flat-vector order: `γ` (`c` entries), then `β` (`c` entries).
#[derive(Module, Debug)]
pub struct BatchNorm2d<B: Backend> {
    /// Scale `γ`, shape `[c]`.
    pub gamma: Param<Tensor<B, 1>>,
    /// Shift `β`, shape `[c]`.
    pub beta: Param<Tensor<B, 1>>,
    /// `ε` added to the variance.
    #[module(skip)]
    pub epsilon: f64,
}

impl<B: Backend> BatchNorm2d<B> {
    /// Number of channels `c`.
    pub fn num_features(&self) -> usize {
        self.gamma.lazy_shape().num_elements()
    }

    /// `γ · normalize(x) + β`, per channel.
    ///
    /// # Shapes
    /// `[n, c, h, w]` → `[n, c, h, w]`.
    ///
    /// # Panics
    /// If the channel dimension of `input` is not [`num_features`](Self::num_features).
    pub fn forward(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        let c = input.dims()[1];
        assert_eq!(
            c,
            self.num_features(),
            "BatchNorm2d: input has {c} channels, the layer {}",
            self.num_features()
        );
        let n = input.dims()[0];
        let gamma = per_channel(self.gamma.val(), n);
        let beta = per_channel(self.beta.val(), n);
        normalize(input, self.epsilon).mul(gamma).add(beta)
    }
}

/// A per-channel vector `[c]` as the `[n, c, 1, 1]` operand of a broadcast over `[n, c, h, w]`.
///
/// Repeated over the batch rather than `[1, c, 1, 1]`: the same values, so the same results, but
/// burn-flex runs a broadcast whose operand walks its storage contiguously over the leading dims
/// (strides `[c, 1, 0, 0]`) with its SIMD per-row-scalar kernel, while a `[1, c, 1, 1]` operand
/// (strides `[0, 1, 0, 0]`) falls back to an element-by-element strided iterator, which took
/// 38 % of a CNN4 meta-learning hypergradient on Flex (docs/PERFORMANCE.md).
fn per_channel<B: Backend>(v: Tensor<B, 1>, n: usize) -> Tensor<B, 4> {
    let [c] = v.dims();
    v.reshape([1, c, 1, 1]).repeat_dim(0, n)
}

/// `(x − mean) / sqrt(var + ε)` per channel of `[n, c, h, w]`, with the mean and biased
/// variance over the `n · h · w` values of each channel (no affine map). The statistics are
/// broadcast as `[n, c, 1, 1]` (see [`per_channel`] for why).
///
/// # Shapes
/// `[n, c, h, w]` → `[n, c, h, w]`.
pub fn normalize<B: Backend>(x: Tensor<B, 4>, epsilon: f64) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let inv_m = 1.0 / (n * h * w) as f64;
    // Sums over the contiguous `h · w` run first (`[n, c, h·w]` → `[n, c, 1]`): their backward
    // broadcasts a `[n, c, 1]` gradient, Flex's fast per-row-scalar pattern, where summing
    // `[n, c, h, w]` over dims 0, 2, 3 broadcast `[1, c, h, w]`-shaped gradients through its
    // strided fallback.
    let channel_mean = |t: Tensor<B, 4>| {
        let sums = t.reshape([n, c, h * w]).sum_dim(2).sum_dim(0);
        per_channel(sums.reshape([c]).mul_scalar(inv_m), n)
    };
    let mean = channel_mean(x.clone());
    let centered = x.sub(mean);
    let var = channel_mean(centered.clone().powi_scalar(2));
    let inv_std = var.add_scalar(epsilon).sqrt().recip();
    centered.mul(inv_std)
}
