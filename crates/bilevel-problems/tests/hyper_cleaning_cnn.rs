//! `hyper-cleaning-cnn` on tiny MNIST subsets with a 2–4-filter CNN4: gradients and exact
//! second-order products (through conv, batch norm and max pooling) against finite differences,
//! the per-sample structure of `∇_λ g`, a short inner training run, spec handling and data
//! errors.

mod problem_checks;

use std::sync::OnceLock;

use bilevel_core::sampling::Rng;
use bilevel_core::tensor::scalar;
use bilevel_core::{Batch, BilevelProblem, Oracle};
use bilevel_data::{DataError, Mnist};
use bilevel_problems::hyper_cleaning_cnn::{
    HyperCleaningCnn, HyperCleaningCnnSpec, ImageDataset, PoolSpec,
};
use bilevel_problems::{Application, ProblemError};
use problem_checks::{
    dev, directional_gradient_error, host, inner_gd, metric, second_order_errors, t, Level, TB,
};

fn mnist() -> &'static Mnist {
    static MNIST: OnceLock<Mnist> = OnceLock::new();
    MNIST.get_or_init(|| Mnist::load_bundled().unwrap())
}

fn spec(train: usize, val: usize, test: usize, filters: usize) -> HyperCleaningCnnSpec {
    HyperCleaningCnnSpec {
        train,
        val,
        test,
        filters,
        ..Default::default()
    }
}

fn problem(s: &HyperCleaningCnnSpec, seed: u64) -> HyperCleaningCnn<TB> {
    HyperCleaningCnn::from_data(s, mnist(), None, seed, &dev()).unwrap()
}

/// The seeded initial network plus `scale`-sized noise on every coordinate (a non-zero head).
fn point(p: &HyperCleaningCnn<TB>, seed: u64, scale: f64) -> (Vec<f64>, Vec<f64>) {
    let (_, y0) = p.initial_point(seed).unwrap();
    let mut rng = Rng::seed(seed + 1);
    let x = rng.normal_vec(p.x_dim());
    let y = host(&y0)
        .iter()
        .zip(rng.normal_vec(p.y_dim()))
        .map(|(a, n)| a + scale * n)
        .collect();
    (x, y)
}

#[test]
fn gradients_match_central_differences() {
    for pool in [PoolSpec::Max, PoolSpec::Avg] {
        let s = HyperCleaningCnnSpec {
            pool,
            ..spec(10, 8, 10, 2)
        };
        let p = problem(&s, 1);
        // CNN4 with 2 filters: 22 + 3·40 parameters, head 2·10 + 10.
        assert_eq!((p.x_dim(), p.y_dim(), p.backbone_len()), (10, 172, 142));
        let (x, y) = point(&p, 3, 0.1);
        for level in [Level::Inner, Level::Outer] {
            for batch in [Batch::Full, Batch::Indices(vec![0, 7, 7, 3])] {
                let err = directional_gradient_error(&p, level, &x, &y, &batch, 1, 1e-6, 5);
                println!("{pool:?} {level:?} {batch:?}: gradient error {err:e}");
                assert!(err < 1e-6, "{pool:?} {level:?} {batch:?}: {err:e}");
            }
        }
    }
}

#[test]
fn exact_products_match_finite_differences() {
    let p = problem(&spec(10, 8, 10, 2), 2);
    let (x, y) = point(&p, 8, 0.1);
    let v = Rng::seed(9).normal_vec(p.y_dim());
    for batch in [Batch::Full, Batch::Indices(vec![1, 1, 4, 9])] {
        let (eh, ej) = second_order_errors(&p, &x, &y, &v, &batch);
        println!("{batch:?}: hvp rel err {eh:e}, jvp rel err {ej:e}");
        assert!(eh < 1e-6 && ej < 1e-6, "{batch:?}: hvp {eh:e}, jvp {ej:e}");
    }
}

