//! Meta-learning test problems (MAML, first-order MAML, ANIL; see [`crate::meta`]).
//!
//! - [`MetaQuadratic`]: `m` quadratic tasks over `θ ∈ ℝⁿ`, support loss
//!   `L_s,i(θ) = ½θᵀA_iθ − b_iᵀθ`, query loss `L_q,i(θ) = ½θᵀQ_iθ − c_iᵀθ` (`A_i`, `Q_i` SPD with a
//!   chosen spectrum). The inner loop is linear, so the adapted parameters are affine in `θ` and
//!   the exact MAML/ANIL meta-gradients have host `f64` closed forms
//!   ([`MetaQuadratic::meta_gradient`]).
//! - [`MetaSine`]: sine-wave regression with a `1 → H → 1` tanh MLP (Finn et al. 2017's toy
//!   problem, smaller): nonlinear, so the Hessians and mixed Jacobians vary along the inner
//!   trajectory; checked against finite differences of the unrolled objective.
//!
//! Both count tasks as samples (`inner_len = outer_len = Some(m)`): a [`Batch`] selects tasks,
//! and `g`, `f` are the mean support and query losses over the selected tasks.

use std::ops::Range;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::{check_curvatures, random_spd};
use crate::dense::{axpy, Dense};
use crate::error::{BilevelError, Result};
use crate::lift::Lift;
use crate::meta::MetaLayout;
use crate::problem::{Batch, BilevelProblem};
use crate::sampling::Rng;

/// How to draw a random [`MetaQuadratic`] instance.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetaQuadraticSpec {
    /// Length `n` of `θ`.
    pub dim: usize,
    /// `None`: the whole of `θ` adapts (MAML); `Some(h)`: only the last `h` coordinates, the
    /// head, adapt (ANIL; `1 ≤ h < n`).
    pub head: Option<usize>,
    /// Number of tasks `m`.
    pub tasks: usize,
    /// Smallest eigenvalue of every `A_i` and `Q_i`.
    pub min_curvature: f64,
    /// Largest eigenvalue (log-spaced spectrum: the condition number is the ratio).
    pub max_curvature: f64,
    /// Seed of the instance.
    pub seed: u64,
}

impl Default for MetaQuadraticSpec {
    /// `n = 6`, MAML layout, 3 tasks, spectrum in `[1, 10]`, seed 0.
    fn default() -> Self {
        Self {
            dim: 6,
            head: None,
            tasks: 3,
            min_curvature: 1.0,
            max_curvature: 10.0,
            seed: 0,
        }
    }
}

impl MetaQuadraticSpec {
    /// Checks dimensions and the spectrum.
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 || self.tasks == 0 {
            return Err(BilevelError::invalid("dim/tasks", "must be ≥ 1"));
        }
        if let Some(h) = self.head {
            if h == 0 || h >= self.dim {
                return Err(BilevelError::invalid(
                    "head",
                    format!(
                        "must lie in 1..dim = 1..{} (None adapts all of θ), got {h}",
                        self.dim
                    ),
                ));
            }
        }
        check_curvatures(self.min_curvature, self.max_curvature)
    }

    /// The coordinates of `θ` the inner loop adapts.
    pub fn adapted(&self) -> Range<usize> {
        match self.head {
            None => 0..self.dim,
            Some(h) => self.dim - h..self.dim,
        }
    }
}

fn tensor3<B: Backend>(mats: &[Dense], device: &B::Device) -> Tensor<B, 3> {
    let n = mats[0].rows;
    let data: Vec<f64> = mats.iter().flat_map(|m| m.data.iter().copied()).collect();
    Tensor::from_data(TensorData::new(data, [mats.len(), n, n]), device)
}

fn tensor2<B: Backend>(rows: &[Vec<f64>], device: &B::Device) -> Tensor<B, 2> {
    let n = rows[0].len();
    let data: Vec<f64> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(data, [rows.len(), n]), device)
}

/// `m` quadratic tasks (see the module documentation), with MAML's or ANIL's layout.
#[derive(Clone, Debug)]
pub struct MetaQuadratic<B: Backend> {
    spec: MetaQuadraticSpec,
    a: Tensor<B, 3>,
    b: Tensor<B, 2>,
    q: Tensor<B, 3>,
    c: Tensor<B, 2>,
    host_a: Vec<Dense>,
    host_b: Vec<Vec<f64>>,
    host_q: Vec<Dense>,
    host_c: Vec<Vec<f64>>,
    device: B::Device,
}

