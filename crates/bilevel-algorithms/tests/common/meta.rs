#![allow(dead_code, missing_docs)]
//! Helpers shared by the MAML and ANIL tests: problem constructors, the unrolled meta-objective
//! `F(θ) = f(θ, U_T(θ))` evaluated through the oracle (written here, independently of the
//! estimators), and its central finite differences.

use super::*;

use bilevel_core::problems::{MetaQuadratic, MetaQuadraticSpec, MetaSine, MetaSineSpec};
use bilevel_core::tensor::scalar;
use bilevel_core::{Batch, BilevelProblem, Oracle, OracleCounts, State};

/// A random quadratic meta-learning instance (`head = None`: MAML layout).
pub fn meta_quadratic(
    seed: u64,
    dim: usize,
    head: Option<usize>,
    tasks: usize,
    max_curvature: f64,
) -> MetaQuadratic<TestBackend> {
    MetaQuadratic::random(
        &MetaQuadraticSpec {
            dim,
            head,
            tasks,
            max_curvature,
            seed,
            ..Default::default()
        },
        &dev(),
    )
    .unwrap()
}

/// A sine-regression meta-learning instance with a `1 → 8 → 1` tanh MLP.
pub fn meta_sine(seed: u64, head_only: bool) -> MetaSine<TestBackend> {
    MetaSine::random(
        &MetaSineSpec {
            head_only,
            seed,
            ..Default::default()
        },
        &dev(),
    )
    .unwrap()
}

/// A state at `θ` with `y = S(θ)` (the estimators overwrite `y`).
pub fn meta_state<P: BilevelProblem<TestBackend>>(p: &P, theta: &[f64]) -> State<TestBackend> {
    let y = Oracle::new(p).meta_start(&t(theta)).unwrap();
    State::new(t(theta), y, 0)
}

/// `F(θ) = f(θ, U_T(θ))` over all tasks: `T` steps `y ← y − α m ∇_y g(θ, y)` from `S(θ)` (each
/// task moves by `α ∇L_s,i`, since `g` averages over the `m` tasks), then `f`.
pub fn unrolled_objective<P: BilevelProblem<TestBackend>>(
    p: &P,
    theta: &[f64],
    alpha: f64,
    steps: usize,
) -> f64 {
    let mut oracle = Oracle::new(p);
    let m = p.meta_layout().unwrap().tasks as f64;
    let x = t(theta);
    let mut y = oracle.meta_start(&x).unwrap();
    for _ in 0..steps {
        let g = oracle.grad_g_y(&x, &y, &Batch::Full).unwrap();
        y = y.sub(g.mul_scalar(alpha * m));
    }
    scalar(oracle.f_value(&x, &y, &Batch::Full).unwrap())
}

/// Central differences of [`unrolled_objective`], step `eps` per coordinate.
pub fn fd_meta_gradient<P: BilevelProblem<TestBackend>>(
    p: &P,
    theta: &[f64],
    alpha: f64,
    steps: usize,
    eps: f64,
) -> Vec<f64> {
    (0..theta.len())
        .map(|i| {
            let (mut plus, mut minus) = (theta.to_vec(), theta.to_vec());
            plus[i] += eps;
            minus[i] -= eps;
            (unrolled_objective(p, &plus, alpha, steps)
                - unrolled_objective(p, &minus, alpha, steps))
                / (2.0 * eps)
        })
        .collect()
}

/// Expected counts of one iteration: `T` inner gradients, one outer gradient and (second order)
/// `T` of each product, every call on `tasks` tasks (products draw inner samples too).
pub fn meta_counts(steps: u64, second_order: bool, tasks: u64) -> OracleCounts {
    let products = if second_order { steps } else { 0 };
    OracleCounts {
        grad_g: steps,
        grad_f: 1,
        hvp: products,
        jvp: products,
        samples_g: (steps + products) * tasks,
        samples_f: tasks,
        ..Default::default()
    }
}
