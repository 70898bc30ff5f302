//! `adversarial-ls`: losses against finite differences and closed forms, φ(x) and the lower
//! gap, the wine-quality substitute (when fetched) and the synthetic variant.

mod problem_checks;

use std::path::PathBuf;

use bilevel_core::dense::Dense;
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{rel_err_host, scalar};
use bilevel_core::{Batch, BilevelProblem, Oracle};
use bilevel_problems::adversarial_ls::{
    synthetic_regression, AdversarialLs, AdversarialLsData, AdversarialLsSpec,
};
use bilevel_problems::{Application, ProblemError};
use problem_checks::{
    dev, directional_gradient_error, host, inner_gd, metric, second_order_errors, t, Level, TB,
};

fn synthetic(n: usize, d: usize, seed: u64) -> AdversarialLs<TB> {
    let spec = AdversarialLsSpec {
        data: AdversarialLsData::Synthetic,
        synthetic_samples: n,
        synthetic_features: d,
        ..Default::default()
    };
    spec.build::<TB>(seed, &dev()).unwrap()
}

/// Ordinary least squares on the rows with `m_i > 0`: the minimiser of φ.
fn phi_minimiser(p: &AdversarialLs<TB>) -> Vec<f64> {
    let a = p.design();
    let rows: Vec<usize> = (0..a.rows).filter(|&i| p.weights()[i] > 0.0).collect();
    let d = a.cols;
    let mut sub = Dense::zeros(rows.len(), d);
    for (r, &i) in rows.iter().enumerate() {
        for j in 0..d {
            sub.set(r, j, a.get(i, j));
        }
    }
    let b: Vec<f64> = rows.iter().map(|&i| p.labels()[i]).collect();
    sub.transpose()
        .matmul(&sub)
        .solve(&sub.tmatvec(&b))
        .unwrap()
}

#[test]
fn gradients_and_products_match_finite_differences() {
    let p = synthetic(60, 4, 1);
    assert_eq!((p.x_dim(), p.y_dim()), (5, 48));
    let mut rng = Rng::seed(2);
    let (x, y, v) = (rng.normal_vec(5), rng.normal_vec(48), rng.normal_vec(48));
    for batch in [Batch::Full, Batch::Indices(vec![0, 47, 47, 3])] {
        for level in [Level::Inner, Level::Outer] {
            let err = directional_gradient_error(&p, level, &x, &y, &batch, 3, 1e-5, 3);
            assert!(err < 1e-8, "{level:?} {batch:?}: {err:e}");
        }
        let (eh, ej) = second_order_errors(&p, &x, &y, &v, &batch);
        assert!(eh < 1e-7 && ej < 1e-7, "{batch:?}: hvp {eh:e} jvp {ej:e}");
    }
    // Closed forms: H v = (1+λ)/n · m ⊙ v, J v = −(1/n) Aᵀ(m ⊙ v).
    let mut oracle = Oracle::new(&p);
    let (hv, jv) = oracle
        .hvp_jvp(&t(&x), &t(&y), &t(&v), &Batch::Full)
        .unwrap();
    let n = 48.0;
    let mv: Vec<f64> = p.weights().iter().zip(&v).map(|(m, v)| m * v).collect();
    let hv_cf: Vec<f64> = mv.iter().map(|a| 2.0 * a / n).collect();
    let jv_cf: Vec<f64> = p.design().tmatvec(&mv).iter().map(|a| -a / n).collect();
    assert!(rel_err_host(&host(&hv), &hv_cf) < 1e-12);
    assert!(rel_err_host(&host(&jv), &jv_cf) < 1e-12);
}

#[test]
fn weights_are_half_evenly_spaced_in_the_paper_range() {
    let p = synthetic(101, 3, 4);
    let n = p.y_dim();
    assert_eq!(n, 81); // 101 − floor(0.2 · 101)
    let mut nonzero: Vec<f64> = p.weights().iter().copied().filter(|m| *m > 0.0).collect();
    nonzero.sort_by(f64::total_cmp);
    assert_eq!(nonzero.len(), 41); // round(81 / 2)
    assert_eq!(nonzero[0], 1e-9);
    assert_eq!(*nonzero.last().unwrap(), 1.0);
    let gap = (1.0 - 1e-9) / 40.0;
    for w in nonzero.windows(2) {
        assert!((w[1] - w[0] - gap).abs() < 1e-12);
    }
}