impl<B: Backend> MetaQuadratic<B> {
    /// Draws an instance from `spec`.
    pub fn random(spec: &MetaQuadraticSpec, device: &B::Device) -> Result<Self> {
        spec.validate()?;
        let (n, m) = (spec.dim, spec.tasks);
        let mut rng = Rng::seed(spec.seed);
        let (lo, hi) = (spec.min_curvature, spec.max_curvature);
        let mut host_a = Vec::with_capacity(m);
        let mut host_b = Vec::with_capacity(m);
        let mut host_q = Vec::with_capacity(m);
        let mut host_c = Vec::with_capacity(m);
        for _ in 0..m {
            host_a.push(random_spd(n, lo, hi, &mut rng));
            host_b.push(rng.normal_vec(n));
            host_q.push(random_spd(n, lo, hi, &mut rng));
            host_c.push(rng.normal_vec(n));
        }
        Ok(Self {
            spec: spec.clone(),
            a: tensor3(&host_a, device),
            b: tensor2(&host_b, device),
            q: tensor3(&host_q, device),
            c: tensor2(&host_c, device),
            host_a,
            host_b,
            host_q,
            host_c,
            device: device.clone(),
        })
    }

    /// The spec it was drawn from.
    pub fn spec(&self) -> &MetaQuadraticSpec {
        &self.spec
    }

    fn layout(&self) -> MetaLayout {
        MetaLayout {
            tasks: self.spec.tasks,
            adapted: self.spec.adapted(),
        }
    }

    /// `mean_i ½z_iᵀM_iz_i − v_iᵀz_i` over the selected rows `z_i` of the task parameters.
    fn loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
        mats: &Tensor<B, 3>,
        vecs: &Tensor<B, 2>,
    ) -> Tensor<C, 1> {
        let n = self.spec.dim;
        let z = batch.rows(self.layout().task_params(x, y));
        let k = z.dims()[0];
        let mats = batch.rows(C::lift(mats.clone()));
        let vecs = batch.rows(C::lift(vecs.clone()));
        let mz = mats.matmul(z.clone().reshape([k, n, 1])).reshape([k, n]);
        z.clone()
            .mul(mz)
            .sum()
            .mul_scalar(0.5)
            .sub(z.mul(vecs).sum())
            .mul_scalar(1.0 / k as f64)
    }

    /// Host: task `i`'s adapted parameters after `steps` GD steps of size `alpha` on `L_s,i`
    /// over the adapted coordinates from `θ`, as the full vector `z_{i,T}` (θ elsewhere), and the
    /// Jacobian `dz_{i,T}/dθ` (`n × n`).
    pub fn adapt(&self, i: usize, theta: &[f64], alpha: f64, steps: usize) -> (Vec<f64>, Dense) {
        let n = self.spec.dim;
        let r = self.spec.adapted();
        let mut z = theta.to_vec();
        let mut jac = Dense::scaled_identity(n, 1.0);
        for _ in 0..steps {
            // ∇L_s,i(z) = A_i z − b_i, restricted to the adapted rows.
            let grad = axpy(&self.host_a[i].matvec(&z), -1.0, &self.host_b[i]);
            let a_jac = self.host_a[i].matmul(&jac);
            for row in r.clone() {
                z[row] -= alpha * grad[row];
                for col in 0..n {
                    let v = jac.get(row, col) - alpha * a_jac.get(row, col);
                    jac.set(row, col, v);
                }
            }
        }
        (z, jac)
    }

    /// Host: the meta-objective `(1/|tasks|) Σ_i L_q,i(z_{i,T}(θ))` over the listed tasks.
    pub fn meta_objective(&self, theta: &[f64], alpha: f64, steps: usize, tasks: &[usize]) -> f64 {
        let sum: f64 = tasks
            .iter()
            .map(|&i| {
                let (z, _) = self.adapt(i, theta, alpha, steps);
                let qz = self.host_q[i].matvec(&z);
                let quad: f64 = z.iter().zip(&qz).map(|(a, b)| a * b).sum();
                let lin: f64 = z.iter().zip(&self.host_c[i]).map(|(a, b)| a * b).sum();
                0.5 * quad - lin
            })
            .sum();
        sum / tasks.len() as f64
    }

    /// Host: the exact meta-gradient `(1/|tasks|) Σ_i (dz_{i,T}/dθ)ᵀ ∇L_q,i(z_{i,T})` over the
    /// listed tasks (MAML: `((I − αA_i)^T)ᵀ ∇L_q,i(θ_{i,T})`; ANIL: the chain rule through the
    /// head update `w ← w − α(A_hh w + A_hb φ − b_h)`, body `φ` included), or with
    /// `first_order` the first-order one, `(1/|tasks|) Σ_i ∇L_q,i(z_{i,T})`.
    pub fn meta_gradient(
        &self,
        theta: &[f64],
        alpha: f64,
        steps: usize,
        first_order: bool,
        tasks: &[usize],
    ) -> Vec<f64> {
        let n = self.spec.dim;
        let mut out = vec![0.0; n];
        for &i in tasks {
            let (z, jac) = self.adapt(i, theta, alpha, steps);
            let grad_q = axpy(&self.host_q[i].matvec(&z), -1.0, &self.host_c[i]);
            let g = if first_order {
                grad_q
            } else {
                jac.tmatvec(&grad_q)
            };
            out = axpy(&out, 1.0 / tasks.len() as f64, &g);
        }
        out
    }
}

