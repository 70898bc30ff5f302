//! `poisoning` on a small MNIST subset: gradients and products against finite differences, the
//! L∞ constraint, and a one-step attack that raises the validation loss of the retrained model.

mod problem_checks;

use std::path::PathBuf;
use std::sync::OnceLock;

use bilevel_core::linear::{conjugate_gradient, CgConfig};
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::scalar;
use bilevel_core::{Batch, BilevelProblem, Constraint, Oracle, SecondOrder};
use bilevel_data::Mnist;
use bilevel_problems::poisoning::{Poisoning, PoisoningSpec};
use bilevel_problems::{Application, ProblemError};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use problem_checks::{
    closed_form_vs_autodiff, dev, directional_gradient_error, flex, host, inner_gd, metric,
    second_order_errors, t, Level, TB,
};

fn mnist() -> &'static Mnist {
    static MNIST: OnceLock<Mnist> = OnceLock::new();
    MNIST.get_or_init(|| Mnist::load_bundled().unwrap())
}

fn spec(train: usize, poisoned: usize, val: usize, test: usize) -> PoisoningSpec {
    PoisoningSpec {
        train,
        poisoned,
        val,
        test,
        ..Default::default()
    }
}

fn problem(s: &PoisoningSpec, seed: u64) -> Poisoning<TB> {
    problem_on(s, seed, &dev())
}

fn problem_on<B: AutodiffBackend>(
    s: &PoisoningSpec,
    seed: u64,
    device: &B::Device,
) -> Poisoning<B> {
    Poisoning::from_mnist(s, mnist(), seed, device).unwrap()
}

fn small(seed: u64, n: usize, scale: f64) -> Vec<f64> {
    Rng::seed(seed)
        .normal_vec(n)
        .iter()
        .map(|v| scale * v)
        .collect()
}

#[test]
fn gradients_match_central_differences() {
    let p = problem(&spec(30, 10, 20, 20), 1);
    assert_eq!((p.x_dim(), p.y_dim()), (7840, 7840));
    assert_eq!((p.clean_len(), p.poisoned_len()), (20, 10));
    assert_eq!(p.inner_len(), Some(30));
    let x = small(1, 7840, 0.1);
    let y = small(2, 7840, 0.05);
    for (level, batch) in [
        (Level::Inner, Batch::Full),
        // Mixed clean (< 20) and poisoned (≥ 20) rows, with a repeat.
        (Level::Inner, Batch::Indices(vec![0, 25, 25, 19, 29])),
        // Only poisoned rows / only clean rows.
        (Level::Inner, Batch::Indices(vec![20, 21])),
        (Level::Inner, Batch::Indices(vec![3])),
        (Level::Outer, Batch::Full),
        (Level::Outer, Batch::Indices(vec![19, 2])),
    ] {
        let err = directional_gradient_error(&p, level, &x, &y, &batch, 2, 1e-5, 4);
        assert!(err < 1e-6, "{level:?} {batch:?}: {err:e}");
    }
    // The noise of poisoned image j only moves g through sample 20 + j.
    let mut oracle = Oracle::new(&p);
    let g = host(
        &oracle
            .grad_g(&t(&x), &t(&y), &Batch::Indices(vec![22]))
            .unwrap()
            .x,
    );
    let nonzero: Vec<usize> = (0..10)
        .filter(|j| g[j * 784..(j + 1) * 784].iter().any(|v| *v != 0.0))
        .collect();
    assert_eq!(nonzero, vec![2]);
    // Clean rows do not depend on the noise at all.
    let g = host(
        &oracle
            .grad_g(&t(&x), &t(&y), &Batch::Indices(vec![0, 5]))
            .unwrap()
            .x,
    );
    assert!(g.iter().all(|v| *v == 0.0));
}

#[test]
fn closed_form_matches_autodiff_to_round_off() {
    closed_form_matches_autodiff_on::<TB>(&dev());
}

/// The same on Flex in f64 (noisy rows split across view blocks, the scattered `∂/∂Δ`).
/// (Flex rounding through f32 would leave errors at the
/// f32 round-off, far above the 1e-12 bound.)
#[test]
fn closed_form_matches_autodiff_to_round_off_on_flex() {
    closed_form_matches_autodiff_on::<bilevel_core::backend::FlexAutodiff>(&flex());
}

