//! Hand-derived derivatives of the linear classifier problems (hyper-cleaning, ho-l2-mnist,
//! ho-logreg-text): the dominant full-batch path without autodiff (issue #8).
//!
//! Inner and outer losses, over a batch `S` of `m` rows of a data matrix `X` (`[n, d]`) with
//! targets `T`, for `y = vec(W) (, b)`, `W ∈ ℝ^{d×c}`:
//!
//! `g(x, y; S) = (1/m) Σ_{i∈S} s_i ℓ(z_i, t_i) + Σ_{j,k} ρ_j W_jk²`, `z_i = x_iᵀW (+ b)`,
//! `f(x, y; S) = (1/m) Σ_{i∈S} ℓ(z_i, t_i)` (validation set),
//!
//! with the loss `ℓ` the softmax cross-entropy over `c ≥ 2` classes and one-hot targets
//! ([`Output::Softmax`], `ℓ = log Σ_k e^{z_k} − ⟨t, z⟩`) or the binary logistic loss of one
//! logit (`c = 1`, [`Output::Logistic`], `ℓ = log(1 + e^z) − t z`, `t ∈ {0, 1}`); sample weights
//! `s_i = 1` ([`SampleWeights::One`]) or `s_i = σ(x_i)` ([`SampleWeights::Sigmoid`], one upper
//! variable per training sample); and a ridge weight `ρ_j = C_r` ([`Ridge::Const`]),
//! `ρ_j = exp(x₀)` ([`Ridge::Exp`], scalar `x`) or `ρ_j = a·exp(x_j)` on row `j` of `W`
//! ([`Ridge::ExpPerFeature`], one upper variable per feature). At most one of the sample weights
//! and the ridge may depend on `x` ([`LinearCe::new`] checks it).
//!
//! **Noisy rows** ([`LinearCe::with_noisy_rows`], poisoning): `n_p` training rows that follow
//! the `n_c` clean ones carry the upper variable as additive noise, `x = vec(Δ)` (`[n_p, d]`
//! row-major), `x̃_i = x_i + Δ_{i−n_c}`; the outer loss may be negated
//! ([`LinearCe::negated_outer`], `f = −(1/m) Σ ℓ_i`). Then, for a batch row `i` on noisy row `k`:
//! `∂g/∂Δ_k = Σ_{i→k} W g_i` and `J v`'s row `k` is `Σ_{i→k} (V g_i + W r_i)` (`g_i`, `r_i` the
//! rows of `G` and `R` below, with `U = X̃V (+ v_b)`; repeated rows add).
//!
//! With `P = softmax(Z)` (logistic: `P = σ(Z)`) and `G = diag(s)(P − T)/m`:
//! - `∇_W g = Xᵀ G + 2 diag(ρ) W`, `∇_b g = 1ᵀG`;
//!   `∂g/∂x_i = σ'(x_i) ℓ_i / m` (sigmoid weights, summed over repeated rows),
//!   `∂g/∂x₀ = e^{x₀}‖W‖²` (exp ridge), `∂g/∂x_j = a e^{x_j} Σ_k W_jk²` (per-feature ridge).
//! - The Hessian of `ℓ(z, t)` in `z` is `diag(p) − ppᵀ` whatever the one-hot `t` (logistic:
//!   `p(1 − p)`, the same formula with `c = 1`), so for `v = vec(V) (, v_b)`: `U = XV (+ v_b)`,
//!   `R = diag(s)(P ⊙ U − P ⊙ (P ⊙ U)1 1ᵀ)/m`, `H v = vec(XᵀR + 2 diag(ρ) V) (, 1ᵀR)`.
//! - `J v = ∇_x⟨∇_y g, v⟩`: `σ'(x_i)⟨p_i − t_i, u_i⟩/m` (sigmoid weights),
//!   `2e^{x₀}⟨W, V⟩` (exp ridge), `2a e^{x_j} Σ_k W_jk V_jk` (per-feature ridge).
//!
//! Cost per call on the full batch: a gradient is `XW` and `XᵀG` (`4ndc` flops), a product
//! `X[W V]` (one pass over `X` for both) and `XᵀR` (`6ndc`). The full-batch `X` is held in row
//! blocks of at most 2²¹ elements, each with its transpose stored contiguous (`XᵀR = Σ_b X_bᵀR_b`):
//! burn-ndarray 0.21 copies every matmul operand (and brings a transposed one into standard
//! layout), and a copy of all of MNIST's `20 000 × 784` is a fresh 60 MiB `mmap` whose pages
//! fault in on every product, where a block's 8 MiB copy reuses heap memory — 2.5× faster
//! products (docs/PERFORMANCE.md). Autodiff's double backward pays four passes and those copies.

