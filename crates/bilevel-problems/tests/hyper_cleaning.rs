//! `hyper-cleaning` on a small MNIST subset: gradients and products against finite differences,
//! a trained classifier's accuracy, the cleaning metric, data errors.

mod problem_checks;

use std::path::PathBuf;
use std::sync::OnceLock;

use bilevel_core::backend::FlexAutodiff;
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::scalar;
use bilevel_core::{Batch, BilevelProblem};
use bilevel_data::Mnist;
use bilevel_problems::hyper_cleaning::{HyperCleaning, HyperCleaningSpec};
use bilevel_problems::{Application, ProblemError};
use burn::tensor::backend::AutodiffBackend;
use problem_checks::{
    closed_form_vs_autodiff, dev, directional_gradient_error, flex, host, inner_gd, metric,
    second_order_errors, t, Level, TB,
};

fn mnist() -> &'static Mnist {
    static MNIST: OnceLock<Mnist> = OnceLock::new();
    MNIST.get_or_init(|| Mnist::load_bundled().unwrap())
}

fn spec(train: usize, val: usize, test: usize) -> HyperCleaningSpec {
    HyperCleaningSpec {
        train,
        val,
        test,
        ..Default::default()
    }
}

fn problem(s: &HyperCleaningSpec, seed: u64) -> HyperCleaning<TB> {
    problem_on(s, seed, &dev())
}

fn problem_on<B: AutodiffBackend>(
    s: &HyperCleaningSpec,
    seed: u64,
    device: &B::Device,
) -> HyperCleaning<B> {
    HyperCleaning::from_mnist(s, mnist(), seed, device).unwrap()
}

#[test]
fn gradients_match_central_differences() {
    let p = problem(&spec(40, 30, 20), 1);
    assert_eq!((p.x_dim(), p.y_dim()), (40, 7840));
    let mut rng = Rng::seed(3);
    let x = rng.normal_vec(40);
    let y: Vec<f64> = rng.normal_vec(7840).iter().map(|v| 0.05 * v).collect();
    for batch in [Batch::Full, Batch::Indices(vec![0, 7, 7, 39, 12])] {
        for level in [Level::Inner, Level::Outer] {
            let b = match (&batch, level) {
                (Batch::Indices(_), Level::Outer) => Batch::Indices(vec![29, 0, 3]),
                _ => batch.clone(),
            };
            let err = directional_gradient_error(&p, level, &x, &y, &b, 3, 1e-5, 5);
            assert!(err < 1e-6, "{level:?} {b:?}: {err:e}");
        }
    }
    // λ enters only through σ(λ_i) of the selected rows: ∇_λ g is zero off the batch.
    let mut oracle = bilevel_core::Oracle::new(&p);
    let g = oracle
        .grad_g(&t(&x), &t(&y), &Batch::Indices(vec![2, 5]))
        .unwrap();
    let gx = host(&g.x);
    assert!(gx[2] != 0.0 && gx[5] != 0.0);
    assert!(gx
        .iter()
        .enumerate()
        .all(|(i, v)| i == 2 || i == 5 || *v == 0.0));
}

#[test]
fn closed_form_matches_autodiff_to_round_off() {
    closed_form_matches_autodiff_on::<TB>(&dev());
}

/// The same on Flex in f64: the hand-derived `linear_ce` path (row blocks, contiguous `Xᵀ`)
/// against Flex's nested autodiff. (Flex rounding through f32 would leave errors at the f32
/// round-off, far above the 1e-12 bound.)
#[test]
fn closed_form_matches_autodiff_to_round_off_on_flex() {
    closed_form_matches_autodiff_on::<FlexAutodiff>(&flex());
}

fn closed_form_matches_autodiff_on<B: AutodiffBackend>(device: &B::Device) {
    // With and without the bias, on the full batch and on a mini-batch with repeated rows
    // (their λ-gradients add up), at a random point.
    for bias in [false, true] {
        let s = HyperCleaningSpec {
            bias,
            ..spec(60, 25, 20)
        };
        let p = problem_on::<B>(&s, 4, device);
        let mut rng = Rng::seed(11);
        let x = rng.normal_vec(60);
        let y: Vec<f64> = rng.normal_vec(p.y_dim()).iter().map(|v| 0.05 * v).collect();
        let v = rng.normal_vec(p.y_dim());
        for (batch, outer) in [
            (Batch::Full, Batch::Full),
            (
                Batch::Indices(vec![3, 3, 59, 0, 17, 3]),
                Batch::Indices(vec![24, 1, 1]),
            ),
        ] {
            let err = closed_form_vs_autodiff(&p, &x, &y, &v, &batch, &outer);
            eprintln!("closed form vs autodiff, bias {bias}, {batch:?}: {err:.2e}");
            assert!(err < 1e-12, "bias {bias}, {batch:?}: {err:e}");
        }
    }
}