fn closed_form_matches_autodiff_on<B: AutodiffBackend>(device: &B::Device) {
    // The hand-derived derivatives (noisy rows, negated outer loss; the default path) against
    // nested autodiff of the losses, with and without the bias, on the full batch and on
    // mini-batches of mixed, only-poisoned (with a repeat) and only-clean rows; and with every
    // training image poisoned.
    for (train, poisoned, bias) in [(30, 10, false), (30, 10, true), (12, 12, false)] {
        let s = PoisoningSpec {
            bias,
            ..spec(train, poisoned, 20, 20)
        };
        let p = problem_on::<B>(&s, 3, device);
        let x = small(4, p.x_dim(), 0.1);
        let y = small(5, p.y_dim(), 0.05);
        let v = small(6, p.y_dim(), 1.0);
        let batches = [
            (Batch::Full, Batch::Full),
            (
                Batch::Indices(vec![0, 25, 25, 19, 29, 3]),
                Batch::Indices(vec![4, 4, 17]),
            ),
            (Batch::Indices(vec![21, 20, 21]), Batch::Indices(vec![0])),
            (Batch::Indices(vec![7, 2]), Batch::Full),
        ];
        let n = if train == poisoned { 1 } else { batches.len() };
        for (batch, outer) in batches.into_iter().take(n) {
            let err = closed_form_vs_autodiff(&p, &x, &y, &v, &batch, &outer);
            eprintln!(
                "closed form vs autodiff, {train}/{poisoned}, bias {bias}, {batch:?}: {err:.2e}"
            );
            assert!(
                err < 1e-12,
                "{train}/{poisoned}, bias {bias}, {batch:?}: {err:e}"
            );
        }
    }
}

#[test]
fn exact_products_match_finite_differences() {
    let p = problem(&spec(24, 8, 10, 10), 2);
    let x = small(3, 8 * 784, 0.1);
    let y = small(4, 7840, 0.05);
    let v = small(5, 7840, 1.0);
    for batch in [Batch::Full, Batch::Indices(vec![1, 17, 17, 23])] {
        let (eh, ej) = second_order_errors(&p, &x, &y, &v, &batch);
        assert!(eh < 1e-6 && ej < 1e-6, "{batch:?}: hvp {eh:e}, jvp {ej:e}");
    }
}

#[test]
fn losses_constraint_and_metrics() {
    let p = problem(&spec(40, 10, 20, 20), 3);
    let y0 = vec![0.0; 7840];
    let x0 = vec![0.0; 7840];
    // W = 0: every cross-entropy is ln 10, f = −ln 10, g = ln 10.
    let f = scalar(p.outer_loss::<TB>(t(&x0), t(&y0), &Batch::Full));
    assert!((f + 10f64.ln()).abs() < 1e-12);
    let g = scalar(p.inner_loss::<TB>(t(&x0), t(&y0), &Batch::Full));
    assert!((g - 10f64.ln()).abs() < 1e-12);
    let m = p.evaluate(&t(&x0), &t(&y0)).unwrap();
    assert!((metric(&m, "val_loss") - 10f64.ln()).abs() < 1e-12);
    // The ridge term is r · mean(W²).
    let y1 = vec![0.5; 7840];
    let g1 = scalar(p.inner_loss::<TB>(t(&x0), t(&y1), &Batch::Full));
    assert!((g1 - (10f64.ln() + 0.1 * 0.25)).abs() < 1e-12, "{g1}");
    // Full equals all indices.
    let x = small(7, 7840, 0.1);
    let y = small(8, 7840, 0.05);
    let full = scalar(p.inner_loss::<TB>(t(&x), t(&y), &Batch::Full));
    let all = scalar(p.inner_loss::<TB>(t(&x), t(&y), &Batch::Indices((0..40).collect())));
    assert!((full - all).abs() < 1e-12 * full);
    assert_eq!(p.upper_constraint(), Constraint::LInfBall { radius: 0.2 });
    let projected = host(&p.upper_constraint().project(t(&[0.5, -0.3, 0.1])));
    assert_eq!(projected, vec![0.2, -0.2, 0.1]);
    assert_eq!(p.id(), "poisoning");
    assert!(p.describe().contains("MNIST"));
}

/// One projected hypergradient step on the noise (AID: inner GD, CG on the Hessian) must raise
/// the validation loss of the classifier retrained on the poisoned data.
#[test]
fn one_attack_step_raises_the_retrained_validation_loss() {
    let s = PoisoningSpec {
        reg: 1.0,
        ..spec(100, 50, 100, 100)
    };
    let p = problem(&s, 4);
    let (x0, y0) = p.initial_point(0).unwrap();
    let (step, steps) = (0.5, 150);
    let y_clean = inner_gd(&p, &x0, y0.clone(), step, steps);
    let m0 = p.evaluate(&x0, &y_clean).unwrap();
    let before = metric(&m0, "val_loss");
    // ∇Φ = ∇_x f − J H⁻¹ ∇_y f, and ∇_x f = 0.
    let mut oracle = Oracle::new(&p);
    let gf = oracle.grad_f(&x0, &y_clean, &Batch::Full).unwrap();
    let cg = conjugate_gradient(
        |v| {
            let mut o = Oracle::new(&p);
            o.hvp(&x0, &y_clean, v, &Batch::Full)
        },
        &gf.y,
        None,
        &CgConfig {
            max_iters: 40,
            tol: 1e-8,
        },
    )
    .unwrap();
    let jv = oracle
        .jvp(&x0, &y_clean, &cg.solution, &Batch::Full)
        .unwrap();
    let hyper = gf.x.sub(jv);
    // A large step, projected: the signed (FGSM-like) attack at radius ε.
    let x1 = p
        .upper_constraint()
        .project(x0.clone().sub(hyper.mul_scalar(1e6)));
    let xs = host(&x1);
    assert!(xs.iter().all(|v| v.abs() <= 0.2 + 1e-15));
    let y_poisoned = inner_gd(&p, &x1, y0, step, steps);
    let m = p.evaluate(&x1, &y_poisoned).unwrap();
    let after = metric(&m, "val_loss");
    println!(
        "100 train (50 poisoned), ε = 0.2: val CE {before:.4} → {after:.4}; CG residual {:?}; \
         {m0:?} → {m:?}",
        cg.relative_residual
    );
    // Measured: validation CE 0.92 → 1.68.
    assert!(after > before + 0.3, "{before} → {after}");
    assert!(
        metric(&m, "test_accuracy") < metric(&m0, "test_accuracy"),
        "{m0:?} → {m:?}"
    );
}

