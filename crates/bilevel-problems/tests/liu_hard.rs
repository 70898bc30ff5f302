//! `liu-hard`: losses against finite differences, exact products, closed-form metrics.

mod problem_checks;

use bilevel_core::sampling::Rng;
use bilevel_core::{Batch, BilevelProblem};
use bilevel_problems::liu_hard::{LiuHardProblem, LiuHardSpec};
use bilevel_problems::{Application, ProblemError};
use problem_checks::{
    dev, directional_gradient_error, host, inner_gd, metric, second_order_errors, t, Level, TB,
};

fn problem() -> LiuHardProblem<TB> {
    LiuHardSpec {
        x0: 0.5,
        y0: [0.0, -1.0],
    }
    .build::<TB>(&dev())
    .unwrap()
}

#[test]
fn gradients_and_products_match_finite_differences() {
    let p = problem();
    let mut rng = Rng::seed(2);
    for _ in 0..3 {
        let (x, y, v) = (rng.normal_vec(1), rng.normal_vec(2), rng.normal_vec(2));
        for level in [Level::Inner, Level::Outer] {
            let err = directional_gradient_error(&p, level, &x, &y, &Batch::Full, 3, 1e-5, 7);
            assert!(err < 1e-8, "{level:?}: {err:e}");
        }
        let (eh, ej) = second_order_errors(&p, &x, &y, &v, &Batch::Full);
        assert!(eh < 1e-8 && ej < 1e-8, "hvp {eh:e} jvp {ej:e}");
    }
    assert_eq!(p.inner_len(), None);
    assert_eq!(p.outer_len(), None);
}

#[test]
fn metrics_are_the_closed_forms() {
    let p = problem();
    let m = p.evaluate(&t(&[3.0]), &t(&[2.5, 7.0])).unwrap();
    assert_eq!(metric(&m, "x_error"), 2.0);
    assert_eq!(metric(&m, "phi"), 4.0);
    assert_eq!(metric(&m, "ll_distance"), 0.5);
    let m = p.evaluate(&t(&[1.0]), &t(&[1.0, 1.0])).unwrap();
    assert_eq!(
        (
            metric(&m, "x_error"),
            metric(&m, "phi"),
            metric(&m, "ll_distance")
        ),
        (0.0, 0.0, 0.0)
    );
    assert!(p.evaluate(&t(&[1.0, 2.0]), &t(&[1.0, 1.0])).is_err());
}

#[test]
fn inner_descent_reaches_the_lower_solution_set_but_not_y2() {
    let p = problem();
    let (x0, y0) = p.initial_point(123).unwrap();
    assert_eq!(host(&x0), vec![0.5]);
    assert_eq!(host(&y0), vec![0.0, -1.0]);
    let y = inner_gd(&p, &x0, y0, 0.25, 60);
    let m = p.evaluate(&x0, &y).unwrap();
    assert!(metric(&m, "ll_distance") < 1e-12, "{m:?}");
    // ∇_{y₂} g ≡ 0: y₂ never moves.
    assert_eq!(host(&y)[1], -1.0);
    assert_eq!(p.id(), "liu-hard");
    assert!(p.describe().contains("Example 5.3"));
}

#[test]
fn validate_rejects_non_finite_start() {
    let err = LiuHardSpec {
        x0: f64::INFINITY,
        ..Default::default()
    }
    .validate()
    .unwrap_err();
    assert!(matches!(err, ProblemError::Config { ref name, .. } if name == "x0"));
    let err = LiuHardSpec {
        y0: [0.0, f64::NAN],
        ..Default::default()
    }
    .validate()
    .unwrap_err();
    assert!(matches!(err, ProblemError::Config { ref name, .. } if name == "y0"));
}