impl<B: Backend> BilevelProblem<B> for MetaQuadratic<B> {
    fn x_dim(&self) -> usize {
        self.spec.dim
    }
    fn y_dim(&self) -> usize {
        self.spec.tasks * self.spec.adapted().len()
    }
    fn device(&self) -> B::Device {
        self.device.clone()
    }
    fn inner_len(&self) -> Option<usize> {
        Some(self.spec.tasks)
    }
    fn outer_len(&self) -> Option<usize> {
        Some(self.spec.tasks)
    }
    fn inner_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        self.loss(x, y, batch, &self.a, &self.b)
    }
    fn outer_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        self.loss(x, y, batch, &self.q, &self.c)
    }
    fn meta_layout(&self) -> Option<MetaLayout> {
        Some(self.layout())
    }
}

/// How to draw a [`MetaSine`] instance.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetaSineSpec {
    /// Hidden width `H` of the `1 → H → 1` tanh MLP (`θ` has `3H + 1` entries).
    pub hidden: usize,
    /// Number of tasks `m`.
    pub tasks: usize,
    /// Support points per task.
    pub support: usize,
    /// Query points per task.
    pub query: usize,
    /// `false`: the whole network adapts (MAML); `true`: only the last layer (`H + 1` weights)
    /// adapts (ANIL).
    pub head_only: bool,
    /// Seed of the tasks and their points.
    pub seed: u64,
}

impl Default for MetaSineSpec {
    /// `H = 8`, 4 tasks, 6 support and 8 query points each, MAML layout, seed 0.
    fn default() -> Self {
        Self {
            hidden: 8,
            tasks: 4,
            support: 6,
            query: 8,
            head_only: false,
            seed: 0,
        }
    }
}

/// Sine-wave regression tasks `u ↦ A_i sin(u + p_i)` (`A_i ∈ [0.5, 2]`, `p_i ∈ [0, π]`,
/// `u ∈ [−3, 3]`) fitted by a `1 → H → 1` tanh MLP with squared loss.
///
/// `θ = (W₁ ∈ ℝ^H, b₁ ∈ ℝ^H, W₂ ∈ ℝ^H, b₂)`; the prediction is `W₂ᵀ tanh(W₁u + b₁) + b₂`. ANIL's
/// head is `(W₂, b₂)`, the last `H + 1` coordinates.
#[derive(Clone, Debug)]
pub struct MetaSine<B: Backend> {
    spec: MetaSineSpec,
    support_u: Tensor<B, 2>,
    support_v: Tensor<B, 2>,
    query_u: Tensor<B, 2>,
    query_v: Tensor<B, 2>,
    device: B::Device,
}

