//! Solvers for `H v = b` that only see `H` through a product closure (an HVP).
//!
//! - [`conjugate_gradient`]: CG with a relative-residual tolerance, an iteration cap and an
//!   optional warm start `v₀` (AID-BiO's CG step, 004 Alg. 1).
//! - [`fixed_point`]: `v ← v − η (H v − b)` from `v₀` (AID-FP); from `v₀ = 0` after `N` steps it
//!   equals the truncated Neumann series `η Σ_{j<N} (I − ηH)^j b`.
//! - [`neumann`]: the series itself in stocBiO's form (004 Alg. 3):
//!   `r ← r − η H r; acc += r`, `Q` products, result `η·acc = η Σ_{j=0}^{Q} (I − ηH)^j b`.
//!   The closure receives the term index so stochastic callers can draw a fresh batch per term.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::error::{BilevelError, Result};
use crate::tensor::{dot, norm};

/// Settings of [`conjugate_gradient`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CgConfig {
    /// Maximum number of CG updates (each costs one product).
    pub max_iters: usize,
    /// Stop when `‖b − H v‖ ≤ tol · ‖b‖`. With 0 this test never fires, but CG still stops
    /// before `max_iters` on an exactly zero residual or on a direction of non-positive or
    /// rounding-level curvature (see [`conjugate_gradient`]).
    pub tol: f64,
}

/// Settings of [`fixed_point`] and [`neumann`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FixedPointConfig {
    /// Step `η`; the iteration contracts when `0 < η < 2/λ_max(H)`.
    pub step: f64,
    /// Maximum number of products.
    pub max_iters: usize,
    /// Stop when `‖H v − b‖ ≤ tol · ‖b‖` (0 disables the check and its device syncs).
    pub tol: f64,
}

/// Outcome of a linear solve.
#[derive(Clone, Debug)]
pub struct SolveReport<B: Backend> {
    /// Approximate solution.
    pub solution: Tensor<B, 1>,
    /// Products with `H` made.
    pub products: usize,
    /// Relative residual `‖b − H v‖ / ‖b‖` where it was computed (CG, or a tolerance was set).
    pub relative_residual: Option<f64>,
    /// Whether the tolerance was reached (always false when `tol = 0`).
    pub converged: bool,
}

fn check_tol(name: &str, tol: f64) -> Result<()> {
    if !(tol >= 0.0 && tol.is_finite()) {
        return Err(BilevelError::invalid(
            name,
            format!("must be ≥ 0 and finite, got {tol}"),
        ));
    }
    Ok(())
}

fn check_step(step: f64) -> Result<()> {
    if !(step > 0.0 && step.is_finite()) {
        return Err(BilevelError::invalid(
            "step",
            format!("must be > 0 and finite, got {step}"),
        ));
    }
    Ok(())
}

/// Curvature `pᵀHp / ‖p‖²` below this fraction of the largest seen counts as zero in CG
/// (operators with condition numbers beyond 1e10 are treated as singular).
pub const CURVATURE_RTOL: f64 = 1e-10;

