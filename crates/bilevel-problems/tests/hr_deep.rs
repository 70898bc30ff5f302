//! `hr-deep` on a few MNIST images: gradients and exact products against finite differences, the
//! spec, and a few AID-CG outer steps on the LeNet backbone lowering the validation loss.

mod problem_checks;

use std::path::PathBuf;
use std::sync::OnceLock;

use bilevel_algorithms::aid::{Aid, AidConfig, InnerSteps, LinearSolver};
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::scalar;
use bilevel_core::{Batch, BilevelProblem, Oracle, OuterLoop, OuterOptimizer, Solver, State};
use bilevel_data::Mnist;
use bilevel_problems::hr_deep::{HrDeep, HrDeepSpec, Pooling};
use bilevel_problems::{Application, ProblemError};
use problem_checks::{
    dev, directional_gradient_error, host, inner_gd, metric, second_order_errors, t, Level, TB,
};

fn mnist() -> &'static Mnist {
    static MNIST: OnceLock<Mnist> = OnceLock::new();
    MNIST.get_or_init(|| Mnist::load_bundled().unwrap())
}

fn spec(train: usize, val: usize, test: usize) -> HrDeepSpec {
    HrDeepSpec {
        train,
        val,
        test,
        ..Default::default()
    }
}

fn problem(s: &HrDeepSpec, seed: u64) -> HrDeep<TB> {
    HrDeep::from_mnist(s, mnist(), seed, &dev()).unwrap()
}

/// The seeded backbone and a small random head.
fn point(p: &HrDeep<TB>, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let (x0, _) = p.initial_point(seed).unwrap();
    let y: Vec<f64> = Rng::seed(seed)
        .normal_vec(p.y_dim())
        .iter()
        .map(|v| 0.1 * v)
        .collect();
    (host(&x0), y)
}

#[test]
fn gradients_match_central_differences() {
    // burn-ndarray's f64 conv2d is slow in the test profile (~3 s per LeNet gradient on 5
    // images here), so: one direction per check, max pooling only (average pooling's products
    // are checked in bilevel-models).
    let p = problem(&spec(5, 4, 4), 1);
    assert_eq!((p.x_dim(), p.y_dim()), (60_856, 850));
    let (x, y) = point(&p, 2);
    for (level, batch) in [
        (Level::Inner, Batch::Full),
        (Level::Outer, Batch::Indices(vec![0, 3, 3])),
    ] {
        let err = directional_gradient_error(&p, level, &x, &y, &batch, 1, 1e-5, 4);
        println!("{level:?} {batch:?}: {err:e}");
        assert!(err < 1e-6, "{level:?} {batch:?}: {err:e}");
    }
}

#[test]
fn exact_products_match_finite_differences() {
    let p = problem(&spec(5, 4, 4), 2);
    let (x, y) = point(&p, 3);
    let v = Rng::seed(4).normal_vec(p.y_dim());
    // One batch with a repeated index (each product costs seconds on CPU here).
    let batch = Batch::Indices(vec![1, 1, 4]);
    let (eh, ej) = second_order_errors(&p, &x, &y, &v, &batch);
    println!("{batch:?}: hvp {eh:e}, jvp {ej:e}");
    assert!(eh < 1e-6 && ej < 1e-6, "{batch:?}: hvp {eh:e}, jvp {ej:e}");
    // J v reaches the convolutions: the first conv's 156 entries are not all zero.
    let mut oracle = Oracle::new(&p);
    let jv = host(&oracle.jvp(&t(&x), &t(&y), &t(&v), &Batch::Full).unwrap());
    assert!(jv[..156].iter().any(|a| a.abs() > 1e-8));
}

