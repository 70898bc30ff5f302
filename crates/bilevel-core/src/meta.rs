//! Meta-learning layout of a bilevel problem (MAML, first-order MAML, ANIL).
//!
//! A problem posed as meta-learning ([`BilevelProblem::meta_layout`]) has `x = θ`, the
//! meta-parameters, and `y = (y_1, …, y_m)`, one adapted copy of `θ[adapted]` per task (task
//! `i`'s block at `y[i·a..(i+1)·a]`, `a = adapted.len()`). The inner loop starts at
//! `y_0 = S(x) = (x[adapted], …, x[adapted])` ([`Oracle::meta_start`]), and the meta-gradient
//! needs `Sᵀa` = the sum of the task blocks of `a`, placed at `adapted` in an `x`-length zero
//! vector ([`Oracle::meta_start_transpose`]). Both are reshapes and sums, not oracle calls (they
//! are not counted).
//!
//! [`MetaLayout::task_params`] builds every task's full parameter vector (row `i` = `θ` with
//! `y_i` in place of `θ[adapted]`), the usual first line of a meta-learning loss.

use std::ops::Range;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

use crate::error::{BilevelError, Result};
use crate::problem::BilevelProblem;
use crate::second_order::Oracle;
use crate::tensor::check_len;

/// Where the adapted parameters live: `tasks` copies of `θ[adapted]` make up `y`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaLayout {
    /// Number of tasks `m` (blocks of `y`).
    pub tasks: usize,
    /// The coordinates of `θ = x` that the inner loop adapts (all of them for MAML, the head for
    /// ANIL).
    pub adapted: Range<usize>,
}

impl MetaLayout {
    /// `a = adapted.len()`, the length of one task block.
    pub fn block(&self) -> usize {
        self.adapted.len()
    }

    /// Whether the layout adapts all of an `x` of length `x_dim` (MAML) rather than a strict
    /// part of it (ANIL).
    pub fn adapts_all(&self, x_dim: usize) -> bool {
        self.adapted == (0..x_dim)
    }

    /// Fails ([`BilevelError::InvalidParameter`] naming `meta_layout`) unless `adapted` is a
    /// non-empty range inside `0..x_dim`, there is at least one task and
    /// `y_dim = tasks · adapted.len()`.
    pub fn validate(&self, x_dim: usize, y_dim: usize) -> Result<()> {
        let bad = |reason: String| Err(BilevelError::invalid("meta_layout", reason));
        if self.adapted.is_empty() {
            return bad(format!(
                "the adapted range {:?} is empty (the inner loop would adapt nothing)",
                self.adapted
            ));
        }
        if self.adapted.end > x_dim {
            return bad(format!(
                "the adapted range {:?} lies outside x = 0..{x_dim}",
                self.adapted
            ));
        }
        if self.tasks == 0 {
            return bad("a meta-learning layout needs at least one task".into());
        }
        if y_dim != self.tasks * self.block() {
            return bad(format!(
                "y_dim = {y_dim} but {} tasks × {} adapted coordinates = {}",
                self.tasks,
                self.block(),
                self.tasks * self.block()
            ));
        }
        Ok(())
    }

    /// Every task's full parameter vector, `[tasks, x_dim]`: row `i` is `x` with `y_i` in
    /// place of `x[adapted]` (a loss can then select the rows of a task batch with
    /// [`crate::Batch::rows`]). Lengths are the caller's to check (see [`MetaLayout::validate`]).
    pub fn task_params<C: Backend>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>) -> Tensor<C, 2> {
        let [n] = x.dims();
        let (m, a) = (self.tasks, self.block());
        let shared = |range: Range<usize>| {
            let len = range.len();
            x.clone().slice([range]).reshape([1, len]).repeat_dim(0, m)
        };
        let mut parts = Vec::with_capacity(3);
        if self.adapted.start > 0 {
            parts.push(shared(0..self.adapted.start));
        }
        parts.push(y.reshape([m, a]));
        if self.adapted.end < n {
            parts.push(shared(self.adapted.end..n));
        }
        if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Tensor::cat(parts, 1)
        }
    }
}

impl<B: AutodiffBackend, P: BilevelProblem<B>> Oracle<'_, B, P> {
    /// The problem's meta-learning layout, validated against its dimensions; an error if the
    /// problem has none.
    pub fn meta_layout(&self) -> Result<MetaLayout> {
        let p = self.problem();
        let layout = p.meta_layout().ok_or_else(|| {
            BilevelError::invalid(
                "meta_layout",
                "the problem is not posed as meta-learning (BilevelProblem::meta_layout \
                 returns None): MAML and ANIL need the task layout of y",
            )
        })?;
        layout.validate(p.x_dim(), p.y_dim())?;
        Ok(layout)
    }

    /// `S(x) = (x[adapted], …, x[adapted])`, the inner loop's start (not an oracle call).
    pub fn meta_start(&self, x: &Tensor<B, 1>) -> Result<Tensor<B, 1>> {
        let layout = self.meta_layout()?;
        check_len("x", x, self.problem().x_dim())?;
        Ok(x.clone()
            .detach()
            .slice([layout.adapted.clone()])
            .repeat_dim(0, layout.tasks))
    }

    /// `Sᵀa`: the sum of the task blocks of `a` (y-space), placed at `adapted` in an `x`-length
    /// zero vector (not an oracle call).
    pub fn meta_start_transpose(&self, a: &Tensor<B, 1>) -> Result<Tensor<B, 1>> {
        let layout = self.meta_layout()?;
        let p = self.problem();
        check_len("a", a, p.y_dim())?;
        let block = layout.block();
        let summed = a
            .clone()
            .detach()
            .reshape([layout.tasks, block])
            .sum_dim(0)
            .reshape([block]);
        let zeros = Tensor::<B, 1>::zeros([p.x_dim()], &a.device());
        Ok(zeros.slice_assign([layout.adapted], summed))
    }
}
