//! Linear / logistic heads and the losses the problems build on them.
//!
//! [`Linear`] is a plain `x W + b` layer written with `matmul` and a broadcast `add`. It exists
//! (instead of `burn::nn::Linear`) because burn 0.21's fused `linear` op cannot be differentiated
//! twice: `Autodiff<B>` implements `linear_x_backward`, `linear_weight_backward` and
//! `linear_bias_backward` as `panic!`, so an exact Hessian-vector product through
//! `burn::nn::Linear` on `Autodiff<Autodiff<B>>` panics. `matmul` and `add` have differentiable
//! backward passes, so this layer works on every backend level.
//!
//! The losses are written with `exp`, `log`, `max_dim`, `abs` and `relu` only, and average with
//! `mul_scalar(1/n)`: they keep full `f64` precision on ndarray through nested autodiff
//! (`div_scalar`'s backward and burn's `sigmoid` lose `f64` precision: `docs/ARCHITECTURE.md`,
//! "Numerics on burn 0.21").

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// Configuration of a [`Linear`] layer (a linear classifier head, or a hidden layer).
#[derive(Config, Debug)]
pub struct LinearConfig {
    /// Number of input features `d`.
    pub in_features: usize,
    /// Number of outputs `c` (classes, for a head).
    pub out_features: usize,
    /// Whether the layer has a bias `b`.
    #[config(default = true)]
    pub bias: bool,
    /// Initializer of the weight and the bias (burn's default for linear layers:
    /// `U(−1/√d, 1/√d)`).
    #[config(
        default = "Initializer::KaimingUniform{gain: 1.0 / 3.0f64.sqrt(), fan_out_only: false}"
    )]
    pub initializer: Initializer,
}

/// `logits = features · W + b`, with `W` stored `[in_features, out_features]`.
///
/// Flat parameter order (see [`crate::flat`]): `W` row-major, then `b`.
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    /// Weight `W`, `[in_features, out_features]`.
    pub weight: Param<Tensor<B, 2>>,
    /// Bias `b`, `[out_features]` (absent when the config says `bias = false`).
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl LinearConfig {
    /// A layer with lazily initialised parameters (no random draw happens until a parameter is
    /// read, so templates for [`crate::flat::unflatten`] are free).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Linear<B> {
        let (d, c) = (self.in_features, self.out_features);
        let weight = self.initializer.init_with([d, c], Some(d), Some(c), device);
        let bias = self
            .bias
            .then(|| self.initializer.init_with([c], Some(d), Some(c), device));
        Linear { weight, bias }
    }

    /// Number of parameters: `d·c (+ c)`.
    pub fn num_params(&self) -> usize {
        self.in_features * self.out_features + if self.bias { self.out_features } else { 0 }
    }
}

impl<B: Backend> Linear<B> {
    /// Applies the layer.
    ///
    /// # Shapes
    /// - `features`: `[n, in_features]`
    /// - output: `[n, out_features]`
    pub fn forward(&self, features: Tensor<B, 2>) -> Tensor<B, 2> {
        let out = features.matmul(self.weight.val());
        match &self.bias {
            Some(bias) => {
                let c = bias.dims()[0];
                out.add(bias.val().reshape([1, c]))
            }
            None => out,
        }
    }

    /// Input and output widths `(in_features, out_features)`.
    pub fn dims(&self) -> (usize, usize) {
        let [d, c] = self.weight.lazy_shape().dims();
        (d, c)
    }
}

/// Log-sum-exp over dimension 1, computed stably as `m + log Σ exp(z − m)` with the row maximum
/// `m` held constant (the value and every derivative of log-sum-exp are independent of `m`).
///
/// # Shapes
/// - `logits`: `[n, c]`
/// - output: `[n, 1]`
pub fn log_sum_exp<B: Backend>(logits: Tensor<B, 2>) -> Tensor<B, 2> {
    let m = logits.clone().detach().max_dim(1);
    logits.sub(m.clone()).exp().sum_dim(1).log().add(m)
}

/// Row-wise log-softmax `z − logsumexp(z)`.
///
/// # Shapes
/// - `logits`: `[n, c]`
/// - output: `[n, c]`
pub fn log_softmax<B: Backend>(logits: Tensor<B, 2>) -> Tensor<B, 2> {
    let lse = log_sum_exp(logits.clone());
    logits.sub(lse)
}

/// Per-sample cross-entropy `−Σ_k t_ik log softmax(z_i)_k` against one-hot (or soft) targets.
///
/// # Shapes
/// - `logits`: `[n, c]`
/// - `targets`: `[n, c]`, each row a probability vector
/// - output: `[n]`
pub fn cross_entropy_per_sample<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let n = logits.dims()[0];
    log_softmax(logits)
        .mul(targets)
        .sum_dim(1)
        .reshape([n])
        .neg()
}

