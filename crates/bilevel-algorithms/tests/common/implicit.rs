#![allow(dead_code, missing_docs)]
//! Helpers shared by the AID, ITD and HOAG tests.

use super::*;

use bilevel_core::dense::{axpy, norm, Dense};
use bilevel_core::problems::{QuadraticBilevel, QuadraticForm, QuadraticSpec};
use bilevel_core::{BilevelProblem, Oracle, OracleCounts, Solver, State};
use burn::tensor::Tensor;

/// A random quadratic instance.
pub fn quadratic(
    seed: u64,
    x_dim: usize,
    y_dim: usize,
    max_curvature: f64,
) -> QuadraticBilevel<TestBackend> {
    QuadraticBilevel::random(
        &QuadraticSpec {
            x_dim,
            y_dim,
            max_curvature,
            seed,
            ..Default::default()
        },
        &dev(),
    )
    .unwrap()
}

/// A state at host vectors `x`, `y` (`v = 0`).
pub fn state(x: &[f64], y: &[f64]) -> State<TestBackend> {
    State::new(t(x), t(y), 0)
}

/// `‖∇Φ(x)‖` in closed form.
pub fn grad_phi_norm(form: &QuadraticForm, x: &Tensor<TestBackend, 1>) -> f64 {
    norm(&form.hypergradient(&host(x)).unwrap())
}

/// Runs `iters` outer iterations; returns the final state.
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

/// Expected counts `(grad_g, grad_f, hvp, jvp)` with nothing else.
pub fn counts(grad_g: u64, grad_f: u64, hvp: u64, jvp: u64) -> OracleCounts {
    OracleCounts {
        grad_g,
        grad_f,
        hvp,
        jvp,
        ..Default::default()
    }
}

/// Host GD `y ← y − α ∇_y g(x, y)`, `steps` times.
pub fn host_gd(form: &QuadraticForm, x: &[f64], y0: &[f64], step: f64, steps: usize) -> Vec<f64> {
    let mut y = y0.to_vec();
    for _ in 0..steps {
        y = axpy(&y, -step, &form.grad_y_g(x, &y));
    }
    y
}

/// The derivative of `f(x, y_T(x))` through `T` GD steps from a constant `y_0`, of which only
/// the last `K` are differentiated, by the forward recursion of the Jacobian
/// `D_{t+1} = (I − αH) D_t − αC` from `D = 0` (independent of the reverse accumulation that ITD
/// implements): `∇_x f + D_Kᵀ ∇_y f` at `(x, y_T)`.
pub fn host_unrolled_derivative(
    form: &QuadraticForm,
    x: &[f64],
    y0: &[f64],
    step: f64,
    steps: usize,
    differentiated: usize,
) -> Vec<f64> {
    let (n, m) = (form.y_dim(), form.x_dim());
    let y = host_gd(form, x, y0, step, steps);
    let mut contraction = Dense::scaled_identity(n, 1.0);
    for (e, h) in contraction.data.iter_mut().zip(&form.h.data) {
        *e -= step * h;
    }
    let mut d = Dense::zeros(n, m);
    for _ in 0..differentiated {
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
