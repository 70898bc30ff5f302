//! SID + BSGM (paper 002) and its warm-start variants (AmIGO, ALSET, ALSET†) against closed
//! forms.

mod common;

use bilevel_algorithms::sid::*;
use bilevel_core::dense::{norm, Dense};
use bilevel_core::problems::{QuadraticBilevel, QuadraticSpec};
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::rel_err_host;
use bilevel_core::{
    BilevelProblem, Constraint, HypergradientEstimator, Oracle, OracleCounts, OuterLoop,
    OuterOptimizer, Solver, State,
};
use common::sid::*;
use common::*;

/// The Hessian of `Φ` (constant: `∇Φ` is affine on these quadratic problems), from the closed
/// form by differences of `∇Φ` along unit vectors.
fn phi_hessian(form: &bilevel_core::problems::QuadraticForm) -> Dense {
    let m = form.x_dim();
    let zero = vec![0.0; m];
    let g0 = form.hypergradient(&zero).unwrap();
    let mut hess = Dense::zeros(m, m);
    for j in 0..m {
        let mut e = zero.clone();
        e[j] = 1.0;
        let g = form.hypergradient(&e).unwrap();
        for i in 0..m {
            hess.set(i, j, g[i] - g0[i]);
        }
    }
    hess
}

/// A deterministic quadratic instance with inner curvatures in `[1, 2]`, so `γ = 1/2` makes the
/// gradient step a contraction with constant `q = 1/2`.
fn quadratic(x_dim: usize, cross_scale: f64, seed: u64) -> QuadraticBilevel<TestBackend> {
    let spec = QuadraticSpec {
        x_dim,
        y_dim: 4,
        min_curvature: 1.0,
        max_curvature: 2.0,
        x_regularization: 1.0,
        cross_scale,
        seed,
    };
    QuadraticBilevel::random(&spec, &dev()).unwrap()
}

/// Full-batch SID with constant `η = 1`, `γ = 1/2`: bias `O(2^{−t}) + O(2^{−k})`.
fn deterministic_config(steps: usize) -> SidConfig {
    SidConfig {
        lower_level: LowerLevel::GradientStep { step: 0.5 },
        inner_steps: steps,
        linear_steps: steps,
        batch_size: None,
        inner_batch: None,
        linear_batch: None,
        inner_step_schedule: InnerStepSchedule::Constant { step: 1.0 },
        ..Default::default()
    }
}

/// Mini-batch SID on the correlated least-squares data (`L ≈ 1.17`, per-row curvature ≈ 5):
/// `γ = 0.5/L`, `t = k = 5`, 20 samples per LL/LS step, `s = 50`.
fn stochastic_config(l: f64) -> SidConfig {
    SidConfig {
        lower_level: LowerLevel::GradientStep { step: 0.5 / l },
        inner_steps: 5,
        linear_steps: 5,
        batch_size: Some(50),
        inner_batch: Some(20),
        linear_batch: Some(20),
        inner_step_schedule: InnerStepSchedule::Constant { step: 1.0 },
        ..Default::default()
    }
}

