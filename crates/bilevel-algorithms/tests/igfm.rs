//! IGFM (paper 003, Alg. 2): the two-point estimate and its scaling, exact oracle counts,
//! convergence on a convex-LL quadratic, seeded determinism and exact resume, the uniform choice
//! of the returned iterate, and configuration checks.

mod common;

use bilevel_algorithms::aid::{Aid, AidConfig};
use bilevel_algorithms::igfm::{
    best_iterate, igfm, returned_iterate, IgfmConfig, IgfmEstimator, BEST_VALUE, FEASIBLE_STEPS,
    LOWER_SOLUTION_MINUS, LOWER_SOLUTION_PLUS, VALUE_MINUS, VALUE_PLUS,
};
use bilevel_algorithms::sgm::SgmConfig;
use bilevel_core::problems::LiuHard;
use bilevel_core::{
    BilevelError, Constraint, Oracle, OracleCounts, OuterLoop, OuterOptimizer, Solver, State,
};
use common::nonconvex::*;
use common::*;

type Liu = LiuHard<TestBackend>;

/// SGM with exact steps on liu-hard (`τ = 1/L = 1/2`), `K = 50`: `φ̃(x) = (x − 1)² + ((x − s₀)/25)²`
/// exactly while `(x ± δ − 1)² > 2θ` (see `tests/sgm.rs`).
fn liu_sgm() -> SgmConfig {
    SgmConfig {
        step: 0.5,
        lower_value_steps: 10,
        switching_steps: 50,
        feasibility_threshold: 1e-6,
        lower_constraint: Constraint::Box {
            lower: -10.0,
            upper: 10.0,
        },
    }
}

/// SGM on the quadratic below (`∇²_yy g` spectrum in `[1, 2]`, `τ = 1/L_g`).
fn quad_sgm() -> SgmConfig {
    SgmConfig {
        step: 0.5,
        lower_value_steps: 10,
        switching_steps: 20,
        feasibility_threshold: 1e-6,
        lower_constraint: Constraint::L2Ball { radius: 10.0 },
    }
}

