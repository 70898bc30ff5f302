//! `quadratic`: losses against finite differences and the closed form; closed-form metrics.

mod problem_checks;

use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{rel_err_host, scalar};
use bilevel_core::{Batch, BilevelProblem, Oracle};
use bilevel_problems::quadratic::{QuadraticProblem, QuadraticSpec};
use bilevel_problems::{Application, ProblemError};
use problem_checks::{
    dev, directional_gradient_error, host, metric, second_order_errors, t, Level, TB,
};

fn small() -> QuadraticProblem<TB> {
    let spec = QuadraticSpec {
        inner_rows: 400,
        outer_rows: 300,
        ..Default::default()
    };
    spec.build::<TB>(3, &dev()).unwrap()
}

#[test]
fn gradients_match_central_differences() {
    let p = small();
    let mut rng = Rng::seed(1);
    let (x, y) = (rng.normal_vec(5), rng.normal_vec(5));
    for batch in [Batch::Full, Batch::Indices(vec![3, 17, 17, 399, 0])] {
        for level in [Level::Inner, Level::Outer] {
            let outer_batch = match (&batch, level) {
                (Batch::Indices(_), Level::Outer) => Batch::Indices(vec![1, 299, 5]),
                _ => batch.clone(),
            };
            let err = directional_gradient_error(&p, level, &x, &y, &outer_batch, 4, 1e-5, 2);
            assert!(err < 1e-7, "{level:?} {outer_batch:?}: {err:e}");
        }
    }
}

#[test]
fn exact_products_match_finite_differences_and_closed_form() {
    let p = small();
    let mut rng = Rng::seed(4);
    let (x, y, v) = (rng.normal_vec(5), rng.normal_vec(5), rng.normal_vec(5));
    let (eh, ej) = second_order_errors(&p, &x, &y, &v, &Batch::Full);
    assert!(eh < 1e-8 && ej < 1e-8, "hvp {eh:e}, jvp {ej:e}");
    let (eh, ej) = second_order_errors(&p, &x, &y, &v, &Batch::Indices(vec![0, 5, 9]));
    assert!(eh < 1e-8 && ej < 1e-8, "batch: hvp {eh:e}, jvp {ej:e}");
    let mut oracle = Oracle::new(&p);
    let (hv, jv) = oracle
        .hvp_jvp(&t(&x), &t(&y), &t(&v), &Batch::Full)
        .unwrap();
    let form = p.closed_form();
    assert!(rel_err_host(&host(&hv), &form.hvp(&v)) < 1e-12);
    assert!(rel_err_host(&host(&jv), &form.jvp(&v)) < 1e-12);
}

#[test]
fn full_batch_equals_all_indices() {
    let p = small();
    let mut rng = Rng::seed(5);
    let (x, y) = (rng.normal_vec(5), rng.normal_vec(5));
    let full = scalar(p.inner_loss::<TB>(t(&x), t(&y), &Batch::Full));
    let all = scalar(p.inner_loss::<TB>(t(&x), t(&y), &Batch::Indices((0..400).collect())));
    assert!((full - all).abs() < 1e-12 * full.abs());
    assert_eq!(p.inner_len(), Some(400));
    assert_eq!(p.outer_len(), Some(300));
}

#[test]
fn grad_norm_is_the_implicit_hypergradient() {
    let p = small();
    let form = p.closed_form().clone();
    let mut rng = Rng::seed(6);
    let x = rng.normal_vec(5);
    // ∇Φ(x) from the burn losses: ∇_x f − J H⁻¹ ∇_y f at y*(x).
    let y_star = form.y_star(&x).unwrap();
    let mut oracle = Oracle::new(&p);
    let gf = oracle.grad_f(&t(&x), &t(&y_star), &Batch::Full).unwrap();
    let v = form.h.solve(&host(&gf.y)).unwrap();
    let jv = host(
        &oracle
            .jvp(&t(&x), &t(&y_star), &t(&v), &Batch::Full)
            .unwrap(),
    );
    let hyper: Vec<f64> = host(&gf.x).iter().zip(&jv).map(|(a, b)| a - b).collect();
    let norm = hyper.iter().map(|v| v * v).sum::<f64>().sqrt();
    let m = p.evaluate(&t(&x), &t(&y_star)).unwrap();
    assert!(
        (metric(&m, "grad_norm") - norm).abs() < 1e-10 * norm,
        "{m:?} vs {norm}"
    );
    assert!(norm > 1e-3, "a random x is not stationary: {norm}");
    assert!(metric(&m, "y_error") < 1e-12);
    assert!(metric(&m, "phi_gap") > 0.0);
    // At x*: stationary, zero gap.
    let xs = p.x_star().to_vec();
    let m = p.evaluate(&t(&xs), &t(&form.y_star(&xs).unwrap())).unwrap();
    assert!(metric(&m, "grad_norm") < 1e-9, "{m:?}");
    assert!(metric(&m, "phi_gap").abs() < 1e-12, "{m:?}");
    // y_error is the distance to y*(x).
    let y = vec![0.0; 5];
    let m = p.evaluate(&t(&x), &t(&y)).unwrap();
    let ys = form.y_star(&x).unwrap();
    let d = ys.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!((metric(&m, "y_error") - d).abs() < 1e-12 * d);
}

#[test]
fn application_surface() {
    let p = small();
    assert_eq!(p.id(), "quadratic");
    assert_eq!(p.metric_names(), vec!["grad_norm", "phi_gap", "y_error"]);
    assert!(p.describe().contains("generated"));
    let (x0, y0) = p.initial_point(9).unwrap();
    let (x1, _) = p.initial_point(9).unwrap();
    assert_eq!(host(&x0), host(&x1));
    assert_eq!(host(&y0), vec![0.0; 5]);
    assert_ne!(host(&x0), host(&p.initial_point(10).unwrap().0));
    assert!(p.evaluate(&t(&[0.0; 4]), &y0).is_err());
}

#[test]
fn validate_rejects_bad_values() {
    let bad = |s: QuadraticSpec, key: &str| match s.validate() {
        Err(ProblemError::Config { name, .. }) => assert_eq!(name, key),
        other => panic!("{key}: {other:?}"),
    };
    bad(
        QuadraticSpec {
            x_dim: 0,
            ..Default::default()
        },
        "x_dim",
    );
    bad(
        QuadraticSpec {
            inner_rows: 3,
            ..Default::default()
        },
        "inner_rows",
    );
    bad(
        QuadraticSpec {
            outer_rows: 0,
            ..Default::default()
        },
        "outer_rows",
    );
    bad(
        QuadraticSpec {
            noise: f64::NAN,
            ..Default::default()
        },
        "noise",
    );
    assert!(QuadraticSpec::default().validate().is_ok());
}
