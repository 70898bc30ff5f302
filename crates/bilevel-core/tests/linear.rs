//! Conjugate gradient on SPD and singular diagonal systems: the solution against the closed
//! form, product counts, and the zero-curvature stop on a singular operator (liu-hard's
//! `∇²_yy g = diag(2, 0)`).

mod common;

use bilevel_core::linear::{conjugate_gradient, CgConfig};
use common::*;

/// `H v` for `H = diag(h)`.
fn diag(
    h: &'static [f64],
) -> impl FnMut(
    &burn::tensor::Tensor<TestBackend, 1>,
) -> bilevel_core::Result<burn::tensor::Tensor<TestBackend, 1>> {
    move |v| Ok(v.clone().mul(t(h)))
}

#[test]
fn cg_solves_an_spd_diagonal_system_in_as_many_products_as_distinct_eigenvalues() {
    let b = t(&[1.0, -2.0, 3.0, 0.5]);
    let cfg = CgConfig {
        max_iters: 10,
        tol: 1e-12,
    };
    let report = conjugate_gradient(diag(&[2.0, 5.0, 2.0, 0.1]), &b, None, &cfg).unwrap();
    let v = host(&report.solution);
    for (got, want) in v.iter().zip([0.5, -0.4, 1.5, 5.0]) {
        assert!((got - want).abs() <= 1e-12, "{v:?}");
    }
    assert!(report.converged);
    // Three distinct eigenvalues: exact in three products.
    assert_eq!(report.products, 3);
}

#[test]
fn cg_stops_on_rounding_level_curvature_of_a_singular_operator() {
    // H = diag(2, 0), b = (1, 1): the first step is v = α b with α = ‖b‖²/(bᵀHb) = 1; the
    // second direction lies in the null space (curvature 0 up to rounding) and must end CG with
    // a finite iterate instead of a huge step or a non-finite error.
    let b = t(&[1.0, 1.0]);
    let cfg = CgConfig {
        max_iters: 10,
        tol: 1e-12,
    };
    let report = conjugate_gradient(diag(&[2.0, 0.0]), &b, None, &cfg).unwrap();
    let v = host(&report.solution);
    assert!(
        (v[0] - 1.0).abs() <= 1e-15 && (v[1] - 1.0).abs() <= 1e-15,
        "{v:?}"
    );
    assert!(!report.converged);
    assert_eq!(report.products, 2);
    // Same with a tiny nonzero eigenvalue far below the relative threshold (condition 1e14).
    let report = conjugate_gradient(diag(&[2.0, 2e-14]), &b, None, &cfg).unwrap();
    assert!(host(&report.solution)
        .iter()
        .all(|x| x.is_finite() && x.abs() < 10.0));
    assert!(!report.converged);
}
