//! [`BilevelProblem`] for [`MetaLearning`]: the task blocks of `y` in each layout and the
//! batch losses `g` and `f`.

use bilevel_core::{Batch, BilevelProblem, Lift, MetaLayout};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::{Adapt, MetaLearning};
use crate::common::cross_entropy_per_sample;

impl<B: Backend> MetaLearning<B> {
    /// The tasks a batch selects (with repetitions), all tasks for [`Batch::Full`].
    fn task_indices(&self, batch: &Batch) -> Vec<usize> {
        match batch {
            Batch::Full => (0..self.tasks.len()).collect(),
            Batch::Indices(idx) => idx.clone(),
        }
    }

    /// Length of one task's block of `y`: a head, or (MAML) a backbone and a head.
    pub(super) fn block_len(&self) -> usize {
        match self.spec.adapt {
            Adapt::Heads | Adapt::Anil => self.head.len(),
            Adapt::Maml => self.x_len + self.head.len(),
        }
    }

    /// The shared backbone parameters `φ` of `x` (the first `|φ|` entries).
    pub(super) fn shared_backbone<C: Backend>(&self, x: &Tensor<C, 1>) -> Tensor<C, 1> {
        x.clone().narrow(0, 0, self.x_len)
    }

    /// Task `i`'s block of `y`.
    fn block_of<C: Backend>(&self, y: &Tensor<C, 1>, i: usize) -> Tensor<C, 1> {
        let b = self.block_len();
        y.clone().narrow(0, i * b, b)
    }

    /// Head `i` of `y` (the last `|w|` entries of task `i`'s block).
    pub(super) fn head_of<C: Backend>(&self, y: &Tensor<C, 1>, i: usize) -> Tensor<C, 1> {
        let h = self.head.len();
        let b = self.block_len();
        y.clone().narrow(0, i * b + b - h, h)
    }

    /// Task `i`'s own backbone parameters `φ_i` in the MAML layout (`None` otherwise: the
    /// backbone is shared).
    pub(super) fn own_backbone<C: Backend>(
        &self,
        y: &Tensor<C, 1>,
        i: usize,
    ) -> Option<Tensor<C, 1>> {
        (self.spec.adapt == Adapt::Maml).then(|| self.block_of(y, i).narrow(0, 0, self.x_len))
    }

    /// `(1/|B|) Σ_{i∈B} loss_i` with `loss_i = CE(set_i) (+ (λ/2)‖w_i‖² on the support)`.
    fn batch_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
        support: bool,
    ) -> Tensor<C, 1> {
        let shared = match self.spec.adapt {
            Adapt::Maml => None,
            Adapt::Heads | Adapt::Anil => Some(self.backbone(self.shared_backbone(&x))),
        };
        let idx = self.task_indices(batch);
        let mut total: Option<Tensor<C, 1>> = None;
        for &i in &idx {
            let task = &self.tasks[i];
            let (images, targets) = if support {
                (&task.support, &task.support_targets)
            } else {
                (&task.query, &task.query_targets)
            };
            let head = self.head_of(&y, i);
            let images = C::lift(images.clone());
            let feats = match (&shared, self.own_backbone(&y, i)) {
                (Some(net), _) => net.features(images),
                (None, Some(phi_i)) => self.backbone(phi_i).features(images),
                (None, None) => unreachable!("the MAML layout has a backbone per task"),
            };
            let ce = cross_entropy_per_sample(
                self.head.logits(feats, head.clone()),
                C::lift(targets.clone()),
            );
            let n = ce.dims()[0];
            let mut loss = ce.sum().mul_scalar(1.0 / n as f64);
            if support {
                loss = loss.add(head.powi_scalar(2).sum().mul_scalar(0.5 * self.spec.reg));
            }
            total = Some(match total {
                None => loss,
                Some(t) => t.add(loss),
            });
        }
        total
            .expect("a batch selects at least one task")
            .mul_scalar(1.0 / idx.len() as f64)
    }
}

impl<B: Backend> BilevelProblem<B> for MetaLearning<B> {
    fn x_dim(&self) -> usize {
        match self.spec.adapt {
            Adapt::Heads => self.x_len,
            Adapt::Anil | Adapt::Maml => self.x_len + self.head.len(),
        }
    }

    fn y_dim(&self) -> usize {
        self.tasks.len() * self.block_len()
    }

    fn device(&self) -> B::Device {
        self.device.clone()
    }

    fn inner_len(&self) -> Option<usize> {
        Some(self.tasks.len())
    }

    fn outer_len(&self) -> Option<usize> {
        Some(self.tasks.len())
    }

    fn inner_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        self.batch_loss(x, y, batch, true)
    }

    fn outer_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        self.batch_loss(x, y, batch, false)
    }

    /// `"anil"`: the task blocks adapt `w₀ = x[|φ|..]`; `"maml"`: all of `x`; `"heads"`: none.
    fn meta_layout(&self) -> Option<MetaLayout> {
        let adapted = match self.spec.adapt {
            Adapt::Heads => return None,
            Adapt::Anil => self.x_len..self.x_len + self.head.len(),
            Adapt::Maml => 0..self.x_len + self.head.len(),
        };
        Some(MetaLayout {
            tasks: self.tasks.len(),
            adapted,
        })
    }
}
