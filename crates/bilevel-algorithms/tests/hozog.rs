//! HOZOG (the zeroth-order baseline of paper 000): exactness against a host replay of the
//! estimator on quadratics (both direction distributions), progress on a quadratic, exact
//! oracle counts, reproducibility and configuration checks.

mod common;

use bilevel_algorithms::hozog::{DirectionDistribution, Hozog, HozogConfig, InnerStart};
use bilevel_core::dense::{axpy, norm};
use bilevel_core::problems::QuadraticForm;
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::rel_err_host;
use bilevel_core::{HypergradientEstimator, Oracle, OracleCounts, OuterLoop, OuterOptimizer};
use common::hessian_free::*;
use common::*;

fn config(inner_step: f64, inner_steps: usize, directions: usize) -> HozogConfig {
    HozogConfig {
        inner_steps,
        inner_step,
        directions,
        smoothing_radius: 1e-3,
        distribution: DirectionDistribution::Gaussian,
        inner_start: InnerStart::WarmStart,
    }
}

/// `Φ_N(x) = f(x, y^N(x))` on the host.
fn host_phi(form: &QuadraticForm, x: &[f64], y0: &[f64], step: f64, steps: usize) -> f64 {
    form.f(x, &host_gd(&vec![form.clone(); steps], x, y0, step))
}

/// HOZOG's estimate replayed from a clone of the state's RNG.
fn replay(form: &QuadraticForm, cfg: &HozogConfig, rng: &Rng, x: &[f64], y0: &[f64]) -> Vec<f64> {
    let mut rng = rng.clone();
    let phi = |x: &[f64]| host_phi(form, x, y0, cfg.inner_step, cfg.inner_steps);
    let (phi_x, mu, p) = (phi(x), cfg.smoothing_radius, x.len());
    let mut g = vec![0.0; p];
    for _ in 0..cfg.directions {
        let mut u = rng.normal_vec(p);
        let mut scale = 1.0;
        if cfg.distribution == DirectionDistribution::UnitSphere {
            let n = norm(&u);
            u.iter_mut().for_each(|v| *v /= n);
            scale = p as f64;
        }
        let shifted = axpy(x, mu, &u);
        let coefficient = scale * (phi(&shifted) - phi_x) / mu / cfg.directions as f64;
        g = axpy(&g, coefficient, &u);
    }
    g
}

#[test]
fn matches_the_host_replay_on_quadratics() {
    for (seed, distribution, directions) in [
        (1, DirectionDistribution::Gaussian, 1),
        (2, DirectionDistribution::Gaussian, 5),
        (3, DirectionDistribution::UnitSphere, 4),
    ] {
        let p = quadratic(seed, 4, 6, 10.0);
        let form = p.closed_form();
        let mut rng = Rng::seed(seed + 50);
        let (x, y0) = (rng.normal_vec(4), rng.normal_vec(6));
        let cfg = HozogConfig {
            distribution,
            ..config(0.08, 12, directions)
        };
        let mut st = state(&x, &y0, seed);
        let expected = replay(form, &cfg, &st.rng, &x, &y0);
        let g = Hozog::new(cfg)
            .unwrap()
            .estimate(&mut Oracle::new(&p), &mut st)
            .unwrap();
        // Cancellation in Φ_N(x + μu) − Φ_N(x): u_mach·|Φ|/μ ≈ 1e-13 against O(1) slopes.
        let err = rel_err_host(&host(&g), &expected);
        assert!(err < 1e-8, "seed {seed}: rel_err {err:e}");
        let phi = host_phi(form, &x, &y0, 0.08, 12);
        assert!((st.outer_loss.unwrap() - phi).abs() <= 1e-12 * phi.abs().max(1.0));
    }
}

