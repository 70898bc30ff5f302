//! `Constraint::RowSumBall`: the row-wise ℓ₁ projection against a brute-force minimisation, the
//! block bounds, and validation.

mod common;

use bilevel_core::constraint::project_l1_ball;
use bilevel_core::sampling::Rng;
use bilevel_core::Constraint;
use common::{host, t};

fn l1(v: &[f64]) -> f64 {
    v.iter().map(|a| a.abs()).sum()
}

fn dist2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| (a - b) * (a - b)).sum()
}

/// Brute force: the projection onto `{‖p‖₁ ≤ r}` of `v` outside the ball lies on the face with
/// the signs of `v`, `p_j = sign(v_j) max(|v_j| − θ, 0)` for the `θ ≥ 0` with `‖p‖₁ = r`; find
/// `θ` by bisection (no sorting), independently of the implementation.
fn brute_force(v: &[f64], r: f64) -> Vec<f64> {
    if l1(v) <= r {
        return v.to_vec();
    }
    let shrink = |theta: f64| -> Vec<f64> {
        v.iter()
            .map(|a| a.signum() * (a.abs() - theta).max(0.0))
            .collect()
    };
    let (mut lo, mut hi) = (0.0, v.iter().fold(0.0f64, |m, a| m.max(a.abs())));
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if l1(&shrink(mid)) > r {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    shrink(0.5 * (lo + hi))
}

#[test]
fn l1_projection_matches_brute_force_and_is_optimal() {
    let mut rng = Rng::seed(3);
    for trial in 0..200 {
        let n = 1 + trial % 9;
        let v: Vec<f64> = rng.normal_vec(n).iter().map(|a| 2.0 * a).collect();
        let r = 0.1 + 3.0 * rng.uniform();
        let mut p = v.clone();
        project_l1_ball(&mut p, r);
        let b = brute_force(&v, r);
        let err = p
            .iter()
            .zip(&b)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < 1e-12, "trial {trial}: {p:?} vs {b:?}");
        assert!(l1(&p) <= r + 1e-12);
        // No feasible random point is closer to v than the projection.
        let d = dist2(&p, &v);
        for _ in 0..50 {
            let mut q = rng.normal_vec(n);
            let s = l1(&q);
            let scale = r * rng.uniform() / s;
            q.iter_mut().for_each(|a| *a *= scale);
            assert!(dist2(&q, &v) >= d - 1e-12, "trial {trial}");
        }
    }
    // Inside the ball: unchanged; radius 0: the origin.
    let mut inside = vec![0.1, -0.2, 0.3];
    project_l1_ball(&mut inside, 1.0);
    assert_eq!(inside, [0.1, -0.2, 0.3]);
    let mut zero = vec![0.5, -1.0];
    project_l1_ball(&mut zero, 0.0);
    assert_eq!(zero, [0.0, 0.0]);
}

#[test]
fn row_sum_ball_projects_only_the_block_row_by_row() {
    let mut rng = Rng::seed(11);
    let (offset, rows, cols, radius) = (3, 4, 5, 0.9);
    let x: Vec<f64> = rng.normal_vec(offset + rows * cols + 6);
    let set = Constraint::RowSumBall {
        offset,
        rows,
        cols,
        radius,
    };
    set.validate().unwrap();
    let p = host(&set.project(t(&x)));
    assert_eq!(p.len(), x.len());
    assert_eq!(&p[..offset], &x[..offset]);
    assert_eq!(&p[offset + rows * cols..], &x[offset + rows * cols..]);
    for i in 0..rows {
        let range = offset + i * cols..offset + (i + 1) * cols;
        let row = &p[range.clone()];
        let expected = brute_force(&x[range], radius);
        assert!(l1(row) <= radius + 1e-12, "row {i}: {}", l1(row));
        let err = row
            .iter()
            .zip(&expected)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < 1e-12, "row {i}");
    }
    // Projecting twice changes nothing (up to rounding of the row sums).
    let pp = host(&set.project(t(&p)));
    let moved = pp
        .iter()
        .zip(&p)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(moved < 1e-15, "{moved:e}");
    // A block running past the end of x: only the rows that fit are projected.
    let short = Constraint::RowSumBall {
        offset: 0,
        rows: 10,
        cols: 2,
        radius: 0.5,
    };
    let q = host(&short.project(t(&[3.0, 1.0, -2.0, 0.0, 7.0])));
    assert_eq!(q, [0.5, 0.0, -0.5, 0.0, 7.0]);
    // An empty set is rejected.
    assert!(Constraint::RowSumBall {
        offset: 0,
        rows: 1,
        cols: 1,
        radius: -0.1
    }
    .validate()
    .is_err());
}
