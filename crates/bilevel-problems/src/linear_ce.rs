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

use bilevel_core::{Batch, ClosedForm};
use burn::tensor::backend::Backend;
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};

use crate::common::{split_batch, LinearShape};
use crate::error::{ProblemError, Result};

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

/// Elements of `X` per row block: `2²¹` (8 MiB in f32, 16 MiB in f64), under glibc's largest
/// dynamic mmap threshold (32 MiB). burn-ndarray 0.21's matmul copies each operand
/// (`reshape` → `CowArray::into_shared`); a copy above the threshold is a fresh `mmap` whose
/// pages fault in on every product and go back to the kernel after it, a copy below it is
/// reused heap memory (docs/PERFORMANCE.md).
pub const BLOCK_ELEMENTS: usize = 1 << 21;

/// `X` (`[m, d]`) as row blocks, with each block's transpose stored contiguous: the products
/// `X A` and `Xᵀ G` without copying all of `X` per matmul.
#[derive(Clone, Debug)]
pub struct RowBlocks<B: Backend> {
    /// `X_b`, `[m_b, d]`.
    rows: Vec<Tensor<B, 2>>,
    /// `X_bᵀ`, `[d, m_b]`, standard layout.
    cols: Vec<Tensor<B, 2>>,
    /// Row range of each block in `X`.
    ranges: Vec<Range<usize>>,
}

impl<B: Backend> RowBlocks<B> {
    /// `x` in blocks of at most `block_elements` elements (at least one row each), transposes
    /// through the host (so they are standard layout on every backend).
    pub fn new(x: &Tensor<B, 2>, block_elements: usize) -> Self {
        let [m, d] = x.dims();
        let mut ranges = row_ranges(m, d, block_elements);
        // At least one (possibly empty) block.
        if ranges.is_empty() {
            ranges.push(0..0);
        }
        let rows: Vec<_> = match ranges.len() {
            0 | 1 => vec![x.clone()],
            _ => ranges
                .iter()
                .map(|r| x.clone().slice([r.clone(), 0..d]))
                .collect(),
        };
        let device = x.device();
        let cols = rows
            .iter()
            .map(|b| Tensor::from_data(b.clone().transpose().into_data(), &device))
            .collect();
        Self { rows, cols, ranges }
    }

    /// One block: a mini-batch's rows, with its transpose as a view.
    pub fn single(x: Tensor<B, 2>) -> Self {
        let [m, _] = x.dims();
        Self {
            cols: vec![x.clone().transpose()],
            rows: vec![x],
            ranges: std::iter::once(0..m).collect(),
        }
    }

    /// `X A`.
    pub fn times(&self, a: Tensor<B, 2>) -> Tensor<B, 2> {
        match self.rows.as_slice() {
            [x] => x.clone().matmul(a),
            rows => Tensor::cat(
                rows.iter().map(|x| x.clone().matmul(a.clone())).collect(),
                0,
            ),
        }
    }

    /// `Xᵀ G` for `G` of `[m, k]`: `Σ_b X_bᵀ G_b`.
    pub fn t_times(&self, g: Tensor<B, 2>) -> Tensor<B, 2> {
        match self.cols.as_slice() {
            [x_t] => x_t.clone().matmul(g),
            cols => {
                let [_, k] = g.dims();
                cols.iter()
                    .zip(&self.ranges)
                    .map(|(x_t, r)| x_t.clone().matmul(g.clone().slice([r.clone(), 0..k])))
                    .reduce(|a, b| a.add(b))
                    .expect("at least two blocks")
            }
        }
    }

    /// No rows (the blocks of a batch without clean rows).
    fn empty() -> Self {
        Self {
            rows: Vec::new(),
            cols: Vec::new(),
            ranges: Vec::new(),
        }
    }

    /// Rows in all blocks.
    fn len(&self) -> usize {
        self.ranges.last().map_or(0, |r| r.end)
    }