#[test]
fn bsgm_solves_the_deterministic_quadratic_to_1e_6() {
    let p = quadratic(3, 0.1, 7);
    let form = p.closed_form();
    // β = 2/(L_Φ + μ_Φ), the best constant step on a quadratic.
    let hess = phi_hessian(form);
    let l_phi = max_eigenvalue(&hess);
    let shifted = Dense {
        data: (0..9)
            .map(|i| if i % 4 == 0 { l_phi } else { 0.0 } - hess.data[i])
            .collect(),
        ..hess.clone()
    };
    let mu_phi = l_phi - max_eigenvalue(&shifted);
    let mut solver = bsgm(deterministic_config(30), 2.0 / (l_phi + mu_phi)).unwrap();
    Solver::<TestBackend>::validate(&solver).unwrap();
    let mut oracle = Oracle::new(&p);
    let x0 = vec![0.0; 3];
    let g0 = norm(&form.hypergradient(&x0).unwrap());
    let mut state = State::new(t(&x0), t(&[0.0; 4]), 0);
    let mut iters = 0;
    let mut g = g0;
    while g > 1e-6 && iters < 100 {
        state = solver.next_iter(&mut oracle, state).unwrap();
        iters += 1;
        g = norm(&form.hypergradient(&host(&state.x)).unwrap());
    }
    assert!(
        g <= 1e-6,
        "‖∇Φ‖ = {g:.3e} after {iters} iterations (from {g0:.3e})"
    );
    assert_eq!(state.iter, iters as u64);
    eprintln!(
        "‖∇Φ‖ {g0:.3e} → {g:.3e} in {iters} iterations (κ_Φ = {:.2})",
        l_phi / mu_phi
    );
    // Converged to x*, and the estimate at x* is ≈ ∇Φ(x*) = 0 (bias O(2^{−30})).
    let xs = form.x_star().unwrap();
    assert!(rel_err_host(&host(&state.x), &xs) < 1e-6);
    assert!(norm(&host(state.hypergradient.as_ref().unwrap())) < 1e-5);
}

#[test]
fn bsgm_and_warm_start_variants_reduce_the_hypergradient_on_stochastic_least_squares() {
    let data = LsData::correlated(2, 5, 200, 0.1, 0);
    let p = data.problem();
    let form = p.closed_form();
    let l = max_eigenvalue(&form.h);
    let xs = form.x_star().unwrap();
    let x0: Vec<f64> = xs.iter().map(|v| v + 3.0).collect();
    let g0 = norm(&form.hypergradient(&x0).unwrap());
    let cfg = stochastic_config(l);
    // (variant, outer iterations): ALSET† makes 4 oracle calls per iteration, SID/AmIGO ~12.
    for (config, iters) in [
        (cfg, 25),
        (cfg.amigo(), 25),
        (cfg.alset(), 25),
        (cfg.alset_dagger(), 60),
    ] {
        let mut solver = bsgm(config, 0.5).unwrap();
        let mut oracle = Oracle::new(&p);
        let mut state = State::new(t(&x0), t(&[0.0; 5]), 11);
        for _ in 0..iters {
            state = solver.next_iter(&mut oracle, state).unwrap();
        }
        let g = norm(&form.hypergradient(&host(&state.x)).unwrap());
        // Observed ratios 1e-2..4e-2 (the noise floor of the mini-batches): require 10×.
        assert!(
            g <= 0.1 * g0,
            "{}: ‖∇Φ‖ {g:.3e} vs {g0:.3e} at x0",
            config.variant_name()
        );
    }
}

