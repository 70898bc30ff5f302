//! Closed-form test problems.
//!
//! - [`QuadraticBilevel`]: `g = ½yᵀAy − yᵀ(Bx + c)`, `f = ½‖y − t‖² + ½μ‖x‖² + xᵀKy`, random SPD
//!   `A` with a chosen spectrum (deterministic).
//! - [`LeastSquaresBilevel`]: FSLA's synthetic problem (paper 001, `docs/REPRODUCTION.md`
//!   `quadratic`):
//!   `g = (1/2n)‖A_λ x + A_ω y − b‖²`, `f = (1/2n_o)‖A_o y − b_o‖²` over rows (stochastic).
//!
//! - [`MetaQuadratic`], [`MetaSine`]: meta-learning problems with a [`crate::MetaLayout`]
//!   (MAML, ANIL): quadratic tasks with closed-form meta-gradients, and sine regression with an
//!   MLP.
//!
//! The first two expose a host-side [`QuadraticForm`] with `y*(x)`, `∇Φ(x)`, `Φ(x)` and `x*` in closed
//! form, computed in plain `f64` independently of burn.

mod closed_form;
mod least_squares;
mod liu_hard;
mod meta;
mod quadratic;

pub use closed_form::QuadraticForm;
pub use least_squares::{LeastSquaresBilevel, LeastSquaresSpec};
pub use liu_hard::LiuHard;
pub use meta::{MetaQuadratic, MetaQuadraticSpec, MetaSine, MetaSineSpec};
pub use quadratic::{QuadraticBilevel, QuadraticSpec};

use crate::dense::Dense;
use crate::error::{BilevelError, Result};
use crate::sampling::Rng;

/// A random SPD matrix `UΛUᵀ` (`U` from [`random_orthogonal`]) with eigenvalues log-spaced
/// from `lo` to `hi`.
pub(crate) fn random_spd(n: usize, lo: f64, hi: f64, rng: &mut Rng) -> Dense {
    let u = random_orthogonal(n, rng);
    let eig: Vec<f64> = (0..n)
        .map(|i| {
            let s = if n == 1 {
                0.0
            } else {
                i as f64 / (n - 1) as f64
            };
            lo * (hi / lo).powf(s)
        })
        .collect();
    let mut a = Dense::zeros(n, n);
    for i in 0..n {
        for j in 0..n {
            a.set(
                i,
                j,
                (0..n).map(|l| u.get(i, l) * eig[l] * u.get(j, l)).sum(),
            );
        }
    }
    a
}

/// Fails unless `0 < min_curvature ≤ max_curvature < ∞` (the spectrum of [`random_spd`]).
pub(crate) fn check_curvatures(min_curvature: f64, max_curvature: f64) -> Result<()> {
    if !(min_curvature > 0.0 && max_curvature >= min_curvature && max_curvature.is_finite()) {
        return Err(BilevelError::invalid(
            "min_curvature/max_curvature",
            format!(
                "need 0 < min_curvature ≤ max_curvature < ∞, got {min_curvature} and \
                 {max_curvature}"
            ),
        ));
    }
    Ok(())
}

/// A random orthogonal `n × n` matrix (Gram–Schmidt on a Gaussian matrix).
pub(crate) fn random_orthogonal(n: usize, rng: &mut Rng) -> Dense {
    let mut q = Dense::zeros(n, n);
    let mut cols: Vec<Vec<f64>> = Vec::with_capacity(n);
    while cols.len() < n {
        let mut v = rng.normal_vec(n);
        for c in &cols {
            let p: f64 = v.iter().zip(c).map(|(a, b)| a * b).sum();
            for (vi, ci) in v.iter_mut().zip(c) {
                *vi -= p * ci;
            }
        }
        let norm = crate::dense::norm(&v);
        if norm > 1e-8 {
            cols.push(v.into_iter().map(|x| x / norm).collect());
        }
    }
    for (j, c) in cols.iter().enumerate() {
        for (i, v) in c.iter().enumerate() {
            q.set(i, j, *v);
        }
    }
    q
}

/// A Gaussian `rows × cols` matrix with entries of standard deviation `scale`.
pub(crate) fn random_matrix(rows: usize, cols: usize, scale: f64, rng: &mut Rng) -> Dense {
    Dense {
        rows,
        cols,
        data: rng
            .normal_vec(rows * cols)
            .into_iter()
            .map(|v| v * scale)
            .collect(),
    }
}
