//! AID-BiO (CG and fixed point, constant and increasing inner steps) on closed-form quadratics:
//! convergence to a stationary point of Φ, exact oracle counts, error decreasing in `T` and `N`,
//! agreement with a host replica, warm-start semantics and configuration checks.

mod common;

use bilevel_algorithms::aid::{Aid, AidBatches, AidConfig, InnerSteps, LinearSolver};
use bilevel_core::dense::axpy;
use bilevel_core::problems::{QuadraticBilevel, QuadraticSpec};
use bilevel_core::tensor::rel_err_host;
use bilevel_core::{
    Batch, BilevelError, HypergradientEstimator, Oracle, OuterLoop, OuterOptimizer,
};
use common::hessian_free::LsData;
use common::implicit::*;
use common::*;

/// A well-conditioned instance (`∇²Φ` has eigenvalues in about [1, 3]) so that a short run
/// reaches `‖∇Φ‖ ≤ 1e-6`.
fn instance() -> QuadraticBilevel<TestBackend> {
    QuadraticBilevel::random(
        &QuadraticSpec {
            x_dim: 5,
            y_dim: 8,
            max_curvature: 10.0,
            x_regularization: 1.0,
            seed: 21,
            ..Default::default()
        },
        &dev(),
    )
    .unwrap()
}

fn cg(steps: usize) -> LinearSolver {
    LinearSolver::ConjugateGradient { steps, tol: 0.0 }
}

fn config(inner_steps: InnerSteps, linear_solver: LinearSolver) -> AidConfig {
    AidConfig {
        inner_step: 0.15,
        inner_steps,
        warm_start_inner: true,
        linear_solver,
        warm_start_linear: true,
        batches: AidBatches::default(),
    }
}

/// Runs `iters` AID iterations with SGD step `lr` from `x = 0`, `y = 0` and returns
/// `(‖∇Φ(x_0)‖, ‖∇Φ(x_K)‖)`.
fn converge(cfg: AidConfig, lr: f64, iters: usize) -> (f64, f64) {
    let p = instance();
    let form = p.closed_form();
    let mut oracle = Oracle::new(&p);
    let mut solver = OuterLoop::new(Aid::new(cfg).unwrap(), OuterOptimizer::sgd(lr));
    let start = state(&[0.0; 5], &[0.0; 8]);
    let first = grad_phi_norm(form, &start.x);
    let end = run(&mut solver, &mut oracle, start, iters);
    assert_eq!(end.iter, iters as u64);
    (first, grad_phi_norm(form, &end.x))
}

#[test]
fn aid_cg_reaches_a_stationary_point() {
    let (first, last) = converge(config(InnerSteps::Constant { steps: 5 }, cg(5)), 0.4, 40);
    assert!(
        first > 0.5,
        "‖∇Φ(x_0)‖ = {first}: the start is already stationary"
    );
    assert!(last <= 1e-6, "‖∇Φ(x_K)‖ = {last:e}");
}

#[test]
fn aid_fp_reaches_a_stationary_point() {
    let fp = LinearSolver::FixedPoint {
        step: 0.15,
        steps: 5,
    };
    let (first, last) = converge(config(InnerSteps::Constant { steps: 5 }, fp), 0.4, 40);
    assert!(first > 0.5, "‖∇Φ(x_0)‖ = {first}");
    assert!(last <= 1e-6, "‖∇Φ(x_K)‖ = {last:e}");
}

#[test]
fn aid_increasing_reaches_a_stationary_point() {
    let increasing = InnerSteps::Increasing { scale: 2.0 };
    let (first, last) = converge(config(increasing, cg(5)), 0.4, 40);
    assert!(first > 0.5, "‖∇Φ(x_0)‖ = {first}");
    assert!(last <= 1e-6, "‖∇Φ(x_K)‖ = {last:e}");
}