#[test]
fn phi_is_f_at_the_optimistic_lower_solution() {
    let p = synthetic(80, 3, 5);
    let mut rng = Rng::seed(6);
    let x = rng.normal_vec(4);
    let y_opt = p.optimistic_y(&x);
    let f = scalar(p.outer_loss::<TB>(t(&x), t(&y_opt), &Batch::Full));
    let m = p.evaluate(&t(&x), &t(&y_opt)).unwrap();
    assert!(
        (metric(&m, "mse") - f).abs() < 1e-12 * f,
        "{m:?} vs f = {f}"
    );
    assert!(metric(&m, "ll_gap").abs() < 1e-12, "{m:?}");
    // The gap is positive elsewhere, and inner GD from y = b closes it on the weighted rows.
    let (x0, y0) = p.initial_point(0).unwrap();
    assert_eq!(host(&y0), p.labels());
    let m0 = p.evaluate(&t(&x), &y0).unwrap();
    assert!(metric(&m0, "ll_gap") > 1e-3, "{m0:?}");
    let y = inner_gd(&p, &t(&x), y0, 0.5 * p.y_dim() as f64, 50);
    let m1 = p.evaluate(&t(&x), &y).unwrap();
    assert!(
        metric(&m1, "ll_gap") < 1e-3 * metric(&m0, "ll_gap"),
        "{m0:?} → {m1:?}"
    );
    // φ is minimised by least squares on the weighted rows; there, test MSE is the plain
    // regression error of a model fitted on half the training rows.
    let xs = phi_minimiser(&p);
    let best = p.phi(&xs);
    for k in 0..4 {
        let mut xp = xs.clone();
        xp[k] += 1e-3;
        assert!(p.phi(&xp) > best);
    }
    assert!(p.phi(&x0.into_data().to_vec::<f64>().unwrap()) > best);
}

#[test]
fn wine_quality_substitute_when_fetched() {
    let spec = AdversarialLsSpec::default();
    let dir = spec.resolve_wine_dir();
    let p = match spec.build::<TB>(0, &dev()) {
        Ok(p) => p,
        Err(ProblemError::Data(e)) => {
            // Not fetched in this checkout (`cargo xtask data fetch wine-quality`).
            eprintln!("skipping: {e}");
            assert!(!dir.join("winequality-red.csv.gz").exists());
            return;
        }
        Err(e) => panic!("{e}"),
    };
    assert!(p
        .describe()
        .contains("wine-quality (substitute for abalone)"));
    // 1599 samples: floor(0.2 · 1599) = 319 held out, 1280 for training, 11 features +
    // intercept.
    assert_eq!((p.y_dim(), p.x_dim()), (1280, 12));
    let xs = phi_minimiser(&p);
    let (x0, y0) = p.initial_point(0).unwrap();
    let m0 = p.evaluate(&x0, &y0).unwrap();
    let m = p.evaluate(&t(&xs), &t(&p.optimistic_y(&xs))).unwrap();
    println!("wine-quality: at x = 0 {m0:?}; at argmin φ {m:?}");
    // Measured: min φ = 0.0267 (= (1/8n) Σ_{m>0} r², i.e. a mean squared residual ≈ 0.43 on
    // the weighted half), test MSE 0.339 there; at x = 0, φ = 2.02 (≈ mean quality² / 16) and
    // test MSE 33.2.
    assert!(
        metric(&m, "mse") < 0.04 && metric(&m, "mse") > 0.015,
        "{m:?}"
    );
    assert!(metric(&m, "test_mse") < 0.6, "{m:?}");
    assert!(metric(&m0, "mse") > 1.5, "{m0:?}");
}

#[test]
fn synthetic_generator_is_seeded() {
    let a = synthetic_regression(50, 3, 1).unwrap();
    let b = synthetic_regression(50, 3, 1).unwrap();
    let c = synthetic_regression(50, 3, 2).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    let p = synthetic(50, 3, 1);
    assert!(p.describe().contains("synthetic"));
    assert!(p.describe().contains("not abalone"));
    assert_eq!(p.id(), "adversarial-ls");
    assert_eq!(p.metric_names(), vec!["mse", "test_mse", "ll_gap"]);
}

#[test]
fn validate_rejects_bad_values_and_missing_data() {
    let bad = |s: AdversarialLsSpec, key: &str| match s.validate() {
        Err(ProblemError::Config { name, .. }) => assert_eq!(name, key),
        other => panic!("{key}: {other:?}"),
    };
    let d = AdversarialLsSpec::default;
    bad(AdversarialLsSpec { lambda: 0.0, ..d() }, "lambda");
    bad(
        AdversarialLsSpec {
            sigma_min: 0.0,
            ..d()
        },
        "sigma_min",
    );
    bad(
        AdversarialLsSpec {
            sigma_min: 2.0,
            ..d()
        },
        "sigma_min",
    );
    bad(
        AdversarialLsSpec {
            test_fraction: 0.95,
            ..d()
        },
        "test_fraction",
    );
    bad(
        AdversarialLsSpec {
            weighted_fraction: 0.0,
            ..d()
        },
        "weighted_fraction",
    );
    bad(
        AdversarialLsSpec {
            synthetic_samples: 0,
            ..d()
        },
        "synthetic_samples",
    );
    d().validate().unwrap();
    let s = AdversarialLsSpec {
        wine_dir: Some(PathBuf::from("/nonexistent/wine")),
        ..d()
    };
    assert!(matches!(
        s.build::<TB>(0, &dev()),
        Err(ProblemError::Data(_))
    ));
}
