//! hypergrad-check rows of the single-loop method FSLA (paper 001, `bilevel_algorithms::fsla`)
//! and of Lemma 2's general form, on random deterministic quadratic instances (full batches).
//!
//! - `fsla_stationary`: at a fixed random `x` with the exact `y = y*(x)`, FSLA's `v` recursion
//!   (Alg. 1 line 7, [`linear_step`], the function the solver calls)
//!   `v ← β ∇_y f + (I − β ∇²_yy g) v` from `v = 0`, with the constant `β = 2/(μ+L)`
//!   (contraction `q = (κ−1)/(κ+1)`) and enough steps for `q^N ≤ 1e-11`, against the closed
//!   form `v* = H⁻¹∇_y f`.
//! - `fsla_fixed_point`: the whole solver started at `(x*, y*(x*), v*(x*))` (so `d_0 = ∇Φ(x*)
//!   = 0`) must stay there: 20 iterations of the paper's schedule, worst relative drift of
//!   `x`, `y`, `v`. Any sign or scale error in the `ω`, `v`, `h` or STORM updates moves it.
//! - `fsla_one_step`: three iterations from a random `(x, y, v, d)` against a host replica of
//!   the rule in `docs/ALGORITHMS.md` "FSLA" (which catches what the fixed point cannot: the
//!   points each quantity is evaluated at, and the STORM correction at the previous state).
//! - `lemma2_ns_equals_bp`: back-propagation through `K` GD steps from a random `ω_0` against
//!   the `K`-term Neumann series at `ω_K` with the same step (equal for constant Hessians).
//! - `lemma2_cg`: Lemma 2's forward mode fed with `n = dim(y)` CG steps at `y*(x)`, against
//!   the closed-form `∇Φ(x)`.

use anyhow::Result;
use bilevel_algorithms::fsla::{
    linear_step, ApproximateHypergradient, Fsla, FslaConfig, DIRECTION,
};
use bilevel_core::dense::axpy;
use bilevel_core::problems::{QuadraticBilevel, QuadraticForm, QuadraticSpec};
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{rel_err_host, to_vec, vector};
use bilevel_core::{Batch, Oracle, Solver, State};
use burn::tensor::Tensor;

use crate::check_rows::{Options, Worst};

use super::B;

/// Tolerance of the converged `v` recursion (its truncation is ≈ 1e-11 times condition factors).
const TOL_CONVERGED: f64 = 1e-6;
/// Tolerance of the exact identities (fixed point, replica, NS = BP).
const TOL_EXACT: f64 = 1e-8;
/// Tolerance of `n`-step CG (exact in exact arithmetic; round-off grows with κ).
const TOL_CG: f64 = 1e-6;
/// Iterations of the `fsla_fixed_point` row.
const FIXED_POINT_ITERS: usize = 20;
/// Steps `K` of the `lemma2_ns_equals_bp` row.
const LEMMA2_STEPS: usize = 15;

fn t(v: &[f64]) -> Tensor<B, 1> {
    vector(v, &Default::default())
}

fn h(t: &Tensor<B, 1>) -> Result<Vec<f64>> {
    Ok(to_vec(t.clone())?)
}

fn full_batch_config(base_step: f64, step_ratio: f64) -> FslaConfig {
    FslaConfig {
        base_step,
        step_decay: 0.5,
        inner_step_ratio: step_ratio,
        linear_step_ratio: step_ratio,
        momentum_ratio: 0.5 / base_step,
        inner_batch: None,
        outer_batch: None,
        hessian_batch: None,
        jacobian_batch: None,
    }
}

/// Adds the `fsla_*` and `lemma2_*` rows to `worst`.
pub fn run(opts: &Options, worst: &mut Worst) -> Result<()> {
    let device = Default::default();
    for i in 0..opts.instances as u64 {
        let seed = opts.seed.wrapping_mul(1_000_003).wrapping_add(i);
        let mut rng = Rng::seed(seed ^ 0xf51a);
        let spec = QuadraticSpec {
            x_dim: 1 + rng.index(8),
            y_dim: 1 + rng.index(12),
            max_curvature: 10f64.powf(0.5 + 1.5 * rng.uniform()),
            x_regularization: 1.0,
            seed,
            ..Default::default()
        };
        let p = QuadraticBilevel::<B>::random(&spec, &device)?;
        let form = p.closed_form();
        let (mu, l) = (spec.min_curvature, spec.max_curvature);
        let x = rng.normal_vec(spec.x_dim);

        worst.record(
            "fsla_stationary",
            TOL_CONVERGED,
            stationary_error(&p, form, &x, mu, l)?,
        );
        // Steps within the stable range of the ω and v updates (c_τ δ = c_β δ = 1/L).
        let cfg = full_batch_config(0.5, 2.0 / l);
        worst.record(
            "fsla_fixed_point",
            TOL_EXACT,
            fixed_point_drift(&p, form, cfg)?,
        );
        worst.record(
            "fsla_one_step",
            TOL_EXACT,
            replica_error(&p, form, cfg, &mut rng)?,
        );

        let y0 = rng.normal_vec(spec.y_dim);
        let step = 1.0 / l;
        let bp = ApproximateHypergradient::BackPropagation {
            inner_step: step,
            steps: LEMMA2_STEPS,
        }
        .estimate(&mut Oracle::new(&p), &t(&x), &t(&y0), &Batch::Full)?;
        let mut y_k = y0;
        for _ in 0..LEMMA2_STEPS {
            y_k = axpy(&y_k, -step, &form.grad_y_g(&x, &y_k));
        }
        let ns = ApproximateHypergradient::NeumannSeries {
            step,
            terms: LEMMA2_STEPS,
        }
        .estimate(&mut Oracle::new(&p), &t(&x), &t(&y_k), &Batch::Full)?;
        worst.record(
            "lemma2_ns_equals_bp",
            TOL_EXACT,
            rel_err_host(&h(&ns)?, &h(&bp)?),
        );

        let y_star = form.y_star(&x)?;
        let cg = ApproximateHypergradient::ConjugateGradient { steps: spec.y_dim }.estimate(
            &mut Oracle::new(&p),
            &t(&x),
            &t(&y_star),
            &Batch::Full,
        )?;
        worst.record(
            "lemma2_cg",
            TOL_CG,
            rel_err_host(&h(&cg)?, &form.hypergradient(&x)?),
        );
    }
    Ok(())
}