fn quad_igfm() -> IgfmConfig {
    IgfmConfig {
        step: 0.2,
        smoothing_radius: 1e-3,
        lower_solver: quad_sgm(),
        warm_start: false,
    }
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn igfm_estimate_is_the_scaled_two_point_difference() {
    // d_x = 1: ∇̂ = (φ̃(x + δu) − φ̃(x − δu))/(2δ) u is the same for u = ±1, and for the exact
    // quadratic φ̃ above it equals 2(x − 1) + 2(x − s₀)/25².
    let p = liu_hard();
    let (x, s0, n) = (2.5, -1.0, 25.0);
    let mut solver = igfm(IgfmConfig {
        step: 0.25,
        smoothing_radius: 1e-3,
        lower_solver: liu_sgm(),
        warm_start: false,
    })
    .unwrap();
    let mut oracle = Oracle::new(&p);
    let s = solver
        .next_iter(&mut oracle, state(&[x], &[0.0, s0], 1))
        .unwrap();
    let g = host(s.hypergradient.as_ref().unwrap())[0];
    let expected = 2.0 * (x - 1.0) + 2.0 * (x - s0) / (n * n);
    assert!((g - expected).abs() <= 1e-8, "∇̂ = {g}, expected {expected}");
    let exact_phi = |z: f64| Liu::hyper_objective(z) + ((z - s0) / n).powi(2);
    let (plus, minus) = (s.scalars[VALUE_PLUS], s.scalars[VALUE_MINUS]);
    assert!((plus.min(minus) - exact_phi(x - 1e-3)).abs() <= 1e-12);
    assert!((plus.max(minus) - exact_phi(x + 1e-3)).abs() <= 1e-12);
    assert_eq!(host(&s.x)[0], x - 0.25 * g, "x_1 = x_0 − η ∇̂_0");

    // d_x = 2: ∇̂ is parallel to a unit u with ‖∇̂‖ = d_x |φ̃₊ − φ̃₋| / (2δ).
    let q = quadratic(7, 2, 3, 2.0);
    let mut oracle = Oracle::new(&q);
    let mut solver = igfm(quad_igfm()).unwrap();
    let s = solver
        .next_iter(&mut oracle, state(&[0.3, 0.1], &[0.0; 3], 2))
        .unwrap();
    let g = host(s.hypergradient.as_ref().unwrap());
    let norm = (g[0] * g[0] + g[1] * g[1]).sqrt();
    let expected = 2.0 * (s.scalars[VALUE_PLUS] - s.scalars[VALUE_MINUS]).abs() / (2.0 * 1e-3);
    assert!(
        (norm - expected).abs() <= 1e-10 * expected,
        "‖∇̂‖ = {norm}, expected {expected}"
    );
}

#[test]
fn igfm_oracle_counts_per_iteration_are_exact() {
    let p = liu_hard();
    let cfg = IgfmConfig {
        step: 0.25,
        smoothing_radius: 1e-3,
        lower_solver: liu_sgm(),
        warm_start: false,
    };
    let (k0, k) = (10u64, 50u64);
    let mut solver = igfm(cfg).unwrap();
    let mut oracle = Oracle::new(&p);
    let mut s = state(&[3.0], &[0.0, -1.0], 4);
    for _ in 0..3 {
        let before = oracle.counts();
        s = solver.next_iter(&mut oracle, s).unwrap();
        let feasible = s.scalars[FEASIBLE_STEPS] as u64;
        // Far from x* every SGM call has |I| = K/2 (tests/sgm.rs).
        assert_eq!(feasible, k);
        assert_eq!(
            oracle.counts() - before,
            OracleCounts {
                f_values: 2,
                g_values: 2 * (k + 1),
                grad_g: 2 * k0 + 2 * k - feasible,
                grad_f: feasible,
                ..Default::default()
            }
        );
    }
}

/// On a convex-LL quadratic (`x_dim = 2`, `y_dim = 3`), 15 IGFM steps from `x = 0` with `η = 0.2`,
/// `δ = 1e-3` (the paper's), SGM `K₀ = 10`, `K = 20`, `θ = 1e-6`: `‖x_15 − x*‖ ≤ 1e-2` and
/// `Φ(x_15) − Φ* ≤ 1e-4` (measured 1.0e-3 and 9.6e-7 at seed 11; `‖x_0 − x*‖ = 0.41`).
#[test]
fn igfm_solves_a_convex_lower_level_quadratic() {
    let p = quadratic(7, 2, 3, 2.0);
    let form = p.closed_form();
    let x_star = form.x_star().unwrap();
    let mut solver = igfm(quad_igfm()).unwrap();
    let mut oracle = Oracle::new(&p);
    let s = run(
        &mut solver,
        &mut oracle,
        state(&[0.0, 0.0], &[0.0; 3], 11),
        15,
    );
    let x = host(&s.x);
    let dist = ((x[0] - x_star[0]).powi(2) + (x[1] - x_star[1]).powi(2)).sqrt();
    let dist0 = (x_star[0].powi(2) + x_star[1].powi(2)).sqrt();
    let gap = form.phi(&x).unwrap() - form.phi(&x_star).unwrap();
    println!("‖x_0 − x*‖ = {dist0:.3e}, ‖x_T − x*‖ = {dist:.3e}, Φ(x_T) − Φ* = {gap:.3e}");
    assert!(dist0 > 0.3);
    assert!(
        dist <= 1e-2 && gap <= 1e-4,
        "‖x_T − x*‖ = {dist:e}, Φ(x_T) − Φ* = {gap:e}"
    );
    let (best, score) = best_iterate(&s).unwrap();
    assert_eq!(score, s.scalars[BEST_VALUE]);
    assert!(form.phi(&host(&best)).unwrap() - form.phi(&x_star).unwrap() <= 1e-3);
}

/// `warm_start` (a deviation from Alg. 2, off by default): SGM starts each iteration from the mean
/// of the previous `y_out^±`, kept in `State::y`. A warm iteration is a cold one whose `y₀` is that
/// mean: after three warm iterations, one more warm iteration and one cold iteration from the same
/// state give bit-identical `y_out^±`, while the warm method then moves `State::y` on and the cold
/// one leaves it. Fails (tried) when the estimator does not write `State::y` (it stays `y₀ = 0`)
/// and when it writes `y_out⁺` alone instead of the mean.
#[test]
fn igfm_warm_start_carries_the_lower_level_point_across_iterations() {
    let p = quadratic(7, 2, 3, 2.0);
    let config = |warm_start| IgfmConfig {
        lower_solver: SgmConfig {
            lower_value_steps: 4,
            switching_steps: 10,
            ..quad_sgm()
        },
        warm_start,
        ..quad_igfm()
    };
    let mut oracle = Oracle::new(&p);
    let mut warm = igfm(config(true)).unwrap();
    let s3 = run(&mut warm, &mut oracle, state(&[0.0, 0.0], &[0.0; 3], 3), 3);
    let mean = |s: &State<TestBackend>| -> Vec<f64> {
        host(&s.memory[LOWER_SOLUTION_PLUS])
            .iter()
            .zip(host(&s.memory[LOWER_SOLUTION_MINUS]))
            .map(|(a, b)| 0.5 * (a + b))
            .collect()
    };
    assert!(
        max_abs_diff(&host(&s3.y), &mean(&s3)) <= 1e-15,
        "State::y = mean of y_out^±"
    );
    assert!(
        host(&s3.y).iter().any(|v| v.abs() > 1e-3),
        "y has left y₀ = 0"
    );

    let s4_warm = warm.next_iter(&mut oracle, s3.clone()).unwrap();
    let s4_cold = igfm(config(false))
        .unwrap()
        .next_iter(&mut oracle, s3.clone())
        .unwrap();
    for key in [LOWER_SOLUTION_PLUS, LOWER_SOLUTION_MINUS] {
        assert_eq!(
            bits(&host(&s4_warm.memory[key])),
            bits(&host(&s4_cold.memory[key])),
            "{key}: the warm call starts where a cold call from State::y does"
        );
    }
    assert_eq!(bits(&host(&s4_cold.y)), bits(&host(&s3.y)), "cold leaves y");
    assert_eq!(
        bits(&host(&s4_warm.y)),
        bits(&mean(&s4_warm)),
        "warm moves y on"
    );
}

#[test]
fn igfm_is_bit_identical_per_seed_and_resumes_exactly() {
    let p = quadratic(7, 2, 3, 2.0);
    let cheap = IgfmConfig {
        lower_solver: SgmConfig {
            lower_value_steps: 4,
            switching_steps: 10,
            ..quad_sgm()
        },
        ..quad_igfm()
    };
    let go = |seed: u64, iters: usize| {
        let mut solver = igfm(cheap.clone()).unwrap();
        let mut oracle = Oracle::new(&p);
        run(
            &mut solver,
            &mut oracle,
            state(&[0.0, 0.0], &[0.0; 3], seed),
            iters,
        )
    };
    let fingerprint = |s: &State<TestBackend>| {
        let mut v = host(&s.x);
        v.extend(host(&returned_iterate(s).unwrap()));
        v.extend(host(&best_iterate(s).unwrap().0));
        v.push(s.scalars[BEST_VALUE]);
        bits(&v)
    };
    let (a, b, c) = (go(5, 3), go(5, 3), go(6, 3));
    assert_eq!(fingerprint(&a), fingerprint(&b));
    assert_ne!(bits(&host(&a.x)), bits(&host(&c.x)), "the seed must matter");

    // One iteration, a round trip through the checkpoint record, two more.
    let mid = go(5, 1);
    let record = mid.to_record().unwrap();
    let restored = State::<TestBackend>::from_record(&record, &dev());
    let mut solver = igfm(cheap.clone()).unwrap();
    let mut oracle = Oracle::new(&p);
    let resumed = run(&mut solver, &mut oracle, restored, 2);
    assert_eq!(fingerprint(&resumed), fingerprint(&a));
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(u, v)| (u - v).abs())
        .fold(0.0, f64::max)
}

