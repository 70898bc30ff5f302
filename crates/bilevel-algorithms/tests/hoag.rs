//! HOAG on closed-form quadratics: convergence, the backtracking rule (reject, halve, retry from
//! the accepted point), exact oracle counts, the tolerance schedule, exact resume from a
//! checkpoint, a tight single step against ∇Φ, and configuration checks.

mod common;

use bilevel_algorithms::hoag::{self, Hoag, HoagConfig};
use bilevel_core::dense::{axpy, norm};
use bilevel_core::problems::{QuadraticBilevel, QuadraticSpec};
use bilevel_core::tensor::rel_err_host;
use bilevel_core::{BilevelError, Oracle, Solver, State};
use common::implicit::*;
use common::*;

/// `∇²Φ` has eigenvalues in about [1, 3] (see `aid.rs`).
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

fn config(initial_outer_step: f64) -> HoagConfig {
    HoagConfig {
        inner_step: 2.0 / 11.0,
        max_inner_steps: 1000,
        max_cg_steps: 100,
        initial_tolerance: 1e-3,
        tolerance_decay: 0.8,
        min_tolerance: 1e-12,
        initial_outer_step,
    }
}

fn start() -> State<TestBackend> {
    state(&[0.0; 5], &[0.0; 8])
}

fn accepted(st: &State<TestBackend>) -> bool {
    st.scalars[hoag::ACCEPTED] == 1.0
}

#[test]
fn hoag_reaches_a_stationary_point() {
    let p = instance();
    let form = p.closed_form();
    let mut oracle = Oracle::new(&p);
    let mut solver = Hoag::new(config(1.0)).unwrap();
    let first = grad_phi_norm(form, &start().x);
    let end = run(&mut solver, &mut oracle, start(), 45);
    let last = grad_phi_norm(form, &end.x);
    assert!(first > 0.5, "‖∇Φ(x_0)‖ = {first}");
    assert!(last <= 1e-6, "‖∇Φ(x_K)‖ = {last:e}");
    assert_eq!(end.iter, 45);
}

#[test]
fn an_increase_is_rejected_and_retried_with_half_the_step() {
    // A first step of 10 overshoots (L_Φ ≈ 3): the second trial point increases f.
    let p = instance();
    let form = p.closed_form();
    let mut oracle = Oracle::new(&p);
    let mut solver = Hoag::new(config(10.0)).unwrap();
    let x0 = host(&start().x);
    let s1 = solver.next_iter(&mut oracle, start()).unwrap();
    assert!(accepted(&s1));
    let g0 = host(s1.hypergradient.as_ref().unwrap());
    assert!(rel_err_host(&host(&s1.x), &axpy(&x0, -10.0, &g0)) < 1e-15);
    let (c, s2) = one_iter(&mut solver, &mut oracle, s1.clone());
    assert!(
        !accepted(&s2),
        "f went {} → {}",
        s1.outer_loss.unwrap(),
        s2.outer_loss.unwrap()
    );
    assert!(s2.outer_loss.unwrap() > s1.outer_loss.unwrap());
    // Rejected: L doubled, retried from x_0 along ĝ_0, no linear solve.
    assert_eq!(s2.scalars[hoag::LIPSCHITZ], 0.2);
    assert!(rel_err_host(&host(&s2.x), &axpy(&x0, -5.0, &g0)) < 1e-15);
    assert_eq!(host(s2.hypergradient.as_ref().unwrap()), g0);
    let evaluations = s2.scalars[hoag::INNER_EVALUATIONS] as u64;
    assert_eq!(c, counts(evaluations, 1, 0, 0));
    assert_eq!(host(&s2.v), host(&s1.v));
    // Backtracking recovers: the run still converges.
    let end = run(&mut solver, &mut oracle, s2, 45);
    let last = grad_phi_norm(form, &end.x);
    assert!(last <= 1e-6, "‖∇Φ(x_K)‖ = {last:e}");
}

#[test]
fn oracle_counts_match_the_formula() {
    let p = instance();
    let mut oracle = Oracle::new(&p);
    let mut solver = Hoag::new(config(1.0)).unwrap();
    let mut st = start();
    let mut rejected = 0;
    for k in 0..12 {
        let (c, next) = one_iter(&mut solver, &mut oracle, st);
        st = next;
        let (e, prods) = (
            st.scalars[hoag::INNER_EVALUATIONS] as u64,
            st.scalars[hoag::LINEAR_PRODUCTS] as u64,
        );
        if accepted(&st) {
            assert_eq!(c, counts(e, 1, prods, 1), "trial {k}");
            assert!((1..=101).contains(&prods), "trial {k}: {prods}");
        } else {
            assert_eq!(c, counts(e, 1, 0, 0), "trial {k}");
            rejected += 1;
        }
    }
    assert!(rejected >= 1, "this run is known to reject its third trial");
    // The first inner solve stops at the first y with ‖∇_y g‖ ≤ ε_0 (host replica of GD).
    let form = p.closed_form();
    let mut oracle = Oracle::new(&p);
    let st = solver_first(&mut oracle, 1.0);
    let (x, mut y, mut e) = (vec![0.0; 5], vec![0.0; 8], 1);
    while norm(&form.grad_y_g(&x, &y)) > 1e-3 {
        y = axpy(&y, -2.0 / 11.0, &form.grad_y_g(&x, &y));
        e += 1;
    }
    assert_eq!(st.scalars[hoag::INNER_EVALUATIONS] as u64, e);
    assert_eq!(oracle.counts().grad_g, e);
    assert!(rel_err_host(&host(&st.y), &y) < 1e-12);
}

