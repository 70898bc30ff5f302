//! stocBiO (paper 004, Alg. 2–3): convergence on FSLA's least-squares problem, exact oracle
//! counts and batch schedule, the full-batch estimate against the closed-form truncated series,
//! reproducibility and parameter validation.

mod common;

use bilevel_algorithms::stocbio::{HessianBatch, StocBio, StocBioConfig};
use bilevel_core::dense::norm;
use bilevel_core::tensor::rel_err_host;
use bilevel_core::{HypergradientEstimator, Oracle, OuterLoop, OuterOptimizer, Solver};
use common::stochastic::*;
use common::*;

fn config() -> StocBioConfig {
    StocBioConfig {
        inner_steps: 2,
        inner_step: 0.3,
        inner_batch: Some(20),
        outer_batch: Some(20),
        jacobian_batch: Some(20),
        hessian_batch: HessianBatch::Fixed(Some(20)),
        neumann_terms: 6,
        neumann_step: 0.5,
    }
}

fn stocbio(config: StocBioConfig) -> OuterLoop<StocBio> {
    OuterLoop::new(StocBio::new(config).unwrap(), OuterOptimizer::sgd(0.3))
}

/// From `‖x_0 − x*‖ ≈ 10` (`y_0 = 0`), 100 iterations with batches of 20 settle at the noise
/// floor of a constant step, `‖∇Φ‖ ≈ 1e-3` for label noise 0.01: measured reduction 5.9e3× here
/// (2.5e3×–1.7e4× over six seeds of problem, start and run).
#[test]
fn reduces_true_hypergradient_norm_1000x() {
    let p = correlated(2, 5, 0.01, 0);
    let x0 = far_start(&p, 10.0, 10);
    let initial = grad_phi_norm(&p, &x0);
    let mut oracle = Oracle::new(&p);
    let (_, norms) = run(
        &mut stocbio(config()),
        &mut oracle,
        state(&p, &x0, 0),
        100,
        p.closed_form(),
    )
    .unwrap();
    let factor = reduction(initial, &norms);
    println!("stocBiO: ‖∇Φ‖ reduced {factor:.0}×");
    assert!(
        factor >= 1000.0,
        "‖∇Φ‖ {initial:.3e} → {:.3e}: only {factor:.0}×",
        norms.last().unwrap()
    );
}

#[test]
fn oracle_counts_per_iteration_match_the_formula() {
    let p = correlated(2, 5, 0.1, 1);
    let (t_steps, s, d_f, d_g, b, q) = (3, 7, 5, 4, 6, 4);
    let cfg = StocBioConfig {
        inner_steps: t_steps,
        inner_batch: Some(s),
        outer_batch: Some(d_f),
        jacobian_batch: Some(d_g),
        hessian_batch: HessianBatch::Fixed(Some(b)),
        neumann_terms: q,
        ..config()
    };
    let mut solver = stocbio(cfg);
    let mut oracle = Oracle::new(&p);
    let mut st = state(&p, &[0.5, -0.5], 3);
    for _ in 0..3 {
        let (c, next) = one_iter(&mut solver, &mut oracle, st);
        st = next;
        assert_eq!(
            (c.grad_g, c.grad_f, c.hvp, c.jvp),
            (t_steps as u64, 1, q as u64, 1)
        );
        assert_eq!(c.samples_g, (t_steps * s + q * b + d_g) as u64);
        assert_eq!(c.samples_f, d_f as u64);
        assert_eq!((c.f_values, c.g_values), (0, 0));
    }
    assert_eq!(st.iter, 3);

    // `None` is the full data set: every evaluation counts all rows.
    let full = StocBioConfig {
        inner_batch: None,
        outer_batch: None,
        jacobian_batch: None,
        hessian_batch: HessianBatch::Fixed(None),
        ..cfg
    };
    let (c, _) = one_iter(&mut stocbio(full), &mut oracle, st);
    assert_eq!(c.samples_g, ((t_steps + q + 1) * ROWS) as u64);
    assert_eq!(c.samples_f, ROWS as u64);
}