use std::ops::Range;

use bilevel_core::Batch;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::common::LinearShape;
use crate::error::{ProblemError, Result};

mod blocks;
mod closed_form;
mod forward;
#[cfg(test)]
mod tests;

pub use blocks::{RowBlocks, BLOCK_ELEMENTS};

/// The per-sample loss of the linear model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Softmax cross-entropy over `c ≥ 2` classes with one-hot targets.
    Softmax,
    /// Binary logistic loss `log(1 + e^z) − t z` of a single logit (`c = 1`), targets in {0, 1}.
    Logistic,
}

/// How the inner loss weights its samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleWeights {
    /// `s_i = 1`.
    One,
    /// `s_i = σ(x_i)`: `x` has one entry per training sample (hyper-cleaning).
    Sigmoid,
}

/// The inner loss's ridge weight `ρ` on `‖W‖²`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ridge {
    /// `ρ = C_r`, a constant.
    Const(f64),
    /// `ρ = exp(x₀)` with a scalar upper variable (ho-l2-mnist).
    Exp,
    /// `ρ_j = scale · exp(x_j)` on row `j` of `W`: one upper variable per input feature
    /// (ho-logreg-text, `scale = 1/d`).
    ExpPerFeature {
        /// The factor `a` in front of `exp(x_j)`.
        scale: f64,
    },
}

/// The linear model whose derivatives [`LinearCe`] computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearModel {
    /// `W` (and bias) layout in `y`.
    pub shape: LinearShape,
    /// The per-sample loss.
    pub output: Output,
    /// The inner loss's sample weights.
    pub weights: SampleWeights,
    /// The inner loss's ridge.
    pub ridge: Ridge,
}

/// A labelled data set, `X` in row blocks.
#[derive(Clone, Debug)]
struct Data<B: Backend> {
    features: Tensor<B, 2>,
    blocks: RowBlocks<B>,
    targets: Tensor<B, 2>,
}

impl<B: Backend> Data<B> {
    fn new((features, targets): (&Tensor<B, 2>, &Tensor<B, 2>), block_elements: usize) -> Self {
        Self {
            features: features.clone(),
            blocks: RowBlocks::new(features, block_elements),
            targets: targets.clone(),
        }
    }

    /// `(X_S, T_S)`; the full batch uses the stored blocks.
    fn batch(&self, batch: &Batch) -> (RowBlocks<B>, Tensor<B, 2>) {
        match batch {
            Batch::Full => (self.blocks.clone(), self.targets.clone()),
            Batch::Indices(_) => (
                RowBlocks::single(batch.rows(self.features.clone())),
                batch.rows(self.targets.clone()),
            ),
        }
    }
}

/// Training rows that carry `x` as additive noise ([`LinearCe::with_noisy_rows`]).
#[derive(Clone, Debug)]
struct NoisyRows<B: Backend> {
    /// `X_p`, `[n_p, d]`, before the noise.
    features: Tensor<B, 2>,
    /// `T_p`, `[n_p, c]`.
    targets: Tensor<B, 2>,
    /// `[T_c; T_p]`, the full batch's targets.
    all_targets: Tensor<B, 2>,
}

/// Where a training batch's noisy rows are: batch rows `rows` are noisy rows `index`
/// (`None` for the full batch, where they are all `n_p` in order).
struct NoisyPart {
    rows: Range<usize>,
    index: Option<Vec<usize>>,
}

/// The hand-derived derivatives of a linear classifier problem (see the module documentation).
#[derive(Clone, Debug)]
pub struct LinearCe<B: Backend> {
    train: Data<B>,
    val: Data<B>,
    shape: LinearShape,
    output: Output,
    weights: SampleWeights,
    ridge: Ridge,
    noisy: Option<NoisyRows<B>>,
    outer_sign: f64,
    block_elements: usize,
}

/// The softmax pieces of one batch at `y`.
struct Forward<B: Backend> {
    x: RowBlocks<B>,
    targets: Tensor<B, 2>,
    probs: Tensor<B, 2>,
    m: usize,
}

