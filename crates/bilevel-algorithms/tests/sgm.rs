//! SGM (paper 003, Alg. 1): the printed rule against a host replica and a closed-form trajectory
//! on liu-hard, accuracy on a strongly convex lower level, exact oracle counts, determinism and
//! configuration checks.

mod common;

use bilevel_algorithms::sgm::{Sgm, SgmConfig};
use bilevel_core::problems::LiuHard;
use bilevel_core::{BilevelError, Constraint, Oracle, OracleCounts};
use common::nonconvex::*;
use common::*;

type Liu = LiuHard<TestBackend>;

/// Alg. 1 on liu-hard in plain `f64` with the host formulas of [`LiuHard`]: independent of burn,
/// the oracle and the Rust implementation under test. Returns `(y_out, ĝ*, |I|, y_K)`.
fn host_sgm(cfg: &SgmConfig, x: f64, y0: [f64; 2]) -> ([f64; 2], f64, usize, [f64; 2]) {
    let project = |y: [f64; 2]| match cfg.lower_constraint {
        Constraint::Box { lower, upper } => [y[0].clamp(lower, upper), y[1].clamp(lower, upper)],
        Constraint::Unconstrained => y,
        _ => unimplemented!("the replica handles boxes only"),
    };
    let grad_g = |y: [f64; 2]| [2.0 * y[0] - 2.0 * x, 0.0];
    let grad_f = |y: [f64; 2]| [2.0 * (y[0] - 1.0), -2.0 * (x - y[1])];
    let step = |y: [f64; 2], g: [f64; 2]| project([y[0] - cfg.step * g[0], y[1] - cfg.step * g[1]]);
    let mut y_hat = y0;
    for _ in 0..cfg.lower_value_steps {
        y_hat = step(y_hat, grad_g(y_hat));
    }
    let g_hat = Liu::lower_value(x, y_hat);
    let (mut y, mut sum, mut feasible) = (y0, [0.0, 0.0], 0usize);
    for _ in 0..cfg.switching_steps {
        if Liu::lower_value(x, y) - g_hat <= 2.0 * cfg.feasibility_threshold {
            feasible += 1;
            sum = [sum[0] + y[0], sum[1] + y[1]];
            y = step(y, grad_f(y));
        } else {
            y = step(y, grad_g(y));
        }
    }
    let n = feasible as f64;
    ([sum[0] / n, sum[1] / n], g_hat, feasible, y)
}

fn liu_cfg(step: f64, lower: f64, upper: f64) -> SgmConfig {
    SgmConfig {
        step,
        lower_value_steps: 30,
        switching_steps: 80,
        feasibility_threshold: 1e-4,
        lower_constraint: Constraint::Box { lower, upper },
    }
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(u, v)| (u - v).abs())
        .fold(0.0, f64::max)
}

#[test]
fn sgm_matches_a_host_replica_of_algorithm_1_on_liu_hard() {
    let p = liu_hard();
    // τ = 0.1 switches irregularly; the box [−2, 2]² binds at x = 3 (Y*(x) ∩ Y = {y₁ = 2}).
    for (cfg, x, y0) in [
        (liu_cfg(0.1, -10.0, 10.0), 3.0, [0.0, -1.0]),
        (liu_cfg(0.1, -10.0, 10.0), 0.4, [2.0, 5.0]),
        (liu_cfg(0.1, -2.0, 2.0), 3.0, [0.0, -1.0]),
        (liu_cfg(0.3, -10.0, 10.0), -1.5, [1.0, 0.0]),
    ] {
        let mut oracle = Oracle::new(&p);
        let out = Sgm::new(cfg.clone())
            .unwrap()
            .solve(&mut oracle, &t(&[x]), t(&y0))
            .unwrap();
        let (y_out, g_hat, feasible, y_last) = host_sgm(&cfg, x, y0);
        assert!(
            feasible > 1 && feasible < cfg.switching_steps,
            "|I| = {feasible}: no switching"
        );
        assert_eq!(out.feasible_steps, feasible, "x = {x}, τ = {}", cfg.step);
        let err = max_abs_diff(&host(&out.solution), &y_out)
            .max(max_abs_diff(&host(&out.last_iterate), &y_last))
            .max((out.lower_value_estimate - g_hat).abs());
        assert!(
            err <= 1e-12,
            "x = {x}, τ = {}: max deviation {err:e}",
            cfg.step
        );
    }
}

