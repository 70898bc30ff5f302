//! ITD-BiO (full and truncated): exactness against the derivative of the unrolled inner loop
//! (host Jacobian recursion on quadratics, plain burn autodiff through an explicitly written
//! loop on a non-quadratic problem), convergence, exact oracle counts and configuration checks.

mod common;

use bilevel_algorithms::itd::{Itd, ItdConfig};
use bilevel_core::dense::Dense;
use bilevel_core::problems::{QuadraticBilevel, QuadraticSpec};
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{matrix, matvec, rel_err_host, vector};
use bilevel_core::{
    Batch, BilevelError, BilevelProblem, HypergradientEstimator, Lift, Oracle, OuterLoop,
    OuterOptimizer,
};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use common::implicit::*;
use common::*;

fn config(inner_step: f64, inner_steps: usize, truncation: Option<usize>) -> ItdConfig {
    ItdConfig {
        inner_step,
        inner_steps,
        warm_start: true,
        truncation,
    }
}

#[test]
fn matches_the_unrolled_derivative_on_quadratics() {
    // Warm start from a random y₀ (a constant of the derivative), several T and K.
    for (seed, t_steps, truncation) in [
        (1, 12, None),
        (2, 12, Some(5)),
        (3, 7, Some(7)),
        (4, 20, Some(1)),
    ] {
        let p = quadratic(seed, 4, 6, 30.0);
        let form = p.closed_form();
        let mut rng = Rng::seed(seed + 100);
        let (x, y0) = (rng.normal_vec(4), rng.normal_vec(6));
        let alpha = 0.05;
        let cfg = config(alpha, t_steps, truncation);
        let mut st = state(&x, &y0);
        let g = Itd::new(cfg)
            .unwrap()
            .estimate(&mut Oracle::new(&p), &mut st)
            .unwrap();
        let k = truncation.unwrap_or(t_steps);
        let expected = host_unrolled_derivative(form, &x, &y0, alpha, t_steps, k);
        let err = rel_err_host(&host(&g), &expected);
        assert!(err < 1e-10, "T={t_steps} K={k}: rel_err {err:e}");
        let y = host_gd(form, &x, &y0, alpha, t_steps);
        assert!(rel_err_host(&host(&st.y), &y) < 1e-12);
        let f = form.f(&x, &y);
        assert!((st.outer_loss.unwrap() - f).abs() <= 1e-12 * f.abs().max(1.0));
    }
}

#[test]
fn truncation_changes_the_estimate_as_the_closed_form_says() {
    // Guards against a truncation that is ignored: K = 2 and K = T differ, each as predicted.
    let p = quadratic(6, 3, 5, 10.0);
    let form = p.closed_form();
    let (x, y0) = ([0.3, -0.2, 1.0], [0.0; 5]);
    let estimate = |k| {
        let mut st = state(&x, &y0);
        host(
            &Itd::new(config(0.1, 10, Some(k)))
                .unwrap()
                .estimate(&mut Oracle::new(&p), &mut st)
                .unwrap(),
        )
    };
    let (short, full) = (estimate(2), estimate(10));
    assert!(rel_err_host(&short, &full) > 1e-2);
    assert!(rel_err_host(&short, &host_unrolled_derivative(form, &x, &y0, 0.1, 10, 2)) < 1e-10);
    assert!(rel_err_host(&full, &host_unrolled_derivative(form, &x, &y0, 0.1, 10, 10)) < 1e-10);
}

/// A non-quadratic lower level whose Hessian and mixed Jacobian depend on `y`, so that using the
/// wrong iterate `y_t` in the reverse pass shows up:
/// `g = ½yᵀAy + Σ log(1 + e^{y_i}) − yᵀ(z + c) + (γ/2) Σ (y_i z_i)²`, `z = Bx`;
/// `f = ½‖y − s‖² + ½μ‖x‖² + xᵀKy`.
struct SoftQuadratic<B: Backend> {
    a: Tensor<B, 2>,
    b: Tensor<B, 2>,
    c: Tensor<B, 1>,
    s: Tensor<B, 1>,
    k: Tensor<B, 2>,
    gamma: f64,
    mu: f64,
}

