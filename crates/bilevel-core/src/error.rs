//! The crate's error type.

/// Everything that can go wrong in `bilevel-core`.
///
/// Stopping criteria (max iterations, convergence) are not errors; these are conditions under
/// which a result would be wrong or meaningless.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum BilevelError {
    /// A tensor handed to the problem has the wrong length or shape.
    #[error("shape mismatch for {what}: expected {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// Which tensor.
        what: String,
        /// Expected shape.
        expected: Vec<usize>,
        /// Shape received.
        got: Vec<usize>,
    },
    /// A configuration value is out of its valid range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter's name as it appears in the public API.
        name: String,
        /// Why it is invalid, and what would be valid.
        reason: String,
    },
    /// NaN or infinity appeared in a quantity that must be finite.
    #[error("non-finite value in {what}")]
    NonFinite {
        /// Which quantity.
        what: String,
    },
    /// A batch index is outside the data set.
    #[error("batch index {index} out of range for a data set of {len} samples")]
    BatchOutOfRange {
        /// Offending index.
        index: usize,
        /// Data set size.
        len: usize,
    },
    /// A dense factorisation failed (matrix not SPD / singular).
    #[error("linear algebra failure: {0}")]
    LinearAlgebra(String),
    /// Reading or writing a file (checkpoint, metrics) failed.
    #[error("I/O error on {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A checkpoint does not belong to this run (other solver or problem shape).
    #[error("checkpoint mismatch: {0}")]
    Checkpoint(String),
    /// Reading tensor data back from the device failed.
    #[error("backend error: {0}")]
    Backend(String),
    /// A metric added with [`crate::Executor::add_metrics`] could not be evaluated (e.g. a
    /// model or data error of the application's evaluation).
    #[error("evaluating the metrics failed: {0}")]
    Evaluation(String),
    /// The run's interrupt flag was raised during an iteration (an oracle call noticed it);
    /// the executor ends the run as interrupted at the last completed iteration.
    #[error("interrupted during an iteration")]
    Interrupted,
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, BilevelError>;

impl BilevelError {
    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, err: impl std::fmt::Display) -> Self {
        Self::Io {
            path: path.display().to_string(),
            message: err.to_string(),
        }
    }

    /// Shorthand for [`BilevelError::InvalidParameter`].
    pub fn invalid(name: &str, reason: impl Into<String>) -> Self {
        Self::InvalidParameter {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}