/// With `τ = 1/L = 1/2` every step on liu-hard is exact: from `y₀ = (0, s₀)` the feasible
/// iterates are `y₁ = (x, s₀)` and `y₃ = y₅ = … = (x, x)` (each `f` step lands on `(1, x)`, which
/// is infeasible when `(x − 1)² > 2θ`). So `|I| = K/2`, `y_out = (x, x − (x − s₀)/(K/2))` and
/// `f(x, y_out) − φ(x) = ((x − s₀)/(K/2))²`: the price of averaging from `y₀` (Alg. 1 line 13).
#[test]
fn sgm_output_on_liu_hard_with_exact_steps_is_the_predicted_average() {
    let p = liu_hard();
    let (x, s0, k) = (3.0, -1.0, 50usize);
    let cfg = SgmConfig {
        step: 0.5,
        lower_value_steps: 10,
        switching_steps: k,
        feasibility_threshold: 1e-6,
        lower_constraint: Constraint::Box {
            lower: -10.0,
            upper: 10.0,
        },
    };
    let mut oracle = Oracle::new(&p);
    let out = Sgm::new(cfg)
        .unwrap()
        .solve(&mut oracle, &t(&[x]), t(&[0.0, s0]))
        .unwrap();
    let n = (k / 2) as f64;
    assert_eq!(out.feasible_steps, k / 2);
    let y = host(&out.solution);
    let expected = [x, x - (x - s0) / n];
    assert!(
        max_abs_diff(&y, &expected) <= 1e-12,
        "y_out = {y:?}, expected {expected:?}"
    );
    assert!(max_abs_diff(&host(&out.last_iterate), &[1.0, x]) <= 1e-12);
    assert!((out.lower_value_estimate - Liu::lower_optimal_value(x)).abs() <= 1e-12);
    let upper_gap = Liu::upper_value(x, [y[0], y[1]]) - Liu::hyper_objective(x);
    assert!(
        (upper_gap - ((x - s0) / n).powi(2)).abs() <= 1e-12,
        "f − φ = {upper_gap:e}"
    );
}

/// A strongly convex lower level (unique `y*(x)`): `ζ = 5e-3` with `θ = 1e-6`, `τ = 1/L_g`.
/// Measured: `‖y_out − y*‖ ≈ 1.3e-3`, `|f − φ| ≈ 1.8e-3`, `g − g* ≈ 9e-7` (the error is
/// `O(√θ)` in `y`: `g − g* ≤ 2θ` only pins `y` to a ball of radius `√(4θ/μ)`).
#[test]
fn sgm_solves_a_strongly_convex_lower_level_to_zeta() {
    let p = quadratic(7, 2, 3, 2.0);
    let form = p.closed_form();
    let zeta = 5e-3;
    let cfg = SgmConfig {
        step: 0.5,
        lower_value_steps: 40,
        switching_steps: 200,
        feasibility_threshold: 1e-6,
        lower_constraint: Constraint::L2Ball { radius: 10.0 },
    };
    for x in [[0.7, -1.2], [-0.3, 0.4]] {
        let y_star = form.y_star(&x).unwrap();
        let mut oracle = Oracle::new(&p);
        let out = Sgm::new(cfg.clone())
            .unwrap()
            .solve(&mut oracle, &t(&x), t(&[0.0; 3]))
            .unwrap();
        let y = host(&out.solution);
        let dist = y
            .iter()
            .zip(&y_star)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        let upper_gap = (form.f(&x, &y) - form.phi(&x).unwrap()).abs();
        let lower_gap = quadratic_g(form, &x, &y) - quadratic_g(form, &x, &y_star);
        assert!(
            upper_gap <= zeta && (0.0..=zeta).contains(&lower_gap) && dist <= 5e-3,
            "x = {x:?}: |f − φ| = {upper_gap:e}, g − g* = {lower_gap:e}, ‖y − y*‖ = {dist:e}"
        );
    }
}

