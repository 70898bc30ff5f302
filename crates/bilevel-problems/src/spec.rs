//! Serde specs that build the applications: `[problem]` tables of a TOML config, one variant per
//! experiment id of `DESIGN.md` §6. Unknown keys are errors.
//!
//! Building is by visitor, because every application is its own type: the caller passes an
//! [`ApplicationVisitor`] whose `visit` is generic over the problem type and receives the built
//! problem, e.g. to run an algorithm on it.

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;

use crate::application::Application;
use crate::error::Result;

/// Everything a spec needs besides its own fields to build a problem.
#[derive(Clone, Debug)]
pub struct BuildContext<B: AutodiffBackend> {
    /// Where tensors live.
    pub device: B::Device,
    /// Directory of fetched data sets (`data/` by default); bundled MNIST needs none.
    pub data_dir: Option<PathBuf>,
    /// Seed of data splits, label corruption and generated instances.
    pub seed: u64,
}

/// Receives a built application.
pub trait ApplicationVisitor<B: AutodiffBackend> {
    /// What the visit returns.
    type Output;
    /// Called once with the problem the spec built.
    fn visit<P: Application<B>>(self, problem: P) -> Result<Self::Output>;
}

/// The `[problem]` table: `kind = "<experiment id>"` plus that problem's fields.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ProblemSpec {}

impl ProblemSpec {
    /// The experiment id.
    pub fn id(&self) -> &'static str {
        match *self {}
    }

    /// Checks every field's range without loading data.
    pub fn validate(&self) -> Result<()> {
        match *self {}
    }

    /// Builds the problem and hands it to `visitor`.
    pub fn build_with<B: AutodiffBackend, V: ApplicationVisitor<B>>(
        &self,
        _ctx: &BuildContext<B>,
        _visitor: V,
    ) -> Result<V::Output> {
        match *self {}
    }
}
