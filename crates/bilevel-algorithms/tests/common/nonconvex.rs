#![allow(dead_code, missing_docs)]
//! Helpers shared by the SGM, IGFM and liu-hard tests.

use super::*;

use bilevel_algorithms::sgm::SgmConfig;
use bilevel_core::problems::LiuHard;
use bilevel_core::{BilevelProblem, Constraint, Oracle, Solver, State};

pub fn liu_hard() -> LiuHard<TestBackend> {
    LiuHard::new(&dev())
}

/// A state at host vectors `x`, `y` (`v = 0`) with RNG seed `seed`.
pub fn state(x: &[f64], y: &[f64], seed: u64) -> State<TestBackend> {
    State::new(t(x), t(y), seed)
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

/// SGM settings for liu-hard (`L_g = 2` in `y₁`): `τ = 0.1`, `K₀ = 60` (`ĝ*` exact to
/// `0.8^60 ≈ 2e-6` relative), `K = 300`, `θ = 1e-4`, `Y = [−10, 10]²` (it contains every
/// `Y*(x)` point met in the tests).
pub fn liu_hard_sgm() -> SgmConfig {
    SgmConfig {
        step: 0.1,
        lower_value_steps: 60,
        switching_steps: 300,
        feasibility_threshold: 1e-4,
        lower_constraint: Constraint::Box {
            lower: -10.0,
            upper: 10.0,
        },
    }
}

/// A well-conditioned quadratic instance (`∇²_yy g` spectrum in `[1, max_curvature]`).
pub fn quadratic(
    seed: u64,
    x_dim: usize,
    y_dim: usize,
    max_curvature: f64,
) -> bilevel_core::problems::QuadraticBilevel<TestBackend> {
    bilevel_core::problems::QuadraticBilevel::random(
        &bilevel_core::problems::QuadraticSpec {
            x_dim,
            y_dim,
            max_curvature,
            x_regularization: 1.0,
            seed,
            ..Default::default()
        },
        &dev(),
    )
    .unwrap()
}

/// `g(x, y) = ½yᵀHy + yᵀ(Cx + d)` of a [`QuadraticForm`](bilevel_core::problems::QuadraticForm)
/// (`QuadraticBilevel` has no constant in `g`).
pub fn quadratic_g(form: &bilevel_core::problems::QuadraticForm, x: &[f64], y: &[f64]) -> f64 {
    let hy = form.h.matvec(y);
    let cx = form.c.matvec(x);
    y.iter()
        .zip(&hy)
        .zip(&cx)
        .zip(&form.d)
        .map(|(((yi, hyi), cxi), di)| yi * (0.5 * hyi + cxi + di))
        .sum()
}