impl SoftQuadratic<TestBackend> {
    fn random(seed: u64, m: usize, n: usize) -> Self {
        let mut rng = Rng::seed(seed);
        let mut a = Dense::scaled_identity(n, 1.5);
        for i in 0..n {
            for j in 0..n {
                let e = 0.1 * rng.normal_vec(1)[0];
                a.data[i * n + j] += e;
                a.data[j * n + i] += e;
            }
        }
        let dev = dev();
        Self {
            a: matrix(&a.data, n, n, &dev).unwrap(),
            b: matrix(&rng.normal_vec(n * m), n, m, &dev)
                .unwrap()
                .mul_scalar(0.5),
            c: vector(&rng.normal_vec(n), &dev),
            s: vector(&rng.normal_vec(n), &dev),
            k: matrix(&rng.normal_vec(m * n), m, n, &dev)
                .unwrap()
                .mul_scalar(0.3),
            gamma: 0.2,
            mu: 0.1,
        }
    }

    /// `∇_y g`, written by hand on any backend (used to unroll the loop with plain autodiff).
    fn grad_y(
        &self,
        x: Tensor<TestBackend, 1>,
        y: Tensor<TestBackend, 1>,
    ) -> Tensor<TestBackend, 1> {
        let z = matvec(self.b.clone(), x);
        let sigmoid = y.clone().neg().exp().add_scalar(1.0).recip();
        matvec(self.a.clone(), y.clone())
            .add(sigmoid)
            .sub(z.clone())
            .sub(self.c.clone())
            .add(y.mul(z.clone()).mul(z).mul_scalar(self.gamma))
    }

    /// `f(x, y_T(x))` differentiated by burn through the explicitly written loop, the first
    /// `T − K` steps detached (truncation).
    fn unrolled(&self, x: &[f64], y0: &[f64], alpha: f64, steps: usize, kept: usize) -> Vec<f64> {
        let xr = t(x).require_grad();
        let mut y = t(y0);
        for step in 0..steps {
            if step < steps - kept {
                y = y
                    .clone()
                    .sub(self.grad_y(xr.clone().detach(), y).mul_scalar(alpha));
            } else {
                y = y.clone().sub(self.grad_y(xr.clone(), y).mul_scalar(alpha));
            }
        }
        let loss = self.outer_loss::<TestBackend>(xr.clone(), y, &Batch::Full);
        host(&xr.grad(&loss.backward()).map(Tensor::from_inner).unwrap())
    }
}

impl<B: Backend> BilevelProblem<B> for SoftQuadratic<B> {
    fn x_dim(&self) -> usize {
        self.b.dims()[1]
    }
    fn y_dim(&self) -> usize {
        self.a.dims()[0]
    }
    fn device(&self) -> B::Device {
        self.a.device()
    }
    fn inner_loss<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>, _: &Batch) -> Tensor<C, 1> {
        let z = matvec(C::lift(self.b.clone()), x);
        let ay = matvec(C::lift(self.a.clone()), y.clone());
        let softplus = y.clone().exp().add_scalar(1.0).log().sum();
        let coupling = y
            .clone()
            .mul(z.clone())
            .powi_scalar(2)
            .sum()
            .mul_scalar(0.5 * self.gamma);
        y.clone()
            .mul(ay)
            .sum()
            .mul_scalar(0.5)
            .add(softplus)
            .sub(y.mul(z.add(C::lift(self.c.clone()))).sum())
            .add(coupling)
    }
    fn outer_loss<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>, _: &Batch) -> Tensor<C, 1> {
        let r = y.clone().sub(C::lift(self.s.clone()));
        let ky = matvec(C::lift(self.k.clone()), y);
        r.powi_scalar(2)
            .sum()
            .mul_scalar(0.5)
            .add(x.clone().powi_scalar(2).sum().mul_scalar(0.5 * self.mu))
            .add(x.mul(ky).sum())
    }
}

