//! ANIL (head-only inner loop): exactness against the closed-form meta-gradient over body and
//! head initialisation on quadratic tasks (T = 1 and T = 3) and against finite differences of
//! the unrolled objective on a tanh MLP whose last layer adapts, the first-order variant, oracle
//! counts, and layout errors.

mod common;

use bilevel_algorithms::anil::{Anil, AnilConfig};
use bilevel_core::problems::{QuadraticBilevel, QuadraticSpec};
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::rel_err_host;
use bilevel_core::{
    BilevelError, BilevelProblem, HypergradientEstimator, Oracle, OuterLoop, OuterOptimizer,
};
use common::implicit::one_iter;
use common::meta::*;
use common::*;

fn config(inner_step: f64, inner_steps: usize, first_order: bool) -> AnilConfig {
    AnilConfig {
        inner_step,
        inner_steps,
        first_order,
        tasks_per_batch: None,
    }
}

fn estimate<P: BilevelProblem<TestBackend>>(
    p: &P,
    cfg: AnilConfig,
    theta: &[f64],
) -> (Vec<f64>, bilevel_core::State<TestBackend>) {
    let mut st = meta_state(p, theta);
    let g = Anil::new(cfg)
        .unwrap()
        .estimate(&mut Oracle::new(p), &mut st)
        .unwrap();
    (host(&g), st)
}

#[test]
fn second_order_matches_the_closed_form_on_quadratics() {
    // Body φ = θ[0..4], head w = θ[4..6]. Mutations tried in maml.rs (the shared code), each
    // failing this test: dropping Sᵀa_0; dropping or flipping the sign of the J term; dropping
    // or flipping the H term; inner step α instead of α·|𝒯|; first order in place of second.
    for (seed, steps) in [(1, 1), (2, 3), (3, 3)] {
        let p = meta_quadratic(seed, 6, Some(2), 3, 10.0);
        let theta = Rng::seed(seed + 100).normal_vec(6);
        let alpha = 0.05;
        let (g, st) = estimate(&p, config(alpha, steps, false), &theta);
        let expected = p.meta_gradient(&theta, alpha, steps, false, &[0, 1, 2]);
        let err = rel_err_host(&g, &expected);
        assert!(err < 1e-10, "T={steps}: rel_err {err:e}");
        // The body's part is not the plain query gradient: the J terms contribute.
        let fo = p.meta_gradient(&theta, alpha, steps, true, &[0, 1, 2]);
        assert!(rel_err_host(&g[..4], &fo[..4]) > 1e-2);
        // y_T = the adapted heads; outer_loss = the meta-objective.
        let y = host(&st.y);
        assert_eq!(y.len(), 6);
        for i in 0..3 {
            let (z, _) = p.adapt(i, &theta, alpha, steps);
            assert!(rel_err_host(&y[2 * i..2 * (i + 1)], &z[4..]) < 1e-12);
            assert_eq!(&z[..4], &theta[..4], "the body adapted");
        }
        let f = p.meta_objective(&theta, alpha, steps, &[0, 1, 2]);
        assert!((st.outer_loss.unwrap() - f).abs() < 1e-12 * f.abs().max(1.0));
    }
}

#[test]
fn first_order_matches_its_closed_form_and_differs_from_anil() {
    // Mutations tried in maml.rs, each failing this test: dropping ∇_x f from the first-order
    // estimate (zero for MAML, the body's gradient here); second order in place of first order;
    // inner step α instead of α·|𝒯|; dropping the H term of the second-order estimate.
    let p = meta_quadratic(4, 6, Some(3), 3, 10.0);
    let theta = Rng::seed(5).normal_vec(6);
    for steps in [1, 3] {
        let (fo, _) = estimate(&p, config(0.08, steps, true), &theta);
        let expected = p.meta_gradient(&theta, 0.08, steps, true, &[0, 1, 2]);
        let err = rel_err_host(&fo, &expected);
        assert!(err < 1e-10, "T={steps}: rel_err {err:e}");
        let (so, _) = estimate(&p, config(0.08, steps, false), &theta);
        let gap = rel_err_host(&fo, &so);
        assert!(
            gap > 0.1,
            "T={steps}: first-order ANIL is only {gap:e} from ANIL"
        );
    }
}

