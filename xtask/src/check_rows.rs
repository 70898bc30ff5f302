//! The shared vocabulary of hypergrad-check: its options, tolerances and rows. A leaf module:
//! the `checks_*` files (compiled once per backend) record into a [`Worst`], and
//! `hypergrad_check` runs them and prints the rows; neither imports the other's caller.

use anyhow::{bail, Result};
use bilevel_core::backend::BackendKind;

/// Tolerance of exact quantities (products, gradients, solves to tolerance) in f64.
pub(crate) const TOL_EXACT: f64 = 1e-8;
/// Tolerance of central differences with ε = 1e-6 in f64 (round-off ≈ u/ε ≈ 1e-10 relative).
pub(crate) const TOL_FD: f64 = 1e-6;
pub(crate) const FD_EPS: f64 = 1e-6;

/// Command-line options.
pub struct Options {
    pub seed: u64,
    pub instances: usize,
    /// The backends to check on (default: flex and ndarray).
    pub backends: Vec<BackendKind>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut opts = Options {
            seed: 0,
            instances: 10,
            backends: vec![BackendKind::Flex, BackendKind::Ndarray],
        };
        crate::parse_flags(args, |name, value| {
            match name {
                "seed" => opts.seed = value.parse()?,
                "instances" => opts.instances = value.parse()?,
                "backend" => {
                    opts.backends = match value {
                        "cpu" => vec![BackendKind::Flex, BackendKind::Ndarray],
                        name => match name.parse().map_err(anyhow::Error::msg)? {
                            BackendKind::Wgpu => bail!(
                                "hypergrad-check runs in f64, which wgpu lacks: use flex, \
                                 ndarray or cpu (both)"
                            ),
                            cpu => vec![cpu],
                        },
                    }
                }
                _ => bail!("unknown option --{name} (expected --seed, --instances, --backend)"),
            }
            Ok(())
        })?;
        if opts.instances == 0 {
            bail!("--instances must be ≥ 1");
        }
        Ok(opts)
    }
}

/// One check: the worst relative error over instances against its tolerance.
pub struct Row {
    /// Check name, printed as `check=<name>`.
    pub name: &'static str,
    /// The backend it ran on (`flex`, `ndarray`), printed as `backend=<name>`.
    pub backend: &'static str,
    pub rel_err: f64,
    pub tol: f64,
}

impl Row {
    pub fn ok(&self) -> bool {
        self.rel_err.is_finite() && self.rel_err <= self.tol
    }
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "check={} backend={} rel_err={:.3e} tol={:.0e} ok={}",
            self.name,
            self.backend,
            self.rel_err,
            self.tol,
            self.ok()
        )
    }
}

/// Accumulates the worst error per named check, in first-seen order.
#[derive(Default)]
pub(crate) struct Worst(pub(crate) Vec<Row>);

impl Worst {
    pub(crate) fn record(&mut self, name: &'static str, tol: f64, err: f64) {
        match self.0.iter_mut().find(|r| r.name == name) {
            Some(row) => {
                row.rel_err = if err.is_nan() {
                    f64::NAN
                } else {
                    row.rel_err.max(err)
                }
            }
            None => self.0.push(Row {
                name,
                backend: "",
                rel_err: err,
                tol,
            }),
        }
    }
}