#[test]
fn matches_autodiff_through_the_unrolled_loop_on_a_non_quadratic_problem() {
    let p = SoftQuadratic::random(3, 3, 5);
    let mut rng = Rng::seed(4);
    let (x, y0) = (rng.normal_vec(3), rng.normal_vec(5));
    let (alpha, steps) = (0.2, 15);
    for kept in [15, 6, 1] {
        let mut st = state(&x, &y0);
        let g = Itd::new(config(alpha, steps, Some(kept)))
            .unwrap()
            .estimate(&mut Oracle::new(&p), &mut st)
            .unwrap();
        let expected = p.unrolled(&x, &y0, alpha, steps, kept);
        let err = rel_err_host(&host(&g), &expected);
        assert!(err < 1e-10, "K={kept}: rel_err {err:e}");
    }
    // The hand-written ∇_y g is the problem's: the oracle's y_T matches the explicit loop's.
    let mut y = t(&y0);
    for _ in 0..steps {
        y = y.clone().sub(p.grad_y(t(&x), y).mul_scalar(alpha));
    }
    let mut st = state(&x, &y0);
    Itd::new(config(alpha, steps, None))
        .unwrap()
        .estimate(&mut Oracle::new(&p), &mut st)
        .unwrap();
    assert!(rel_err_host(&host(&st.y), &host(&y)) < 1e-12);
}

#[test]
fn itd_reaches_a_stationary_point() {
    // κ = 2 and α = 2/(μ+L) contract by 1/3 per step: T = 18 makes the bias (1/3)^T ≈ 3e-9.
    let p = QuadraticBilevel::<TestBackend>::random(
        &QuadraticSpec {
            x_dim: 5,
            y_dim: 6,
            max_curvature: 2.0,
            x_regularization: 1.0,
            seed: 31,
            ..Default::default()
        },
        &dev(),
    )
    .unwrap();
    let form = p.closed_form();
    let mut oracle = Oracle::new(&p);
    let itd = Itd::new(config(2.0 / 3.0, 18, None)).unwrap();
    let mut solver = OuterLoop::new(itd, OuterOptimizer::sgd(0.4));
    let start = state(&[0.0; 5], &[0.0; 6]);
    let first = grad_phi_norm(form, &start.x);
    let end = run(&mut solver, &mut oracle, start, 30);
    let last = grad_phi_norm(form, &end.x);
    assert!(first > 0.5, "‖∇Φ(x_0)‖ = {first}");
    assert!(last <= 1e-6, "‖∇Φ(x_K)‖ = {last:e}");
}

#[test]
fn oracle_counts_match_the_formula() {
    let p = quadratic(2, 3, 4, 10.0);
    for (t_steps, truncation, k) in [(5usize, None, 5u64), (7, Some(3), 3)] {
        let mut oracle = Oracle::new(&p);
        let mut solver = OuterLoop::new(
            Itd::new(config(0.1, t_steps, truncation)).unwrap(),
            OuterOptimizer::sgd(0.1),
        );
        let mut st = state(&[0.2; 3], &[0.0; 4]);
        for _ in 0..2 {
            let (c, next) = one_iter(&mut solver, &mut oracle, st);
            st = next;
            assert_eq!(c, counts(t_steps as u64, 1, k, k), "T={t_steps} K={k}");
        }
    }
}

#[test]
fn invalid_configs_are_rejected() {
    let good = config(0.1, 5, Some(2));
    assert!(Itd::new(good).is_ok());
    for cfg in [
        ItdConfig {
            inner_step: 0.0,
            ..good
        },
        ItdConfig {
            inner_step: -1.0,
            ..good
        },
        ItdConfig {
            inner_step: f64::NAN,
            ..good
        },
        ItdConfig {
            inner_steps: 0,
            truncation: None,
            ..good
        },
        ItdConfig {
            truncation: Some(0),
            ..good
        },
        ItdConfig {
            truncation: Some(6),
            ..good
        },
    ] {
        assert!(
            matches!(Itd::new(cfg), Err(BilevelError::InvalidParameter { .. })),
            "{cfg:?} was accepted"
        );
    }
}
