//! Range checks shared by the algorithms' `validate()` methods; each failure is a
//! [`BilevelError::InvalidParameter`] naming the public field.

use bilevel_core::{BilevelError, Result};

/// What each kind of step steps, in the messages of [`bilevel_core::preflight`] (each must stay
/// below `2/L` of the inner Hessian).
pub(crate) const GRADIENT_DESCENT: &str = "inner gradient descent on g";
/// The Neumann series `Σ (I − ηH)^j`.
pub(crate) const NEUMANN: &str = "the Neumann series Σ (I − ηH)^j";
/// The fixed-point linear solver `v ← v − γ(Hv − b)`.
pub(crate) const FIXED_POINT: &str = "the fixed-point linear solver v ← v − γ(Hv − b)";
/// SGM's projected gradient steps on `g`.
pub(crate) const SGM_ON_G: &str = "projected gradient descent on g";

/// Fails unless `value > 0` and finite (a step size or radius).
pub(crate) fn check_step(name: &str, value: f64) -> Result<()> {
    if !(value > 0.0 && value.is_finite()) {
        return Err(BilevelError::invalid(
            name,
            format!("must be > 0 and finite, got {value}"),
        ));
    }
    Ok(())
}

/// Fails unless `value ≥ 0` and finite (a decay exponent).
pub(crate) fn check_exponent(name: &str, value: f64) -> Result<()> {
    if !(value >= 0.0 && value.is_finite()) {
        return Err(BilevelError::invalid(
            name,
            format!("must be ≥ 0 and finite, got {value}"),
        ));
    }
    Ok(())
}

/// Fails unless `value ≥ 1` (a number of steps, terms or directions).
pub(crate) fn check_count(name: &str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(BilevelError::invalid(name, "must be ≥ 1"));
    }
    Ok(())
}

/// Fails on a batch of size 0 (`None`, the full data set, is always valid).
pub(crate) fn check_batch(name: &str, size: Option<usize>) -> Result<()> {
    if size == Some(0) {
        return Err(BilevelError::invalid(
            name,
            "a batch needs ≥ 1 sample (None selects the full data set)",
        ));
    }
    Ok(())
}