#[test]
fn lambda_gradient_lives_on_the_batch() {
    let p = problem(&spec(10, 8, 10, 2), 4);
    let (x, y) = point(&p, 1, 0.1);
    let mut oracle = Oracle::new(&p);
    let g = oracle
        .grad_g(&t(&x), &t(&y), &Batch::Indices(vec![2, 5, 6]))
        .unwrap();
    let gx = host(&g.x);
    assert!(gx[2] != 0.0 && gx[5] != 0.0 && gx[6] != 0.0);
    assert!(gx
        .iter()
        .enumerate()
        .all(|(i, v)| [2, 5, 6].contains(&i) || *v == 0.0));
    // The outer loss does not depend on λ.
    let f = oracle.grad_f(&t(&x), &t(&y), &Batch::Full).unwrap();
    assert!(host(&f.x).iter().all(|v| *v == 0.0));
    // σ(+∞) = 1 vs σ(0) = 1/2: with reg = 0 the inner loss doubles.
    let q = problem(
        &HyperCleaningCnnSpec {
            reg: 0.0,
            ..spec(10, 8, 10, 2)
        },
        4,
    );
    let half = scalar(q.inner_loss::<TB>(t(&[0.0; 10]), t(&y), &Batch::Full));
    let full = scalar(q.inner_loss::<TB>(t(&[40.0; 10]), t(&y), &Batch::Full));
    assert!((full - 2.0 * half).abs() < 1e-12 * full, "{full} vs {half}");
}

#[test]
fn inner_descent_lowers_the_weighted_training_loss() {
    // Clean labels, 2 filters, 20 training images (conv on NdArray<f64> is slow in tests).
    let s = HyperCleaningCnnSpec {
        corruption: 0.0,
        eval_batch: 100,
        ..spec(20, 10, 100, 2)
    };
    let p = problem(&s, 0);
    let (x0, y0) = p.initial_point(0).unwrap();
    let m0 = p.evaluate(&x0, &y0).unwrap();
    // Head 0: uniform predictions, CE = ln 10.
    assert!(
        (metric(&m0, "test_loss") - 10f64.ln()).abs() < 1e-12,
        "{m0:?}"
    );
    // λ = 40: weights σ = 1.
    let x = t(&[40.0; 20]);
    let g0 = scalar(p.inner_loss::<TB>(x.clone(), y0.clone(), &Batch::Full));
    let y = inner_gd(&p, &x, y0, 0.1, 15);
    let g1 = scalar(p.inner_loss::<TB>(x.clone(), y.clone(), &Batch::Full));
    let m = p.evaluate(&x, &y).unwrap();
    println!("20 clean images, 2 filters, 15 GD steps (α = 0.1): g {g0:.4} → {g1:.4}; {m:?}");
    // Measured: 2.3246 → 2.1741 (test accuracy still near chance after 15 tiny steps).
    assert!(g1 < 0.95 * g0, "inner loss {g0} → {g1}");
}

#[test]
fn corruption_rate_is_gamma_and_seeded() {
    let a = problem(&spec(500, 10, 10, 2), 7);
    let b = problem(&spec(500, 10, 10, 2), 7);
    assert_eq!(a.corrupted(), b.corrupted());
    let rate = a.corrupted().len() as f64 / 500.0;
    assert!((rate - 0.8).abs() < 0.06, "γ = 0.8: {rate}");
    assert_eq!(a.id(), "hyper-cleaning-cnn");
    let d = a.describe();
    assert!(
        d.contains("MNIST") && d.contains("γ = 0.8") && d.contains("maxpool"),
        "{d}"
    );
    assert_eq!(
        a.metric_names(),
        vec!["test_accuracy", "test_loss", "val_loss", "flagged_f1"]
    );
    let m = a
        .evaluate(&t(&vec![-1.0; 500]), &a.initial_point(0).unwrap().1)
        .unwrap();
    let prec = a.corrupted().len() as f64 / 500.0;
    assert!((metric(&m, "flagged_f1") - 2.0 * prec / (prec + 1.0)).abs() < 1e-12);
}