    /// These blocks followed by `x`'s rows, in blocks of at most `block_elements` elements whose
    /// transposes are views (`x` changes per call: no host transpose).
    fn followed_by(mut self, x: Tensor<B, 2>, block_elements: usize) -> Self {
        let [m, d] = x.dims();
        let start = self.len();
        for r in row_ranges(m, d, block_elements) {
            let block = x.clone().slice([r.clone(), 0..d]);
            self.cols.push(block.clone().transpose());
            self.rows.push(block);
            self.ranges.push(start + r.start..start + r.end);
        }
        self
    }
}

/// The row ranges of `m` rows of `d` elements in blocks of at most `block_elements` elements
/// (at least one row each; none for `m = 0`).
fn row_ranges(m: usize, d: usize, block_elements: usize) -> Vec<Range<usize>> {
    let step = (block_elements / d.max(1)).max(1);
    (0..m.div_ceil(step))
        .map(|k| k * step..((k + 1) * step).min(m))
        .collect()
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

    fn dc(&self) -> usize {
        self.shape.features * self.shape.classes
    }

    /// `W` and the bias (if any) of a flat vector, `[d, c]` and `[1, c]`.
    fn split(&self, y: &Tensor<B, 1>) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
        let w = self.shape.weight(y.clone());
        let b = self.shape.bias.then(|| {
            y.clone()
                .narrow(0, self.dc(), self.shape.classes)
                .reshape([1, self.shape.classes])
        });
        (w, b)
    }

    /// `vec(W-part) (, bias part)` as one flat vector.
    fn join(&self, w: Tensor<B, 2>, b: Option<Tensor<B, 2>>) -> Tensor<B, 1> {
        let w = w.reshape([self.dc()]);
        match b {
            Some(b) => Tensor::cat(vec![w, b.reshape([self.shape.classes])], 0),
            None => w,
        }
    }

    /// Logits `X_S [W V…] (+ b)` for `W` and extra column blocks in one pass over `X_S`.
    fn logits(
        &self,
        x: &RowBlocks<B>,
        y: &Tensor<B, 1>,
        extra: Option<&Tensor<B, 1>>,
    ) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
        let c = self.shape.classes;
        let (w, b) = self.split(y);
        let add_bias = |z: Tensor<B, 2>, b: Option<Tensor<B, 2>>| match b {
            Some(b) => z.add(b),
            None => z,
        };
        match extra {
            None => (add_bias(x.times(w), b), None),
            Some(v) => {
                let (vw, vb) = self.split(v);
                let both = x.times(Tensor::cat(vec![w, vw], 1));
                let [m, _] = both.dims();
                let z = both.clone().slice([0..m, 0..c]);
                let u = both.slice([0..m, c..2 * c]);
                (add_bias(z, b), Some(add_bias(u, vb)))
            }
        }
    }

    /// A training batch: `(X̃_S, T_S)` and, when it has noisy rows, where they are. With noisy
    /// rows a mini-batch's clean rows come first, then its noisy rows (all sums over rows).
    fn train_batch(
        &self,
        x: &Tensor<B, 1>,
        batch: &Batch,
    ) -> (RowBlocks<B>, Tensor<B, 2>, Option<NoisyPart>) {
        let Some(noisy) = &self.noisy else {
            let (blocks, targets) = self.train.batch(batch);
            return (blocks, targets, None);
        };
        let [n_p, d] = noisy.features.dims();
        let n_c = self.train.blocks.len();
        match batch {
            Batch::Full => {
                let clean = if n_c == 0 {
                    RowBlocks::empty()
                } else {
                    self.train.blocks.clone()
                };
                let rows = noisy.features.clone().add(x.clone().reshape([n_p, d]));
                let part = NoisyPart {
                    rows: n_c..n_c + n_p,
                    index: None,
                };
                let blocks = clean.followed_by(rows, self.block_elements);
                (blocks, noisy.all_targets.clone(), Some(part))
            }
            Batch::Indices(_) => {
                let (ci, pi) = split_batch(batch, n_c + n_p, n_c);
                let (mut features, mut targets) = (Vec::new(), Vec::new());
                if !ci.is_empty() {
                    let clean = Batch::Indices(ci.clone());
                    features.push(clean.rows(self.train.features.clone()));
                    targets.push(clean.rows(self.train.targets.clone()));
                }
                if !pi.is_empty() {
                    let rows = Batch::Indices(pi.clone());
                    // The batch's rows of Δ, gathered from the flat x: reshaping all of x
                    // would copy it on ndarray (56 MB at poisoning's paper sizes) per call.
                    let noise = x
                        .clone()
                        .select(0, flat_row_index::<B>(&pi, d, &x.device()))
                        .reshape([pi.len(), d]);
                    features.push(rows.rows(noisy.features.clone()).add(noise));
                    targets.push(rows.rows(noisy.targets.clone()));
                }
                // No noisy rows in the batch: nothing depends on x.
                let part = (!pi.is_empty()).then(|| NoisyPart {
                    rows: ci.len()..ci.len() + pi.len(),
                    index: Some(pi),
                });
                let blocks = RowBlocks::single(Tensor::cat(features, 0));
                (blocks, Tensor::cat(targets, 0), part)
            }
        }
    }

    /// `Σ_{i→k} (A_i Bᵀ)` over the batch's noisy rows `i` on noisy row `k`, as `vec(·)` of
    /// `[n_p, d]`: `A` is `[m, k]` over the batch, `B` is `[d, k]`.
    fn noisy_part(&self, part: &NoisyPart, a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1> {
        let noisy = self
            .noisy
            .as_ref()
            .expect("a noisy part comes with noisy rows");
        let [n_p, d] = noisy.features.dims();
        let [_, k] = a.dims();
        let rows = a.slice([part.rows.clone(), 0..k]).matmul(b.transpose());
        let [m_p, _] = rows.dims();
        let rows = rows.reshape([m_p * d]);
        match &part.index {
            None => rows,
            // Added into a flat zero vector entry by entry (repeated rows add up).
            Some(index) => {
                let device = rows.device();
                Tensor::<B, 1>::zeros([n_p * d], &device).select_assign(
                    0,
                    flat_row_index::<B>(index, d, &device),
                    rows,
                    IndexingUpdateOp::Add,
                )
            }
        }
    }

    fn forward(
        &self,
        (x, targets): (RowBlocks<B>, Tensor<B, 2>),
        y: &Tensor<B, 1>,
        extra: Option<&Tensor<B, 1>>,
    ) -> (Forward<B>, Tensor<B, 1>, Option<Tensor<B, 2>>) {
        let (z, u) = self.logits(&x, y, extra);
        let [m, _] = z.dims();
        let (probs, log_partition) = match self.output {
            Output::Softmax => {
                let max = z.clone().max_dim(1);
                let e = z.clone().sub(max.clone()).exp();
                let sum = e.clone().sum_dim(1);
                (e.div(sum.clone()), sum.log().add(max))
            }
            // σ(z), and softplus(z) = max(z, 0) + log(1 + e^{−|z|}).
            Output::Logistic => (
                z.clone().neg().exp().add_scalar(1.0).recip(),
                z.clone()
                    .clamp_min(0.0)
                    .add(z.clone().abs().neg().exp().add_scalar(1.0).log()),
            ),
        };
        // ℓ_i = log Σ_k e^{z_ik} − ⟨t_i, z_i⟩ (logistic: softplus(z_i) − t_i z_i).
        let ce = log_partition
            .sub(z.mul(targets.clone()).sum_dim(1))
            .reshape([m]);
        (
            Forward {
                x,
                targets,
                probs,
                m,
            },
            ce,
            u,
        )
    }

    /// `s_i` and `σ'(x_i)` of the batch's rows (`None` for unit weights).
    fn sample_weights(
        &self,
        x: &Tensor<B, 1>,
        batch: &Batch,
    ) -> Option<(Tensor<B, 1>, Tensor<B, 1>)> {
        match self.weights {
            SampleWeights::One => None,
            SampleWeights::Sigmoid => {
                let s = batch.rows(x.clone()).neg().exp().add_scalar(1.0).recip();
                let ds = s.clone().mul(s.clone().neg().add_scalar(1.0));
                Some((s, ds))
            }
        }
    }

    /// `ρ` as a column that broadcasts against `W`: `[1, 1]`, or `[d, 1]` per feature.
    fn rho(&self, x: &Tensor<B, 1>) -> Tensor<B, 2> {
        match self.ridge {
            Ridge::Const(r) => Tensor::<B, 2>::ones([1, 1], &x.device()).mul_scalar(r),
            Ridge::Exp => x.clone().narrow(0, 0, 1).exp().reshape([1, 1]),
            Ridge::ExpPerFeature { scale } => {
                column(x.clone().narrow(0, 0, self.shape.features).exp()).mul_scalar(scale)
            }
        }
    }

    /// `factor · ∇_x Σ_{j,k} ρ_j(x) A_jk B_jk`, an `x`-length vector (`None` for a constant
    /// ridge): `∇_x g`'s ridge part is `(W, W, 1)`, `J v`'s is `(W, V, 2)`.
    fn ridge_x_part(
        &self,
        x: &Tensor<B, 1>,
        a: Tensor<B, 2>,
        b: Tensor<B, 2>,
        factor: f64,
    ) -> Option<Tensor<B, 1>> {
        match self.ridge {
            Ridge::Const(_) => None,
            Ridge::Exp => {
                let part = x
                    .clone()
                    .narrow(0, 0, 1)
                    .exp()
                    .mul(a.mul(b).sum())
                    .mul_scalar(factor);
                Some(add_to_first(x.zeros_like(), part))
            }
            Ridge::ExpPerFeature { .. } => {
                let d = self.shape.features;
                let rows = self.rho(x).mul(a.mul(b)).sum_dim(1).reshape([d]);
                Some(rows.mul_scalar(factor))
            }
        }
    }

    /// Per-row contributions `q` to `∂/∂x_i` added into an `x`-length vector (repeated rows add).
    fn scatter(&self, x: &Tensor<B, 1>, q: Tensor<B, 1>, batch: &Batch) -> Tensor<B, 1> {
        match batch {
            Batch::Full => q,
            Batch::Indices(idx) => {
                let index = flat_row_index::<B>(idx, 1, &x.device());
                x.zeros_like()
                    .select_assign(0, index, q, IndexingUpdateOp::Add)
            }
        }
    }

    /// `∇_y` of `(1/m) Σ s_i CE_i` given `G = diag(s)(P − T)/m` (no ridge).
    fn data_gradient(
        &self,
        fw: &Forward<B>,
        g: Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
        let gw = fw.x.t_times(g.clone());
        let gb = self.shape.bias.then(|| g.sum_dim(0));
        (gw, gb)
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

/// The flat indices `k·d .. (k+1)·d` of rows `k ∈ rows` of a row-major `[·, d]` matrix.
fn flat_row_index<B: Backend>(rows: &[usize], d: usize, device: &B::Device) -> Tensor<B, 1, Int> {
    let values: Vec<i64> = rows
        .iter()
        .flat_map(|&k| (k * d..(k + 1) * d).map(|i| i as i64))
        .collect();
    let len = values.len();
    Tensor::from_data(TensorData::new(values, [len]), device)
}

/// `acc + part`, where `None` is zero (saves a zero vector of `x`'s length when only one part
/// is present).
fn accumulate<B: Backend>(acc: Option<Tensor<B, 1>>, part: Tensor<B, 1>) -> Option<Tensor<B, 1>> {
    Some(match acc {
        Some(acc) => acc.add(part),
        None => part,
    })
}

/// `(1/m) Σ values` as a one-element tensor.
fn mean<B: Backend>(values: Tensor<B, 1>, m: usize) -> Tensor<B, 1> {
    values.sum().mul_scalar(1.0 / m.max(1) as f64)
}

/// `t` with the one-element `part` added to its first entry (the scalar `x₀` of [`Ridge::Exp`]).
fn add_to_first<B: Backend>(t: Tensor<B, 1>, part: Tensor<B, 1>) -> Tensor<B, 1> {
    let first = 0..1;
    let sum = t.clone().narrow(0, 0, 1).add(part);
    t.slice_assign([first], sum)
}

/// A `[m]` column as `[m, 1]`.
fn column<B: Backend>(t: Tensor<B, 1>) -> Tensor<B, 2> {
    let [m] = t.dims();
    t.reshape([m, 1])
}

impl<B: Backend> ClosedForm<B> for LinearCe<B> {
    fn inner_gradient(
        &self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        batch: &Batch,
        want_x: bool,
    ) -> (Tensor<B, 1>, Option<Tensor<B, 1>>, Tensor<B, 1>) {
        let (blocks, targets, noisy) = self.train_batch(x, batch);
        let (fw, ce, _) = self.forward((blocks, targets), y, None);
        let m = fw.m;
        let weights = self.sample_weights(x, batch);
        let residual = fw.probs.clone().sub(fw.targets.clone());
        let (g, data_value) = match &weights {
            Some((s, _)) => (
                residual.mul(column(s.clone())),
                mean(ce.clone().mul(s.clone()), m),
            ),
            None => (residual, mean(ce.clone(), m)),
        };
        let g = g.mul_scalar(1.0 / m as f64);
        let (gw, gb) = self.data_gradient(&fw, g.clone());
        let (w, _) = self.split(y);
        let rho_w = w.clone().mul(self.rho(x));
        let value = data_value.add(rho_w.clone().mul(w.clone()).sum());
        let gw = gw.add(rho_w.mul_scalar(2.0));
        let gy = self.join(gw, gb);
        let gx = want_x.then(|| {
            let mut gx = None;
            if let Some((_, ds)) = weights {
                let q = ds.mul(ce).mul_scalar(1.0 / m as f64);
                gx = accumulate(gx, self.scatter(x, q, batch));
            }
            if let Some(part) = &noisy {
                gx = accumulate(gx, self.noisy_part(part, g, w.clone()));
            }
            if let Some(part) = self.ridge_x_part(x, w.clone(), w, 1.0) {
                gx = accumulate(gx, part);
            }
            gx.unwrap_or_else(|| x.zeros_like())
        });
        (value, gx, gy)
    }

    fn outer_gradient(
        &self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        batch: &Batch,
    ) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
        let (fw, ce, _) = self.forward(self.val.batch(batch), y, None);
        let m = fw.m;
        let g = fw
            .probs
            .clone()
            .sub(fw.targets.clone())
            .mul_scalar(self.outer_sign / m as f64);
        let (gw, gb) = self.data_gradient(&fw, g);
        let value = mean(ce, m).mul_scalar(self.outer_sign);
        (value, x.zeros_like(), self.join(gw, gb))
    }

    fn inner_products(
        &self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        v: &Tensor<B, 1>,
        batch: &Batch,
        want_jvp: bool,
    ) -> (Tensor<B, 1>, Option<Tensor<B, 1>>) {
        let (blocks, targets, noisy) = self.train_batch(x, batch);
        let (fw, _, u) = self.forward((blocks, targets), y, Some(v));
        let u = u.expect("logits with an extra block return it");
        let m = fw.m;
        let weights = self.sample_weights(x, batch);
        let pu = fw.probs.clone().mul(u.clone());
        let r = pu
            .clone()
            .sub(fw.probs.clone().mul(pu.sum_dim(1)))
            .mul_scalar(1.0 / m as f64);
        let r = match &weights {
            Some((s, _)) => r.mul(column(s.clone())),
            None => r,
        };
        let (hw, hb) = self.data_gradient(&fw, r.clone());
        let (vw, _) = self.split(v);
        let hw = hw.add(vw.clone().mul(self.rho(x)).mul_scalar(2.0));
        let hv = self.join(hw, hb);
        let jv = want_jvp.then(|| {
            let mut jv = None;
            if let Some((_, ds)) = weights {
                let inner = fw
                    .probs
                    .clone()
                    .sub(fw.targets.clone())
                    .mul(u)
                    .sum_dim(1)
                    .reshape([m]);
                let q = ds.mul(inner).mul_scalar(1.0 / m as f64);
                jv = accumulate(jv, self.scatter(x, q, batch));
            }
            let (w, _) = self.split(y);
            if let Some(part) = &noisy {
                // Σ (V g_i + W r_i) = [G R] [V W]ᵀ on the noisy rows.
                let g = fw
                    .probs
                    .clone()
                    .sub(fw.targets.clone())
                    .mul_scalar(1.0 / m as f64);
                let a = Tensor::cat(vec![g, r], 1);
                let b = Tensor::cat(vec![vw.clone(), w.clone()], 1);
                jv = accumulate(jv, self.noisy_part(part, a, b));
            }
            if let Some(part) = self.ridge_x_part(x, w, vw, 2.0) {
                jv = accumulate(jv, part);
            }
            jv.unwrap_or_else(|| x.zeros_like())
        });
        (hv, jv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bilevel_core::sampling::Rng;
    use bilevel_core::tensor::{matrix, rel_err, vector};
    use burn::backend::NdArray;

    type B = NdArray<f64>;

    /// `(X, T)`: normal features, and one-hot targets over `c` classes (softmax) or a `{0, 1}`
    /// column (logistic, `c = 1`).
    fn random_set(
        rng: &mut Rng,
        n: usize,
        d: usize,
        c: usize,
        output: Output,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let device = Default::default();
        let features = matrix::<B>(&rng.normal_vec(n * d), n, d, &device).expect("sizes match");
        let targets: Vec<f64> = match output {
            Output::Softmax => (0..n)
                .flat_map(|_| {
                    let l = rng.index(c);
                    (0..c).map(move |k| if k == l { 1.0 } else { 0.0 })
                })
                .collect(),
            Output::Logistic => (0..n).map(|_| rng.index(2) as f64).collect(),
        };
        let targets = matrix::<B>(&targets, n, c, &device).expect("sizes match");
        (features, targets)
    }

    /// `g`, `∇g`, `f`, `∇_y f`, `H v` and `J v` of two models agree to 1e-13 on `batch`
    /// (`f` on the full batch when `batch` is a mini-batch of training rows).
    fn assert_same_derivatives(
        a: &LinearCe<B>,
        b: &LinearCe<B>,
        [x, y, v]: [&Tensor<B, 1>; 3],
        batch: &Batch,
        case: &str,
    ) {
        let close = |p: &Tensor<B, 1>, q: &Tensor<B, 1>, what: &str| {
            let err = rel_err(p, q);
            assert!(err < 1e-13, "{what} ({case}, {batch:?}): {err:e}");
        };
        let (g1, g2) = (
            a.inner_gradient(x, y, batch, true),
            b.inner_gradient(x, y, batch, true),
        );
        close(&g1.0, &g2.0, "g");
        close(&g1.1.unwrap(), &g2.1.unwrap(), "grad_x g");
        close(&g1.2, &g2.2, "grad_y g");
        let (f1, f2) = (
            a.outer_gradient(x, y, &Batch::Full),
            b.outer_gradient(x, y, &Batch::Full),
        );
        close(&f1.0, &f2.0, "f");
        close(&f1.2, &f2.2, "grad_y f");
        let (p1, p2) = (
            a.inner_products(x, y, v, batch, true),
            b.inner_products(x, y, v, batch, true),
        );
        close(&p1.0, &p2.0, "Hv");
        close(&p1.1.unwrap(), &p2.1.unwrap(), "Jv");
    }

    #[test]
    fn blocks_split_rows_and_match_whole_products() {
        let mut rng = Rng::seed(3);
        let device = Default::default();
        let (n, d, k) = (23, 4, 3);
        let x = matrix::<B>(&rng.normal_vec(n * d), n, d, &device).expect("sizes match");
        let a = matrix::<B>(&rng.normal_vec(d * k), d, k, &device).expect("sizes match");
        let g = matrix::<B>(&rng.normal_vec(n * k), n, k, &device).expect("sizes match");
        let flat = |t: Tensor<B, 2>| {
            let len: usize = t.dims().iter().product();
            t.reshape([len])
        };
        let whole = RowBlocks::new(&x, n * d);
        assert_eq!(whole.rows.len(), 1);
        // 5 rows per block: 5, 5, 5, 5, 3.
        let split = RowBlocks::new(&x, 5 * d + 1);
        assert_eq!(split.ranges, vec![0..5, 5..10, 10..15, 15..20, 20..23]);
        assert_eq!(split.cols[4].dims(), [d, 3]);
        let xa = x.clone().matmul(a.clone());
        let xtg = x.clone().transpose().matmul(g.clone());
        for blocks in [&whole, &split] {
            assert!(rel_err(&flat(blocks.times(a.clone())), &flat(xa.clone())) < 1e-15);
            assert!(rel_err(&flat(blocks.t_times(g.clone())), &flat(xtg.clone())) < 1e-14);
        }
        // A block budget below one row still makes one-row blocks.
        assert_eq!(RowBlocks::new(&x, 1).rows.len(), n);
    }

    #[test]
    fn blocked_derivatives_equal_unblocked() {
        let mut rng = Rng::seed(5);
        let (n, n_val, d) = (37, 11, 6);
        let device = Default::default();
        let per_feature = Ridge::ExpPerFeature { scale: 0.3 };
        let cases = [
            (
                Output::Softmax,
                SampleWeights::Sigmoid,
                Ridge::Const(1e-2),
                false,
                n,
            ),
            (
                Output::Softmax,
                SampleWeights::Sigmoid,
                Ridge::Const(1e-2),
                true,
                n,
            ),
            (Output::Softmax, SampleWeights::One, Ridge::Exp, true, 1),
            (Output::Softmax, SampleWeights::One, per_feature, false, d),
            (Output::Logistic, SampleWeights::One, per_feature, true, d),
            (
                Output::Logistic,
                SampleWeights::Sigmoid,
                Ridge::Const(1e-2),
                false,
                n,
            ),
        ];
        for (output, weights, ridge, bias, x_dim) in cases {
            let c = if output == Output::Logistic { 1 } else { 4 };
            let train = random_set(&mut rng, n, d, c, output);
            let val = random_set(&mut rng, n_val, d, c, output);
            let model = LinearModel {
                shape: LinearShape {
                    features: d,
                    classes: c,
                    bias,
                },
                output,
                weights,
                ridge,
            };
            let shape = model.shape;
            let sets = ((&train.0, &train.1), (&val.0, &val.1));
            let one = LinearCe::with_block_elements(sets.0, sets.1, model, n * d).unwrap();
            // 2 rows per block: 19 train blocks, 6 validation blocks.
            let many = LinearCe::with_block_elements(sets.0, sets.1, model, 2 * d).unwrap();
            assert_eq!(many.train.blocks.rows.len(), 19);
            assert_eq!(many.val.blocks.rows.len(), 6);
            let x = vector::<B>(&rng.normal_vec(x_dim), &device);
            let y = vector::<B>(&rng.normal_vec(shape.len()), &device);
            let v = vector::<B>(&rng.normal_vec(shape.len()), &device);
            let case = format!("{output:?}, {weights:?}, {ridge:?}, bias {bias}");
            let point = [&x, &y, &v];
            assert_same_derivatives(&one, &many, point, &Batch::Full, &case);
            // Mini-batches take one block of their rows whatever the budget.
            let batch = Batch::Indices(vec![3, 3, 30, 0, 12]);
            assert_same_derivatives(&one, &many, point, &batch, &case);
        }
    }

    #[test]
    fn inconsistent_models_are_config_errors() {
        let mut rng = Rng::seed(2);
        let (n, d) = (5, 3);
        let soft = random_set(&mut rng, n, d, 4, Output::Softmax);
        let logit = random_set(&mut rng, n, d, 1, Output::Logistic);
        let model = |classes, output, weights, ridge| LinearModel {
            shape: LinearShape {
                features: d,
                classes,
                bias: false,
            },
            output,
            weights,
            ridge,
        };
        let message = |sets: &(Tensor<B, 2>, Tensor<B, 2>), m: LinearModel| {
            let pair = (&sets.0, &sets.1);
            match LinearCe::new(pair, pair, m) {
                Err(e @ ProblemError::Config { .. }) => e.to_string(),
                other => panic!("{m:?}: expected a config error, got {other:?}"),
            }
        };
        let sigmoid = SampleWeights::Sigmoid;
        let text = message(&soft, model(4, Output::Softmax, sigmoid, Ridge::Exp));
        assert!(text.contains("ridge must be constant"), "{text}");
        let per_feature = Ridge::ExpPerFeature { scale: 1.0 };
        let text = message(&soft, model(4, Output::Softmax, sigmoid, per_feature));
        assert!(text.contains("ridge must be constant"), "{text}");
        let text = message(
            &soft,
            model(4, Output::Logistic, SampleWeights::One, per_feature),
        );
        assert!(text.contains("one logit, got 4 classes"), "{text}");
        let text = message(
            &logit,
            model(4, Output::Softmax, SampleWeights::One, per_feature),
        );
        assert!(
            text.contains("targets [5, 1] do not match 3 features and 4 classes"),
            "{text}"
        );
        assert!(LinearCe::new(
            (&logit.0, &logit.1),
            (&logit.0, &logit.1),
            model(1, Output::Logistic, SampleWeights::One, per_feature)
        )
        .is_ok());
    }

    #[test]
    fn noisy_rows_in_blocks_equal_one_block() {
        let mut rng = Rng::seed(8);
        let (n_c, n_p, n_val, d, c) = (9, 7, 5, 3, 4);
        let device = Default::default();
        let clean = random_set(&mut rng, n_c, d, c, Output::Softmax);
        let noisy = random_set(&mut rng, n_p, d, c, Output::Softmax);
        let val = random_set(&mut rng, n_val, d, c, Output::Softmax);
        let model = LinearModel {
            shape: LinearShape {
                features: d,
                classes: c,
                bias: true,
            },
            output: Output::Softmax,
            weights: SampleWeights::One,
            ridge: Ridge::Const(0.1),
        };
        let build = |block_elements| {
            LinearCe::with_block_elements(
                (&clean.0, &clean.1),
                (&val.0, &val.1),
                model,
                block_elements,
            )
            .unwrap()
            .with_noisy_rows((&noisy.0, &noisy.1))
            .unwrap()
            .negated_outer()
        };
        let (one, many) = (build(100 * d), build(2 * d));
        let x = vector::<B>(&rng.normal_vec(n_p * d), &device);
        let y = vector::<B>(&rng.normal_vec(model.shape.len()), &device);
        let v = vector::<B>(&rng.normal_vec(model.shape.len()), &device);
        // 9 clean rows in 5 blocks, then 7 noisy rows in 4 view blocks.
        let (blocks, _, part) = many.train_batch(&x, &Batch::Full);
        assert_eq!(blocks.rows.len(), 9);
        assert_eq!(blocks.ranges[5], 9..11);
        assert_eq!(part.map(|p| p.rows), Some(9..16));
        let (blocks, _, _) = one.train_batch(&x, &Batch::Full);
        assert_eq!(blocks.rows.len(), 2);
        assert_same_derivatives(&one, &many, [&x, &y, &v], &Batch::Full, "noisy rows");
        let close = |a: &Tensor<B, 1>, b: &Tensor<B, 1>, what: &str| {
            let err = rel_err(a, b);
            assert!(err < 1e-13, "{what}: {err:e}");
        };
        // The negated outer loss: f and ∇_y f are those of the plain model, negated.
        let plain = LinearCe::new((&clean.0, &clean.1), (&val.0, &val.1), model).unwrap();
        let (f1, f2) = (
            one.outer_gradient(&x, &y, &Batch::Full),
            plain.outer_gradient(&x, &y, &Batch::Full),
        );
        close(&f1.0, &f2.0.neg(), "f");
        close(&f1.2, &f2.2.neg(), "grad_y f");
        // x is the noise: other uses of x are refused.
        let weighted = LinearModel {
            weights: SampleWeights::Sigmoid,
            ..model
        };
        let err = LinearCe::new((&clean.0, &clean.1), (&val.0, &val.1), weighted)
            .unwrap()
            .with_noisy_rows((&noisy.0, &noisy.1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sample weights must be one"), "{err}");
        let err = plain
            .with_noisy_rows((&noisy.0, &val.1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("targets [5, 4] do not match"), "{err}");
    }
}
