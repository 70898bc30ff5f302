#![allow(dead_code, missing_docs)]
//! Helpers of the SID / BSGM tests: the backend, a well-conditioned stochastic least-squares
//! instance, a problem whose contraction map is exactly the gradient step of its inner loss,
//! and a wrapper that adds an upper-level constraint.

use super::*;

use bilevel_core::dense::Dense;
use bilevel_core::problems::LeastSquaresBilevel;
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{matrix, matvec, tmatvec, vector};
use bilevel_core::{Batch, BilevelProblem, Constraint, Lift};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Largest eigenvalue of a symmetric PSD matrix (power iteration, host f64).
pub fn max_eigenvalue(h: &Dense) -> f64 {
    let mut v = vec![1.0; h.rows];
    let mut lambda = 0.0;
    for _ in 0..500 {
        let w = h.matvec(&v);
        lambda = bilevel_core::dense::norm(&w);
        v = w.into_iter().map(|x| x / lambda).collect();
    }
    lambda
}

/// Least-squares data `g = (1/2n)‖A_x x + A_y y − b‖²`, `f = (1/2n)‖A_o y − b_o‖²` whose
/// `x`-features are those of `y` plus noise (`A_x = A_y[:, :m] + 0.5·N`), so `∇_x∇_y g` is O(1)
/// and `Φ` well conditioned (with independent features `∇_x∇_y g` is O(1/√n) while per-sample
/// estimates are O(1)).
pub struct LsData {
    pub a_x: Dense,
    pub a_y: Dense,
    pub b: Vec<f64>,
    pub a_o: Dense,
    pub b_o: Vec<f64>,
}

impl LsData {
    pub fn correlated(x_dim: usize, y_dim: usize, rows: usize, noise: f64, seed: u64) -> Self {
        assert!(x_dim <= y_dim);
        let mut rng = Rng::seed(seed);
        let gauss = |rng: &mut Rng, r: usize, c: usize, s: f64| Dense {
            rows: r,
            cols: c,
            data: rng.normal_vec(r * c).into_iter().map(|v| v * s).collect(),
        };
        let a_y = gauss(&mut rng, rows, y_dim, 1.0);
        let mut a_x = gauss(&mut rng, rows, x_dim, 0.5);
        for i in 0..rows {
            for j in 0..x_dim {
                a_x.set(i, j, a_x.get(i, j) + a_y.get(i, j));
            }
        }
        let a_o = gauss(&mut rng, rows, y_dim, 1.0);
        let (x0, y0) = (rng.normal_vec(x_dim), rng.normal_vec(y_dim));
        let e = rng.normal_vec(rows);
        let (ax, ay) = (a_x.matvec(&x0), a_y.matvec(&y0));
        let b: Vec<f64> = (0..rows).map(|i| ax[i] + ay[i] + noise * e[i]).collect();
        let e_o = rng.normal_vec(rows);
        let ao = a_o.matvec(&y0);
        let b_o: Vec<f64> = (0..rows).map(|i| ao[i] + noise * e_o[i]).collect();
        Self {
            a_x,
            a_y,
            b,
            a_o,
            b_o,
        }
    }

    pub fn problem(&self) -> LeastSquaresBilevel<TestBackend> {
        self.problem_on(&dev())
    }

    /// The problem on any backend (the wgpu tests build it on the GPU and on the CPU).
    pub fn problem_on<B: Backend>(&self, device: &B::Device) -> LeastSquaresBilevel<B> {
        LeastSquaresBilevel::new(
            self.a_x.clone(),
            self.a_y.clone(),
            self.b.clone(),
            self.a_o.clone(),
            self.b_o.clone(),
            device,
        )
        .unwrap()
    }
}

/// `LeastSquaresBilevel` posed as a contraction: `Ψ(y, x; S) = y − γ∇_y G(x, y; S)` written out
/// by hand, `γ A_y[S]ᵀ(A_x[S] x + A_y[S] y − b[S]) / |S|`, so its products come from
/// `Oracle::map_vjp`, not from HVP/JVP.
pub struct GradientStepMap {
    pub inner: LeastSquaresBilevel<TestBackend>,
    a_x: Tensor<TestBackend, 2>,
    a_y: Tensor<TestBackend, 2>,
    b: Tensor<TestBackend, 1>,
    rows: usize,
    pub gamma: f64,
}

impl GradientStepMap {
    pub fn new(data: &LsData, gamma: f64) -> Self {
        let (n, m, d) = (data.a_x.rows, data.a_x.cols, data.a_y.cols);
        Self {
            inner: data.problem(),
            a_x: matrix(&data.a_x.data, n, m, &dev()).unwrap(),
            a_y: matrix(&data.a_y.data, n, d, &dev()).unwrap(),
            b: vector(&data.b, &dev()),
            rows: n,
            gamma,
        }
    }
}

impl BilevelProblem<TestBackend> for GradientStepMap {
    fn x_dim(&self) -> usize {
        self.inner.x_dim()
    }
    fn y_dim(&self) -> usize {
        self.inner.y_dim()
    }
    fn device(&self) -> burn::tensor::Device<TestBackend> {
        dev()
    }
    fn inner_len(&self) -> Option<usize> {
        self.inner.inner_len()
    }
    fn outer_len(&self) -> Option<usize> {
        self.inner.outer_len()
    }
    fn inner_loss<C: Lift<TestBackend>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        self.inner.inner_loss(x, y, batch)
    }
    fn outer_loss<C: Lift<TestBackend>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        self.inner.outer_loss(x, y, batch)
    }
    fn contraction_map<C: Lift<TestBackend>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Option<Tensor<C, 1>> {
        let rows = batch.len(Some(self.rows)).max(1);
        let a_y = batch.rows(C::lift(self.a_y.clone()));
        let r = matvec(batch.rows(C::lift(self.a_x.clone())), x)
            .add(matvec(a_y.clone(), y.clone()))
            .sub(batch.rows(C::lift(self.b.clone())));
        let grad = tmatvec(a_y, r).mul_scalar(1.0 / rows as f64);
        Some(y.sub(grad.mul_scalar(self.gamma)))
    }
}

/// Any problem with an upper-level constraint set added.
pub struct Constrained<P> {
    pub inner: P,
    pub set: Constraint,
}

impl<P: BilevelProblem<TestBackend>> BilevelProblem<TestBackend> for Constrained<P> {
    fn x_dim(&self) -> usize {
        self.inner.x_dim()
    }
    fn y_dim(&self) -> usize {
        self.inner.y_dim()
    }
    fn device(&self) -> burn::tensor::Device<TestBackend> {
        dev()
    }
    fn inner_len(&self) -> Option<usize> {
        self.inner.inner_len()
    }
    fn outer_len(&self) -> Option<usize> {
        self.inner.outer_len()
    }
    fn inner_loss<C: Lift<TestBackend>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        self.inner.inner_loss(x, y, batch)
    }
    fn outer_loss<C: Lift<TestBackend>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        self.inner.outer_loss(x, y, batch)
    }
    fn upper_constraint(&self) -> Constraint {
        self.set.clone()
    }
}