#[test]
fn spec_defaults_toml_and_validation() {
    let d = HyperCleaningCnnSpec::default();
    assert_eq!(
        (
            d.dataset,
            d.train,
            d.val,
            d.test,
            d.corruption,
            d.filters,
            d.pool
        ),
        (
            ImageDataset::Mnist,
            5_000,
            5_000,
            10_000,
            0.8,
            32,
            PoolSpec::Max
        )
    );
    let s: HyperCleaningCnnSpec =
        toml::from_str("dataset = \"fashion-mnist\"\nfilters = 4\npool = \"avg\"").unwrap();
    assert_eq!(s.dataset, ImageDataset::FashionMnist);
    assert_eq!((s.filters, s.pool, s.train), (4, PoolSpec::Avg, 5_000));
    for spec in [d.clone(), s] {
        let text = toml::to_string(&spec).unwrap();
        assert_eq!(
            toml::from_str::<HyperCleaningCnnSpec>(&text).unwrap(),
            spec,
            "{text}"
        );
    }
    assert!(toml::from_str::<HyperCleaningCnnSpec>("filter = 4").is_err());
    assert!(toml::from_str::<HyperCleaningCnnSpec>("dataset = \"qmnist\"").is_err());
    let bad = |s: HyperCleaningCnnSpec, key: &str| match s.validate() {
        Err(ProblemError::Config { name, .. }) => assert_eq!(name, key),
        other => panic!("{key}: {other:?}"),
    };
    bad(
        HyperCleaningCnnSpec {
            corruption: 1.5,
            ..d.clone()
        },
        "corruption",
    );
    bad(
        HyperCleaningCnnSpec {
            filters: 0,
            ..d.clone()
        },
        "filters",
    );
    bad(
        HyperCleaningCnnSpec {
            reg: -1.0,
            ..d.clone()
        },
        "reg",
    );
    bad(
        HyperCleaningCnnSpec {
            eval_batch: 0,
            ..d.clone()
        },
        "eval_batch",
    );
    bad(
        HyperCleaningCnnSpec {
            test: 10_001,
            ..d.clone()
        },
        "test",
    );
    bad(HyperCleaningCnnSpec { train: 58_000, ..d }, "train");
}

#[test]
fn missing_fashion_mnist_names_the_fetch_command() {
    let s = HyperCleaningCnnSpec {
        dataset: ImageDataset::FashionMnist,
        ..spec(10, 10, 10, 2)
    };
    let dir = std::path::Path::new("/nonexistent/bilevel-data");
    let err = s.build::<TB>(0, Some(dir), &dev()).unwrap_err();
    match &err {
        ProblemError::Data(DataError::MissingFile { path, .. }) => {
            assert!(
                path.contains("/nonexistent/bilevel-data/fashion-mnist"),
                "{path}"
            )
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string()
            .contains("cargo xtask data fetch fashion-mnist"),
        "{err}"
    );
}

#[test]
fn fashion_mnist_builds_when_fetched() {
    let data = bilevel_data::registry::workspace_data_dir();
    if !data.join("fashion-mnist").is_dir() {
        println!("skipped: Fashion-MNIST not fetched into {}", data.display());
        return;
    }
    let s = HyperCleaningCnnSpec {
        dataset: ImageDataset::FashionMnist,
        ..spec(10, 6, 8, 2)
    };
    let p = s.build::<TB>(3, Some(&data), &dev()).unwrap();
    assert!(p.describe().contains("Fashion-MNIST"), "{}", p.describe());
    let (x, y) = point(&p, 2, 0.1);
    let err = directional_gradient_error(&p, Level::Inner, &x, &y, &Batch::Full, 1, 1e-5, 1);
    assert!(err < 1e-6, "{err:e}");
}

#[test]
fn problem_spec_variant_round_trips() {
    use bilevel_problems::spec::ProblemSpec;
    #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
    struct Config {
        problem: ProblemSpec,
    }
    let c: Config =
        toml::from_str("[problem]\nkind = \"hyper-cleaning-cnn\"\nfilters = 4").unwrap();
    assert_eq!(c.problem.id(), "hyper-cleaning-cnn");
    assert_eq!(
        c.problem,
        ProblemSpec::HyperCleaningCnn(HyperCleaningCnnSpec {
            filters: 4,
            ..Default::default()
        })
    );
    let text = toml::to_string(&c).unwrap();
    assert_eq!(toml::from_str::<Config>(&text).unwrap(), c, "{text}");
    assert!(
        toml::from_str::<Config>("[problem]\nkind = \"hyper-cleaning-cnn\"\nfilter = 4").is_err()
    );
}