#[test]
fn matches_finite_differences_of_the_unrolled_objective_on_an_mlp() {
    // The last layer (W₂, b₂) adapts; the hidden layer is the body. Mutations tried in maml.rs,
    // each failing here: dropping Sᵀa_0; dropping or flipping the J term; dropping or flipping
    // the H term; inner step α instead of α·|𝒯|; first order in place of second and vice versa.
    let p = meta_sine(17, true);
    let theta = p.random_theta(0.7, &mut Rng::seed(18));
    for steps in [2, 3] {
        let alpha = 0.2;
        let (g, _) = estimate(&p, config(alpha, steps, false), &theta);
        let fd = fd_meta_gradient(&p, &theta, alpha, steps, 1e-6);
        let err = rel_err_host(&g, &fd);
        assert!(err < 1e-6, "T={steps}: rel_err {err:e}");
        let (fo, _) = estimate(&p, config(alpha, steps, true), &theta);
        let gap = rel_err_host(&fo, &fd);
        assert!(
            gap > 1e-2,
            "first-order ANIL is only {gap:e} from the FD gradient"
        );
    }
}

#[test]
fn oracle_counts_match_the_module_doc() {
    // Mutations tried in maml.rs, each failing here: first order in place of second order and
    // vice versa.
    let p = meta_quadratic(13, 5, Some(2), 3, 10.0);
    for (steps, first_order) in [(1, false), (4, false), (3, true)] {
        let mut solver = OuterLoop::new(
            Anil::new(config(0.05, steps, first_order)).unwrap(),
            OuterOptimizer::sgd(0.1),
        );
        let mut oracle = Oracle::new(&p);
        let mut st = meta_state(&p, &[0.1, 0.2, 0.3, 0.4, 0.5]);
        for _ in 0..2 {
            let (c, next) = one_iter(&mut solver, &mut oracle, st);
            st = next;
            assert_eq!(c, meta_counts(steps as u64, !first_order, 3), "T={steps}");
        }
    }
}

#[test]
fn layouts_adapting_the_whole_network_are_refused() {
    // Mutation tried: without ANIL's layout check this test fails (the estimate is returned).
    let full = meta_quadratic(1, 5, None, 3, 10.0);
    let mut st = meta_state(&full, &[0.0; 5]);
    let r = Anil::new(config(0.1, 1, false))
        .unwrap()
        .estimate(&mut Oracle::new(&full), &mut st);
    match r {
        Err(BilevelError::InvalidParameter { name, reason }) => {
            assert_eq!(name, "meta_layout");
            assert!(reason.contains("use MAML"), "{reason}");
        }
        other => panic!("expected a layout error, got {other:?}"),
    }
    let q = QuadraticBilevel::<TestBackend>::random(&QuadraticSpec::default(), &dev()).unwrap();
    let mut st = bilevel_core::State::new(t(&[0.0; 5]), t(&[0.0; 8]), 0);
    let r = Anil::new(config(0.1, 1, false))
        .unwrap()
        .estimate(&mut Oracle::new(&q), &mut st);
    assert!(is_invalid(r, "meta_layout"));
}

#[test]
fn names_and_invalid_configs() {
    let name = |cfg| <Anil as HypergradientEstimator<TestBackend>>::name(&Anil::new(cfg).unwrap());
    assert_eq!(name(config(0.1, 1, false)), "anil");
    assert_eq!(name(config(0.1, 1, true)), "foanil");
    assert!(is_invalid(Anil::new(config(-1.0, 1, false)), "inner_step"));
    assert!(is_invalid(Anil::new(config(0.1, 0, false)), "inner_steps"));
}
