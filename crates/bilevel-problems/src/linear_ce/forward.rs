//! The pieces [`LinearCe`]'s derivatives share: `W` and `b` of a flat `y`, a batch's rows
//! (with noisy rows), the softmax / logistic forward pass, sample weights and the ridge.

use bilevel_core::Batch;
use burn::tensor::backend::Backend;
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};

use super::{Forward, LinearCe, NoisyPart, Output, Ridge, RowBlocks, SampleWeights};
use crate::common::split_batch;

impl<B: Backend> LinearCe<B> {
    fn dc(&self) -> usize {
        self.shape.features * self.shape.classes
    }

    /// `W` and the bias (if any) of a flat vector, `[d, c]` and `[1, c]`.
    pub(super) fn split(&self, y: &Tensor<B, 1>) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
        let w = self.shape.weight(y.clone());
        let b = self.shape.bias.then(|| {
            y.clone()
                .narrow(0, self.dc(), self.shape.classes)
                .reshape([1, self.shape.classes])
        });
        (w, b)
    }

    /// `vec(W-part) (, bias part)` as one flat vector.
    pub(super) fn join(&self, w: Tensor<B, 2>, b: Option<Tensor<B, 2>>) -> Tensor<B, 1> {
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
    pub(super) fn train_batch(
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
    pub(super) fn noisy_part(
        &self,
        part: &NoisyPart,
        a: Tensor<B, 2>,
        b: Tensor<B, 2>,
    ) -> Tensor<B, 1> {
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

    pub(super) fn forward(
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
    pub(super) fn sample_weights(
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
    pub(super) fn rho(&self, x: &Tensor<B, 1>) -> Tensor<B, 2> {
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
    pub(super) fn ridge_x_part(
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
    pub(super) fn scatter(&self, x: &Tensor<B, 1>, q: Tensor<B, 1>, batch: &Batch) -> Tensor<B, 1> {
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
    pub(super) fn data_gradient(
        &self,
        fw: &Forward<B>,
        g: Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
        let gw = fw.x.t_times(g.clone());
        let gb = self.shape.bias.then(|| g.sum_dim(0));
        (gw, gb)
    }
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
pub(super) fn accumulate<B: Backend>(
    acc: Option<Tensor<B, 1>>,
    part: Tensor<B, 1>,
) -> Option<Tensor<B, 1>> {
    Some(match acc {
        Some(acc) => acc.add(part),
        None => part,
    })
}

/// `(1/m) Σ values` as a one-element tensor.
pub(super) fn mean<B: Backend>(values: Tensor<B, 1>, m: usize) -> Tensor<B, 1> {
    values.sum().mul_scalar(1.0 / m.max(1) as f64)
}

/// `t` with the one-element `part` added to its first entry (the scalar `x₀` of [`Ridge::Exp`]).
fn add_to_first<B: Backend>(t: Tensor<B, 1>, part: Tensor<B, 1>) -> Tensor<B, 1> {
    let first = 0..1;
    let sum = t.clone().narrow(0, 0, 1).add(part);
    t.slice_assign([first], sum)
}

/// A `[m]` column as `[m, 1]`.
pub(super) fn column<B: Backend>(t: Tensor<B, 1>) -> Tensor<B, 2> {
    let [m] = t.dims();
    t.reshape([m, 1])
}