#[test]
fn increasing_schedule_is_ceil_c_times_fourth_root() {
    let s = InnerSteps::Increasing { scale: 2.0 };
    // (k+1)^{1/4} = 1, 2, 3 at k = 0, 15, 80; just above at k = 1.
    assert_eq!(
        [s.at(0), s.at(1), s.at(15), s.at(16), s.at(80)],
        [2, 3, 4, 5, 6]
    );
    assert_eq!(InnerSteps::Increasing { scale: 0.3 }.at(0), 1);
    assert_eq!(InnerSteps::Constant { steps: 7 }.at(99), 7);
}

/// Counts of consecutive `next_iter` calls, from `v = 0`.
fn counts_of(cfg: AidConfig, iters: usize) -> Vec<bilevel_core::OracleCounts> {
    let p = instance();
    let mut oracle = Oracle::new(&p);
    let mut solver = OuterLoop::new(Aid::new(cfg).unwrap(), OuterOptimizer::sgd(0.1));
    let mut st = state(&[0.3; 5], &[0.0; 8]);
    (0..iters)
        .map(|_| {
            let (c, next) = one_iter(&mut solver, &mut oracle, st.clone());
            st = next;
            c
        })
        .collect()
}

#[test]
fn oracle_counts_match_the_formula() {
    let (t, n) = (4, 6);
    // CG, warm start: N products from v = 0, then N + 1 (the residual of the warm start).
    let c = counts_of(config(InnerSteps::Constant { steps: t }, cg(n)), 3);
    assert_eq!(c[0], counts(4, 1, 6, 1));
    assert_eq!(c[1], counts(4, 1, 7, 1));
    assert_eq!(c[2], counts(4, 1, 7, 1));
    // CG without warm start: always N.
    let cold = AidConfig {
        warm_start_linear: false,
        ..config(InnerSteps::Constant { steps: t }, cg(n))
    };
    assert!(counts_of(cold, 2).iter().all(|c| *c == counts(4, 1, 6, 1)));
    // Fixed point: N from any v₀.
    let fp = LinearSolver::FixedPoint {
        step: 0.1,
        steps: n,
    };
    let c = counts_of(config(InnerSteps::Constant { steps: t }, fp), 2);
    assert!(c.iter().all(|c| *c == counts(4, 1, 6, 1)), "{c:?}");
    // Increasing: T_k = ⌈2 (k+1)^{1/4}⌉ = 2, 3, 3, 3, 3, 4 for k = 0..5.
    let inc = InnerSteps::Increasing { scale: 2.0 };
    let c = counts_of(config(inc, cg(n)), 6);
    let grad_g: Vec<u64> = c.iter().map(|c| c.grad_g).collect();
    assert_eq!(grad_g, [2, 3, 3, 3, 3, 4]);
    assert!(c
        .iter()
        .all(|c| c.grad_f == 1 && c.jvp == 1 && c.f_values + c.g_values == 0));
}

/// `‖ĝ − ∇Φ‖/‖∇Φ‖` of one estimate at a fixed `x`, from `y = 0`, `v = 0`, no warm start.
fn estimate_error(linear: LinearSolver, inner_steps: usize) -> f64 {
    let p = quadratic(5, 4, 8, 10.0);
    let form = p.closed_form();
    let x = [0.5, -1.0, 0.25, 2.0];
    let cfg = AidConfig {
        inner_step: 2.0 / 11.0,
        inner_steps: InnerSteps::Constant { steps: inner_steps },
        warm_start_inner: false,
        linear_solver: linear,
        warm_start_linear: false,
        batches: AidBatches::default(),
    };
    let mut oracle = Oracle::new(&p);
    let mut st = state(&x, &[0.0; 8]);
    let g = Aid::new(cfg)
        .unwrap()
        .estimate(&mut oracle, &mut st)
        .unwrap();
    rel_err_host(&host(&g), &form.hypergradient(&x).unwrap())
}

#[test]
fn error_decreases_as_inner_and_linear_steps_grow() {
    for solver in ["cg", "fp"] {
        let errors: Vec<f64> = [1, 2, 4, 8, 16, 32]
            .into_iter()
            .map(|s| {
                let linear = match solver {
                    "cg" => cg(s),
                    _ => LinearSolver::FixedPoint {
                        step: 2.0 / 11.0,
                        steps: s,
                    },
                };
                estimate_error(linear, s)
            })
            .collect();
        assert!(
            errors.windows(2).all(|w| w[1] < w[0]),
            "{solver}: errors not decreasing: {errors:?}"
        );
        assert!(errors[0] > 0.1, "{solver}: {errors:?}");
        assert!(errors[5] < 1e-2, "{solver}: {errors:?}");
    }
}