#[test]
fn spec_defaults_toml_and_validation() {
    let d = HrDeepSpec::default();
    assert_eq!((d.train, d.val, d.test), (50_000, 10_000, 10_000));
    assert_eq!((d.reg, d.pool, d.standardize), (1e-3, Pooling::Max, false));
    let q = HrDeepSpec::quick();
    assert_eq!((q.train, q.val, q.test), (2_000, 1_000, 1_000));
    q.validate().unwrap();

    let parsed: HrDeepSpec = toml::from_str("pool = \"avg\"\ntrain = 100\n").unwrap();
    assert_eq!(
        parsed,
        HrDeepSpec {
            pool: Pooling::Avg,
            train: 100,
            ..Default::default()
        }
    );
    let with_dir = HrDeepSpec {
        mnist_dir: Some(PathBuf::from("/somewhere/mnist")),
        ..parsed
    };
    let text = toml::to_string(&with_dir).unwrap();
    assert_eq!(toml::from_str::<HrDeepSpec>(&text).unwrap(), with_dir);
    assert!(toml::from_str::<HrDeepSpec>("pooling = \"avg\"\n").is_err());

    let bad = |s: HrDeepSpec, key: &str| match s.validate() {
        Err(ProblemError::Config { name, .. }) => assert_eq!(name, key),
        other => panic!("{key}: {other:?}"),
    };
    bad(spec(0, 10, 10), "train");
    bad(spec(50_001, 10_000, 10), "train"); // train + val > 60 000
    bad(spec(10, 10, 10_001), "test");
    bad(
        HrDeepSpec {
            reg: -1.0,
            ..spec(10, 10, 10)
        },
        "reg",
    );
    let missing = HrDeepSpec {
        mnist_dir: Some(PathBuf::from("/nonexistent/mnist")),
        ..spec(10, 10, 10)
    };
    assert!(matches!(
        missing.build::<TB>(0, &dev()),
        Err(ProblemError::Data(_))
    ));
}

/// Outer loss after 30 inner GD steps from `W = 0` (a proxy of `Φ(x)`).
fn phi(p: &HrDeep<TB>, x: &[f64]) -> f64 {
    let y = inner_gd(p, &t(x), t(&vec![0.0; p.y_dim()]), 1.0, 30);
    scalar(p.outer_loss::<TB>(t(x), y, &Batch::Full))
}

/// Too slow for the debug test profile on CPU (burn-ndarray's f64 convolutions): run with
/// `cargo test --release -p bilevel-problems --test hr_deep -- --ignored`.
#[test]
#[ignore]
fn aid_cg_outer_steps_improve_the_backbone() {
    let p = problem(&spec(100, 100, 200), 0);
    let (x0, y0) = p.initial_point(0).unwrap();
    let m0 = p.evaluate(&x0, &y0).unwrap();
    // Zero head: uniform predictions, CE = ln 10.
    assert!(
        (metric(&m0, "test_loss") - 10f64.ln()).abs() < 1e-12,
        "{m0:?}"
    );
    let phi0 = phi(&p, &host(&x0));
    let aid = Aid::new(AidConfig {
        inner_step: 1.0,
        inner_steps: InnerSteps::Constant { steps: 10 },
        warm_start_inner: true,
        linear_solver: LinearSolver::ConjugateGradient { steps: 5, tol: 0.0 },
        warm_start_linear: true,
        batches: Default::default(),
    })
    .unwrap();
    let mut solver = OuterLoop::new(aid, OuterOptimizer::sgd(0.5));
    let mut oracle = Oracle::new(&p);
    let mut state = State::new(x0, y0, 0);
    for _ in 0..5 {
        state = solver.next_iter(&mut oracle, state).unwrap();
    }
    let phi1 = phi(&p, &host(&state.x));
    let m = p.evaluate(&state.x, &state.y).unwrap();
    println!("Φ proxy {phi0:.4} → {phi1:.4} after 5 AID-CG steps; {m:?}");
    assert!(phi1 < 0.9 * phi0, "{phi0} → {phi1}");
    assert!(metric(&m, "test_accuracy") > 0.5, "{m:?}");
}
