//! `cargo xtask hypergrad-check`: every estimator and product against a closed form.
//!
//! Runs on `Autodiff<NdArray<f64>>` over random quadratic instances (varying dimensions and
//! condition numbers) and FSLA's least-squares problem. Each row is the worst relative error
//! over all instances.

use anyhow::{bail, Result};
use bilevel_core::linear::{conjugate_gradient, fixed_point, neumann, CgConfig, FixedPointConfig};
use bilevel_core::problems::{
    LeastSquaresBilevel, LeastSquaresSpec, QuadraticBilevel, QuadraticForm, QuadraticSpec,
};
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{rel_err_host, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, Oracle, SecondOrder};
use burn::backend::{Autodiff, NdArray};

type B = Autodiff<NdArray<f64>>;

/// Tolerance of exact quantities (products, gradients, solves to tolerance) in f64.
const TOL_EXACT: f64 = 1e-8;
/// Tolerance of central differences with ε = 1e-6 in f64 (round-off ≈ u/ε ≈ 1e-10 relative).
const TOL_FD: f64 = 1e-6;
const FD_EPS: f64 = 1e-6;

/// Command-line options.
pub struct Options {
    pub seed: u64,
    pub instances: usize,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut opts = Options {
            seed: 0,
            instances: 10,
        };
        crate::parse_flags(args, |name, value| {
            match name {
                "seed" => opts.seed = value.parse()?,
                "instances" => opts.instances = value.parse()?,
                _ => bail!("unknown option --{name} (expected --seed, --instances)"),
            }
            Ok(())
        })?;
        if opts.instances == 0 {
            bail!("--instances must be ≥ 1");
        }
        Ok(opts)
    }
}

/// One check: the worst relative error over instances against its tolerance.
pub struct Row {
    /// Check name, printed as `check=<name>`.
    pub name: &'static str,
    pub rel_err: f64,
    pub tol: f64,
}

impl Row {
    pub fn ok(&self) -> bool {
        self.rel_err.is_finite() && self.rel_err <= self.tol
    }
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "check={} rel_err={:.3e} tol={:.0e} ok={}",
            self.name,
            self.rel_err,
            self.tol,
            self.ok()
        )
    }
}

/// Accumulates the worst error per named check, in first-seen order.
#[derive(Default)]
pub(crate) struct Worst(pub(crate) Vec<Row>);

impl Worst {
    pub(crate) fn record(&mut self, name: &'static str, tol: f64, err: f64) {
        match self.0.iter_mut().find(|r| r.name == name) {
            Some(row) => {
                row.rel_err = if err.is_nan() {
                    f64::NAN
                } else {
                    row.rel_err.max(err)
                }
            }
            None => self.0.push(Row {
                name,
                rel_err: err,
                tol,
            }),
        }
    }
}

fn t(v: &[f64]) -> burn::tensor::Tensor<B, 1> {
    vector(v, &Default::default())
}

fn h(t: burn::tensor::Tensor<B, 1>) -> Result<Vec<f64>> {
    Ok(to_vec(t)?)
}

fn concat(a: Vec<f64>, b: Vec<f64>) -> Vec<f64> {
    a.into_iter().chain(b).collect()
}

/// Runs every check and returns one row per check.
pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let mut worst = Worst::default();
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
            &mut worst,
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
    crate::checks_implicit::run(opts, &mut worst)?;
    crate::checks_stochastic::run(opts, &mut worst)?;
    crate::checks_hessian_free::run(opts, &mut worst)?;
    crate::checks_single_loop::run(opts, &mut worst)?;
    crate::checks_contraction::run(opts, &mut worst)?;
    crate::checks_nonconvex::run(opts, &mut worst)?;
    Ok(worst.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_passes_on_a_few_instances() {
        let rows = run(&Options {
            seed: 3,
            instances: 4,
        })
        .unwrap();
        let names: Vec<_> = rows.iter().map(|r| r.name).collect();
        for expected in [
            "grad_f",
            "hvp_exact",
            "jvp_exact",
            "hvp_fd",
            "jvp_fd",
            "cg_solve",
            "neumann_solve",
            "implicit_hypergrad",
        ] {
            assert!(names.contains(&expected), "missing row {expected}");
        }
        for row in &rows {
            assert!(row.ok(), "{row}");
        }
    }

    #[test]
    fn a_failing_row_is_reported_as_failing() {
        let mut worst = Worst::default();
        worst.record("x", 1e-8, 1e-9);
        worst.record("x", 1e-8, 1e-3);
        worst.record("y", 1e-8, f64::NAN);
        assert!(!worst.0[0].ok() && !worst.0[1].ok());
    }
}