/// [`config`]'s warm-started AID-FP with `T` inner steps of `α`, `N` fixed-point steps of `η`.
fn warm_fixed_point(alpha: f64, eta: f64, t_steps: usize, n_steps: usize) -> AidConfig {
    let solver = LinearSolver::FixedPoint {
        step: eta,
        steps: n_steps,
    };
    AidConfig {
        inner_step: alpha,
        ..config(InnerSteps::Constant { steps: t_steps }, solver)
    }
}

#[test]
fn fixed_point_estimate_matches_a_host_replica() {
    // y_T by host GD, v_N by host fixed point from the warm start, ĝ = ∇_x f − Cᵀ v_N.
    let p = quadratic(8, 3, 6, 20.0);
    let form = p.closed_form();
    let (x, y0, v0) = ([0.4, -0.7, 1.1], [0.5; 6], [0.2; 6]);
    let (alpha, eta, t_steps, n_steps) = (0.05, 0.04, 7, 9);
    let cfg = warm_fixed_point(alpha, eta, t_steps, n_steps);
    let mut st = state(&x, &y0);
    st.v = t(&v0);
    let g = Aid::new(cfg)
        .unwrap()
        .estimate(&mut Oracle::new(&p), &mut st)
        .unwrap();
    let y = host_gd(form, &x, &y0, alpha, t_steps);
    let b = form.grad_y_f(&x, &y);
    let mut v = v0.to_vec();
    for _ in 0..n_steps {
        v = axpy(&v, -eta, &axpy(&form.hvp(&v), -1.0, &b));
    }
    let expected = axpy(&form.grad_x_f(&x, &y), -1.0, &form.jvp(&v));
    assert!(rel_err_host(&host(&g), &expected) < 1e-12);
    assert!(rel_err_host(&host(&st.y), &y) < 1e-12);
    assert!(rel_err_host(&host(&st.v), &v) < 1e-12);
    let f = form.f(&x, &y);
    assert!((st.outer_loss.unwrap() - f).abs() <= 1e-12 * f.abs().max(1.0));
}

/// Stochastic AID-FP (module documentation, "Stochastic AID") on a least-squares problem,
/// against a host replica on the closed-form quadratics of its batches: a fresh `S_t` per inner
/// step, then `D_F` for `∇f`, one `D_H` for all `N` products of the linear solve and `D_G` for
/// the Jacobian product, drawn in that order from the state's random stream; and the samples
/// the oracle counts. Fails (tried) when the Hessian products use `D_F`, when the Jacobian
/// product uses `D_H`, when every inner step reuses `S_0`, and when the Hessian products use the
/// full data set.
#[test]
fn stochastic_estimate_matches_a_host_replica_on_its_batches() {
    let rows = 60;
    let data = LsData::correlated(2, 5, rows, 0.1, 3);
    let p = data.problem();
    let (alpha, eta, t_steps, n_steps) = (0.1, 0.1, 3, 4);
    let (s, d_f, d_h, d_g) = (7, 5, 6, 4);
    let batches = AidBatches {
        inner: Some(s),
        outer: Some(d_f),
        hessian: Some(d_h),
        jacobian: Some(d_g),
    };
    let cfg = AidConfig {
        batches,
        ..warm_fixed_point(alpha, eta, t_steps, n_steps)
    };
    let (x, y0, v0) = ([0.3, -0.2], [0.1; 5], [0.2; 5]);
    let mut st = state(&x, &y0);
    st.v = t(&v0);
    let mut rng = st.rng.clone();
    let inner: Vec<Batch> = (0..t_steps)
        .map(|_| rng.batch(Some(rows), Some(s)))
        .collect();
    let d_f_batch = rng.batch(Some(rows), Some(d_f));
    let d_h_batch = rng.batch(Some(rows), Some(d_h));
    let d_g_batch = rng.batch(Some(rows), Some(d_g));
    let mut oracle = Oracle::new(&p);
    let g = Aid::new(cfg)
        .unwrap()
        .estimate(&mut oracle, &mut st)
        .unwrap();

    let mut y = y0.to_vec();
    for batch in &inner {
        let form = data.form(batch, &Batch::Full);
        y = axpy(&y, -alpha, &form.grad_y_g(&x, &y));
    }
    let outer = data.form(&Batch::Full, &d_f_batch);
    let rhs = outer.grad_y_f(&x, &y);
    let hessian = data.form(&d_h_batch, &Batch::Full);
    let mut v = v0.to_vec();
    for _ in 0..n_steps {
        v = axpy(&v, -eta, &axpy(&hessian.hvp(&v), -1.0, &rhs));
    }
    let jacobian = data.form(&d_g_batch, &Batch::Full);
    let expected = axpy(&outer.grad_x_f(&x, &y), -1.0, &jacobian.jvp(&v));
    let err = rel_err_host(&host(&g), &expected);
    assert!(err < 1e-12, "estimate: rel. error {err:.3e}");
    assert!(rel_err_host(&host(&st.y), &y) < 1e-12);
    assert!(rel_err_host(&host(&st.v), &v) < 1e-12);
    let c = oracle.counts();
    assert_eq!(c.samples_g, (t_steps * s + n_steps * d_h + d_g) as u64);
    assert_eq!(c.samples_f, d_f as u64);
}