#[test]
fn contraction_form_gives_the_gradient_step_estimate() {
    let data = LsData::correlated(2, 5, 200, 0.1, 3);
    let gamma = 0.3;
    let as_map = GradientStepMap::new(&data, gamma);
    let as_min = &as_map.inner;
    let base = SidConfig {
        inner_steps: 4,
        linear_steps: 3,
        batch_size: Some(9),
        inner_batch: Some(3),
        linear_batch: Some(2),
        inner_step_schedule: InnerStepSchedule::harmonic(2.0, 3.0),
        ..Default::default()
    };
    let mut rng = Rng::seed(5);
    let (x, y, v) = (rng.normal_vec(2), rng.normal_vec(5), rng.normal_vec(5));
    for config in [
        base,
        base.warm_inner(),
        base.amigo(),
        base.alset(),
        base.alset_dagger(),
    ] {
        let run = |lower_level: LowerLevel, on_map: bool| {
            let mut sid = Sid::new(SidConfig {
                lower_level,
                ..config
            })
            .unwrap();
            let mut state = State::new(t(&x), t(&y), 21);
            state.v = t(&v);
            let (g, counts) = if on_map {
                let mut oracle = Oracle::new(&as_map);
                let g = sid.estimate(&mut oracle, &mut state).unwrap();
                (g, oracle.counts())
            } else {
                let mut oracle = Oracle::new(as_min);
                let g = sid.estimate(&mut oracle, &mut state).unwrap();
                (g, oracle.counts())
            };
            (host(&g), host(&state.y), host(&state.v), counts)
        };
        let (g_map, y_map, v_map, c_map) = run(LowerLevel::Contraction, true);
        let (g_min, y_min, v_min, c_min) = run(LowerLevel::GradientStep { step: gamma }, false);
        let name = config.variant_name();
        for (what, a, b) in [
            ("ĝ", &g_map, &g_min),
            ("w_t", &y_map, &y_min),
            ("v_k", &v_map, &v_min),
        ] {
            let err = rel_err_host(a, b);
            assert!(err < 1e-12, "{name}: {what} differs by {err:.3e}");
        }
        // Same batches: same samples; products through Ψ instead of HVP/JVP.
        assert_eq!(
            (c_map.samples_f, c_map.samples_g),
            (c_min.samples_f, c_min.samples_g)
        );
        assert_eq!(c_map.map_values, c_min.grad_g, "{name}");
        assert_eq!(c_map.map_vjps, c_min.hvp + c_min.jvp, "{name}");
        assert_eq!((c_map.hvp, c_map.jvp, c_map.grad_g), (0, 0, 0));
        assert_eq!((c_min.map_values, c_min.map_vjps), (0, 0));
    }
}

#[test]
fn projection_keeps_iterates_inside_and_reaches_the_predicted_boundary() {
    // 1-D x, no cross term: Φ is a convex quadratic, so the constrained minimiser is
    // clamp(x*, X) and projected gradient descent stops exactly there.
    let p = quadratic(1, 0.0, 2);
    let form = p.closed_form().clone();
    let xs = form.x_star().unwrap()[0];
    let l_phi = phi_hessian(&form).get(0, 0);
    assert!(l_phi > 0.0);
    let radius = 0.5 * xs.abs();
    for (set, lo, hi) in [
        (
            Constraint::Box {
                lower: xs + 1.0,
                upper: xs + 3.0,
            },
            xs + 1.0,
            xs + 3.0,
        ),
        (Constraint::LInfBall { radius }, -radius, radius),
    ] {
        let predicted = xs.clamp(lo, hi);
        let problem = Constrained {
            inner: quadratic(1, 0.0, 2),
            set: set.clone(),
        };
        let mut solver = bsgm(deterministic_config(15), 1.0 / l_phi).unwrap();
        let mut oracle = Oracle::new(&problem);
        // Start inside, at the far end of the set.
        let far = if (predicted - lo).abs() < (predicted - hi).abs() {
            hi
        } else {
            lo
        };
        let mut state = State::new(t(&[far]), t(&[0.0; 4]), 0);
        for _ in 0..4 {
            state = solver.next_iter(&mut oracle, state).unwrap();
            let x = host(&state.x)[0];
            assert!(
                (lo..=hi).contains(&x),
                "{set:?}: iterate {x} left [{lo}, {hi}]"
            );
        }
        let x = host(&state.x)[0];
        assert!(
            (x - predicted).abs() < 1e-10,
            "{set:?}: x = {x}, predicted {predicted}"
        );
        // The constraint is active: Φ is not stationary there, and −∇Φ points outward.
        let g = form.hypergradient(&[x]).unwrap()[0];
        assert!(g.abs() > 1e-2 && (xs - predicted) * g < 0.0, "∇Φ = {g}");
    }
}

/// Oracle calls of one outer iteration.
fn one_iter<P: BilevelProblem<TestBackend>>(
    solver: &mut Bsgm,
    oracle: &mut Oracle<'_, TestBackend, P>,
    state: State<TestBackend>,
) -> (OracleCounts, State<TestBackend>) {
    let before = oracle.counts();
    let state = solver.next_iter(oracle, state).unwrap();
    (oracle.counts() - before, state)
}

