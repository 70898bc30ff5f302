//! The bilevel problem interface.
//!
//! `min_x Φ(x) = f(x, y*(x))`, `y*(x) = argmin_y g(x, y)`, with `f = E F(x, y; ξ)` and
//! `g = E G(x, y; ζ)` averaged over data sets of known size (or deterministic).

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::constraint::Constraint;
use crate::error::{BilevelError, Result};
use crate::lift::Lift;
use crate::meta::MetaLayout;

/// Which samples of a data set a loss evaluation averages over.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Batch {
    /// All samples (and the only batch of a deterministic problem).
    Full,
    /// Row indices into the data set, with repetition allowed.
    Indices(Vec<usize>),
}

impl Batch {
    /// Number of samples in the batch, given the data-set size (`None` for deterministic).
    pub fn len(&self, data_len: Option<usize>) -> usize {
        match self {
            Batch::Full => data_len.unwrap_or(0),
            Batch::Indices(idx) => idx.len(),
        }
    }

    /// Whether the batch selects no sample.
    pub fn is_empty(&self, data_len: Option<usize>) -> bool {
        self.len(data_len) == 0
    }

    /// Fails if an index is outside a data set of `len` samples, or the batch is empty.
    pub fn validate(&self, len: usize) -> Result<()> {
        if let Batch::Indices(idx) = self {
            if idx.is_empty() {
                return Err(BilevelError::invalid(
                    "batch",
                    "a batch needs at least one index",
                ));
            }
            if let Some(&bad) = idx.iter().find(|&&i| i >= len) {
                return Err(BilevelError::BatchOutOfRange { index: bad, len });
            }
        }
        Ok(())
    }

    /// The rows of `data` (first dimension) that this batch selects.
    pub fn rows<C: Backend, const D: usize>(&self, data: Tensor<C, D>) -> Tensor<C, D> {
        match self {
            Batch::Full => data,
            Batch::Indices(idx) => {
                let device = data.device();
                let values: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
                let index =
                    Tensor::<C, 1, Int>::from_data(TensorData::new(values, [idx.len()]), &device);
                data.select(0, index)
            }
        }
    }
}

/// A bilevel problem, written once and evaluated on `B` and on `Autodiff<B>`.
///
/// `x` (upper level) and `y` (lower level) are flat vectors; models flatten their parameters.
/// Losses return a one-element tensor and average over the samples the [`Batch`] selects from
/// the inner (train) or outer (validation) data set.
///
/// Implementations must not hard-code a backend: constants are stored on `B` and moved onto the
/// evaluation backend `C` with [`Lift::lift`], which is what lets the oracle take exact
/// second-order products by nesting autodiff.
pub trait BilevelProblem<B: Backend> {
    /// Length of the upper-level variable `x`.
    fn x_dim(&self) -> usize;
    /// Length of the lower-level variable `y`.
    fn y_dim(&self) -> usize;
    /// Device the problem's data lives on.
    fn device(&self) -> B::Device;
    /// Number of samples `g` averages over; `None` for a deterministic inner objective.
    fn inner_len(&self) -> Option<usize> {
        None
    }
    /// Number of samples `f` averages over; `None` for a deterministic outer objective.
    fn outer_len(&self) -> Option<usize> {
        None
    }
    /// Inner (lower-level) loss `g(x, y; batch)`.
    fn inner_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1>;
    /// Outer (upper-level) loss `f(x, y; batch)`.
    fn outer_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1>;
    /// The lower level as a contraction `y*(x) = Ψ(y*(x), x)` (paper 002), if the problem is
    /// posed that way; `None` (the default) means the lower level is `argmin_y g`, and
    /// fixed-point methods use `Ψ = y − γ∇_y g` instead.
    fn contraction_map<C: Lift<B>>(
        &self,
        _x: Tensor<C, 1>,
        _y: Tensor<C, 1>,
        _batch: &Batch,
    ) -> Option<Tensor<C, 1>> {
        None
    }

    /// The closed convex set `x` is constrained to (projected onto by projected methods).
    fn upper_constraint(&self) -> Constraint {
        Constraint::Unconstrained
    }

    /// Hand-derived gradients and second-order products, if the problem has them (default:
    /// none). With [`crate::SecondOrder::Exact`] (the default mode) the oracle uses them in
    /// place of autodiff; [`crate::SecondOrder::Autodiff`] ignores them. An implementation
    /// must agree with autodiff of [`BilevelProblem::inner_loss`] /
    /// [`BilevelProblem::outer_loss`] to round-off, and tests should say so.
    fn closed_form(&self) -> Option<&dyn ClosedForm<B>> {
        None
    }

    /// Meta-learning layout (MAML / ANIL), if the problem is posed that way: `x = θ`, the
    /// meta-parameters; `y = (y_1, …, y_m)`, one adapted copy of `θ[adapted]` per task, task
    /// `i`'s block at `y[i·a..(i+1)·a]`, `a = adapted.len()`; the inner loop starts at
    /// `y_0 = S(x) = (x[adapted], …, x[adapted])` (`m` copies). `g(x, y; batch)` is the mean
    /// support loss over the selected tasks, `f` the mean query loss, where task `i`'s network
    /// uses `y_i` in place of `θ[adapted]` and `x` elsewhere (see [`MetaLayout::task_params`]).
    /// A problem with a layout and a data-set size (`inner_len`, `outer_len`) counts tasks: a
    /// [`Batch`] then selects tasks. Default: `None`.
    fn meta_layout(&self) -> Option<MetaLayout> {
        None
    }
}

/// Hand-derived derivatives of a problem's losses: a faster path than autodiff where the
/// derivation is short (e.g. a linear softmax model, where the products with the data matrix
/// dominate and autodiff pays for graph bookkeeping and transposed operands).
///
/// All tensors are untracked tensors on `B`; lengths and batches have been checked by the
/// oracle before a call. The values are those of the losses on the same batch.
pub trait ClosedForm<B: Backend> {
    /// `(g, ∇_x g, ∇_y g)` on `batch`; `∇_x g` is `Some` exactly when `want_x` (skipping it
    /// saves an `x`-length tensor per call, which matters when `x` is large, e.g. poisoning).
    fn inner_gradient(
        &self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        batch: &Batch,
        want_x: bool,
    ) -> (Tensor<B, 1>, Option<Tensor<B, 1>>, Tensor<B, 1>);

    /// `(f, ∇_x f, ∇_y f)` on `batch`.
    fn outer_gradient(
        &self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        batch: &Batch,
    ) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>);

    /// `(∇²_yy g · v, ∇_x∇_y g · v)` on `batch`; the second is `Some` exactly when `want_jvp`.
    fn inner_products(
        &self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        v: &Tensor<B, 1>,
        batch: &Batch,
        want_jvp: bool,
    ) -> (Tensor<B, 1>, Option<Tensor<B, 1>>);
}
