//! Hand-derived derivatives of the linear softmax classifier problems (hyper-cleaning,
//! ho-l2-mnist): the dominant full-batch path without autodiff (issue #8).
//!
//! Inner and outer losses, over a batch `S` of `m` rows of a data matrix `X` (`[n, d]`) with
//! one-hot targets `T`, for `y = vec(W) (, b)`, `W ∈ ℝ^{d×c}`:
//!
//! `g(x, y; S) = (1/m) Σ_{i∈S} s_i CE(z_i, t_i) + ρ ‖W‖²`, `z_i = x_iᵀW (+ b)`,
//! `f(x, y; S) = (1/m) Σ_{i∈S} CE(z_i, t_i)` (validation set),
//!
//! with sample weights `s_i = 1` ([`SampleWeights::One`]) or `s_i = σ(x_i)`
//! ([`SampleWeights::Sigmoid`], one upper variable per training sample) and a ridge weight
//! `ρ = C_r` ([`Ridge::Const`]) or `ρ = exp(x₀)` ([`Ridge::Exp`], scalar `x`).
//!
//! With `P = softmax(Z)` and `G = diag(s)(P − T)/m`:
//! - `∇_W g = Xᵀ G + 2ρW`, `∇_b g = 1ᵀG`;
//!   `∂g/∂x_i = σ'(x_i) CE_i / m` (sigmoid weights, summed over repeated rows),
//!   `∂g/∂x₀ = e^{x₀}‖W‖²` (exp ridge).
//! - The Hessian of `CE(z, t)` in `z` is `diag(p) − ppᵀ` whatever the one-hot `t`, so for
//!   `v = vec(V) (, v_b)`: `U = XV (+ v_b)`, `R = diag(s)(P ⊙ U − P ⊙ (P ⊙ U)1 1ᵀ)/m`,
//!   `H v = vec(XᵀR + 2ρV) (, 1ᵀR)`.
//! - `J v = ∇_x⟨∇_y g, v⟩`: `σ'(x_i)⟨p_i − t_i, u_i⟩/m` (sigmoid weights),
//!   `2e^{x₀}⟨W, V⟩` (exp ridge).
//!
//! Cost per call on the full batch: a gradient is `XW` and `XᵀG` (`4ndc` flops), a product
//! `X[W V]` (one pass over `X` for both) and `XᵀR` (`6ndc`). `Xᵀ` is stored contiguous once
//! per data set: burn-ndarray copies a transposed operand into standard layout on every matmul,
//! which for MNIST's `20 000 × 784` costs more than the product itself (docs/PERFORMANCE.md).
//! Autodiff's double backward pays four passes and those copies.

use bilevel_core::{Batch, ClosedForm};
use burn::tensor::backend::Backend;
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};

use crate::common::{ClassSet, LinearShape};

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
}

/// A labelled data set with its transpose stored contiguous.
#[derive(Clone, Debug)]
struct Data<B: Backend> {
    features: Tensor<B, 2>,
    features_t: Tensor<B, 2>,
    targets: Tensor<B, 2>,
}

impl<B: Backend> Data<B> {
    fn new(set: &ClassSet<B>) -> Self {
        let device = set.features.device();
        // Through the host, so the copy is standard layout on every backend.
        let features_t = Tensor::from_data(set.features.clone().transpose().into_data(), &device);
        Self {
            features: set.features.clone(),
            features_t,
            targets: set.targets.clone(),
        }
    }

    /// `(X_S, X_Sᵀ, T_S)`; the full batch uses the stored transpose.
    fn batch(&self, batch: &Batch) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>) {
        match batch {
            Batch::Full => (
                self.features.clone(),
                self.features_t.clone(),
                self.targets.clone(),
            ),
            Batch::Indices(_) => {
                let x = batch.rows(self.features.clone());
                (x.clone(), x.transpose(), batch.rows(self.targets.clone()))
            }
        }
    }
}

/// The hand-derived derivatives of a linear softmax problem (see the module documentation).
#[derive(Clone, Debug)]
pub struct LinearCe<B: Backend> {
    train: Data<B>,
    val: Data<B>,
    shape: LinearShape,
    weights: SampleWeights,
    ridge: Ridge,
}

/// The softmax pieces of one batch at `y`.
struct Forward<B: Backend> {
    x_t: Tensor<B, 2>,
    targets: Tensor<B, 2>,
    probs: Tensor<B, 2>,
    m: usize,
}

