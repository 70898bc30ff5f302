//! MAML and first-order MAML: exactness against the closed-form meta-gradient of quadratic tasks
//! (T = 1 and T = 3) and against finite differences of the unrolled objective on a tanh MLP,
//! task batches, descent of the meta-objective, oracle counts, layout and configuration errors.

mod common;

use bilevel_algorithms::maml::{Maml, MamlConfig};
use bilevel_core::problems::{QuadraticBilevel, QuadraticSpec};
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{dot, rel_err_host};
use bilevel_core::{
    BilevelError, BilevelProblem, HypergradientEstimator, Oracle, OuterLoop, OuterOptimizer, Solver,
};
use common::implicit::one_iter;
use common::meta::*;
use common::*;

fn config(inner_step: f64, inner_steps: usize, first_order: bool) -> MamlConfig {
    MamlConfig {
        inner_step,
        inner_steps,
        first_order,
        tasks_per_batch: None,
    }
}

fn estimate<P: BilevelProblem<TestBackend>>(
    p: &P,
    cfg: MamlConfig,
    theta: &[f64],
) -> (Vec<f64>, bilevel_core::State<TestBackend>) {
    let mut st = meta_state(p, theta);
    let g = Maml::new(cfg)
        .unwrap()
        .estimate(&mut Oracle::new(p), &mut st)
        .unwrap();
    (host(&g), st)
}