#[test]
fn oracle_calls_and_samples_per_iteration() {
    let data = LsData::correlated(2, 5, 60, 0.1, 1);
    let as_map = GradientStepMap::new(&data, 0.2);
    let (t_, k, s, b_in, b_lin) = (3u64, 4u64, 7u64, 2u64, 5u64);
    let base = SidConfig {
        lower_level: LowerLevel::GradientStep { step: 0.2 },
        inner_steps: t_ as usize,
        linear_steps: k as usize,
        batch_size: Some(s as usize),
        inner_batch: Some(b_in as usize),
        linear_batch: Some(b_lin as usize),
        ..Default::default()
    };
    // (config, t, k' = LS products): cold LS skips the product of v_0 = 0.
    let cases = [
        (base, t_, k - 1),
        (base.warm_inner(), t_, k - 1),
        (base.amigo(), t_, k),
        (base.alset(), 1, k - 1),
        (base.alset_dagger(), 1, 1),
    ];
    for (config, tt, kk) in cases {
        for lower_level in [
            LowerLevel::GradientStep { step: 0.2 },
            LowerLevel::Contraction,
        ] {
            let mut solver = bsgm(
                SidConfig {
                    lower_level,
                    ..config
                },
                0.1,
            )
            .unwrap();
            let mut oracle = Oracle::new(&as_map);
            let mut state = State::new(t(&[0.5, -0.5]), t(&[0.0; 5]), 4);
            for iter in 0..2 {
                let (c, next) = one_iter(&mut solver, &mut oracle, state);
                state = next;
                let expected = match lower_level {
                    LowerLevel::GradientStep { .. } => OracleCounts {
                        grad_g: tt,
                        grad_f: 1,
                        hvp: kk,
                        jvp: 1,
                        samples_g: tt * b_in + kk * b_lin + s,
                        samples_f: s,
                        ..Default::default()
                    },
                    LowerLevel::Contraction => OracleCounts {
                        map_values: tt,
                        map_vjps: kk + 1,
                        grad_f: 1,
                        samples_g: tt * b_in + kk * b_lin + s,
                        samples_f: s,
                        ..Default::default()
                    },
                };
                assert_eq!(
                    c,
                    expected,
                    "{} {lower_level:?} iteration {iter}",
                    config.variant_name()
                );
            }
        }
    }
    // Full batches count the data set (60 rows); a deterministic problem counts no samples.
    let full = SidConfig {
        batch_size: None,
        inner_batch: None,
        linear_batch: None,
        ..base
    };
    let p = data.problem();
    let mut oracle = Oracle::new(&p);
    let (c, _) = one_iter(
        &mut bsgm(full, 0.1).unwrap(),
        &mut oracle,
        State::new(t(&[0.0; 2]), t(&[0.0; 5]), 0),
    );
    assert_eq!((c.samples_g, c.samples_f), ((3 + 3 + 1) * 60, 60));
    let q = quadratic(2, 0.1, 0);
    let mut oracle = Oracle::new(&q);
    let (c, _) = one_iter(
        &mut bsgm(base, 0.1).unwrap(),
        &mut oracle,
        State::new(t(&[0.0; 2]), t(&[0.0; 4]), 0),
    );
    assert_eq!(
        (c.samples_g, c.samples_f, c.grad_g, c.hvp, c.jvp),
        (0, 0, 3, 3, 1)
    );
}

