//! The quadratic checks of `cargo xtask hypergrad-check` (gradients, exact and FD products,
//! linear solvers, the implicit hypergradient), on the backend `super::B` (compiled once per CPU
//! backend: see `hypergrad_check`).

use anyhow::Result;
use bilevel_core::linear::{conjugate_gradient, fixed_point, neumann, CgConfig, FixedPointConfig};
use bilevel_core::problems::{
    LeastSquaresBilevel, LeastSquaresSpec, QuadraticBilevel, QuadraticForm, QuadraticSpec,
};
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{rel_err_host, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, Oracle, SecondOrder};

use super::B;
use crate::check_rows::{Options, Worst, FD_EPS, TOL_EXACT, TOL_FD};

fn t(v: &[f64]) -> burn::tensor::Tensor<B, 1> {
    vector(v, &Default::default())
}

fn h(t: burn::tensor::Tensor<B, 1>) -> Result<Vec<f64>> {
    Ok(to_vec(t)?)
}

fn concat(a: Vec<f64>, b: Vec<f64>) -> Vec<f64> {
    a.into_iter().chain(b).collect()
}

/// Runs the quadratic checks on this module's backend `B`, recording the worst errors in
/// `worst`.
pub(crate) fn run(opts: &Options, worst: &mut Worst) -> Result<()> {
    let device = Default::default();
    for i in 0..opts.instances as u64 {
        let seed = opts.seed.wrapping_mul(1_000_003).wrapping_add(i);
        let mut rng = Rng::seed(seed ^ 0x5eed);
        let spec = QuadraticSpec {
            x_dim: 1 + rng.index(8),
            y_dim: 1 + rng.index(12),
            max_curvature: 10f64.powf(0.5 + 1.5 * rng.uniform()),
            seed,
            ..Default::default()
        };
        let quad = QuadraticBilevel::<B>::random(&spec, &device)?;
        let kappa = spec.max_curvature / spec.min_curvature;
        check_instance(
            &quad,
            quad.closed_form(),
            spec.max_curvature,
            kappa,
            &mut rng,
            worst,
        )?;
    }
    // FSLA's least-squares problem (full batch: the closed form is of the full-data problem).
    let ls_spec = LeastSquaresSpec {
        inner_rows: 2_000,
        outer_rows: 2_000,
        seed: opts.seed,
        ..Default::default()
    };
    let ls = LeastSquaresBilevel::<B>::random(&ls_spec, &device)?;
    let mut rng = Rng::seed(opts.seed ^ 0x15);
    let x = rng.normal_vec(ls.x_dim());
    let err = implicit_hypergrad_error(&ls, ls.closed_form(), &x)?;
    worst.record("implicit_hypergrad_least_squares", TOL_EXACT, err);
    Ok(())
}