/// Conjugate gradient for SPD `H`, from `v0` (or zero).
///
/// Stops early on the tolerance, or when the curvature `pᵀHp` is not positive, or is zero up to
/// rounding relative to the largest curvature seen ([`CURVATURE_RTOL`]; a singular or non-convex
/// lower level): the iterate so far is returned with `converged = false`. Non-finite values are
/// an error.
pub fn conjugate_gradient<B: Backend>(
    mut op: impl FnMut(&Tensor<B, 1>) -> Result<Tensor<B, 1>>,
    b: &Tensor<B, 1>,
    v0: Option<Tensor<B, 1>>,
    cfg: &CgConfig,
) -> Result<SolveReport<B>> {
    check_tol("tol", cfg.tol)?;
    let b_norm = norm(b);
    if !b_norm.is_finite() {
        return Err(BilevelError::NonFinite {
            what: "CG right-hand side".into(),
        });
    }
    let mut products = 0;
    let (mut v, mut r) = match v0 {
        Some(v0) => {
            let hv = op(&v0)?;
            products += 1;
            let r = b.clone().sub(hv);
            (v0, r)
        }
        None => (b.zeros_like(), b.clone()),
    };
    if b_norm == 0.0 {
        return Ok(SolveReport {
            solution: b.zeros_like(),
            products,
            relative_residual: Some(0.0),
            converged: true,
        });
    }
    let mut p = r.clone();
    let mut rs = dot(&r, &r);
    let target = cfg.tol * b_norm;
    let mut converged = rs.sqrt() <= target;
    let mut iters = 0;
    let mut max_rayleigh = 0.0_f64;
    while !converged && iters < cfg.max_iters {
        let hp = op(&p)?;
        products += 1;
        iters += 1;
        let curvature = dot(&p, &hp);
        if !curvature.is_finite() {
            return Err(BilevelError::NonFinite {
                what: "CG curvature pᵀHp".into(),
            });
        }
        // A direction of (numerically) zero curvature ends CG: on a singular ∇²_yy g (no strong
        // convexity, e.g. liu-hard) pᵀHp comes out at rounding level instead of 0, and the step
        // rs / pᵀHp would blow up. "Zero" is relative to the largest Rayleigh quotient seen.
        let rayleigh = curvature / dot(&p, &p);
        if curvature <= 0.0 || rayleigh <= CURVATURE_RTOL * max_rayleigh {
            break;
        }
        max_rayleigh = max_rayleigh.max(rayleigh);
        let alpha = rs / curvature;
        v = v.add(p.clone().mul_scalar(alpha));
        r = r.sub(hp.mul_scalar(alpha));
        let rs_new = dot(&r, &r);
        if !rs_new.is_finite() {
            return Err(BilevelError::NonFinite {
                what: "CG residual".into(),
            });
        }
        converged = rs_new.sqrt() <= target;
        p = r.clone().add(p.mul_scalar(rs_new / rs));
        rs = rs_new;
    }
    Ok(SolveReport {
        solution: v,
        products,
        relative_residual: Some(rs.sqrt() / b_norm),
        converged,
    })
}

/// Fixed-point iteration `v ← v − η (H v − b)` from `v0` (or zero).
pub fn fixed_point<B: Backend>(
    mut op: impl FnMut(&Tensor<B, 1>) -> Result<Tensor<B, 1>>,
    b: &Tensor<B, 1>,
    v0: Option<Tensor<B, 1>>,
    cfg: &FixedPointConfig,
) -> Result<SolveReport<B>> {
    check_step(cfg.step)?;
    check_tol("tol", cfg.tol)?;
    let check = cfg.tol > 0.0;
    let b_norm = if check { norm(b) } else { 0.0 };
    let mut v = v0.unwrap_or_else(|| b.zeros_like());
    let mut products = 0;
    let mut relative_residual = None;
    let mut converged = false;
    while products < cfg.max_iters {
        let residual = op(&v)?.sub(b.clone());
        products += 1;
        if check {
            let rel = norm(&residual) / b_norm.max(1e-300);
            if !rel.is_finite() {
                return Err(BilevelError::NonFinite {
                    what: "fixed-point residual".into(),
                });
            }
            relative_residual = Some(rel);
            if rel <= cfg.tol {
                converged = true;
                break;
            }
        }
        v = v.sub(residual.mul_scalar(cfg.step));
    }
    Ok(SolveReport {
        solution: v,
        products,
        relative_residual,
        converged,
    })
}

/// Truncated Neumann series `η Σ_{j=0}^{Q} (I − ηH_j)… b` with `Q = terms` products.
///
/// `op(j, r)` is the `j`-th product (`j = 1..=Q`), so stochastic callers can use an independent
/// batch `B_j` per term as stocBiO does.
pub fn neumann<B: Backend>(
    mut op: impl FnMut(usize, &Tensor<B, 1>) -> Result<Tensor<B, 1>>,
    b: &Tensor<B, 1>,
    step: f64,
    terms: usize,
) -> Result<SolveReport<B>> {
    check_step(step)?;
    let mut r = b.clone();
    let mut acc = b.clone();
    for j in 1..=terms {
        let hr = op(j, &r)?;
        r = r.sub(hr.mul_scalar(step));
        acc = acc.add(r.clone());
    }
    Ok(SolveReport {
        solution: acc.mul_scalar(step),
        products: terms,
        relative_residual: None,
        converged: false,
    })
}