#[test]
fn only_warm_start_variants_read_state_y_and_v() {
    let data = LsData::correlated(2, 5, 60, 0.1, 2);
    let p = data.problem();
    let base = stochastic_config(max_eigenvalue(&p.closed_form().h));
    let mut rng = Rng::seed(9);
    let x = rng.normal_vec(2);
    let garbage: Vec<f64> = rng.normal_vec(5).into_iter().map(|v| 1e3 * v).collect();
    let estimate = |config: SidConfig, y: &[f64], v: &[f64]| {
        let mut state = State::new(t(&x), t(y), 17);
        state.v = t(v);
        let mut oracle = Oracle::new(&p);
        host(
            &Sid::new(config)
                .unwrap()
                .estimate(&mut oracle, &mut state)
                .unwrap(),
        )
    };
    let zero = [0.0; 5];
    // (config, reads y, reads v)
    for (config, reads_y, reads_v) in [
        (base, false, false),
        (base.warm_inner(), true, false),
        (base.amigo(), true, true),
        (base.alset(), true, false),
        (base.alset_dagger(), true, true),
    ] {
        let clean = estimate(config, &zero, &zero);
        let dirty_y = estimate(config, &garbage, &zero);
        let dirty_v = estimate(config, &zero, &garbage);
        let name = config.variant_name();
        // Not read: bit-identical. Read: far apart (garbage is O(1e3)).
        assert_eq!(
            clean != dirty_y,
            reads_y,
            "{name}: y {clean:?} vs {dirty_y:?}"
        );
        assert_eq!(
            clean != dirty_v,
            reads_v,
            "{name}: v {clean:?} vs {dirty_v:?}"
        );
        if reads_y {
            assert!(rel_err_host(&dirty_y, &clean) > 1e-3);
        }
        if reads_v {
            assert!(rel_err_host(&dirty_v, &clean) > 1e-3);
        }
    }
}

#[test]
fn invalid_configs_are_rejected() {
    let ok = SidConfig::default();
    ok.validate().unwrap();
    let cases: Vec<(SidConfig, &str)> = vec![
        (
            SidConfig {
                inner_steps: 0,
                ..ok
            },
            "inner_steps",
        ),
        (
            SidConfig {
                linear_steps: 0,
                ..ok
            },
            "linear_steps",
        ),
        (
            SidConfig {
                batch_size: Some(0),
                ..ok
            },
            "batch_size",
        ),
        (
            SidConfig {
                inner_batch: Some(0),
                ..ok
            },
            "inner_batch",
        ),
        (
            SidConfig {
                linear_batch: Some(0),
                ..ok
            },
            "linear_batch",
        ),
        (
            SidConfig {
                lower_level: LowerLevel::GradientStep { step: 0.0 },
                ..ok
            },
            "lower_level_step",
        ),
        (
            SidConfig {
                lower_level: LowerLevel::GradientStep { step: f64::NAN },
                ..ok
            },
            "lower_level_step",
        ),
        (
            SidConfig {
                inner_step_schedule: InnerStepSchedule::Constant { step: 0.0 },
                ..ok
            },
            "fixed_point_step",
        ),
        (
            SidConfig {
                inner_step_schedule: InnerStepSchedule::Constant { step: 1.5 },
                ..ok
            },
            "fixed_point_step",
        ),
        (
            SidConfig {
                inner_step_schedule: InnerStepSchedule::harmonic(4.0, 2.0),
                ..ok
            },
            "fixed_point_step",
        ),
        (
            SidConfig {
                inner_step_schedule: InnerStepSchedule::Decreasing {
                    initial: 1.0,
                    offset: 0.0,
                    power: 1.0,
                },
                ..ok
            },
            "fixed_point_step_offset",
        ),
        (
            SidConfig {
                inner_step_schedule: InnerStepSchedule::Decreasing {
                    initial: 1.0,
                    offset: 1.0,
                    power: -1.0,
                },
                ..ok
            },
            "fixed_point_step_decay",
        ),
    ];
    let q = quadratic(2, 0.1, 0);
    for (config, name) in cases {
        assert!(
            is_invalid(config.validate(), name),
            "{name}: {:?}",
            config.validate()
        );
        // The constructor refuses it (fails if `new` did not validate, as before issue 21's
        // item 13); a struct literal bypasses it, and the solver still refuses to run.
        assert!(is_invalid(Sid::new(config), name));
        let literal = || OuterLoop::new(Sid { config }, OuterOptimizer::sgd(0.1));
        assert!(is_invalid(
            Solver::<TestBackend>::validate(&literal()),
            name
        ));
        // next_iter re-checks, so a bad config cannot run without validate().
        let mut oracle = Oracle::new(&q);
        let state = State::new(t(&[0.0; 2]), t(&[0.0; 4]), 0);
        assert!(is_invalid(literal().next_iter(&mut oracle, state), name));
    }
    // A bad outer step, and the contraction form on a problem that has no map.
    assert!(is_invalid(
        Solver::<TestBackend>::validate(&bsgm(ok, -1.0).unwrap()),
        "outer_lr"
    ));
    let config = SidConfig {
        lower_level: LowerLevel::Contraction,
        ..ok
    };
    let mut oracle = Oracle::new(&q);
    let state = State::new(t(&[0.0; 2]), t(&[0.0; 4]), 0);
    assert!(is_invalid(
        bsgm(config, 0.1).unwrap().next_iter(&mut oracle, state),
        "lower_level"
    ));
}

