//! The one error type of `bilevel-problems`.

use thiserror::Error;

/// Why a problem could not be built or a run could not proceed.
#[derive(Debug, Error)]
pub enum ProblemError {
    /// From the bilevel machinery (shapes, parameters, non-finite values, checkpoints).
    #[error(transparent)]
    Bilevel(#[from] bilevel_core::BilevelError),
    /// From a data loader (missing, truncated or corrupt files).
    #[error(transparent)]
    Data(#[from] bilevel_data::DataError),
    /// From a model (parameter counts, input shapes).
    #[error(transparent)]
    Model(#[from] bilevel_models::ModelError),
    /// A problem or method configuration is invalid.
    #[error("invalid configuration `{name}`: {reason}")]
    Config {
        /// The offending key.
        name: String,
        /// Why, and how to fix it.
        reason: String,
    },
}

impl ProblemError {
    /// Shorthand for [`ProblemError::Config`].
    pub fn config(name: &str, reason: impl Into<String>) -> Self {
        Self::Config {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}

/// `Result` with [`ProblemError`].
pub type Result<T> = std::result::Result<T, ProblemError>;