fn solver_first(
    oracle: &mut Oracle<'_, TestBackend, QuadraticBilevel<TestBackend>>,
    step: f64,
) -> State<TestBackend> {
    Hoag::new(config(step))
        .unwrap()
        .next_iter(oracle, start())
        .unwrap()
}

#[test]
fn caps_bound_the_inner_and_linear_work() {
    // Unreachable tolerances: every trial makes exactly the capped work; the second CG call
    // warm-starts from a nonzero v and pays one extra product for its residual.
    let p = instance();
    let form = p.closed_form();
    let x0 = [0.1, 0.2, -0.3, 0.0, 0.5];
    let cfg = HoagConfig {
        max_inner_steps: 3,
        max_cg_steps: 2,
        initial_tolerance: 1e-14,
        min_tolerance: 1e-14,
        initial_outer_step: 0.05,
        ..config(1.0)
    };
    let mut solver = Hoag::new(cfg).unwrap();
    let mut oracle = Oracle::new(&p);
    // Near y*(x_0), so that f decreases by far more than the inexact inner solve perturbs it.
    let y0: Vec<f64> = form.y_star(&x0).unwrap().iter().map(|v| v + 0.01).collect();
    let st = state(&x0, &y0);
    let (c1, st) = one_iter(&mut solver, &mut oracle, st);
    let (c2, st) = one_iter(&mut solver, &mut oracle, st);
    assert!(accepted(&st));
    assert_eq!(c1, counts(3, 1, 2, 1));
    assert_eq!(c2, counts(3, 1, 3, 1));
}

#[test]
fn tolerance_decays_geometrically_to_its_floor() {
    let p = instance();
    let mut oracle = Oracle::new(&p);
    let cfg = HoagConfig {
        initial_tolerance: 1e-2,
        tolerance_decay: 0.5,
        min_tolerance: 1e-4,
        ..config(1.0)
    };
    let mut solver = Hoag::new(cfg).unwrap();
    let mut st = start();
    let mut eps = 1e-2;
    for _ in 0..10 {
        st = solver.next_iter(&mut oracle, st).unwrap();
        eps = f64::max(eps * 0.5, 1e-4);
        assert_eq!(st.scalars[hoag::TOLERANCE], eps);
    }
    assert_eq!(eps, 1e-4);
}

#[test]
fn resume_from_a_checkpoint_is_exact() {
    // Trials 1–4 of this run are rejections: the checkpoint falls inside the backtracking.
    let p = instance();
    let run_from = |st: State<TestBackend>, iters| {
        let mut oracle = Oracle::new(&p);
        run(
            &mut Hoag::new(config(10.0)).unwrap(),
            &mut oracle,
            st,
            iters,
        )
    };
    let straight = run_from(start(), 12);
    let half = run_from(start(), 3);
    assert!(!accepted(&half));
    let record = half.to_record().unwrap();
    let resumed = run_from(State::from_record(&record, &dev()), 9);
    assert_eq!(host(&resumed.x), host(&straight.x));
    assert_eq!(host(&resumed.y), host(&straight.y));
    assert_eq!(resumed.scalars, straight.scalars);
    assert_eq!(resumed.to_record().unwrap(), straight.to_record().unwrap());
}

#[test]
fn a_tight_first_step_uses_the_exact_hypergradient() {
    let p = quadratic(4, 3, 6, 20.0);
    let form = p.closed_form();
    let x0 = [0.7, -1.2, 0.4];
    let cfg = HoagConfig {
        inner_step: 2.0 / 21.0,
        initial_tolerance: 1e-11,
        max_inner_steps: 5000,
        ..config(0.5)
    };
    let mut oracle = Oracle::new(&p);
    let st = Hoag::new(cfg)
        .unwrap()
        .next_iter(&mut oracle, state(&x0, &[0.0; 6]))
        .unwrap();
    let exact = form.hypergradient(&x0).unwrap();
    let err = rel_err_host(&host(st.hypergradient.as_ref().unwrap()), &exact);
    assert!(err < 1e-8, "rel_err {err:e}");
    assert!(rel_err_host(&host(&st.x), &axpy(&x0, -0.5, &exact)) < 1e-8);
}

#[test]
fn invalid_configs_are_rejected() {
    let good = config(1.0);
    assert!(Hoag::new(good).is_ok());
    for cfg in [
        HoagConfig {
            inner_step: 0.0,
            ..good
        },
        HoagConfig {
            inner_step: -0.1,
            ..good
        },
        HoagConfig {
            max_inner_steps: 0,
            ..good
        },
        HoagConfig {
            max_cg_steps: 0,
            ..good
        },
        HoagConfig {
            initial_tolerance: 0.0,
            ..good
        },
        HoagConfig {
            tolerance_decay: 1.0,
            ..good
        },
        HoagConfig {
            tolerance_decay: 0.0,
            ..good
        },
        HoagConfig {
            min_tolerance: -1e-9,
            ..good
        },
        HoagConfig {
            min_tolerance: 1.0,
            ..good
        },
        HoagConfig {
            initial_outer_step: 0.0,
            ..good
        },
        HoagConfig {
            initial_outer_step: f64::INFINITY,
            ..good
        },
    ] {
        assert!(
            matches!(Hoag::new(cfg), Err(BilevelError::InvalidParameter { .. })),
            "{cfg:?} was accepted"
        );
    }
}
