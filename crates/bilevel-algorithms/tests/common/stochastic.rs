#![allow(dead_code, missing_docs)]
//! Shared helpers of the stochastic-algorithm tests (stocBiO, BSA, TTSA).

use super::*;

use std::cell::RefCell;

use bilevel_core::dense::{axpy, norm, Dense};
use bilevel_core::problems::{LeastSquaresBilevel, QuadraticForm};
use bilevel_core::sampling::Rng;
use bilevel_core::{Batch, BilevelProblem, Lift, Oracle, OracleCounts, Result, Solver, State};
use burn::tensor::Tensor;

/// The stochastic test problem.
pub type Problem = LeastSquaresBilevel<TestBackend>;

/// Rows of the test instances: small, so that runs are fast.
pub const ROWS: usize = 200;

/// FSLA's least-squares problem (paper 001) with `x`-features equal to those of `y` plus noise
/// (`A_λ = A_ω[:, :m] + 0.5·N(0, 1)`), labels from a planted `(x₀, y₀)` plus `noise`.
///
/// With independent Gaussian features (`LeastSquaresBilevel::random`), `∇_x∇_y g = A_ωᵀA_λ/n`
/// is O(1/√n) while its single-sample estimates are O(1): the outer problem is then so
/// ill-conditioned against the sampling noise that no stochastic method makes progress within a
/// test's budget. Here `∇²Φ` has eigenvalues near 1.
pub fn correlated(x_dim: usize, y_dim: usize, noise: f64, seed: u64) -> Problem {
    assert!(x_dim <= y_dim);
    let mut rng = Rng::seed(seed);
    let gauss = |rng: &mut Rng, r: usize, c: usize, s: f64| Dense {
        rows: r,
        cols: c,
        data: rng.normal_vec(r * c).into_iter().map(|v| v * s).collect(),
    };
    let a_y = gauss(&mut rng, ROWS, y_dim, 1.0);
    let mut a_x = gauss(&mut rng, ROWS, x_dim, 0.5);
    for i in 0..ROWS {
        for j in 0..x_dim {
            a_x.set(i, j, a_x.get(i, j) + a_y.get(i, j));
        }
    }
    let a_o = gauss(&mut rng, ROWS, y_dim, 1.0);
    let (x0, y0) = (rng.normal_vec(x_dim), rng.normal_vec(y_dim));
    let (ax, ay) = (a_x.matvec(&x0), a_y.matvec(&y0));
    let e = rng.normal_vec(ROWS);
    let b: Vec<f64> = (0..ROWS).map(|i| ax[i] + ay[i] + noise * e[i]).collect();
    let ao = a_o.matvec(&y0);
    let e_o = rng.normal_vec(ROWS);
    let b_o: Vec<f64> = (0..ROWS).map(|i| ao[i] + noise * e_o[i]).collect();
    LeastSquaresBilevel::new(a_x, a_y, b, a_o, b_o, &dev()).unwrap()
}

/// [`correlated`] with an outer design on `x` (`C_o ~ N(0, 1)`, drawn from `seed + 1 000`), so
/// that `∇_x F ≠ 0`: with it, a dropped or sign-flipped `∇_x F` term changes the estimate (on
/// [`correlated`] alone `f` ignores `x`, and such a defect is invisible).
pub fn coupled(x_dim: usize, y_dim: usize, noise: f64, seed: u64) -> Problem {
    let data = Rng::seed(seed + 1_000).normal_vec(ROWS * x_dim);
    let c_o = Dense {
        rows: ROWS,
        cols: x_dim,
        data,
    };
    correlated(x_dim, y_dim, noise, seed)
        .with_outer_x_design(c_o)
        .unwrap()
}

/// `‖∇Φ(x)‖` from the closed form.
pub fn grad_phi_norm(p: &Problem, x: &[f64]) -> f64 {
    norm(&p.closed_form().hypergradient(x).unwrap())
}

/// `x* + distance · u`, `u ~ N(0, I)` from `seed`.
pub fn far_start(p: &Problem, distance: f64, seed: u64) -> Vec<f64> {
    let x_star = p.closed_form().x_star().unwrap();
    let u = Rng::seed(seed).normal_vec(x_star.len());
    axpy(&x_star, distance, &u)
}

/// A state at `x0` with `y0 = 0`.
pub fn state(p: &Problem, x0: &[f64], seed: u64) -> State<TestBackend> {
    State::new(t(x0), t(&vec![0.0; p.y_dim()]), seed)
}

/// Runs `iters` outer iterations by calling `next_iter` (no executor); returns the final
/// state and `‖∇Φ(x_k)‖` after every iteration.
pub fn run<P: BilevelProblem<TestBackend>, S: Solver<TestBackend>>(
    solver: &mut S,
    oracle: &mut Oracle<'_, TestBackend, P>,
    mut state: State<TestBackend>,
    iters: usize,
    form: &QuadraticForm,
) -> Result<(State<TestBackend>, Vec<f64>)> {
    solver.validate()?;
    let mut norms = Vec::with_capacity(iters);
    for _ in 0..iters {
        state = solver.next_iter(oracle, state)?;
        norms.push(norm(&form.hypergradient(&host(&state.x))?));
    }
    Ok((state, norms))
}

