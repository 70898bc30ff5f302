//! The one error type of `bilevel-models`.

use thiserror::Error;

/// Why a model could not be built or evaluated.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ModelError {
    /// A flat parameter vector does not have the length the model needs.
    #[error("parameter vector has {got} entries but the model has {expected} parameters")]
    ParamCount {
        /// Parameters of the model.
        expected: usize,
        /// Length of the vector supplied.
        got: usize,
    },
    /// An input tensor does not have the shape the model expects.
    #[error("input shape {got:?} does not fit the model (expected {expected})")]
    InputShape {
        /// What the model expects, in words (e.g. "[batch, 1, 28, 28]").
        expected: String,
        /// The shape supplied.
        got: Vec<usize>,
    },
    /// A configuration value is out of range.
    #[error("invalid model configuration `{name}`: {reason}")]
    InvalidConfig {
        /// The offending field.
        name: String,
        /// Why it is invalid.
        reason: String,
    },
}

impl ModelError {
    /// Shorthand for [`ModelError::InvalidConfig`].
    pub fn invalid(name: &str, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}

/// `Result` with [`ModelError`].
pub type Result<T> = std::result::Result<T, ModelError>;