#[test]
fn start_map_and_its_transpose() {
    // S copies x[adapted] into every block; Sᵀ sums the blocks back, and ⟨S x, a⟩ = ⟨x, Sᵀa⟩.
    // Mutations tried in bilevel-core's meta.rs, each failing this test (and the closed-form and
    // FD tests): Sᵀ taking the first block instead of the sum; S(x) = 0.
    let p = meta_quadratic(1, 5, Some(2), 3, 10.0);
    let oracle = Oracle::new(&p);
    let x = t(&[1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(
        host(&oracle.meta_start(&x).unwrap()),
        [4.0, 5.0, 4.0, 5.0, 4.0, 5.0]
    );
    let a = t(&[1.0, 10.0, 2.0, 20.0, 3.0, 30.0]);
    let sta = oracle.meta_start_transpose(&a).unwrap();
    assert_eq!(host(&sta), [0.0, 0.0, 0.0, 6.0, 60.0]);
    let lhs = dot(&oracle.meta_start(&x).unwrap(), &a);
    assert!((lhs - dot(&x, &sta)).abs() < 1e-12);
    // No layout: a clear error, no panic.
    let q = QuadraticBilevel::<TestBackend>::random(&QuadraticSpec::default(), &dev()).unwrap();
    assert!(is_invalid(
        Oracle::new(&q).meta_start(&t(&[0.0; 5])),
        "meta_layout"
    ));
}

#[test]
fn second_order_matches_the_closed_form_on_quadratics() {
    // Mutations tried in maml.rs, each failing this test: dropping the Sᵀa_0 term; dropping the
    // H term (a not updated); flipping the sign of the H term; inner step α instead of α·|𝒯|
    // (per-task step α/m); the first-order branch in place of the second-order one. The J
    // terms are identically zero for MAML (dropping or flipping them leaves every MAML test
    // passing, as it should); the ANIL tests catch them.
    for (seed, steps) in [(1, 1), (2, 3), (3, 3)] {
        let p = meta_quadratic(seed, 6, None, 3, 10.0);
        let mut rng = Rng::seed(seed + 100);
        let theta = rng.normal_vec(6);
        let alpha = 0.05;
        let (g, st) = estimate(&p, config(alpha, steps, false), &theta);
        let expected = p.meta_gradient(&theta, alpha, steps, false, &[0, 1, 2]);
        let err = rel_err_host(&g, &expected);
        assert!(err < 1e-10, "T={steps}: rel_err {err:e}");
        // y_T = the adapted parameters, task by task; outer_loss = the meta-objective.
        let y = host(&st.y);
        for i in 0..3 {
            let (z, _) = p.adapt(i, &theta, alpha, steps);
            assert!(rel_err_host(&y[6 * i..6 * (i + 1)], &z) < 1e-12);
        }
        let f = p.meta_objective(&theta, alpha, steps, &[0, 1, 2]);
        assert!((st.outer_loss.unwrap() - f).abs() < 1e-12 * f.abs().max(1.0));
    }
}

#[test]
fn first_order_matches_its_closed_form_and_differs_from_maml() {
    // Mutations tried in maml.rs, each failing this test: the second-order branch in place of
    // the first-order one; inner step α instead of α·|𝒯|; dropping the H term of the second-order
    // estimate (which turns it into FOMAML: the separation assertion catches it).
    let p = meta_quadratic(4, 6, None, 3, 10.0);
    let theta = Rng::seed(5).normal_vec(6);
    for steps in [1, 3] {
        let (fo, _) = estimate(&p, config(0.08, steps, true), &theta);
        let expected = p.meta_gradient(&theta, 0.08, steps, true, &[0, 1, 2]);
        let err = rel_err_host(&fo, &expected);
        assert!(err < 1e-10, "T={steps}: rel_err {err:e}");
        let (so, _) = estimate(&p, config(0.08, steps, false), &theta);
        let gap = rel_err_host(&fo, &so);
        assert!(gap > 0.1, "T={steps}: FOMAML is only {gap:e} from MAML");
    }
}

#[test]
fn matches_finite_differences_of_the_unrolled_objective_on_an_mlp() {
    // Nonlinear tasks: H varies along the trajectory. Mutations tried in maml.rs, each failing
    // here: dropping Sᵀa_0; dropping or flipping the H term; inner step α instead of α·|𝒯|;
    // first order in place of second order and vice versa.
    let p = meta_sine(7, false);
    let theta = p.random_theta(0.7, &mut Rng::seed(8));
    for steps in [2, 3] {
        let alpha = 0.1;
        let (g, _) = estimate(&p, config(alpha, steps, false), &theta);
        let fd = fd_meta_gradient(&p, &theta, alpha, steps, 1e-6);
        let err = rel_err_host(&g, &fd);
        assert!(err < 1e-6, "T={steps}: rel_err {err:e}");
        let (fo, _) = estimate(&p, config(alpha, steps, true), &theta);
        assert!(
            rel_err_host(&fo, &fd) > 1e-2,
            "FOMAML agrees with the FD gradient"
        );
    }
}

#[test]
fn task_batches_select_distinct_tasks_shared_by_g_and_f() {
    // With b = 2 of m = 4 tasks, the estimate is the closed form over exactly one pair of
    // distinct tasks, the other tasks' blocks stay at θ, and outer_loss is that pair's query
    // loss. Mutations tried in maml.rs, each failing here: f on Batch::Full (not the task
    // batch); inner step α·m instead of α·b; dropping Sᵀa_0; dropping or flipping the H term.
    let p = meta_quadratic(9, 4, None, 4, 10.0);
    let theta = Rng::seed(10).normal_vec(4);
    let cfg = MamlConfig {
        tasks_per_batch: Some(2),
        ..config(0.05, 2, false)
    };
    let mut est = Maml::new(cfg).unwrap();
    let mut oracle = Oracle::new(&p);
    let mut seen = Vec::new();
    let mut st = meta_state(&p, &theta);
    for _ in 0..6 {
        let g = host(&est.estimate(&mut oracle, &mut st).unwrap());
        let mut pairs = Vec::new();
        for i in 0..4 {
            for j in i + 1..4 {
                if rel_err_host(&g, &p.meta_gradient(&theta, 0.05, 2, false, &[i, j])) < 1e-10 {
                    pairs.push((i, j));
                }
            }
        }
        assert_eq!(pairs.len(), 1, "matched pairs {pairs:?}");
        let (i, j) = pairs[0];
        let y = host(&st.y);
        for k in 0..4 {
            let block = &y[4 * k..4 * (k + 1)];
            if k == i || k == j {
                assert!(rel_err_host(block, &p.adapt(k, &theta, 0.05, 2).0) < 1e-12);
            } else {
                assert_eq!(block, theta.as_slice());
            }
        }
        let f = p.meta_objective(&theta, 0.05, 2, &[i, j]);
        assert!((st.outer_loss.unwrap() - f).abs() < 1e-12 * f.abs().max(1.0));
        seen.push((i, j));
    }
    seen.sort();
    seen.dedup();
    assert!(
        seen.len() > 1,
        "every iteration drew the same tasks: {seen:?}"
    );
}

#[test]
fn outer_steps_decrease_the_meta_objective() {
    // Measured: F(θ) − F* drops from 4.2 to 2.6e-3 in 40 steps.
    let p = meta_quadratic(11, 6, None, 3, 5.0);
    let (alpha, steps) = (0.1, 3);
    let theta0 = Rng::seed(12).normal_vec(6);
    let mut solver = OuterLoop::new(
        Maml::new(config(alpha, steps, false)).unwrap(),
        OuterOptimizer::sgd(0.2),
    );
    let mut oracle = Oracle::new(&p);
    let mut st = meta_state(&p, &theta0);
    for _ in 0..40 {
        st = solver.next_iter(&mut oracle, st).unwrap();
    }
    let tasks = [0, 1, 2];
    let objective = |x: &[f64]| p.meta_objective(x, alpha, steps, &tasks);
    let grad_norm =
        |x: &[f64]| bilevel_core::dense::norm(&p.meta_gradient(x, alpha, steps, false, &tasks));
    let end = host(&st.x);
    let (f0, f1) = (objective(&theta0), objective(&end));
    let (g0, g1) = (grad_norm(&theta0), grad_norm(&end));
    eprintln!("F {f0} → {f1}, ‖∇F‖ {g0} → {g1}");
    // Measured: F 1.946 → 0.0417, ‖∇F‖ 1.54 → 0.046 (33×). Mutations tried in maml.rs, each
    // failing this test: dropping Sᵀa_0; dropping or flipping the H term; inner step α instead
    // of α·|𝒯|; the first-order direction in place of MAML's.
    assert!(f0 - f1 > 1.8, "F {f0} → {f1}");
    assert!(g1 < g0 / 10.0, "‖∇F‖ {g0} → {g1}");
}

#[test]
fn oracle_counts_match_the_module_doc() {
    // Mutations tried in maml.rs, each failing here: first order in place of second order and
    // vice versa; f on Batch::Full instead of the task batch (samples_f).
    let p = meta_quadratic(13, 4, None, 3, 10.0);
    for (steps, first_order) in [(1, false), (4, false), (3, true)] {
        let mut solver = OuterLoop::new(
            Maml::new(config(0.05, steps, first_order)).unwrap(),
            OuterOptimizer::sgd(0.1),
        );
        let mut oracle = Oracle::new(&p);
        let mut st = meta_state(&p, &[0.1, 0.2, 0.3, 0.4]);
        for _ in 0..2 {
            let (c, next) = one_iter(&mut solver, &mut oracle, st);
            st = next;
            assert_eq!(c, meta_counts(steps as u64, !first_order, 3), "T={steps}");
        }
    }
    // A task batch of 2: the same calls, on 2 tasks each.
    let cfg = MamlConfig {
        tasks_per_batch: Some(2),
        ..config(0.05, 2, false)
    };
    let mut solver = OuterLoop::new(Maml::new(cfg).unwrap(), OuterOptimizer::sgd(0.1));
    let mut oracle = Oracle::new(&p);
    let (c, _) = one_iter(&mut solver, &mut oracle, meta_state(&p, &[0.0; 4]));
    assert_eq!(c, meta_counts(2, true, 2));
}

#[test]
fn layouts_other_than_the_whole_network_are_refused() {
    // Mutation tried: without MAML's layout check this test fails (the estimate is returned).
    let head = meta_quadratic(1, 5, Some(2), 3, 10.0);
    let mut st = meta_state(&head, &[0.0; 5]);
    let r = Maml::new(config(0.1, 1, false))
        .unwrap()
        .estimate(&mut Oracle::new(&head), &mut st);
    match r {
        Err(BilevelError::InvalidParameter { name, reason }) => {
            assert_eq!(name, "meta_layout");
            assert!(reason.contains("use ANIL"), "{reason}");
        }
        other => panic!("expected a layout error, got {other:?}"),
    }
    let q = QuadraticBilevel::<TestBackend>::random(&QuadraticSpec::default(), &dev()).unwrap();
    let mut st = bilevel_core::State::new(t(&[0.0; 5]), t(&[0.0; 8]), 0);
    let r = Maml::new(config(0.1, 1, true))
        .unwrap()
        .estimate(&mut Oracle::new(&q), &mut st);
    assert!(is_invalid(r, "meta_layout"));
    // A task batch larger than the task count.
    let p = meta_quadratic(1, 3, None, 3, 10.0);
    let mut st = meta_state(&p, &[0.0; 3]);
    let cfg = MamlConfig {
        tasks_per_batch: Some(4),
        ..config(0.1, 1, false)
    };
    let r = Maml::new(cfg)
        .unwrap()
        .estimate(&mut Oracle::new(&p), &mut st);
    assert!(is_invalid(r, "tasks_per_batch"));
}

#[test]
fn invalid_configs_are_rejected() {
    let good = config(0.1, 2, false);
    assert!(Maml::new(good).is_ok());
    assert_eq!(
        <Maml as HypergradientEstimator<TestBackend>>::name(&Maml::new(good).unwrap()),
        "maml"
    );
    assert_eq!(
        <Maml as HypergradientEstimator<TestBackend>>::name(
            &Maml::new(config(0.1, 2, true)).unwrap()
        ),
        "fomaml"
    );
    for (cfg, field) in [
        (config(0.0, 2, false), "inner_step"),
        (config(-0.1, 2, false), "inner_step"),
        (config(f64::NAN, 2, false), "inner_step"),
        (config(f64::INFINITY, 2, false), "inner_step"),
        (config(0.1, 0, false), "inner_steps"),
        (
            MamlConfig {
                tasks_per_batch: Some(0),
                ..good
            },
            "tasks_per_batch",
        ),
    ] {
        assert!(is_invalid(Maml::new(cfg), field), "{cfg:?} was accepted");
    }
    assert!(MamlConfig::default().validate().is_ok());
}