/// IGFM's output is Alg. 2's `x_out` (the reservoir-kept iterate), paired with the mean of the
/// `y_out^±` computed around it in the iteration that kept it; the best-scored iterate and the
/// last evaluated iterate are reported beside it, each with its own lower solutions. Before the
/// first iteration it reports `(x, y)`. A solver with the defaults (AID) reports `(x, y)` even
/// with IGFM's keys in the memory. Fails (tried) with the pre-#19 hooks (output = last iterate
/// `x_T`, `y` = the last `y_out^±`), and with `RETURNED_Y` stored every iteration instead of with
/// `x_out`.
#[test]
fn igfm_reports_x_out_and_the_best_and_last_iterates_beside_it() {
    let p = quadratic(7, 2, 3, 2.0);
    let mut solver = igfm(quad_igfm()).unwrap();
    let mut oracle = Oracle::new(&p);
    let start = state(&[0.0, 0.0], &[0.0; 3], 11);
    assert_eq!(host(&solver.reported_x(&start)), host(&start.x));
    assert_eq!(host(&solver.reported_y(&start)), host(&start.y));
    assert!(solver.reported_alternatives(&start).is_empty());
    // (x_t, mean of y_out^± at x_t ± δu_t) for every iteration.
    let mut s = start;
    let mut evaluated: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
    for _ in 0..6 {
        let x_t = host(&s.x);
        s = solver.next_iter(&mut oracle, s).unwrap();
        let plus = host(&s.memory[LOWER_SOLUTION_PLUS]);
        let minus = host(&s.memory[LOWER_SOLUTION_MINUS]);
        let mean = plus
            .iter()
            .zip(&minus)
            .map(|(a, b)| 0.5 * (a + b))
            .collect();
        evaluated.push((x_t, mean));
    }
    let paired = |x: &[f64]| {
        evaluated
            .iter()
            .find(|(xt, _)| bits(xt) == bits(x))
            .map(|(_, y)| y.clone())
            .expect("a reported x must be an evaluated iterate")
    };
    let out = host(&solver.reported_x(&s));
    assert_eq!(bits(&out), bits(&host(&returned_iterate(&s).unwrap())));
    assert_ne!(bits(&out), bits(&host(&s.x)), "x_T is never returned");
    assert!(max_abs_diff(&host(&solver.reported_y(&s)), &paired(&out)) <= 1e-12);
    assert_eq!(host(&s.y), vec![0.0; 3], "IGFM leaves y at y₀");
    let alternatives = solver.reported_alternatives(&s);
    let names: Vec<&str> = alternatives.iter().map(|a| a.name).collect();
    assert_eq!(names, ["best", "last"]);
    let best = host(&alternatives[0].x);
    assert_eq!(bits(&best), bits(&host(&best_iterate(&s).unwrap().0)));
    assert!(max_abs_diff(&host(&alternatives[0].y), &paired(&best)) <= 1e-12);
    let last = &evaluated[5];
    assert_eq!(bits(&host(&alternatives[1].x)), bits(&last.0));
    assert!(max_abs_diff(&host(&alternatives[1].y), &last.1) <= 1e-12);
    // Here x_out is not the last evaluated iterate, so its y differs from the last y_out^±.
    assert_ne!(bits(&out), bits(&last.0));
    assert!(max_abs_diff(&paired(&out), &last.1) > 1e-6);

    let mut aid = OuterLoop::new(
        Aid::new(AidConfig::default()).unwrap(),
        OuterOptimizer::sgd(0.1),
    );
    assert_eq!(bits(&host(&aid.reported_x(&s))), bits(&host(&s.x)));
    assert!(max_abs_diff(&host(&aid.reported_y(&s)), &host(&s.y)) <= 1e-12);
    assert!(aid.reported_alternatives(&s).is_empty());
    let a = aid
        .next_iter(&mut oracle, state(&[0.0, 0.0], &[0.0; 3], 11))
        .unwrap();
    assert!(max_abs_diff(&host(&a.y), &[0.0; 3]) > 0.1, "AID moves y");
    assert!(max_abs_diff(&host(&aid.reported_y(&a)), &host(&a.y)) <= 1e-12);
}

