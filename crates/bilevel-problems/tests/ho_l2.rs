//! `ho-l2-mnist` on a small MNIST subset: gradients and products against finite differences
//! and closed forms, the regulariser's effect, a trained classifier's accuracy, spec checks.

mod problem_checks;

use std::path::PathBuf;
use std::sync::OnceLock;

use bilevel_core::sampling::Rng;
use bilevel_core::tensor::scalar;
use bilevel_core::{Batch, BilevelProblem, Oracle};
use bilevel_data::Mnist;
use bilevel_problems::ho_l2::{HoL2Mnist, HoL2MnistSpec};
use bilevel_problems::{Application, ProblemError};
use problem_checks::{
    closed_form_vs_autodiff, dev, directional_gradient_error, host, inner_gd, metric,
    second_order_errors, t, Level, TB,
};

fn mnist() -> &'static Mnist {
    static MNIST: OnceLock<Mnist> = OnceLock::new();
    MNIST.get_or_init(|| Mnist::load_bundled().unwrap())
}

fn problem(train: usize, val: usize, test: usize, corruption: f64, seed: u64) -> HoL2Mnist<TB> {
    let spec = HoL2MnistSpec {
        train,
        val,
        test,
        corruption,
        ..Default::default()
    };
    HoL2Mnist::from_mnist(&spec, mnist(), seed, &dev()).unwrap()
}

fn small_y(seed: u64) -> Vec<f64> {
    Rng::seed(seed)
        .normal_vec(7840)
        .iter()
        .map(|v| 0.05 * v)
        .collect()
}

#[test]
fn gradients_match_central_differences_and_closed_form() {
    let p = problem(40, 30, 20, 0.3, 1);
    assert_eq!((p.x_dim(), p.y_dim()), (1, 7840));
    let y = small_y(2);
    for x in [-3.0, 0.7] {
        for (level, batch) in [
            (Level::Inner, Batch::Full),
            (Level::Inner, Batch::Indices(vec![0, 39, 39, 5])),
            (Level::Outer, Batch::Full),
            (Level::Outer, Batch::Indices(vec![29, 1])),
        ] {
            let err = directional_gradient_error(&p, level, &[x], &y, &batch, 3, 1e-5, 3);
            assert!(err < 1e-6, "x = {x}, {level:?} {batch:?}: {err:e}");
        }
        // ∇_x g = exp(x)‖W‖² exactly; ∇_x f = 0.
        let mut oracle = Oracle::new(&p);
        let g = oracle.grad_g(&t(&[x]), &t(&y), &Batch::Full).unwrap();
        let w2: f64 = y.iter().map(|v| v * v).sum();
        assert!((host(&g.x)[0] - x.exp() * w2).abs() < 1e-12 * x.exp() * w2);
        let f = oracle.grad_f(&t(&[x]), &t(&y), &Batch::Full).unwrap();
        assert_eq!(host(&f.x), vec![0.0]);
    }
}

#[test]
fn exact_products_match_finite_differences_and_closed_form() {
    let p = problem(30, 20, 20, 0.5, 2);
    let y = small_y(4);
    let v = Rng::seed(5).normal_vec(7840);
    let x = -1.5f64;
    for batch in [Batch::Full, Batch::Indices(vec![3, 3, 17])] {
        let (eh, ej) = second_order_errors(&p, &[x], &y, &v, &batch);
        assert!(eh < 1e-6 && ej < 1e-6, "{batch:?}: hvp {eh:e}, jvp {ej:e}");
    }
    // J v = ∂_x⟨∇_W g, v⟩ = 2 exp(x) ⟨W, v⟩.
    let mut oracle = Oracle::new(&p);
    let jv = host(&oracle.jvp(&t(&[x]), &t(&y), &t(&v), &Batch::Full).unwrap())[0];
    let expected = 2.0 * x.exp() * y.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>();
    assert!(
        (jv - expected).abs() < 1e-12 * expected.abs(),
        "{jv} vs {expected}"
    );
}

