//! Closed convex sets for projected upper-level steps.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::error::{BilevelError, Result};

/// A closed convex set `X` with a cheap Euclidean projection `P_X`.
///
/// In a config it is a table tagged by `kind`: `{ kind = "box", lower = -1.0, upper = 1.0 }`,
/// `"unconstrained"`, `"linf-ball"` / `"l2-ball"` (`radius`), `"row-sum-ball"` (`offset`,
/// `rows`, `cols`, `radius`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Constraint {
    /// `X = ℝᵈ`.
    #[default]
    Unconstrained,
    /// `lower ≤ xᵢ ≤ upper` for every coordinate.
    Box {
        /// Lower bound.
        lower: f64,
        /// Upper bound.
        upper: f64,
    },
    /// `‖x‖_∞ ≤ radius`.
    #[serde(rename = "linf-ball")]
    LInfBall {
        /// Radius.
        radius: f64,
    },
    /// `‖x‖₂ ≤ radius`.
    L2Ball {
        /// Radius.
        radius: f64,
    },
    /// The block `x[offset..offset + rows·cols]`, read as a row-major `rows × cols` matrix `M`,
    /// has every row in the ℓ₁ ball of `radius`: `max_i Σ_j |M_ij| = ‖M‖_∞ ≤ radius` (the
    /// operator norm induced by `‖·‖_∞`); the other coordinates are free. Used to keep a map
    /// `z ↦ tanh(M z + …)` a contraction (equilibrium models, paper 002 §7.1). The projection is
    /// row by row onto the ℓ₁ ball (exact, by sorting; Duchi et al. 2008), on the host in `f64`.
    RowSumBall {
        /// Start of the block in `x`.
        offset: usize,
        /// Rows of the block.
        rows: usize,
        /// Columns of the block (the length of each ℓ₁-constrained row).
        cols: usize,
        /// Bound on every row's ℓ₁ norm.
        radius: f64,
    },
}

impl Constraint {
    /// Checks the set is non-empty and well defined.
    pub fn validate(&self) -> Result<()> {
        let ok = match self {
            Constraint::Unconstrained => true,
            Constraint::Box { lower, upper } => lower <= upper,
            Constraint::LInfBall { radius }
            | Constraint::L2Ball { radius }
            | Constraint::RowSumBall { radius, .. } => *radius >= 0.0,
        };
        if ok {
            Ok(())
        } else {
            Err(BilevelError::invalid(
                "constraint",
                format!("{self:?} is empty: bounds must satisfy lower ≤ upper, radius ≥ 0"),
            ))
        }
    }

    /// Euclidean projection of `x` onto the set.
    ///
    /// For [`Constraint::RowSumBall`], rows of the block that do not fit in `x` are left as
    /// they are (the problem declaring the set makes the block fit), and the result is an
    /// untracked tensor (host round trip).
    pub fn project<B: Backend>(&self, x: Tensor<B, 1>) -> Tensor<B, 1> {
        match *self {
            Constraint::Unconstrained => x,
            Constraint::Box { lower, upper } => x.clamp(lower, upper),
            Constraint::LInfBall { radius } => x.clamp(-radius, radius),
            Constraint::L2Ball { radius } => {
                let n = crate::tensor::norm(&x);
                if n > radius {
                    x.mul_scalar(radius / n)
                } else {
                    x
                }
            }
            Constraint::RowSumBall {
                offset,
                rows,
                cols,
                radius,
            } => {
                let device = x.device();
                let n = x.dims()[0];
                let Ok(mut values) = x.into_data().convert::<f64>().to_vec::<f64>() else {
                    unreachable!("converted float data reads back as f64")
                };
                let start = offset.min(n);
                let end = offset.saturating_add(rows.saturating_mul(cols)).min(n);
                if cols > 0 {
                    for row in values[start..end].chunks_exact_mut(cols) {
                        project_l1_ball(row, radius);
                    }
                }
                Tensor::from_data(TensorData::new(values, [n]), &device)
            }
        }
    }
}

/// In-place Euclidean projection of `row` onto `{v : ‖v‖₁ ≤ radius}`: kept if inside, else
/// soft-thresholded, `v_j ← sign(v_j) max(|v_j| − θ, 0)` with `θ` from the sorted magnitudes.
pub fn project_l1_ball(row: &mut [f64], radius: f64) {
    let l1: f64 = row.iter().map(|v| v.abs()).sum();
    if l1 <= radius {
        return;
    }
    if radius <= 0.0 {
        row.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let mut mags: Vec<f64> = row.iter().map(|v| v.abs()).collect();
    mags.sort_by(|a, b| b.total_cmp(a));
    // θ = (Σ_{j≤k} μ_j − radius)/k for the largest k with μ_k > (Σ_{j≤k} μ_j − radius)/k.
    let mut cumsum = 0.0;
    let mut theta = 0.0;
    for (j, &m) in mags.iter().enumerate() {
        cumsum += m;
        let t = (cumsum - radius) / (j + 1) as f64;
        if m > t {
            theta = t;
        } else {
            break;
        }
    }
    for v in row.iter_mut() {
        *v = v.signum() * (v.abs() - theta).max(0.0);
    }
}