/// The fresh classifier of the end-of-run metrics minimises `g(x, ·)` of the poisoned set: the
/// gradient of `g` by nested autodiff of the losses (independent of the hand-derived oracle the
/// retraining steps with) vanishes there to 1e-6 of its value at `W = 0` (1e-3 with a bias,
/// which is not regularised, so the convergence is sublinear; measured 3e-11 and 5.7e-4 after
/// 600 steps), and the metrics report its test accuracy and gradient norm. Fails (tried) when
/// the retraining takes its gradient at `x = 0` (no noise) and when its momentum is not
/// capped; it does not fail with the step raised to 10 × 1/L (Böhning's bound is loose on this
/// small, strongly regularised instance). (While the retraining had its own hand-written
/// gradient it also failed with that gradient's ridge term, noise or bias part dropped.)
#[test]
fn the_retrained_classifier_solves_the_poisoned_lower_level() {
    for bias in [false, true] {
        let s = PoisoningSpec {
            reg: 100.0,
            bias,
            retrain_steps: 600,
            ..spec(100, 50, 100, 100)
        };
        let p = problem(&s, 4);
        let x = p.upper_constraint().project(t(&small(9, p.x_dim(), 0.2)));
        let (w, norm) = p.retrain(&x).unwrap();
        let mut oracle = Oracle::with_mode(&p, SecondOrder::Autodiff);
        let mut grad_norm = |y: &Tensor<TB, 1>| {
            let g = oracle.grad_g_y(&x, y, &Batch::Full).unwrap();
            scalar(g.powi_scalar(2).sum().sqrt())
        };
        let zero = t(&vec![0.0; p.y_dim()]);
        let (start, there) = (grad_norm(&zero), grad_norm(&w));
        println!(
            "bias {bias}: ‖∇g‖ {start:.3e} at W = 0, {there:.3e} retrained ({norm:.3e} its own)"
        );
        let tol = if bias { 1e-3 } else { 1e-6 };
        assert!(there <= tol * start, "bias {bias}: {there:e} vs {start:e}");
        assert!(
            (norm - there).abs() <= 1e-3 * start,
            "{norm:e} vs {there:e}"
        );

        let names = p.final_metric_names();
        let m = p.evaluate_final(&x, &zero).unwrap();
        assert_eq!(m.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), names);
        let acc = metric(&m, "retrained_test_accuracy");
        assert!((0.3..=1.0).contains(&acc), "{acc}");
        let expected = p.evaluate(&x, &w).unwrap();
        assert_eq!(acc, metric(&expected, "test_accuracy"));
    }
    let off = problem(
        &PoisoningSpec {
            retrain_steps: 0,
            ..spec(20, 5, 20, 20)
        },
        1,
    );
    assert!(off.final_metric_names().is_empty());
}

#[test]
fn validate_rejects_bad_values_and_missing_data() {
    let bad = |s: PoisoningSpec, key: &str| match s.validate() {
        Err(ProblemError::Config { name, .. }) => assert_eq!(name, key),
        other => panic!("{key}: {other:?}"),
    };
    let d = PoisoningSpec::default;
    bad(PoisoningSpec { poisoned: 0, ..d() }, "poisoned");
    bad(
        PoisoningSpec {
            poisoned: 45_001,
            ..d()
        },
        "poisoned",
    );
    bad(PoisoningSpec { radius: 0.0, ..d() }, "radius");
    bad(PoisoningSpec { radius: 2.0, ..d() }, "radius");
    bad(PoisoningSpec { reg: 0.0, ..d() }, "reg");
    bad(
        PoisoningSpec {
            retrain_steps: 100_001,
            ..d()
        },
        "retrain_steps",
    );
    bad(
        PoisoningSpec {
            train: 50_000,
            ..d()
        },
        "train",
    );
    bad(
        PoisoningSpec {
            test: 20_000,
            ..d()
        },
        "test",
    );
    d().validate().unwrap();
    let s = PoisoningSpec {
        mnist_dir: Some(PathBuf::from("/nonexistent/mnist")),
        ..spec(10, 5, 10, 10)
    };
    assert!(matches!(
        s.build::<TB>(0, &dev()),
        Err(ProblemError::Data(_))
    ));
}