#[test]
fn warm_starts_decide_whether_previous_iterates_matter() {
    let p = quadratic(3, 3, 5, 10.0);
    let x = [1.0, -2.0, 0.5];
    let estimate = |warm: bool, y0: f64, v0: f64| {
        let cfg = AidConfig {
            warm_start_inner: warm,
            warm_start_linear: warm,
            ..config(InnerSteps::Constant { steps: 3 }, cg(2))
        };
        let mut st = state(&x, &[y0; 5]);
        st.v = t(&[v0; 5]);
        host(
            &Aid::new(cfg)
                .unwrap()
                .estimate(&mut Oracle::new(&p), &mut st)
                .unwrap(),
        )
    };
    assert_eq!(estimate(false, 0.0, 0.0), estimate(false, 3.0, -2.0));
    assert!(rel_err_host(&estimate(true, 0.0, 0.0), &estimate(true, 3.0, -2.0)) > 1e-3);
}

#[test]
fn invalid_configs_are_rejected() {
    let good = config(InnerSteps::Constant { steps: 3 }, cg(3));
    assert!(Aid::new(good).is_ok());
    let bad = [
        AidConfig {
            inner_step: 0.0,
            ..good
        },
        AidConfig {
            inner_step: -0.1,
            ..good
        },
        AidConfig {
            inner_step: f64::NAN,
            ..good
        },
        AidConfig {
            inner_steps: InnerSteps::Constant { steps: 0 },
            ..good
        },
        AidConfig {
            inner_steps: InnerSteps::Increasing { scale: 0.0 },
            ..good
        },
        AidConfig {
            inner_steps: InnerSteps::Increasing {
                scale: f64::INFINITY,
            },
            ..good
        },
        AidConfig {
            linear_solver: cg(0),
            ..good
        },
        AidConfig {
            linear_solver: LinearSolver::ConjugateGradient {
                steps: 3,
                tol: -1.0,
            },
            ..good
        },
        AidConfig {
            linear_solver: LinearSolver::FixedPoint {
                step: 0.1,
                steps: 0,
            },
            ..good
        },
        AidConfig {
            linear_solver: LinearSolver::FixedPoint {
                step: -0.1,
                steps: 3,
            },
            ..good
        },
        AidConfig {
            batches: AidBatches {
                hessian: Some(0),
                ..AidBatches::default()
            },
            ..good
        },
    ];
    for cfg in bad {
        assert!(
            matches!(Aid::new(cfg), Err(BilevelError::InvalidParameter { .. })),
            "{cfg:?} was accepted"
        );
    }
}