/// Per-sample cross-entropy `−log softmax(z_i)_{t_i}` against integer class labels.
///
/// # Shapes
/// - `logits`: `[n, c]`
/// - `labels`: `[n]`, values in `0..c`
/// - output: `[n]`
pub fn cross_entropy_int_per_sample<B: Backend>(
    logits: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    let n = logits.dims()[0];
    log_softmax(logits)
        .gather(1, labels.reshape([n, 1]))
        .reshape([n])
        .neg()
}

/// Mean cross-entropy against one-hot (or soft) targets, a one-element tensor.
///
/// # Shapes
/// - `logits`: `[n, c]`
/// - `targets`: `[n, c]`
/// - output: `[1]`
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 2>) -> Tensor<B, 1> {
    mean(cross_entropy_per_sample(logits, targets))
}

/// Mean cross-entropy against integer class labels, a one-element tensor.
///
/// # Shapes
/// - `logits`: `[n, c]`
/// - `labels`: `[n]`
/// - output: `[1]`
pub fn cross_entropy_int<B: Backend>(
    logits: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    mean(cross_entropy_int_per_sample(logits, labels))
}

/// `(1/n) Σ_i w_i ℓ_i`: a per-sample loss weighted by `w` (e.g. hyper-cleaning's `σ(λ_i)`),
/// averaged over the batch size `n` (not over `Σ w_i`).
///
/// # Shapes
/// - `losses`, `weights`: `[n]`
/// - output: `[1]`
pub fn weighted_mean<B: Backend>(losses: Tensor<B, 1>, weights: Tensor<B, 1>) -> Tensor<B, 1> {
    mean(losses.mul(weights))
}

/// Mean of a vector as a one-element tensor, via `mul_scalar(1/n)` (f64-exact backward).
///
/// # Shapes
/// - `values`: `[n]`
/// - output: `[1]`
pub fn mean<B: Backend>(values: Tensor<B, 1>) -> Tensor<B, 1> {
    let n = values.dims()[0];
    values.sum().mul_scalar(1.0 / n as f64)
}

/// `softplus(t) = log(1 + eᵗ)`, computed stably as `t⁺ + log1p(exp(t⁻ − t⁺))` with
/// `t⁺ = relu(t)`, `t⁻ = t − t⁺` (so `t⁻ − t⁺ = −|t|`): no overflow, full relative precision for
/// very negative `t`, and the exact derivative `σ(t)` everywhere — also at `t = 0`, where the
/// textbook form `max(t, 0) + log1p(e^{−|t|})` gets derivative 0 from autodiff (both kinks
/// have subgradient 0 there), which would stall e.g. logistic regression started at `w = 0`.
///
/// # Shapes
/// Any shape; elementwise.
pub fn softplus<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    let pos = burn::tensor::activation::relu(t.clone());
    let neg = t.sub(pos.clone());
    let tail = neg.sub(pos.clone()).exp().log1p();
    pos.add(tail)
}

/// Logistic sigmoid `σ(t) = 1/(1 + e^{−t})`, computed as `exp(−softplus(−t))`: stable for large
/// `|t|` and exact in `f64` through nested autodiff (unlike burn's `sigmoid`).
///
/// # Shapes
/// Any shape; elementwise.
pub fn sigmoid<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    softplus(t.neg()).neg().exp()
}

/// Per-sample logistic loss `log(1 + exp(−y_i s_i))` for labels `y_i ∈ {−1, +1}`.
///
/// # Shapes
/// - `scores`: `[n]` (the margin `s_i = ⟨w, a_i⟩ + b`)
/// - `labels`: `[n]`, entries `±1`
/// - output: `[n]`
pub fn logistic_loss_per_sample<B: Backend>(
    scores: Tensor<B, 1>,
    labels: Tensor<B, 1>,
) -> Tensor<B, 1> {
    softplus(scores.mul(labels).neg())
}

/// Mean logistic loss `(1/n) Σ log(1 + exp(−y_i s_i))`, labels `±1`, a one-element tensor.
///
/// # Shapes
/// - `scores`, `labels`: `[n]`
/// - output: `[1]`
pub fn logistic_loss<B: Backend>(scores: Tensor<B, 1>, labels: Tensor<B, 1>) -> Tensor<B, 1> {
    mean(logistic_loss_per_sample(scores, labels))
}

/// Fraction of rows whose arg-max equals the label (host scalar; synchronises the device).
///
/// # Shapes
/// - `logits`: `[n, c]`
/// - `labels`: `[n]`
pub fn accuracy<B: Backend>(logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> f64 {
    use burn::tensor::ElementConversion;
    let n = logits.dims()[0];
    if n == 0 {
        return 0.0;
    }
    let pred = logits.argmax(1).reshape([n]);
    let correct = pred.equal(labels).int().sum().into_scalar().elem::<i64>();
    correct as f64 / n as f64
}