/// Iterations averaged at the end of a run to measure where it settled (single iterates of
/// a stochastic method fluctuate).
pub const TAIL: usize = 20;

/// `‖∇Φ(x_0)‖ / mean_{last TAIL k} ‖∇Φ(x_k)‖`.
pub fn reduction(initial: f64, norms: &[f64]) -> f64 {
    let tail = &norms[norms.len() - TAIL..];
    initial / (tail.iter().sum::<f64>() / TAIL as f64)
}

/// One iteration's oracle calls, and the state after it.
pub fn one_iter<P: BilevelProblem<TestBackend>, S: Solver<TestBackend>>(
    solver: &mut S,
    oracle: &mut Oracle<'_, TestBackend, P>,
    state: State<TestBackend>,
) -> (OracleCounts, State<TestBackend>) {
    let before = oracle.counts();
    let state = solver.next_iter(oracle, state).unwrap();
    (oracle.counts() - before, state)
}

/// `(I − ηH̄)^p ∇_y f(x, y)` from the closed form.
pub fn neumann_power(form: &QuadraticForm, x: &[f64], y: &[f64], eta: f64, p: usize) -> Vec<f64> {
    let mut r = form.grad_y_f(x, y);
    for _ in 0..p {
        r = axpy(&r, -eta, &form.hvp(&r));
    }
    r
}

/// `η Σ_{q<terms} (I − ηH̄)^q ∇_y f(x, y)` from the closed form.
pub fn truncated_neumann(
    form: &QuadraticForm,
    x: &[f64],
    y: &[f64],
    eta: f64,
    terms: usize,
) -> Vec<f64> {
    let mut acc = vec![0.0; form.y_dim()];
    for q in 0..terms {
        acc = axpy(&acc, eta, &neumann_power(form, x, y, eta, q));
    }
    acc
}

/// `∇_x f(x, y) − C̄ᵀ v`: the estimate a given `v` yields with exact (full-batch) products.
pub fn estimate_from_v(form: &QuadraticForm, x: &[f64], y: &[f64], v: &[f64]) -> Vec<f64> {
    axpy(&form.grad_x_f(x, y), -1.0, &form.jvp(v))
}

/// Which loss a recorded evaluation was of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    Inner,
    Outer,
}

/// A problem that records the batch of every loss evaluation, in order. Each oracle call
/// (gradient, HVP or JVP) evaluates its loss exactly once, so the log is the sequence of
/// batches the algorithm used.
pub struct Recording<'a> {
    pub problem: &'a Problem,
    pub log: RefCell<Vec<(Loss, Batch)>>,
}

impl<'a> Recording<'a> {
    pub fn new(problem: &'a Problem) -> Self {
        Self {
            problem,
            log: RefCell::new(Vec::new()),
        }
    }

    /// Takes every recorded `(loss, batch)` so far, in order.
    pub fn take_all(&self) -> Vec<(Loss, Batch)> {
        std::mem::take(&mut *self.log.borrow_mut())
    }

    /// Takes the batches recorded so far of one loss (and drops the other loss's).
    pub fn take(&self, which: Loss) -> Vec<Batch> {
        let log = std::mem::take(&mut *self.log.borrow_mut());
        log.into_iter()
            .filter(|(l, _)| *l == which)
            .map(|(_, b)| b)
            .collect()
    }
}

/// Batch sizes (`None` for the full batch).
pub fn sizes(batches: &[Batch]) -> Vec<Option<usize>> {
    batches
        .iter()
        .map(|b| match b {
            Batch::Full => None,
            Batch::Indices(idx) => Some(idx.len()),
        })
        .collect()
}

impl BilevelProblem<TestBackend> for Recording<'_> {
    fn x_dim(&self) -> usize {
        self.problem.x_dim()
    }

    fn y_dim(&self) -> usize {
        self.problem.y_dim()
    }

    fn device(&self) -> burn::tensor::Device<TestBackend> {
        self.problem.device()
    }

    fn inner_len(&self) -> Option<usize> {
        self.problem.inner_len()
    }

    fn outer_len(&self) -> Option<usize> {
        self.problem.outer_len()
    }

    fn inner_loss<C: Lift<TestBackend>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        self.log.borrow_mut().push((Loss::Inner, batch.clone()));
        self.problem.inner_loss(x, y, batch)
    }

    fn outer_loss<C: Lift<TestBackend>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        self.log.borrow_mut().push((Loss::Outer, batch.clone()));
        self.problem.outer_loss(x, y, batch)
    }
}