fn check_instance(
    p: &QuadraticBilevel<B>,
    form: &QuadraticForm,
    max_curvature: f64,
    kappa: f64,
    rng: &mut Rng,
    worst: &mut Worst,
) -> Result<()> {
    let (m, n) = (p.x_dim(), p.y_dim());
    let (x, y, v) = (rng.normal_vec(m), rng.normal_vec(n), rng.normal_vec(n));
    let full = Batch::Full;
    let mut oracle = Oracle::new(p);

    let gf = oracle.grad_f(&t(&x), &t(&y), &full)?;
    let got = concat(h(gf.x)?, h(gf.y)?);
    worst.record(
        "grad_f",
        TOL_EXACT,
        rel_err_host(&got, &concat(form.grad_x_f(&x, &y), form.grad_y_f(&x, &y))),
    );
    let gg = oracle.grad_g(&t(&x), &t(&y), &full)?;
    let got = concat(h(gg.x)?, h(gg.y)?);
    worst.record(
        "grad_g",
        TOL_EXACT,
        rel_err_host(&got, &concat(form.grad_x_g(&x, &y), form.grad_y_g(&x, &y))),
    );

    let (hv, jv) = oracle.hvp_jvp(&t(&x), &t(&y), &t(&v), &full)?;
    worst.record("hvp_exact", TOL_EXACT, rel_err_host(&h(hv)?, &form.hvp(&v)));
    worst.record("jvp_exact", TOL_EXACT, rel_err_host(&h(jv)?, &form.jvp(&v)));

    let mut fd = Oracle::with_mode(p, SecondOrder::FiniteDifference { eps: FD_EPS });
    let (hv, jv) = fd.hvp_jvp(&t(&x), &t(&y), &t(&v), &full)?;
    worst.record("hvp_fd", TOL_FD, rel_err_host(&h(hv)?, &form.hvp(&v)));
    worst.record("jvp_fd", TOL_FD, rel_err_host(&h(jv)?, &form.jvp(&v)));

    // Linear solves of H z = b against a dense solve.
    let b = rng.normal_vec(n);
    let exact = form.h.solve(&b)?;
    let hvp = |z: &burn::tensor::Tensor<B, 1>| oracle_hvp(p, &x, &y, z);
    let cg = conjugate_gradient(
        hvp,
        &t(&b),
        None,
        &CgConfig {
            max_iters: 10 * n + 10,
            tol: 1e-13,
        },
    )?;
    worst.record(
        "cg_solve",
        TOL_EXACT,
        rel_err_host(&h(cg.solution)?, &exact),
    );
    // Contraction factor 1 − 1/κ with η = 1/L: enough terms to reach 1e-13.
    let step = 1.0 / max_curvature;
    let terms = ((1e-13f64).ln() / (1.0 - 1.0 / kappa).ln()).ceil().max(1.0) as usize;
    let fp = fixed_point(
        hvp,
        &t(&b),
        None,
        &FixedPointConfig {
            step,
            max_iters: terms + 1,
            tol: 0.0,
        },
    )?;
    worst.record(
        "fixed_point_solve",
        TOL_EXACT,
        rel_err_host(&h(fp.solution)?, &exact),
    );
    let ns = neumann(|_, z| oracle_hvp(p, &x, &y, z), &t(&b), step, terms)?;
    worst.record(
        "neumann_solve",
        TOL_EXACT,
        rel_err_host(&h(ns.solution)?, &exact),
    );

    worst.record(
        "implicit_hypergrad",
        TOL_EXACT,
        implicit_hypergrad_error(p, form, &x)?,
    );
    Ok(())
}

fn oracle_hvp(
    p: &QuadraticBilevel<B>,
    x: &[f64],
    y: &[f64],
    z: &burn::tensor::Tensor<B, 1>,
) -> bilevel_core::Result<burn::tensor::Tensor<B, 1>> {
    Oracle::new(p).hvp(&t(x), &t(y), z, &Batch::Full)
}

/// `∇_x f − J v` with the exact `y*(x)` and `v` from CG to tolerance, against `∇Φ(x)`.
fn implicit_hypergrad_error<P: BilevelProblem<B>>(
    p: &P,
    form: &QuadraticForm,
    x: &[f64],
) -> Result<f64> {
    let ystar = form.y_star(x)?;
    let (xt, yt) = (t(x), t(&ystar));
    let mut oracle = Oracle::new(p);
    let gf = oracle.grad_f(&xt, &yt, &Batch::Full)?;
    let n = p.y_dim();
    let solve = conjugate_gradient(
        |z| oracle.hvp(&xt, &yt, z, &Batch::Full),
        &gf.y,
        None,
        &CgConfig {
            max_iters: 10 * n + 10,
            tol: 1e-13,
        },
    )?;
    let jv = Oracle::new(p).jvp(&xt, &yt, &solve.solution, &Batch::Full)?;
    let hypergrad = h(gf.x.sub(jv))?;
    Ok(rel_err_host(&hypergrad, &form.hypergradient(x)?))
}
