//! Why a run stopped: [`TerminationReason`], data rather than an error (the executor returns
//! it with the last finite state; runners and reports print it).

/// Why a run stopped.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum TerminationReason {
    /// `max_iters` outer iterations completed.
    MaxItersReached,
    /// `‖ĝ_k‖ ≤ hypergrad_tol`.
    Converged,
    /// The time budget ran out.
    Timeout,
    /// A NaN or infinity appeared (in what); the returned state is the last finite one.
    NonFinite(String),
    /// The interrupt flag was raised (Ctrl-C); a checkpoint was written if configured.
    Interrupted,
}

impl std::fmt::Display for TerminationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TerminationReason::MaxItersReached => write!(f, "maximum number of iterations reached"),
            TerminationReason::Converged => {
                write!(f, "converged (hypergradient norm below tolerance)")
            }
            TerminationReason::Timeout => write!(f, "time budget exhausted"),
            TerminationReason::NonFinite(what) => write!(f, "diverged: non-finite value in {what}"),
            TerminationReason::Interrupted => write!(f, "interrupted"),
        }
    }
}
