//! `cargo xtask reproduce` (in progress).

use anyhow::{bail, Result};

/// Entry point of the subcommand.
pub(crate) fn main(_args: &[String]) -> Result<()> {
    bail!("not implemented yet")
}