#[test]
fn step_schedules_and_variant_names() {
    let harmonic = InnerStepSchedule::harmonic(4.0, 4.0);
    let etas: Vec<f64> = (0..4).map(|j| harmonic.at(j)).collect();
    assert_eq!(etas, vec![1.0, 0.8, 4.0 / 6.0, 4.0 / 7.0]);
    let power = InnerStepSchedule::Decreasing {
        initial: 0.5,
        offset: 1.0,
        power: 0.5,
    };
    assert!((power.at(3) - 0.25).abs() < 1e-15);
    assert_eq!(InnerStepSchedule::Constant { step: 0.3 }.at(100), 0.3);
    let c = SidConfig::default();
    let names: Vec<&str> = [c, c.warm_inner(), c.amigo(), c.alset(), c.alset_dagger()]
        .iter()
        .map(|c| c.variant_name())
        .collect();
    assert_eq!(
        names,
        ["sid", "sid-warm-ll", "amigo", "alset", "alset-dagger"]
    );
    assert_eq!(
        HypergradientEstimator::<TestBackend>::name(&Sid::new(c.alset()).unwrap()),
        "alset"
    );
    // Paper 002, Tables 3-4: ALSET warm-starts the LL only (t = 1, a cold k-step linear solve,
    // k > 1); ALSET† warm-starts both, t = k = 1. Fails with the pre-#19 `alset()` (= ALSET†).
    let alset = c.alset();
    assert_eq!((alset.inner_steps, alset.linear_steps), (1, c.linear_steps));
    assert!(alset.linear_steps > 1);
    assert!(alset.warm_start_inner && !alset.warm_start_linear);
    let dagger = c.alset_dagger();
    assert_eq!((dagger.inner_steps, dagger.linear_steps), (1, 1));
    assert!(dagger.warm_start_inner && dagger.warm_start_linear);
}

/// The row indices a batch selects (with repeats), of a data set of `n` rows.
fn batch_rows(batch: &bilevel_core::Batch, n: usize) -> Vec<usize> {
    match batch {
        bilevel_core::Batch::Full => (0..n).collect(),
        bilevel_core::Batch::Indices(idx) => idx.clone(),
    }
}

/// Host replica of least-squares data with an outer design `C_o` on `x`, evaluated on recorded
/// batches: `∇_w G(S)`, `H(S)v`, `J(S)v` and `(∇_x F(D), ∇_w F(D))`.
struct HostLs<'a> {
    data: &'a LsData,
    c_o: &'a Dense,
}