/// `‖v_N − v*‖/‖v*‖` of the `v` recursion at `(x, y*(x))` from `v = 0`.
fn stationary_error(
    p: &QuadraticBilevel<B>,
    form: &QuadraticForm,
    x: &[f64],
    mu: f64,
    l: f64,
) -> Result<f64> {
    let y_star = form.y_star(x)?;
    let v_star = form.v_star(x, &y_star)?;
    let beta = 2.0 / (mu + l);
    let q = (l - mu) / (l + mu);
    let steps = if q > 0.0 {
        ((1e-11f64).ln() / q.ln()).ceil().max(1.0) as usize
    } else {
        1
    };
    let (xt, yt) = (t(x), t(&y_star));
    let mut v = yt.zeros_like();
    let mut oracle = Oracle::new(p);
    for _ in 0..steps {
        v = linear_step(&mut oracle, &xt, &yt, &v, beta, &Batch::Full, &Batch::Full)?;
    }
    Ok(rel_err_host(&h(&v)?, &v_star))
}

/// Worst relative drift of `x`, `y`, `v` over FSLA iterations started at the solution.
fn fixed_point_drift(
    p: &QuadraticBilevel<B>,
    form: &QuadraticForm,
    cfg: FslaConfig,
) -> Result<f64> {
    let x_star = form.x_star()?;
    let y_star = form.y_star(&x_star)?;
    let v_star = form.v_star(&x_star, &y_star)?;
    let mut state = State::new(t(&x_star), t(&y_star), 0);
    state.v = t(&v_star);
    let mut solver = Fsla::new(cfg)?;
    let mut oracle = Oracle::new(p);
    let mut state = solver.init(&mut oracle, state)?;
    let mut worst = 0f64;
    for _ in 0..FIXED_POINT_ITERS {
        state = solver.next_iter(&mut oracle, state)?;
        for (got, want) in [
            (&state.x, &x_star),
            (&state.y, &y_star),
            (&state.v, &v_star),
        ] {
            worst = worst.max(rel_err_host(&h(got)?, want));
        }
    }
    Ok(worst)
}

/// Relative error of `(x, y, v, d)` after three solver iterations from a random state, against
/// the host replica of the rule in `docs/ALGORITHMS.md` "FSLA".
fn replica_error(
    p: &QuadraticBilevel<B>,
    form: &QuadraticForm,
    cfg: FslaConfig,
    rng: &mut Rng,
) -> Result<f64> {
    let (m, n) = (form.x_dim(), form.y_dim());
    let (mut x, mut y) = (rng.normal_vec(m), rng.normal_vec(n));
    let (mut v, mut d) = (rng.normal_vec(n), rng.normal_vec(m));
    let mut state = State::new(t(&x), t(&y), 0);
    state.v = t(&v);
    state.memory.insert(DIRECTION.into(), t(&d));
    let mut solver = Fsla::new(cfg)?;
    let mut oracle = Oracle::new(p);
    let hyper = |x: &[f64], y: &[f64], v: &[f64]| axpy(&form.grad_x_f(x, y), -1.0, &form.jvp(v));
    let mut worst = 0f64;
    for k in 0..3u64 {
        let alpha = cfg.base_step / ((k + 1) as f64).sqrt();
        let (tau, beta) = (cfg.inner_step_ratio * alpha, cfg.linear_step_ratio * alpha);
        let eta = cfg.momentum_ratio * alpha;
        let x_next = axpy(&x, -alpha, &d);
        let y_next = axpy(&y, -tau, &form.grad_y_g(&x_next, &y));
        let residual = axpy(&form.grad_y_f(&x_next, &y), -1.0, &form.hvp(&v));
        let v_next = axpy(&v, beta, &residual);
        let h_new = hyper(&x_next, &y_next, &v_next);
        let h_old = hyper(&x, &y, &v);
        d = axpy(&h_new, 1.0 - eta, &axpy(&d, -1.0, &h_old));
        (x, y, v) = (x_next, y_next, v_next);

        state = solver.next_iter(&mut oracle, state)?;
        let got: Vec<f64> = [&state.x, &state.y, &state.v, &state.memory[DIRECTION]]
            .into_iter()
            .map(h)
            .collect::<Result<Vec<_>>>()?
            .concat();
        let want = [x.clone(), y.clone(), v.clone(), d.clone()].concat();
        worst = worst.max(rel_err_host(&got, &want));
    }
    Ok(worst)
}