impl<B: Backend> LinearCe<B> {
    /// Derivatives of `g` on `train` and `f` on `val` (the problem's own sets and layout).
    pub fn new(
        train: &ClassSet<B>,
        val: &ClassSet<B>,
        shape: LinearShape,
        weights: SampleWeights,
        ridge: Ridge,
    ) -> Self {
        Self {
            train: Data::new(train),
            val: Data::new(val),
            shape,
            weights,
            ridge,
        }
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
        x: &Tensor<B, 2>,
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
            None => (add_bias(x.clone().matmul(w), b), None),
            Some(v) => {
                let (vw, vb) = self.split(v);
                let both = x.clone().matmul(Tensor::cat(vec![w, vw], 1));
                let [m, _] = both.dims();
                let z = both.clone().slice([0..m, 0..c]);
                let u = both.slice([0..m, c..2 * c]);
                (add_bias(z, b), Some(add_bias(u, vb)))
            }
        }
    }

    fn forward(
        &self,
        data: &Data<B>,
        y: &Tensor<B, 1>,
        extra: Option<&Tensor<B, 1>>,
        batch: &Batch,
    ) -> (Forward<B>, Tensor<B, 1>, Option<Tensor<B, 2>>) {
        let (x, x_t, targets) = data.batch(batch);
        let (z, u) = self.logits(&x, y, extra);
        let [m, _] = z.dims();
        let max = z.clone().max_dim(1);
        let e = z.clone().sub(max.clone()).exp();
        let sum = e.clone().sum_dim(1);
        let probs = e.div(sum.clone());
        // CE_i = log Σ_k e^{z_ik} − ⟨t_i, z_i⟩.
        let ce = sum
            .log()
            .add(max)
            .sub(z.mul(targets.clone()).sum_dim(1))
            .reshape([m]);
        (
            Forward {
                x_t,
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

    /// `ρ` as a one-element tensor.
    fn rho(&self, x: &Tensor<B, 1>) -> Tensor<B, 1> {
        match self.ridge {
            Ridge::Const(r) => Tensor::<B, 1>::ones([1], &x.device()).mul_scalar(r),
            Ridge::Exp => x.clone().narrow(0, 0, 1).exp(),
        }
    }

    /// Per-row contributions `q` to `∂/∂x_i` added into an `x`-length vector (repeated rows add).
    fn scatter(&self, x: &Tensor<B, 1>, q: Tensor<B, 1>, batch: &Batch) -> Tensor<B, 1> {
        match batch {
            Batch::Full => q,
            Batch::Indices(idx) => {
                let device = x.device();
                let values: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
                let index =
                    Tensor::<B, 1, Int>::from_data(TensorData::new(values, [idx.len()]), &device);
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
        let gw = fw.x_t.clone().matmul(g.clone());
        let gb = self.shape.bias.then(|| g.sum_dim(0));
        (gw, gb)
    }
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
    ) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
        let (fw, ce, _) = self.forward(&self.train, y, None, batch);
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
        let (gw, gb) = self.data_gradient(&fw, g.mul_scalar(1.0 / m as f64));
        let (w, _) = self.split(y);
        let rho = self.rho(x);
        let w_sq = w.clone().powi_scalar(2).sum();
        let value = data_value.add(rho.clone().mul(w_sq.clone()));
        let gw = gw.add(w.mul(rho.reshape([1, 1])).mul_scalar(2.0));
        let gy = self.join(gw, gb);
        let gx = if want_x {
            let mut gx = x.zeros_like();
            if let Some((_, ds)) = weights {
                let q = ds.mul(ce).mul_scalar(1.0 / m as f64);
                gx = gx.add(self.scatter(x, q, batch));
            }
            if self.ridge == Ridge::Exp {
                let part = x.clone().narrow(0, 0, 1).exp().mul(w_sq);
                gx = add_to_first(gx, part);
            }
            gx
        } else {
            x.zeros_like()
        };
        (value, gx, gy)
    }

    fn outer_gradient(
        &self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        batch: &Batch,
    ) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
        let (fw, ce, _) = self.forward(&self.val, y, None, batch);
        let m = fw.m;
        let g = fw
            .probs
            .clone()
            .sub(fw.targets.clone())
            .mul_scalar(1.0 / m as f64);
        let (gw, gb) = self.data_gradient(&fw, g);
        (mean(ce, m), x.zeros_like(), self.join(gw, gb))
    }

    fn inner_products(
        &self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        v: &Tensor<B, 1>,
        batch: &Batch,
        want_jvp: bool,
    ) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let (fw, _, u) = self.forward(&self.train, y, Some(v), batch);
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
        let (hw, hb) = self.data_gradient(&fw, r);
        let (vw, _) = self.split(v);
        let rho = self.rho(x);
        let hw = hw.add(vw.clone().mul(rho.reshape([1, 1])).mul_scalar(2.0));
        let hv = self.join(hw, hb);
        let jv = if want_jvp {
            let mut jv = x.zeros_like();
            if let Some((_, ds)) = weights {
                let inner = fw
                    .probs
                    .clone()
                    .sub(fw.targets.clone())
                    .mul(u)
                    .sum_dim(1)
                    .reshape([m]);
                let q = ds.mul(inner).mul_scalar(1.0 / m as f64);
                jv = jv.add(self.scatter(x, q, batch));
            }
            if self.ridge == Ridge::Exp {
                let (w, _) = self.split(y);
                let part = x
                    .clone()
                    .narrow(0, 0, 1)
                    .exp()
                    .mul(w.mul(vw).sum())
                    .mul_scalar(2.0);
                jv = add_to_first(jv, part);
            }
            jv
        } else {
            x.zeros_like()
        };
        (hv, jv)
    }
}