#[test]
fn exact_products_match_finite_differences() {
    let p = problem(&spec(30, 20, 20), 2);
    let mut rng = Rng::seed(8);
    let x = rng.normal_vec(30);
    let y: Vec<f64> = rng.normal_vec(7840).iter().map(|v| 0.05 * v).collect();
    let v = rng.normal_vec(7840);
    for batch in [Batch::Full, Batch::Indices(vec![1, 1, 4, 29])] {
        let (eh, ej) = second_order_errors(&p, &x, &y, &v, &batch);
        assert!(eh < 1e-6 && ej < 1e-6, "{batch:?}: hvp {eh:e}, jvp {ej:e}");
    }
}

#[test]
fn full_batch_equals_all_indices_and_weights_scale_the_loss() {
    let s = HyperCleaningSpec {
        reg: 0.0,
        ..spec(50, 20, 20)
    };
    let p = problem(&s, 3);
    let mut rng = Rng::seed(1);
    let y: Vec<f64> = rng.normal_vec(7840).iter().map(|v| 0.05 * v).collect();
    let x = vec![0.0; 50];
    let full = scalar(p.inner_loss::<TB>(t(&x), t(&y), &Batch::Full));
    let all = scalar(p.inner_loss::<TB>(t(&x), t(&y), &Batch::Indices((0..50).collect())));
    assert!((full - all).abs() < 1e-12 * full);
    // σ(0) = 1/2, σ(+∞) = 1: with reg = 0 the inner loss doubles.
    let big = scalar(p.inner_loss::<TB>(t(&[40.0; 50]), t(&y), &Batch::Full));
    assert!((big - 2.0 * full).abs() < 1e-12 * big, "{big} vs {full}");
}

#[test]
fn inner_descent_at_lambda_zero_trains_a_classifier() {
    // 800 training images: with 10% wrong labels a linear model on 500 tops out near 80%.
    let p = problem(&spec(800, 200, 500), 0);
    let n_bad = p.corrupted().len();
    assert!(
        (50..=110).contains(&n_bad),
        "≈ 10% of 800 labels corrupted: {n_bad}"
    );
    let (x0, y0) = p.initial_point(0).unwrap();
    let m0 = p.evaluate(&x0, &y0).unwrap();
    // W = 0: uniform predictions, CE = ln 10.
    assert!(
        (metric(&m0, "test_loss") - 10f64.ln()).abs() < 1e-12,
        "{m0:?}"
    );
    let y = inner_gd(&p, &x0, y0, 0.5, 200);
    let m = p.evaluate(&x0, &y).unwrap();
    let acc = metric(&m, "test_accuracy");
    println!("800/200/500, p = 0.1, λ = 0, 200 GD steps (α = 0.5): {m:?}");
    // Measured: 0.846 test accuracy, validation CE 0.62.
    assert!(acc > 0.82, "test accuracy {acc}");
    assert!(metric(&m, "val_loss") < 0.8, "{m:?}");
    // Nothing is flagged at λ = 0 (σ = 1/2 is not < 1/2).
    assert_eq!(metric(&m, "flagged_f1"), 0.0);
}

#[test]
fn flagged_f1_scores_the_cleaning() {
    let p = problem(&spec(300, 20, 20), 5);
    let bad = p.corrupted().to_vec();
    assert!(!bad.is_empty());
    let y = vec![0.0; 7840];
    // Perfect flags: λ_i = −1 exactly on the corrupted samples.
    let mut x = vec![1.0; 300];
    for &i in &bad {
        x[i] = -1.0;
    }
    let m = p.evaluate(&t(&x), &t(&y)).unwrap();
    assert_eq!(metric(&m, "flagged_f1"), 1.0);
    // Flag everything: precision = |bad|/300, recall 1.
    let m = p.evaluate(&t(&[-1.0; 300]), &t(&y)).unwrap();
    let prec = bad.len() as f64 / 300.0;
    let expected = 2.0 * prec / (prec + 1.0);
    assert!((metric(&m, "flagged_f1") - expected).abs() < 1e-12, "{m:?}");
    // Half of the corrupted ones and no clean one: precision 1, recall ½ → F1 = 2/3.
    let mut x = vec![1.0; 300];
    let half = bad.len() / 2;
    for &i in &bad[..half] {
        x[i] = -1.0;
    }
    let r = half as f64 / bad.len() as f64;
    let m = p.evaluate(&t(&x), &t(&y)).unwrap();
    assert!((metric(&m, "flagged_f1") - 2.0 * r / (1.0 + r)).abs() < 1e-12);
}