/// Prop. 3: `|B_{Q+1−i}| = B·Q·(1 − ημ)^{i−1}`; Alg. 3 applies `B_Q` first, so the batches in
/// the order of the products are 10, 7.5→8, 5.625→6, 4.22→5, 3.16→4 for `B = 2`, `Q = 5`,
/// `ημ = 0.25`. The recorded batches show that order, that every product draws a fresh batch,
/// and the sample count.
#[test]
fn proposition3_batches_decay_in_the_order_of_the_products() {
    let schedule = HessianBatch::proposition3(2, 5, 0.5, 0.5).unwrap();
    assert_eq!(
        schedule,
        HessianBatch::Geometric {
            first: 10,
            ratio: 0.75
        }
    );
    let expected = [10, 8, 6, 5, 4];
    let got: Vec<_> = (1..=5).map(|j| schedule.size(j).unwrap()).collect();
    assert_eq!(got, expected);
    // Exact products stay exact (10·0.8 = 8.000000000000002 is not rounded up to 9).
    let exact = HessianBatch::Geometric {
        first: 10,
        ratio: 0.8,
    };
    assert_eq!(exact.size(2), Some(8));

    let p = correlated(2, 5, 0.1, 2);
    let rec = Recording::new(&p);
    let cfg = StocBioConfig {
        inner_steps: 2,
        inner_batch: Some(3),
        outer_batch: Some(9),
        jacobian_batch: Some(7),
        hessian_batch: schedule,
        neumann_terms: 5,
        ..config()
    };
    let mut solver = stocbio(cfg);
    let mut oracle = Oracle::new(&rec);
    let (c, _) = one_iter(&mut solver, &mut oracle, state(&p, &[0.1, 0.2], 4));
    assert_eq!(c.samples_g, (2 * 3 + 33 + 7) as u64);
    let inner = rec.take(Loss::Inner);
    let want: Vec<Option<usize>> = [3, 3, 10, 8, 6, 5, 4, 7].iter().map(|&n| Some(n)).collect();
    assert_eq!(sizes(&inner), want);
    // B_1..B_Q are independent draws (a shared batch would bias E Π(I − ηH(B_j))).
    let hessian = &inner[2..7];
    for i in 0..hessian.len() {
        for j in 0..i {
            assert_ne!(hessian[i], hessian[j]);
        }
    }
    assert_ne!(inner[0], inner[1]);
}

/// With full batches at `y = y*(x)` the estimate is deterministic:
/// `∇_x f − C̄ᵀ η Σ_{q=0}^{Q} (I − ηH̄)^q ∇_y f` (`Q + 1` terms), and it tends to `∇Φ(x)`.
/// On a problem whose `f` depends on `x`, so that every term shows: fails (tried) with
/// `∇_x F`'s sign flipped, which passed every stocBiO test on the `x`-free problem before #19.
#[test]
fn full_batch_estimate_is_the_truncated_series_of_q_plus_one_terms() {
    let p = coupled(2, 5, 0.1, 3);
    let form = p.closed_form();
    let x = vec![0.7, -1.3];
    let y_star = form.y_star(&x).unwrap();
    let mut oracle = Oracle::new(&p);
    for (terms, step) in [(3usize, 0.4), (80, 0.5)] {
        let mut estimator = StocBio::new(StocBioConfig {
            inner_steps: 1,
            inner_batch: None,
            outer_batch: None,
            jacobian_batch: None,
            hessian_batch: HessianBatch::Fixed(None),
            neumann_terms: terms,
            neumann_step: step,
            ..config()
        })
        .unwrap();
        let mut st = bilevel_core::State::new(t(&x), t(&y_star), 0);
        let g = host(&estimator.estimate(&mut oracle, &mut st).unwrap());
        let v = truncated_neumann(form, &x, &y_star, step, terms + 1);
        let expected = estimate_from_v(form, &x, &y_star, &v);
        let grad_x_f = form.grad_x_f(&x, &y_star);
        assert!(
            norm(&grad_x_f) > 0.1 * norm(&expected),
            "∇_x F too small to see"
        );
        assert!(rel_err_host(&g, &expected) < 1e-12, "{g:?} vs {expected:?}");
        // The estimator keeps y_T and v_Q in the state.
        assert!(rel_err_host(&host(&st.v), &v) < 1e-12);
        assert!(rel_err_host(&host(&st.y), &y_star) < 1e-12);
        let exact = form.hypergradient(&x).unwrap();
        let gap = rel_err_host(&g, &exact);
        if terms == 80 {
            assert!(gap < 1e-9, "truncation at Q = 80 still {gap:e}");
        } else {
            // One term fewer would also be far off: the check above is not vacuous.
            let fewer = estimate_from_v(
                form,
                &x,
                &y_star,
                &truncated_neumann(form, &x, &y_star, step, terms),
            );
            assert!(rel_err_host(&g, &fewer) > 1e-3 && gap > 1e-3);
        }
    }
}

fn run_iterates(seed: u64) -> (Vec<f64>, Vec<f64>) {
    let p = correlated(2, 5, 0.1, 4);
    let mut oracle = Oracle::new(&p);
    let (st, _) = run(
        &mut stocbio(config()),
        &mut oracle,
        state(&p, &[1.0, -2.0], seed),
        5,
        p.closed_form(),
    )
    .unwrap();
    (host(&st.x), host(&st.y))
}

#[test]
fn same_seed_is_bit_identical_and_other_seeds_differ() {
    let (x1, y1) = run_iterates(11);
    let (x2, y2) = run_iterates(11);
    assert_eq!(x1, x2);
    assert_eq!(y1, y2);
    let (x3, _) = run_iterates(12);
    assert_ne!(x1, x3);
    assert!(norm(&bilevel_core::dense::axpy(&x1, -1.0, &x3)) > 1e-6);
}

