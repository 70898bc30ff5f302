#![allow(dead_code, missing_docs)]
//! Helpers of the FSLA tests: problems, host replicas of FSLA's rule and of BP.

use super::*;

use bilevel_core::dense::{axpy, norm, Dense};
use bilevel_core::problems::{LeastSquaresBilevel, QuadraticBilevel, QuadraticForm, QuadraticSpec};
use bilevel_core::sampling::Rng;
use bilevel_core::{BilevelProblem, Oracle, OracleCounts, Solver, State};
use burn::tensor::Tensor;

/// A well-conditioned deterministic instance: `∇²_yy g` has spectrum `[1, 4]`, `μ = 1`.
pub fn quadratic() -> QuadraticBilevel<TestBackend> {
    QuadraticBilevel::random(
        &QuadraticSpec {
            x_dim: 5,
            y_dim: 8,
            min_curvature: 1.0,
            max_curvature: 4.0,
            x_regularization: 1.0,
            cross_scale: 0.1,
            seed: 21,
        },
        &dev(),
    )
    .unwrap()
}

/// FSLA's synthetic least-squares problem with `x`-features correlated with the `y`-features
/// (`A_λ = A_ω[:, :m] + 0.5·N`), so that `∇_x∇_y g` is O(1): with independent Gaussian
/// features it is O(1/√n) while its per-sample estimates are O(1).
pub fn least_squares(
    x_dim: usize,
    y_dim: usize,
    rows: usize,
    seed: u64,
) -> LeastSquaresBilevel<TestBackend> {
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
    let b: Vec<f64> = (0..rows).map(|i| ax[i] + ay[i] + 0.1 * e[i]).collect();
    let e_o = rng.normal_vec(rows);
    let ao = a_o.matvec(&y0);
    let b_o: Vec<f64> = (0..rows).map(|i| ao[i] + 0.1 * e_o[i]).collect();
    LeastSquaresBilevel::new(a_x, a_y, b, a_o, b_o, &dev()).unwrap()
}

/// A state at host vectors `x`, `y` (`v = 0`) with `seed`.
pub fn state(x: &[f64], y: &[f64], seed: u64) -> State<TestBackend> {
    State::new(t(x), t(y), seed)
}

/// `‖∇Φ(x)‖` in closed form.
pub fn grad_phi_norm(form: &QuadraticForm, x: &Tensor<TestBackend, 1>) -> f64 {
    norm(&form.hypergradient(&host(x)).unwrap())
}

/// Runs `iters` outer iterations with `next_iter` (no executor).
pub fn run<S: Solver<TestBackend>, P: BilevelProblem<TestBackend>>(
    solver: &mut S,
    oracle: &mut Oracle<'_, TestBackend, P>,
    mut state: State<TestBackend>,
    iters: usize,
) -> State<TestBackend> {
    for _ in 0..iters {
        state = solver.next_iter(oracle, state).unwrap();
    }
    state
}

/// Oracle calls of one `next_iter`, and the new state.
pub fn one_iter<S: Solver<TestBackend>, P: BilevelProblem<TestBackend>>(
    solver: &mut S,
    oracle: &mut Oracle<'_, TestBackend, P>,
    state: State<TestBackend>,
) -> (OracleCounts, State<TestBackend>) {
    let before = oracle.counts();
    let state = solver.next_iter(oracle, state).unwrap();
    (oracle.counts() - before, state)
}

/// Host `(x, y, v, d)` of an FSLA iterate.
#[derive(Clone, Debug)]
pub struct HostIterate {
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    pub v: Vec<f64>,
    pub d: Vec<f64>,
}

/// `h = ∇_x f(x, y) − Cᵀv` in closed form.
pub fn host_h(form: &QuadraticForm, x: &[f64], y: &[f64], v: &[f64]) -> Vec<f64> {
    axpy(&form.grad_x_f(x, y), -1.0, &form.jvp(v))
}

/// One FSLA iteration in host `f64` on a deterministic quadratic, written from the rule in
/// `docs/ALGORITHMS.md` "FSLA" independently of the solver (unconstrained).
pub fn host_fsla_step(
    form: &QuadraticForm,
    it: &HostIterate,
    alpha: f64,
    tau: f64,
    beta: f64,
    eta: f64,
) -> HostIterate {
    let x = axpy(&it.x, -alpha, &it.d);
    let y = axpy(&it.y, -tau, &form.grad_y_g(&x, &it.y));
    // v_{k+1} = β ∇_y f(x_{k+1}, y_k) + v_k − β H v_k.
    let v = axpy(
        &it.v,
        beta,
        &axpy(&form.grad_y_f(&x, &it.y), -1.0, &form.hvp(&it.v)),
    );
    let h_new = host_h(form, &x, &y, &v);
    let h_old = host_h(form, &it.x, &it.y, &it.v);
    let d = axpy(&h_new, 1.0 - eta, &axpy(&it.d, -1.0, &h_old));
    HostIterate { x, y, v, d }
}

/// Host GD `y ← y − η ∇_y g(x, y)`, `steps` times.
pub fn host_gd(form: &QuadraticForm, x: &[f64], y0: &[f64], step: f64, steps: usize) -> Vec<f64> {
    let mut y = y0.to_vec();
    for _ in 0..steps {
        y = axpy(&y, -step, &form.grad_y_g(x, &y));
    }
    y
}

/// The derivative of `f(x, y_K(x))` through `K` GD steps from a constant `y_0`, by the forward
/// recursion of the Jacobian `D_{t+1} = (I − ηH) D_t − ηC` from `D = 0` (independent of the
/// reverse accumulation of Lemma 2's backward mode): `∇_x f + D_Kᵀ ∇_y f` at `(x, y_K)`.
pub fn host_unrolled_derivative(
    form: &QuadraticForm,
    x: &[f64],
    y0: &[f64],
    step: f64,
    steps: usize,
) -> Vec<f64> {
    let (n, m) = (form.y_dim(), form.x_dim());
    let y = host_gd(form, x, y0, step, steps);
    let mut contraction = Dense::scaled_identity(n, 1.0);
    for (e, h) in contraction.data.iter_mut().zip(&form.h.data) {
        *e -= step * h;
    }
    let mut d = Dense::zeros(n, m);
    for _ in 0..steps {
        d = contraction.matmul(&d);
        for (e, c) in d.data.iter_mut().zip(&form.c.data) {
            *e -= step * c;
        }
    }
    axpy(
        &form.grad_x_f(x, &y),
        1.0,
        &d.tmatvec(&form.grad_y_f(x, &y)),
    )
}