/// The returned iterate is uniform over `x_0..x_{T−1}` (reservoir sampling): over 90 seeded runs
/// of `T = 3` each index is kept 30 times in expectation (standard deviation 4.5); each count must
/// lie in `[15, 45]` (±3.3σ), and the final `x_T` must never be returned.
#[test]
fn igfm_returns_a_uniformly_chosen_iterate() {
    let p = liu_hard();
    let cheap = IgfmConfig {
        step: 0.25,
        smoothing_radius: 1e-3,
        lower_solver: SgmConfig {
            lower_value_steps: 1,
            switching_steps: 2,
            ..liu_sgm()
        },
        warm_start: false,
    };
    let mut hits = [0usize; 3];
    for seed in 0..90 {
        let mut solver = igfm(cheap.clone()).unwrap();
        let mut oracle = Oracle::new(&p);
        let mut s = state(&[3.0], &[0.0, -1.0], seed);
        let mut iterates = Vec::new();
        for _ in 0..3 {
            iterates.push(host(&s.x)[0]);
            s = solver.next_iter(&mut oracle, s).unwrap();
        }
        let kept = host(&returned_iterate(&s).unwrap())[0];
        let index = iterates
            .iter()
            .position(|&x| x.to_bits() == kept.to_bits())
            .expect("the returned iterate must be one of x_0..x_{T−1}");
        hits[index] += 1;
    }
    assert!(
        hits.iter().all(|&h| (15..=45).contains(&h)),
        "counts {hits:?}"
    );
}

#[test]
fn invalid_igfm_configs_are_rejected() {
    let ok = quad_igfm();
    assert!(IgfmEstimator::new(ok.clone()).is_ok());
    let bad = [
        IgfmConfig {
            step: 0.0,
            ..ok.clone()
        },
        IgfmConfig {
            step: f64::NAN,
            ..ok.clone()
        },
        IgfmConfig {
            smoothing_radius: 0.0,
            ..ok.clone()
        },
        IgfmConfig {
            smoothing_radius: -1e-3,
            ..ok.clone()
        },
        IgfmConfig {
            smoothing_radius: f64::INFINITY,
            ..ok.clone()
        },
        IgfmConfig {
            lower_solver: SgmConfig {
                switching_steps: 0,
                ..quad_sgm()
            },
            ..ok.clone()
        },
        IgfmConfig {
            lower_solver: SgmConfig {
                step: -1.0,
                ..quad_sgm()
            },
            ..ok.clone()
        },
    ];
    for cfg in bad {
        assert!(
            matches!(
                igfm(cfg.clone()),
                Err(BilevelError::InvalidParameter { .. })
            ),
            "{cfg:?}"
        );
        assert!(matches!(
            cfg.validate(),
            Err(BilevelError::InvalidParameter { .. })
        ));
    }
}