impl HostLs<'_> {
    fn row(m: &Dense, i: usize) -> Vec<f64> {
        (0..m.cols).map(|j| m.get(i, j)).collect()
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(u, v)| u * v).sum()
    }

    /// `(1/|S|) Σ_{i∈S} coef_i · row_i(m)`.
    fn mean_rows(m: &Dense, rows: &[usize], coef: impl Fn(usize) -> f64) -> Vec<f64> {
        let mut acc = vec![0.0; m.cols];
        for &i in rows {
            let c = coef(i) / rows.len() as f64;
            for (a, r) in acc.iter_mut().zip(Self::row(m, i)) {
                *a += c * r;
            }
        }
        acc
    }

    fn grad_w_g(&self, x: &[f64], w: &[f64], rows: &[usize]) -> Vec<f64> {
        let d = self.data;
        Self::mean_rows(&d.a_y, rows, |i| {
            Self::dot(&Self::row(&d.a_x, i), x) + Self::dot(&Self::row(&d.a_y, i), w) - d.b[i]
        })
    }

    fn hvp(&self, v: &[f64], rows: &[usize]) -> Vec<f64> {
        let d = self.data;
        Self::mean_rows(&d.a_y, rows, |i| Self::dot(&Self::row(&d.a_y, i), v))
    }

    fn jvp(&self, v: &[f64], rows: &[usize]) -> Vec<f64> {
        let d = self.data;
        Self::mean_rows(&d.a_x, rows, |i| Self::dot(&Self::row(&d.a_y, i), v))
    }

    fn grad_f(&self, x: &[f64], w: &[f64], rows: &[usize]) -> (Vec<f64>, Vec<f64>) {
        let d = self.data;
        let r = |i: usize| {
            Self::dot(&Self::row(&d.a_o, i), w) + Self::dot(&Self::row(self.c_o, i), x) - d.b_o[i]
        };
        (
            Self::mean_rows(self.c_o, rows, r),
            Self::mean_rows(&d.a_o, rows, r),
        )
    }
}