#[test]
fn splits_and_corruption_are_seeded() {
    let s = HyperCleaningSpec {
        corruption: 0.3,
        ..spec(200, 20, 20)
    };
    let a = problem(&s, 7);
    let b = problem(&s, 7);
    let c = problem(&s, 8);
    assert_eq!(a.corrupted(), b.corrupted());
    assert_ne!(a.corrupted(), c.corrupted());
    let rate = a.corrupted().len() as f64 / 200.0;
    assert!((rate - 0.3).abs() < 0.1, "{rate}");
    let none = problem(
        &HyperCleaningSpec {
            corruption: 0.0,
            ..spec(200, 20, 20)
        },
        7,
    );
    assert!(none.corrupted().is_empty());
    assert!(a.describe().contains("MNIST"));
    assert_eq!(a.id(), "hyper-cleaning");
    assert_eq!(
        a.metric_names(),
        vec!["test_accuracy", "test_loss", "val_loss", "flagged_f1"]
    );
}

#[test]
fn bias_and_standardisation_options() {
    let s = HyperCleaningSpec {
        bias: true,
        standardize: true,
        ..spec(40, 20, 20)
    };
    let p = problem(&s, 1);
    assert_eq!(p.y_dim(), 7850);
    let mut rng = Rng::seed(2);
    let x = rng.normal_vec(40);
    let y: Vec<f64> = rng.normal_vec(7850).iter().map(|v| 0.01 * v).collect();
    let err = directional_gradient_error(&p, Level::Inner, &x, &y, &Batch::Full, 2, 1e-5, 1);
    assert!(err < 1e-6, "{err:e}");
}

#[test]
fn missing_or_corrupt_mnist_dir_is_a_data_error() {
    let s = HyperCleaningSpec {
        mnist_dir: Some(PathBuf::from("/nonexistent/mnist")),
        ..spec(10, 10, 10)
    };
    let err = s.build::<TB>(0, &dev()).unwrap_err();
    assert!(matches!(err, ProblemError::Data(_)), "{err}");
    // A folder whose files are garbage: checksum mismatch, not a panic.
    let dir = std::env::temp_dir().join(format!("bilevel-hc-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::write(dir.join(name), b"not an idx file").unwrap();
    }
    let s = HyperCleaningSpec {
        mnist_dir: Some(dir.clone()),
        ..spec(10, 10, 10)
    };
    let err = s.build::<TB>(0, &dev()).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    match err {
        ProblemError::Data(e) => assert!(
            e.to_string().contains("checksum") || e.to_string().contains("SHA"),
            "{e}"
        ),
        other => panic!("{other}"),
    }
}

/// A problem built from a user's burn `Dataset`: MNIST handed over as burn's `InMemDataset` of
/// `ImageItem`s, read back with `Dataset::from_burn`, gives the same problem as the bundled
/// loader (same corrupted samples, same losses at a random point). Fails if `from_burn`
/// reordered or relabelled items (the corrupted set or the losses would differ), or if the
/// problem ignored the data it is given.
#[test]
fn builds_from_a_users_burn_dataset() {
    use bilevel_data::burn_dataset::{Dataset as _, InMemDataset};
    use bilevel_data::{Dataset, ImageItem};
    let to_burn = |d: &Dataset| {
        InMemDataset::new(
            (0..d.len)
                .map(|i| ImageItem {
                    image: d.image(i).unwrap().to_vec(),
                    label: d.labels[i],
                })
                .collect::<Vec<_>>(),
        )
    };
    let (train, test) = (to_burn(&mnist().train), to_burn(&mnist().test));
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    let users = Mnist {
        train: Dataset::from_burn(&train, 28, 28).unwrap(),
        test: Dataset::from_burn(&test, 28, 28).unwrap(),
    };
    let s = spec(60, 30, 20);
    let ours = problem(&s, 4);
    let theirs = HyperCleaning::<TB>::from_mnist(&s, &users, 4, &dev()).unwrap();
    assert_eq!(theirs.corrupted(), ours.corrupted());
    let mut rng = Rng::seed(5);
    let x = t(&rng.normal_vec(60));
    let y = t(&rng
        .normal_vec(7840)
        .iter()
        .map(|v| 0.05 * v)
        .collect::<Vec<_>>());
    for (a, b) in [
        (
            ours.inner_loss::<TB>(x.clone(), y.clone(), &Batch::Full),
            theirs.inner_loss::<TB>(x.clone(), y.clone(), &Batch::Full),
        ),
        (
            ours.outer_loss::<TB>(x.clone(), y.clone(), &Batch::Full),
            theirs.outer_loss::<TB>(x.clone(), y.clone(), &Batch::Full),
        ),
    ] {
        assert_eq!(scalar(a), scalar(b));
    }
}
