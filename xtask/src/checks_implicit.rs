//! hypergrad-check rows of the deterministic estimators of `bilevel-algorithms`: AID-CG, AID-FP,
//! ITD, truncated ITD and HOAG's first step, on random quadratic instances.
//!
//! Instances are drawn like `hypergrad_check`'s, with condition numbers `κ ∈ [3, 30]` (every
//! inner step costs an exact product here, and the steps needed grow like `κ`). Each estimator
//! runs once at a random `x` in its most accurate setting, from `y = 0`, `v = 0` without warm
//! starts: inner step `α = 2/(μ+L)` (contraction `q = (κ−1)/(κ+1)` per step, `μ`, `L` the spectrum
//! bounds of `∇²_yy g`) and `T` steps with `q^T ≤ 1e-11` (the fixed point takes as many); CG to a
//! relative residual of 1e-13; HOAG's tolerance 1e-11. Its estimate is compared with the
//! closed-form `∇Φ(x)`.
//! `itd_truncated` is compared instead with the closed-form derivative of the truncated unroll
//! (the Jacobian recursion `D ← (I − αH)D − αC` over the last `K` of `T` steps only, from
//! `D = 0`), a quantity that differs from `∇Φ` at the chosen `K`, so this row checks that the
//! truncation is the one documented rather than that it happens to be close to `∇Φ`.

use anyhow::Result;
use bilevel_algorithms::aid::{Aid, AidConfig, InnerSteps, LinearSolver};
use bilevel_algorithms::hoag::{Hoag, HoagConfig};
use bilevel_algorithms::itd::{Itd, ItdConfig};
use bilevel_core::dense::{axpy, Dense};
use bilevel_core::problems::{QuadraticBilevel, QuadraticForm, QuadraticSpec};
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{rel_err_host, to_vec, vector};
use bilevel_core::{HypergradientEstimator, Oracle, Solver, State};

use crate::check_rows::{Options, Worst};

use super::B;

/// Tolerance of every row: the estimators are exact up to `q^T ≈ 1e-11` times condition factors.
const TOL: f64 = 1e-6;
/// Inner steps `T` and differentiated steps `K` of the `itd_truncated` row.
const TRUNCATED_STEPS: usize = 40;
const TRUNCATION: usize = 15;

/// Adds the `aid_cg`, `aid_fp`, `itd`, `itd_truncated` and `hoag` rows to `worst`.
pub fn run(opts: &Options, worst: &mut Worst) -> Result<()> {
    let device = Default::default();
    for i in 0..opts.instances as u64 {
        let seed = opts.seed.wrapping_mul(1_000_003).wrapping_add(i);
        let mut rng = Rng::seed(seed ^ 0x1a1d);
        let spec = QuadraticSpec {
            x_dim: 1 + rng.index(8),
            y_dim: 1 + rng.index(12),
            max_curvature: 10f64.powf(0.5 + rng.uniform()),
            seed,
            ..Default::default()
        };
        let p = QuadraticBilevel::<B>::random(&spec, &device)?;
        let form = p.closed_form();
        let (mu, l) = (spec.min_curvature, spec.max_curvature);
        let alpha = 2.0 / (mu + l);
        let q = (l - mu) / (l + mu);
        let steps = ((1e-11f64).ln() / q.ln()).ceil().max(1.0) as usize;
        let n = spec.y_dim;
        let x = rng.normal_vec(spec.x_dim);
        let exact = form.hypergradient(&x)?;

        let aid = |linear_solver| AidConfig {
            inner_step: alpha,
            inner_steps: InnerSteps::Constant { steps },
            warm_start_inner: false,
            linear_solver,
            warm_start_linear: false,
            batches: Default::default(),
        };
        let cg = LinearSolver::ConjugateGradient {
            steps: 10 * n + 10,
            tol: 1e-13,
        };
        let g = estimate(&p, &x, Aid::new(aid(cg))?)?;
        worst.record("aid_cg", TOL, rel_err_host(&g, &exact));
        let fp = LinearSolver::FixedPoint { step: alpha, steps };
        let g = estimate(&p, &x, Aid::new(aid(fp))?)?;
        worst.record("aid_fp", TOL, rel_err_host(&g, &exact));

        let itd = |inner_steps, truncation| ItdConfig {
            inner_step: alpha,
            inner_steps,
            warm_start: false,
            truncation,
        };
        let g = estimate(&p, &x, Itd::new(itd(steps, None))?)?;
        worst.record("itd", TOL, rel_err_host(&g, &exact));
        let g = estimate(&p, &x, Itd::new(itd(TRUNCATED_STEPS, Some(TRUNCATION)))?)?;
        let truncated = truncated_derivative(form, &x, alpha, TRUNCATED_STEPS, TRUNCATION)?;
        worst.record("itd_truncated", TOL, rel_err_host(&g, &truncated));

        let mut hoag = Hoag::new(HoagConfig {
            inner_step: alpha,
            max_inner_steps: 100 * steps,
            max_cg_steps: 10 * n + 10,
            initial_tolerance: 1e-11,
            min_tolerance: 1e-11,
            ..Default::default()
        })?;
        let mut oracle = Oracle::new(&p);
        let state = hoag.next_iter(&mut oracle, fresh_state(&x, n))?;
        let g = state
            .hypergradient
            .map(to_vec)
            .transpose()?
            .unwrap_or_default();
        worst.record("hoag", TOL, rel_err_host(&g, &exact));
    }
    Ok(())
}

fn fresh_state(x: &[f64], y_dim: usize) -> State<B> {
    let device = Default::default();
    State::new(vector(x, &device), vector(&vec![0.0; y_dim], &device), 0)
}

/// One estimate at `x` from `y = 0`, `v = 0`.
fn estimate(
    p: &QuadraticBilevel<B>,
    x: &[f64],
    mut estimator: impl HypergradientEstimator<B>,
) -> Result<Vec<f64>> {
    let mut state = fresh_state(x, p.closed_form().y_dim());
    let g = estimator.estimate(&mut Oracle::new(p), &mut state)?;
    Ok(to_vec(g)?)
}

/// `∇_x f + D_Kᵀ ∇_y f` at `(x, y_T)`, `y_T` after `T` GD steps from 0 and `D_K` the Jacobian of
/// the last `K` steps (`D ← (I − αH)D − αC` from `D = 0`), in host `f64`.
fn truncated_derivative(
    form: &QuadraticForm,
    x: &[f64],
    alpha: f64,
    steps: usize,
    kept: usize,
) -> Result<Vec<f64>> {
    let (n, m) = (form.y_dim(), form.x_dim());
    let mut y = vec![0.0; n];
    for _ in 0..steps {
        y = axpy(&y, -alpha, &form.grad_y_g(x, &y));
    }
    let mut contraction = Dense::scaled_identity(n, 1.0);
    for (e, h) in contraction.data.iter_mut().zip(&form.h.data) {
        *e -= alpha * h;
    }
    let mut d = Dense::zeros(n, m);
    for _ in 0..kept {
        d = contraction.matmul(&d);
        for (e, c) in d.data.iter_mut().zip(&form.c.data) {
            *e -= alpha * c;
        }
    }
    Ok(axpy(
        &form.grad_x_f(x, &y),
        1.0,
        &d.tmatvec(&form.grad_y_f(x, &y)),
    ))
}
