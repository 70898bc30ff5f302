//! What a runnable application adds to a [`BilevelProblem`]: a name, a seeded starting point and
//! evaluation metrics (test accuracy, exact ‖∇Φ‖, ...), so the CLI and `xtask reproduce` can run
//! any problem with any algorithm and report the paper's metric.

use bilevel_core::BilevelProblem;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use crate::error::Result;

/// One named evaluation metric (e.g. `test_accuracy`), higher or lower is better per metric.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metric {
    /// Snake-case name, used as a CSV column.
    pub name: String,
    /// Value.
    pub value: f64,
}

impl Metric {
    /// A metric from a name and value.
    pub fn new(name: &str, value: f64) -> Self {
        Self {
            name: name.to_string(),
            value,
        }
    }
}

/// A bilevel problem that can be run end to end and evaluated.
pub trait Application<B: AutodiffBackend>: BilevelProblem<B> {
    /// The experiment id, as in `docs/REPRODUCTION.md` (e.g. `"hyper-cleaning"`).
    fn id(&self) -> &'static str;

    /// A human-readable description including the data actually used (substitutes named
    /// honestly, e.g. "wine-quality (substitute for abalone)").
    fn describe(&self) -> String;

    /// The starting point `(x0, y0)` of a run with this seed.
    fn initial_point(&self, seed: u64) -> Result<(Tensor<B, 1>, Tensor<B, 1>)>;

    /// Names of the metrics [`Application::evaluate`] returns, in order (CSV columns).
    fn metric_names(&self) -> Vec<&'static str>;

    /// Evaluation metrics at `(x, y)` (held-out accuracy, loss, exact hypergradient norm, ...).
    fn evaluate(&self, x: &Tensor<B, 1>, y: &Tensor<B, 1>) -> Result<Vec<Metric>>;

    /// Names of the metrics [`Application::evaluate_final`] returns, in order (none by default).
    fn final_metric_names(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Metrics too costly to record during a run (e.g. a classifier trained afresh on data the
    /// run produced), evaluated once at the run's reported point when the run ends; they follow
    /// [`Application::evaluate`]'s in the run's final metrics. None by default.
    fn evaluate_final(&self, x: &Tensor<B, 1>, y: &Tensor<B, 1>) -> Result<Vec<Metric>> {
        let _ = (x, y);
        Ok(Vec::new())
    }
}