/// Mini-batch SID with a harmonic `η_j = β/(c + j) < 1` (paper 002 Thm. 8's schedule) on
/// least squares whose `f` depends on `x`, against a host replica that replays the recorded
/// batches: `w_{j+1} = (1−η_j)w_j + η_j(w_j − γ∇_wG(ζ_j))`,
/// `v_{j+1} = (1−η_j)v_j + η_j(v_j − γH(ζ'_j)v_j + ∇_wF(D))`, `ĝ = ∇_xF(D) − γJ(D')v_k`, for SID
/// (cold starts), AmIGO, ALSET and ALSET† (warm starts). The recorded batches are the stages'
/// independent draws: sizes in the documented order, and no two alike (`D` and `D'` index data
/// sets of the same size here, so reusing one for the other would show).
/// Fails (tried): with `average`'s weights swapped (`η a + (1−η) b`); with `D` reused for `D'`;
/// with the last LL batch reused for every LS step; with `∇_x F`'s sign flipped.
#[test]
fn harmonic_steps_and_independent_batches_match_a_host_replica() {
    use common::stochastic::{sizes, Loss, Recording};
    let (n, m, d) = (60, 2, 5);
    let data = LsData::correlated(m, d, n, 0.1, 4);
    let c_o = Dense {
        rows: n,
        cols: m,
        data: Rng::seed(77).normal_vec(n * m),
    };
    let p = data.problem().with_outer_x_design(c_o.clone()).unwrap();
    let host_ls = HostLs {
        data: &data,
        c_o: &c_o,
    };
    let rec = Recording::new(&p);
    let gamma = 0.3;
    let schedule = InnerStepSchedule::harmonic(2.0, 3.0);
    let (t_, k, s, b_in, b_lin) = (4, 3, 9, 3, 2);
    let base = SidConfig {
        lower_level: LowerLevel::GradientStep { step: gamma },
        inner_steps: t_,
        linear_steps: k,
        batch_size: Some(s),
        inner_batch: Some(b_in),
        linear_batch: Some(b_lin),
        inner_step_schedule: schedule,
        ..Default::default()
    };
    assert!((0..k.max(t_)).all(|j| schedule.at(j) < 1.0));
    let mut rng = Rng::seed(3);
    let (x, y0, v0) = (rng.normal_vec(m), rng.normal_vec(d), rng.normal_vec(d));
    let axpby = |a: &[f64], alpha: f64, b: &[f64], beta: f64| -> Vec<f64> {
        a.iter().zip(b).map(|(u, v)| alpha * u + beta * v).collect()
    };
    for config in [base, base.amigo(), base.alset(), base.alset_dagger()] {
        let name = config.variant_name();
        let mut state = State::new(t(&x), t(&y0), 5);
        state.v = t(&v0);
        let mut oracle = Oracle::new(&rec);
        let g = host(
            &Sid::new(config)
                .unwrap()
                .estimate(&mut oracle, &mut state)
                .unwrap(),
        );
        let log = rec.take_all();
        let inner: Vec<_> = log
            .iter()
            .filter(|(l, _)| *l == Loss::Inner)
            .map(|(_, b)| b.clone())
            .collect();
        let outer: Vec<_> = log
            .iter()
            .filter(|(l, _)| *l == Loss::Outer)
            .map(|(_, b)| b.clone())
            .collect();
        let (tt, kk) = (config.inner_steps, config.linear_steps);
        let ls_products = if config.warm_start_linear { kk } else { kk - 1 };
        let mut want = vec![Some(b_in); tt];
        want.extend(vec![Some(b_lin); ls_products]);
        want.push(Some(s));
        assert_eq!(sizes(&inner), want, "{name}");
        assert_eq!(sizes(&outer), vec![Some(s)], "{name}");
        let all: Vec<_> = inner.iter().chain(&outer).collect();
        for i in 0..all.len() {
            for j in 0..i {
                assert_ne!(all[i], all[j], "{name}: batches {j} and {i} alike");
            }
        }
        // Replay on the host with the recorded batches.
        let rows = |b: &bilevel_core::Batch| batch_rows(b, n);
        let mut w = if config.warm_start_inner {
            y0.clone()
        } else {
            vec![0.0; d]
        };
        for (j, zeta) in inner[..tt].iter().enumerate() {
            let eta = schedule.at(j);
            let step = axpby(&w, 1.0, &host_ls.grad_w_g(&x, &w, &rows(zeta)), -gamma);
            w = axpby(&w, 1.0 - eta, &step, eta);
        }
        let (gx_f, gw_f) = host_ls.grad_f(&x, &w, &rows(&outer[0]));
        let mut v = if config.warm_start_linear {
            v0.clone()
        } else {
            vec![0.0; d]
        };
        let mut products = inner[tt..tt + ls_products].iter();
        for j in 0..kk {
            let eta = schedule.at(j);
            let transported = if j == 0 && !config.warm_start_linear {
                vec![0.0; d]
            } else {
                let hv = host_ls.hvp(&v, &rows(products.next().unwrap()));
                axpby(&v, 1.0, &hv, -gamma)
            };
            let target = axpby(&transported, 1.0, &gw_f, 1.0);
            v = axpby(&v, 1.0 - eta, &target, eta);
        }
        let expected = axpby(
            &gx_f,
            1.0,
            &host_ls.jvp(&v, &rows(&inner[tt + ls_products])),
            -gamma,
        );
        assert!(
            norm(&gx_f) > 0.1 * norm(&expected),
            "{name}: ∇_x F too small to see"
        );
        assert!(
            rel_err_host(&g, &expected) < 1e-12,
            "{name}: ĝ {g:?} vs {expected:?}"
        );
        assert!(rel_err_host(&host(&state.y), &w) < 1e-12, "{name}: w_t");
        assert!(rel_err_host(&host(&state.v), &v) < 1e-12, "{name}: v_k");
    }
}