#[test]
fn invalid_configs_are_rejected() {
    let ok = config();
    assert!(ok.validate().is_ok());
    let cases: Vec<(StocBioConfig, &str)> = vec![
        (
            StocBioConfig {
                inner_steps: 0,
                ..ok
            },
            "inner_steps",
        ),
        (
            StocBioConfig {
                inner_step: 0.0,
                ..ok
            },
            "inner_step",
        ),
        (
            StocBioConfig {
                inner_step: f64::NAN,
                ..ok
            },
            "inner_step",
        ),
        (
            StocBioConfig {
                inner_batch: Some(0),
                ..ok
            },
            "inner_batch",
        ),
        (
            StocBioConfig {
                outer_batch: Some(0),
                ..ok
            },
            "outer_batch",
        ),
        (
            StocBioConfig {
                jacobian_batch: Some(0),
                ..ok
            },
            "jacobian_batch",
        ),
        (
            StocBioConfig {
                hessian_batch: HessianBatch::Fixed(Some(0)),
                ..ok
            },
            "hessian_batch",
        ),
        (
            StocBioConfig {
                hessian_batch: HessianBatch::Geometric {
                    first: 0,
                    ratio: 0.5,
                },
                ..ok
            },
            "hessian_batch",
        ),
        (
            StocBioConfig {
                hessian_batch: HessianBatch::Geometric {
                    first: 4,
                    ratio: 1.5,
                },
                ..ok
            },
            "hessian_batch_ratio",
        ),
        (
            StocBioConfig {
                neumann_terms: 0,
                ..ok
            },
            "neumann_terms",
        ),
        (
            StocBioConfig {
                neumann_step: -0.1,
                ..ok
            },
            "neumann_step",
        ),
    ];
    for (cfg, name) in cases {
        assert!(is_invalid(cfg.validate(), name), "{name}: {cfg:?}");
        // Through the solver, before a run and inside an iteration.
        // The constructor refuses it (fails if `new` did not validate, as before issue 21's
        // item 13); a struct literal bypasses it, and the solver still refuses to run.
        assert!(is_invalid(StocBio::new(cfg), name));
        let mut s = OuterLoop::new(StocBio { config: cfg }, OuterOptimizer::sgd(0.3));
        assert!(is_invalid(Solver::<TestBackend>::validate(&s), name));
        let p = correlated(2, 5, 0.1, 5);
        let mut oracle = Oracle::new(&p);
        assert!(is_invalid(
            s.next_iter(&mut oracle, state(&p, &[0.0, 0.0], 0)),
            name
        ));
    }
    assert!(is_invalid(
        HessianBatch::proposition3(2, 5, 1.0, 1.0),
        "hessian_batch"
    ));
    assert!(is_invalid(
        Solver::<TestBackend>::validate(&OuterLoop::new(
            StocBio::new(ok).unwrap(),
            OuterOptimizer::sgd(-1.0)
        )),
        "outer_lr"
    ));
}

/// Issue 21, item 11: stocBiO's default Neumann step η = 0.5 on a problem with `L = 10`
/// (η·L = 5 > 2, where the series diverges) is reported before the run, naming the key, and
/// refused under `strict`; η = 0.15 (η·L = 1.5) and the default inner step 0.1 pass. Fails
/// when stocBiO does not declare its Neumann step, or declares the inner step in its place.
#[test]
fn a_neumann_step_above_two_over_l_is_reported_before_the_run() {
    use bilevel_core::preflight::PreflightConfig;
    use bilevel_core::problems::{QuadraticBilevel, QuadraticSpec};
    use bilevel_core::{Executor, ExecutorConfig, State};
    let spec = QuadraticSpec {
        min_curvature: 1.0,
        max_curvature: 10.0,
        ..Default::default()
    };
    let p = QuadraticBilevel::<TestBackend>::random(&spec, &dev()).unwrap();
    let start = || State::new(t(&[0.0; 5]), t(&[0.0; 8]), 0);
    let keys = |neumann_step: f64, strict: bool| {
        let cfg = StocBioConfig {
            neumann_step,
            ..StocBioConfig::default()
        };
        Executor::new(&p, stocbio(cfg))
            .configure(|c| ExecutorConfig {
                max_iters: 1,
                preflight: PreflightConfig {
                    strict,
                    ..c.preflight
                },
                ..c
            })
            .run(start())
            .map(|out| out.warnings.into_iter().map(|w| w.key).collect::<Vec<_>>())
    };
    let default = keys(StocBioConfig::default().neumann_step, false).unwrap();
    assert!(default.contains(&"neumann_step".to_string()), "{default:?}");
    assert!(!default.contains(&"inner_step".to_string()), "{default:?}");
    let small = keys(0.15, false).unwrap();
    assert!(!small.contains(&"neumann_step".to_string()), "{small:?}");
    // Under strict the first warning refuses the run (here the batch sizes the deterministic
    // quadratic ignores, listed before the steps).
    assert!(keys(StocBioConfig::default().neumann_step, true).is_err());
}