impl<B: Backend> MetaSine<B> {
    /// Draws the tasks and their points.
    pub fn random(spec: &MetaSineSpec, device: &B::Device) -> Result<Self> {
        if spec.hidden == 0 || spec.tasks == 0 || spec.support == 0 || spec.query == 0 {
            return Err(BilevelError::invalid(
                "hidden/tasks/support/query",
                "must all be ≥ 1",
            ));
        }
        let mut rng = Rng::seed(spec.seed);
        let draw = |points: usize, amp: f64, phase: f64, rng: &mut Rng| {
            let u: Vec<f64> = (0..points).map(|_| 6.0 * rng.uniform() - 3.0).collect();
            let v: Vec<f64> = u.iter().map(|u| amp * (u + phase).sin()).collect();
            (u, v)
        };
        let (mut su, mut sv, mut qu, mut qv) = (vec![], vec![], vec![], vec![]);
        for _ in 0..spec.tasks {
            let amp = 0.5 + 1.5 * rng.uniform();
            let phase = std::f64::consts::PI * rng.uniform();
            let (u, v) = draw(spec.support, amp, phase, &mut rng);
            su.push(u);
            sv.push(v);
            let (u, v) = draw(spec.query, amp, phase, &mut rng);
            qu.push(u);
            qv.push(v);
        }
        Ok(Self {
            spec: spec.clone(),
            support_u: tensor2(&su, device),
            support_v: tensor2(&sv, device),
            query_u: tensor2(&qu, device),
            query_v: tensor2(&qv, device),
            device: device.clone(),
        })
    }

    /// The spec it was drawn from.
    pub fn spec(&self) -> &MetaSineSpec {
        &self.spec
    }

    /// A random `θ` (Gaussian, standard deviation `scale`).
    pub fn random_theta(&self, scale: f64, rng: &mut Rng) -> Vec<f64> {
        rng.normal_vec(3 * self.spec.hidden + 1)
            .into_iter()
            .map(|v| v * scale)
            .collect()
    }

    fn layout(&self) -> MetaLayout {
        let h = self.spec.hidden;
        MetaLayout {
            tasks: self.spec.tasks,
            adapted: if self.spec.head_only {
                2 * h..3 * h + 1
            } else {
                0..3 * h + 1
            },
        }
    }

    /// Mean squared error of every selected task's network on its points.
    fn loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
        u: &Tensor<B, 2>,
        v: &Tensor<B, 2>,
    ) -> Tensor<C, 1> {
        let h = self.spec.hidden;
        let params = batch.rows(self.layout().task_params(x, y));
        let k = params.dims()[0];
        let u = batch.rows(C::lift(u.clone()));
        let v = batch.rows(C::lift(v.clone()));
        let points = u.dims()[1];
        let part = |r: Range<usize>| params.clone().slice([0..k, r]);
        let w1 = part(0..h).reshape([k, 1, h]);
        let b1 = part(h..2 * h).reshape([k, 1, h]);
        let w2 = part(2 * h..3 * h).reshape([k, h, 1]);
        let b2 = part(3 * h..3 * h + 1).reshape([k, 1, 1]);
        let hidden = u.reshape([k, points, 1]).mul(w1).add(b1).tanh();
        let out = hidden.matmul(w2).add(b2).reshape([k, points]);
        out.sub(v)
            .powi_scalar(2)
            .sum()
            .mul_scalar(1.0 / (k * points) as f64)
    }
}

impl<B: Backend> BilevelProblem<B> for MetaSine<B> {
    fn x_dim(&self) -> usize {
        3 * self.spec.hidden + 1
    }
    fn y_dim(&self) -> usize {
        self.spec.tasks * self.layout().block()
    }
    fn device(&self) -> B::Device {
        self.device.clone()
    }
    fn inner_len(&self) -> Option<usize> {
        Some(self.spec.tasks)
    }
    fn outer_len(&self) -> Option<usize> {
        Some(self.spec.tasks)
    }
    fn inner_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        self.loss(x, y, batch, &self.support_u, &self.support_v)
    }
    fn outer_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        self.loss(x, y, batch, &self.query_u, &self.query_v)
    }
    fn meta_layout(&self) -> Option<MetaLayout> {
        Some(self.layout())
    }
}
