//! The value types shared by the algorithms' `[algorithm]` tables.
//!
//! Every `…Config` of this crate (de)serialises as its TOML table: `#[serde(default,
//! deny_unknown_fields)]`, flat keys as a config file writes them (`cg_steps`, not
//! `linear_solver.steps`), batch sizes as a number of samples or `"full"` ([`batch`]). Configs
//! whose Rust form nests typed choices (AID's linear solver, SID's schedule, stocBiO's Hessian
//! batches, BSA/TTSA's Neumann estimator, IGFM's SGM) convert through a private flat table.
//! Methods that run inside [`OuterLoop`](bilevel_core::OuterLoop) add the keys of
//! [`OuterTable`]. Range checks stay in each config's `validate()`, whose errors name the key.

use bilevel_core::{BilevelError, OuterOptimizer, Result, StepSchedule};
use serde::{Deserialize, Serialize};

/// `serde(with = "crate::table::batch")` for an `Option<usize>` batch size: `None` is the full
/// data set, written `"full"`; `Some(n)` is `n` samples.
pub mod batch {
    use serde::{Deserializer, Serializer};

    /// Writes `"full"` or the number.
    pub fn serialize<S: Serializer>(size: &Option<usize>, s: S) -> Result<S::Ok, S::Error> {
        match size {
            None => s.serialize_str("full"),
            Some(n) => s.serialize_u64(*n as u64),
        }
    }

    /// Reads `"full"` or a non-negative number (0 is refused by the config's `validate()`).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Option<usize>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a batch size (a number of samples ≥ 1) or \"full\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                usize::try_from(v)
                    .map(Some)
                    .map_err(|_| E::custom(format!("batch size {v} is too large")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                if v < 0 {
                    return Err(E::custom(format!(
                        "batch size must be ≥ 1 or \"full\", got {v}"
                    )));
                }
                self.visit_u64(v as u64)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == "full" {
                    Ok(None)
                } else {
                    Err(E::custom(format!(
                        "batch size must be a number of samples or \"full\", got \"{v}\""
                    )))
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The outer update of [`OuterLoop`](bilevel_core::OuterLoop) methods.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Projected SGD `x ← P_X(x − β_k ĝ)`.
    #[default]
    Sgd,
    /// Adam with moments `(0.9, 0.999, 1e-8)`, then the projection.
    Adam,
}

/// The outer-step keys of an [`OuterLoop`](bilevel_core::OuterLoop) method's table:
/// `x ← P_X(x − β_k ĝ)`, `β_k = outer_step / (k + 1)^outer_step_decay` for `optimizer = "sgd"`,
/// or Adam with step `outer_step` for `optimizer = "adam"` (which takes no decay).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OuterTable {
    /// Outer step `β` (> 0).
    pub outer_step: f64,
    /// `"sgd"` (default) or `"adam"`.
    pub optimizer: OptimizerKind,
    /// `p ≥ 0` of the SGD schedule `β_k = β / (k + 1)^p` (0: constant; Adam: must be 0).
    pub outer_step_decay: f64,
}

impl Default for OuterTable {
    /// SGD with the constant step 0.1.
    fn default() -> Self {
        Self::sgd(0.1, 0.0)
    }
}

impl OuterTable {
    /// The names of its keys, as a table writes them.
    pub const KEYS: [&'static str; 3] = ["outer_step", "optimizer", "outer_step_decay"];

    /// SGD with `β_k = step / (k + 1)^decay`.
    pub fn sgd(step: f64, decay: f64) -> Self {
        Self {
            outer_step: step,
            optimizer: OptimizerKind::Sgd,
            outer_step_decay: decay,
        }
    }

    /// Checks the keys and returns the outer update they describe; errors name the key.
    pub fn check(&self) -> Result<OuterOptimizer> {
        let (step, decay) = (self.outer_step, self.outer_step_decay);
        // 0 (with SGD) keeps x at x₀: the control that shows what the bilevel part adds.
        if !(step >= 0.0 && step.is_finite()) {
            return Err(BilevelError::invalid(
                "outer_step",
                format!("must be ≥ 0 and finite (0 freezes x), got {step}"),
            ));
        }
        if !(decay >= 0.0 && decay.is_finite()) {
            return Err(BilevelError::invalid(
                "outer_step_decay",
                format!("must be ≥ 0 and finite, got {decay}"),
            ));
        }
        let optimizer = match self.optimizer {
            OptimizerKind::Sgd => OuterOptimizer::Sgd {
                lr: step,
                schedule: if decay == 0.0 {
                    StepSchedule::Constant
                } else {
                    StepSchedule::InversePower { power: decay }
                },
            },
            OptimizerKind::Adam => {
                if decay != 0.0 {
                    return Err(BilevelError::invalid(
                        "outer_step_decay",
                        "Adam takes a constant step: remove `outer_step_decay` or use \
                         optimizer = \"sgd\"",
                    ));
                }
                if step == 0.0 {
                    return Err(BilevelError::invalid(
                        "outer_step",
                        "a frozen-x control (outer_step = 0) runs with optimizer = \"sgd\"",
                    ));
                }
                OuterOptimizer::adam(step)
            }
        };
        optimizer.validate()?;
        Ok(optimizer)
    }
}
