//! Solver state: everything a run needs to continue, so a checkpoint resumes it exactly.

use std::collections::BTreeMap;

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use crate::error::{BilevelError, Result};
use crate::sampling::Rng;
use crate::second_order::OracleCounts;
use crate::tensor::{to_vec, vector};

/// The state of an outer iteration, passed by value through [`crate::solver::Solver`].
///
/// All tensors are detached. Algorithms keep their memories (momenta, Adam moments, STORM
/// directions) in `memory` and scalar memories (adaptive steps, tolerances) in `scalars`, so a
/// checkpoint of the state holds everything and resume is bit-identical.
#[derive(Clone, Debug)]
pub struct State<B: AutodiffBackend> {
    /// Completed outer iterations `k`.
    pub iter: u64,
    /// Upper-level variable `x_k`.
    pub x: Tensor<B, 1>,
    /// Lower-level iterate `y_k` (warm start of the next inner solve).
    pub y: Tensor<B, 1>,
    /// Linear-system iterate `v_k` (warm start of the next solve of `H v = ∇_y f`).
    pub v: Tensor<B, 1>,
    /// The run's only random source.
    pub rng: Rng,
    /// Oracle calls so far.
    pub counts: OracleCounts,
    /// Named vector memories of the algorithm and the outer optimizer.
    pub memory: BTreeMap<String, Tensor<B, 1>>,
    /// Named scalar memories.
    pub scalars: BTreeMap<String, f64>,
    /// Last hypergradient estimate `ĝ_k` (for metrics and convergence tests).
    pub hypergradient: Option<Tensor<B, 1>>,
    /// Outer loss `f(x, y)` at the last point the algorithm evaluated it, if it did.
    pub outer_loss: Option<f64>,
}

impl<B: AutodiffBackend> State<B> {
    /// A fresh state at `(x0, y0)`, `v = 0`, seeded RNG.
    pub fn new(x0: Tensor<B, 1>, y0: Tensor<B, 1>, seed: u64) -> Self {
        let v = y0.zeros_like();
        Self {
            iter: 0,
            x: x0.detach(),
            y: y0.detach(),
            v,
            rng: Rng::seed(seed),
            counts: OracleCounts::default(),
            memory: BTreeMap::new(),
            scalars: BTreeMap::new(),
            hypergradient: None,
            outer_loss: None,
        }
    }

    /// A named memory, or zeros shaped like `like` on first use.
    pub fn memory_or_zeros(&self, name: &str, like: &Tensor<B, 1>) -> Tensor<B, 1> {
        self.memory
            .get(name)
            .cloned()
            .unwrap_or_else(|| like.zeros_like())
    }

    /// Host copy of the state, for checkpoints.
    pub fn to_record(&self) -> Result<StateRecord> {
        let memory = self
            .memory
            .iter()
            .map(|(k, t)| Ok((k.clone(), to_vec(t.clone())?)))
            .collect::<Result<_>>()?;
        Ok(StateRecord {
            iter: self.iter,
            x: to_vec(self.x.clone())?,
            y: to_vec(self.y.clone())?,
            v: to_vec(self.v.clone())?,
            rng: self.rng.clone(),
            counts: self.counts,
            memory,
            scalars: self.scalars.clone(),
            hypergradient: self.hypergradient.clone().map(to_vec).transpose()?,
            outer_loss: self.outer_loss,
        })
    }

    /// Rebuilds a state from a record on `device`.
    pub fn from_record(record: &StateRecord, device: &B::Device) -> Self {
        Self {
            iter: record.iter,
            x: vector(&record.x, device),
            y: vector(&record.y, device),
            v: vector(&record.v, device),
            rng: record.rng.clone(),
            counts: record.counts,
            memory: record
                .memory
                .iter()
                .map(|(k, v)| (k.clone(), vector(v, device)))
                .collect(),
            scalars: record.scalars.clone(),
            hypergradient: record.hypergradient.as_ref().map(|g| vector(g, device)),
            outer_loss: record.outer_loss,
        }
    }
}

/// Serialisable host copy of a [`State`] (f64 values: exact for f32 and f64 backends).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StateRecord {
    /// See [`State::iter`].
    pub iter: u64,
    /// See [`State::x`].
    pub x: Vec<f64>,
    /// See [`State::y`].
    pub y: Vec<f64>,
    /// See [`State::v`].
    pub v: Vec<f64>,
    /// See [`State::rng`].
    pub rng: Rng,
    /// See [`State::counts`].
    pub counts: OracleCounts,
    /// See [`State::memory`].
    pub memory: BTreeMap<String, Vec<f64>>,
    /// See [`State::scalars`].
    pub scalars: BTreeMap<String, f64>,
    /// See [`State::hypergradient`].
    pub hypergradient: Option<Vec<f64>>,
    /// See [`State::outer_loss`].
    pub outer_loss: Option<f64>,
}

impl StateRecord {
    /// Checks the record's vectors against a problem's dimensions.
    pub fn check_dims(&self, x_dim: usize, y_dim: usize) -> Result<()> {
        for (what, got, want) in [
            ("x", self.x.len(), x_dim),
            ("y", self.y.len(), y_dim),
            ("v", self.v.len(), y_dim),
        ] {
            if got != want {
                return Err(BilevelError::ShapeMismatch {
                    what: format!("checkpoint {what}"),
                    expected: vec![want],
                    got: vec![got],
                });
            }
        }
        Ok(())
    }
}