#[test]
fn sgm_oracle_counts_are_exact() {
    let p = quadratic(7, 2, 3, 2.0);
    let (k0, k) = (12u64, 40u64);
    let cfg = SgmConfig {
        step: 0.5,
        lower_value_steps: k0 as usize,
        switching_steps: k as usize,
        feasibility_threshold: 1e-6,
        lower_constraint: Constraint::L2Ball { radius: 10.0 },
    };
    let mut oracle = Oracle::new(&p);
    let out = Sgm::new(cfg)
        .unwrap()
        .solve(&mut oracle, &t(&[0.7, -1.2]), t(&[0.0; 3]))
        .unwrap();
    let feasible = out.feasible_steps as u64;
    assert!(
        feasible > 0 && feasible < k,
        "|I| = {feasible}: both branches must run"
    );
    assert_eq!(
        oracle.counts(),
        OracleCounts {
            g_values: k + 1,
            grad_g: k0 + k - feasible,
            grad_f: feasible,
            ..Default::default()
        }
    );
}

#[test]
fn sgm_is_deterministic() {
    let p = quadratic(3, 2, 4, 3.0);
    let cfg = SgmConfig {
        step: 0.3,
        lower_value_steps: 10,
        switching_steps: 40,
        feasibility_threshold: 1e-5,
        lower_constraint: Constraint::LInfBall { radius: 5.0 },
    };
    let solve = || {
        let mut oracle = Oracle::new(&p);
        let out = Sgm::new(cfg.clone())
            .unwrap()
            .solve(&mut oracle, &t(&[0.2, 0.9]), t(&[1.0, -1.0, 0.5, 0.0]))
            .unwrap();
        (
            host(&out.solution),
            out.lower_value_estimate.to_bits(),
            out.feasible_steps,
        )
    };
    let (a, b) = (solve(), solve());
    assert_eq!(
        a.0.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.0.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!((a.1, a.2), (b.1, b.2));
}

#[test]
fn sgm_without_a_feasible_iterate_is_an_error() {
    // K = 1 and y₀ far from Y*(x): the only iterate fails the test, so y_out is undefined.
    let p = liu_hard();
    let cfg = SgmConfig {
        switching_steps: 1,
        ..liu_cfg(0.1, -10.0, 10.0)
    };
    let mut oracle = Oracle::new(&p);
    let err = Sgm::new(cfg)
        .unwrap()
        .solve(&mut oracle, &t(&[3.0]), t(&[0.0, 0.0]))
        .unwrap_err();
    assert!(
        matches!(err, BilevelError::InvalidParameter { .. }),
        "{err:?}"
    );
}

#[test]
fn invalid_sgm_configs_are_rejected() {
    let ok = liu_cfg(0.1, -1.0, 1.0);
    assert!(Sgm::new(ok.clone()).is_ok());
    let bad = [
        SgmConfig {
            step: 0.0,
            ..ok.clone()
        },
        SgmConfig {
            step: -0.1,
            ..ok.clone()
        },
        SgmConfig {
            step: f64::NAN,
            ..ok.clone()
        },
        SgmConfig {
            step: f64::INFINITY,
            ..ok.clone()
        },
        SgmConfig {
            lower_value_steps: 0,
            ..ok.clone()
        },
        SgmConfig {
            switching_steps: 0,
            ..ok.clone()
        },
        SgmConfig {
            feasibility_threshold: 0.0,
            ..ok.clone()
        },
        SgmConfig {
            feasibility_threshold: f64::NAN,
            ..ok.clone()
        },
        SgmConfig {
            lower_constraint: Constraint::Box {
                lower: 1.0,
                upper: -1.0,
            },
            ..ok.clone()
        },
        SgmConfig {
            lower_constraint: Constraint::L2Ball { radius: -1.0 },
            ..ok.clone()
        },
    ];
    for cfg in bad {
        let err = Sgm::new(cfg.clone()).unwrap_err();
        assert!(
            matches!(err, BilevelError::InvalidParameter { .. }),
            "{cfg:?}: {err:?}"
        );
        assert!(matches!(
            cfg.validate(),
            Err(BilevelError::InvalidParameter { .. })
        ));
    }
}
