//! Closed convex sets for projected upper-level steps.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::error::{BilevelError, Result};

/// A closed convex set `X` with a cheap Euclidean projection `P_X`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Constraint {
    /// `X = ℝᵈ`.
    Unconstrained,
    /// `lower ≤ xᵢ ≤ upper` for every coordinate.
    Box {
        /// Lower bound.
        lower: f64,
        /// Upper bound.
        upper: f64,
    },
    /// `‖x‖_∞ ≤ radius`.
    LInfBall {
        /// Radius.
        radius: f64,
    },
    /// `‖x‖₂ ≤ radius`.
    L2Ball {
        /// Radius.
        radius: f64,
    },
}

impl Constraint {
    /// Checks the set is non-empty and well defined.
    pub fn validate(&self) -> Result<()> {
        let ok = match self {
            Constraint::Unconstrained => true,
            Constraint::Box { lower, upper } => lower <= upper,
            Constraint::LInfBall { radius } | Constraint::L2Ball { radius } => *radius >= 0.0,
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
        }
    }
}