#[test]
fn counts_per_iteration_are_exact_and_hessian_free() {
    // (Q + 1)·N grad_g and Q + 1 values of f; no gradient of f, no HVP, no JVP.
    let p = quadratic(7, 3, 4, 5.0);
    let (n, q) = (6, 3);
    let mut s = OuterLoop::new(
        Hozog::new(config(0.1, n, q)).unwrap(),
        OuterOptimizer::sgd(0.1),
    );
    let mut oracle = Oracle::new(&p);
    let mut st = state(&[0.1, 0.2, 0.3], &[0.0; 4], 1);
    for _ in 0..2 {
        let (c, next) = one_iter(&mut s, &mut oracle, st);
        st = next;
        let expected = OracleCounts {
            grad_g: ((q + 1) * n) as u64,
            f_values: (q + 1) as u64,
            ..Default::default()
        };
        assert_eq!(c, expected);
    }
}

#[test]
fn makes_progress_on_a_quadratic() {
    // The realizable quadratic of the PZOBO test (∇_y f = 0 at the solution). HOZOG's noise does
    // not vanish there: the curvature term (μ/2)(uᵀ∇²Φ_N u)u of the difference quotient leaves
    // a floor O(μ), and the full-hypergradient estimate has variance ∝ p‖∇Φ_N‖². Q = 2,
    // β = 0.4, μ = 1e-3. Measured (seed 5): ‖∇Φ‖ 3.245 → 1.2e-3 after 60 iterations (PZOBO
    // with the same budget: 3.6e-8); required: < 1e-2.
    let (p, _) = realizable_quadratic(12, 3, 5, 1.5);
    let form = p.closed_form();
    let x0 = [1.0, -1.0, 2.0];
    let mut s = OuterLoop::new(
        Hozog::new(config(0.8, 5, 2)).unwrap(),
        OuterOptimizer::sgd(0.4),
    );
    let mut oracle = Oracle::new(&p);
    let start = norm(&form.hypergradient(&x0).unwrap());
    let st = run(&mut s, &mut oracle, state(&x0, &[0.0; 5], 5), 60);
    let end = norm(&form.hypergradient(&host(&st.x)).unwrap());
    assert!(end < 1e-2, "‖∇Φ‖ {start:.3e} -> {end:.3e}");
}

fn trajectory(seed: u64, distribution: DirectionDistribution) -> Vec<Vec<f64>> {
    let p = quadratic(8, 2, 3, 4.0);
    let cfg = HozogConfig {
        distribution,
        inner_start: InnerStart::Initial,
        ..config(0.2, 5, 2)
    };
    let mut s = OuterLoop::new(Hozog::new(cfg).unwrap(), OuterOptimizer::sgd(0.1));
    let mut oracle = Oracle::new(&p);
    let mut st = state(&[0.5, -0.5], &[0.3; 3], seed);
    (0..4)
        .map(|_| {
            st = run(&mut s, &mut oracle, st.clone(), 1);
            host(&st.x)
        })
        .collect()
}

#[test]
fn same_seed_is_bit_identical_and_other_seeds_differ() {
    for distribution in [
        DirectionDistribution::Gaussian,
        DirectionDistribution::UnitSphere,
    ] {
        let a = trajectory(1, distribution);
        assert_eq!(a, trajectory(1, distribution), "{distribution:?}");
        assert_ne!(a, trajectory(2, distribution), "{distribution:?}");
    }
}

#[test]
fn invalid_configs_are_rejected() {
    let ok = config(0.1, 5, 2);
    assert!(ok.validate().is_ok());
    let cases = [
        (
            HozogConfig {
                inner_steps: 0,
                ..ok
            },
            "inner_steps",
        ),
        (
            HozogConfig {
                inner_step: -0.1,
                ..ok
            },
            "inner_step",
        ),
        (
            HozogConfig {
                directions: 0,
                ..ok
            },
            "directions",
        ),
        (
            HozogConfig {
                smoothing_radius: 0.0,
                ..ok
            },
            "smoothing_radius",
        ),
        (
            HozogConfig {
                smoothing_radius: f64::NAN,
                ..ok
            },
            "smoothing_radius",
        ),
    ];
    for (cfg, name) in cases {
        assert!(is_invalid(cfg.validate(), name), "{name}");
        assert!(is_invalid(Hozog::new(cfg), name), "{name}");
    }
}