impl<B: Backend> LinearCe<B> {
    /// Derivatives of `g` on `train` and `f` on `val`, each given as `(X, T)`: features
    /// `[n, d]` and targets `[n, c]` (one-hot for [`Output::Softmax`], a `{0, 1}` column for
    /// [`Output::Logistic`]).
    ///
    /// Fails with [`ProblemError::Config`] when the model is inconsistent: sample weights and a
    /// ridge that both read `x`, a logistic output with `c ≠ 1`, or targets whose shape does not
    /// match the features and classes.
    pub fn new(
        train: (&Tensor<B, 2>, &Tensor<B, 2>),
        val: (&Tensor<B, 2>, &Tensor<B, 2>),
        model: LinearModel,
    ) -> Result<Self> {
        Self::with_block_elements(train, val, model, BLOCK_ELEMENTS)
    }

    /// [`LinearCe::new`] with row blocks of at most `block_elements` elements of `X`.
    fn with_block_elements(
        train: (&Tensor<B, 2>, &Tensor<B, 2>),
        val: (&Tensor<B, 2>, &Tensor<B, 2>),
        model: LinearModel,
        block_elements: usize,
    ) -> Result<Self> {
        let LinearModel {
            shape,
            output,
            weights,
            ridge,
        } = model;
        if weights == SampleWeights::Sigmoid && !matches!(ridge, Ridge::Const(_)) {
            return invalid(format!(
                "sigmoid sample weights take one upper variable per sample, so the ridge must \
                 be constant, got {ridge:?}"
            ));
        }
        if output == Output::Logistic && shape.classes != 1 {
            return invalid(format!(
                "a logistic output has one logit, got {} classes",
                shape.classes
            ));
        }
        check_set("train", train, shape, 0)?;
        check_set("val", val, shape, 0)?;
        Ok(Self {
            train: Data::new(train, block_elements),
            val: Data::new(val, block_elements),
            shape,
            output,
            weights,
            ridge,
            noisy: None,
            outer_sign: 1.0,
            block_elements,
        })
    }

    /// The model with `(X_p, T_p)` appended to the training rows, each carrying its row of
    /// `Δ`, `x = vec(Δ)` (`[n_p, d]` row-major): `x̃_{n_c+k} = X_p[k] + Δ_k` (poisoning).
    /// Inner batch indices `0..n_c` are the clean rows, `n_c..n_c + n_p` the noisy ones.
    ///
    /// Fails with [`ProblemError::Config`] unless the sample weights are one and the ridge
    /// constant (`x` has one meaning), or when the shapes do not match.
    pub fn with_noisy_rows(
        mut self,
        (features, targets): (&Tensor<B, 2>, &Tensor<B, 2>),
    ) -> Result<Self> {
        if self.weights != SampleWeights::One || !matches!(self.ridge, Ridge::Const(_)) {
            return invalid(format!(
                "noisy rows take x as their noise, so the sample weights must be one and the \
                 ridge constant, got {:?} and {:?}",
                self.weights, self.ridge
            ));
        }
        check_set("noisy rows", (features, targets), self.shape, 1)?;
        self.noisy = Some(NoisyRows {
            features: features.clone(),
            targets: targets.clone(),
            all_targets: Tensor::cat(vec![self.train.targets.clone(), targets.clone()], 0),
        });
        Ok(self)
    }

    /// The model with `f = −(1/m) Σ ℓ_i` (an attacker maximising the validation loss).
    pub fn negated_outer(mut self) -> Self {
        self.outer_sign = -self.outer_sign;
        self
    }
}

/// A [`ProblemError::Config`] of [`LinearCe`]'s constructors.
fn invalid<T>(reason: String) -> Result<T> {
    Err(ProblemError::config("linear model", reason))
}

/// Checks that `(X, T)` are `[n, d]` and `[n, c]` for the model's `d` and `c`, with `n ≥ min_rows`.
fn check_set<B: Backend>(
    name: &str,
    (features, targets): (&Tensor<B, 2>, &Tensor<B, 2>),
    shape: LinearShape,
    min_rows: usize,
) -> Result<()> {
    let ([n, d], [nt, c]) = (features.dims(), targets.dims());
    if n < min_rows || d != shape.features || nt != n || c != shape.classes {
        let rows = match min_rows {
            0 => String::new(),
            k => format!(" (at least {k} row{})", if k == 1 { "" } else { "s" }),
        };
        return invalid(format!(
            "{name}: features [{n}, {d}] and targets [{nt}, {c}] do not match {} features and \
             {} classes{rows}",
            shape.features, shape.classes
        ));
    }
    Ok(())
}