#[test]
fn hand_derived_oracle_matches_autodiff_to_round_off() {
    let p = problem(50, 20, 20, 0.2, 6);
    let y = small_y(12);
    let v = Rng::seed(13).normal_vec(7840);
    for x in [-1.3, 0.4] {
        for (batch, outer) in [
            (Batch::Full, Batch::Full),
            (
                Batch::Indices(vec![9, 9, 0, 49]),
                Batch::Indices(vec![19, 2]),
            ),
        ] {
            let err = closed_form_vs_autodiff(&p, &[x], &y, &v, &batch, &outer);
            eprintln!("closed form vs autodiff, x {x}, {batch:?}: {err:.2e}");
            assert!(err < 1e-12, "x {x}, {batch:?}: {err:e}");
        }
    }
}

#[test]
fn full_batch_equals_all_indices() {
    let p = problem(50, 20, 20, 0.1, 3);
    let y = small_y(6);
    let full = scalar(p.inner_loss::<TB>(t(&[0.3]), t(&y), &Batch::Full));
    let all = scalar(p.inner_loss::<TB>(t(&[0.3]), t(&y), &Batch::Indices((0..50).collect())));
    assert!((full - all).abs() < 1e-12 * full);
    assert_eq!((p.inner_len(), p.outer_len()), (Some(50), Some(20)));
}

#[test]
fn inner_descent_trains_and_regularisation_shrinks_the_weights() {
    let p = problem(500, 200, 500, 0.1, 0);
    let (x0, y0) = p.initial_point(0).unwrap();
    assert_eq!(host(&x0), vec![0.0]);
    let m0 = p.evaluate(&x0, &y0).unwrap();
    assert!((metric(&m0, "test_loss") - 10f64.ln()).abs() < 1e-12);
    let weak = t(&[(1e-4f64).ln()]);
    let y_weak = inner_gd(&p, &weak, y0.clone(), 0.5, 150);
    let m = p.evaluate(&weak, &y_weak).unwrap();
    println!("500/200/500, p = 0.1, exp(x) = 1e-4, 150 GD steps (α = 0.5): {m:?}");
    // Measured: 0.80 test accuracy.
    assert!(metric(&m, "test_accuracy") > 0.75, "{m:?}");
    let strong = t(&[(1.0f64).ln()]);
    let y_strong = inner_gd(&p, &strong, y0, 0.2, 150);
    let norm = |y: &[f64]| y.iter().map(|v| v * v).sum::<f64>().sqrt();
    let (nw, ns) = (norm(&host(&y_weak)), norm(&host(&y_strong)));
    assert!(ns < 0.2 * nw, "‖W‖: weak reg {nw}, strong reg {ns}");
}

#[test]
fn label_noise_is_uniform_over_all_classes() {
    // "Random label with probability p": about p·9/10 of the labels change.
    let p = problem(2000, 10, 10, 0.5, 9);
    let rate = p.changed_labels() as f64 / 2000.0;
    assert!((rate - 0.45).abs() < 0.04, "{rate}");
    assert_eq!(problem(300, 10, 10, 0.0, 9).changed_labels(), 0);
    assert_eq!(p.id(), "ho-l2-mnist");
    assert!(p.describe().contains("MNIST"));
    assert_eq!(
        p.metric_names(),
        vec!["test_accuracy", "test_loss", "val_loss"]
    );
}

#[test]
fn validate_rejects_bad_values_and_missing_data() {
    let bad = |s: HoL2MnistSpec, key: &str| match s.validate() {
        Err(ProblemError::Config { name, .. }) => assert_eq!(name, key),
        other => panic!("{key}: {other:?}"),
    };
    let d = HoL2MnistSpec::default;
    bad(
        HoL2MnistSpec {
            corruption: 1.01,
            ..d()
        },
        "corruption",
    );
    bad(HoL2MnistSpec { train: 0, ..d() }, "train");
    bad(
        HoL2MnistSpec {
            train: 60_001,
            ..d()
        },
        "train",
    );
    bad(HoL2MnistSpec { val: 20_001, ..d() }, "train");
    bad(HoL2MnistSpec { test: 0, ..d() }, "test");
    bad(
        HoL2MnistSpec {
            x0: f64::NAN,
            ..d()
        },
        "x0",
    );
    d().validate().unwrap();
    let s = HoL2MnistSpec {
        mnist_dir: Some(PathBuf::from("/nonexistent/mnist")),
        train: 10,
        val: 10,
        test: 10,
        ..d()
    };
    assert!(matches!(
        s.build::<TB>(0, &dev()),
        Err(ProblemError::Data(_))
    ));
}
