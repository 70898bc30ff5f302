//! `cargo xtask hypergrad-check`: every estimator and product against a closed form.
//!
//! Runs in f64 on both CPU backends (`Autodiff<Flex>` and `Autodiff<NdArray<f64>>`, or the one
//! `--backend` names) over random quadratic instances (varying dimensions and condition
//! numbers) and FSLA's least-squares problem. Each row is the worst relative error over all
//! instances on one backend. The checks (`checks_*.rs`) are written against a type `B` of their
//! parent module and compiled once per backend (modules `on_flex`, `on_ndarray` in `main.rs`).

use anyhow::{bail, Result};
use bilevel_core::backend::{flex_device, ndarray_device, BackendKind, Precision};

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

/// Runs every check on every backend of `opts` (f64) and returns one row per check and backend.
pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &backend in &opts.backends {
        let mut worst = Worst::default();
        match backend {
            BackendKind::Flex => {
                flex_device(Precision::F64)?;
                crate::on_flex::checks_quadratic::run(opts, &mut worst)?;
            }
            BackendKind::Ndarray => {
                ndarray_device(Precision::F64)?;
                crate::on_ndarray::checks_quadratic::run(opts, &mut worst)?;
            }
            BackendKind::Wgpu => bail!("hypergrad-check has no wgpu rows (f64 only)"),
        }
        rows.extend(worst.0.into_iter().map(|row| Row {
            backend: backend.name(),
            ..row
        }));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_passes_on_a_few_instances() {
        // Both backends in f64 (this test binary's other Flex and ndarray work is f64 too).
        let rows = run(&Options {
            seed: 3,
            instances: 4,
            backends: vec![BackendKind::Flex, BackendKind::Ndarray],
        })
        .unwrap();
        let names: Vec<_> = rows.iter().map(|r| r.name).collect();
        let per_backend = |b: &str| rows.iter().filter(|r| r.backend == b).count();
        assert_eq!(per_backend("flex"), per_backend("ndarray"));
        assert_eq!(per_backend("flex") * 2, rows.len());
        for expected in [
            "grad_f",
            "hvp_exact",
            "jvp_exact",
            "hvp_fd",
            "jvp_fd",
            "cg_solve",
            "neumann_solve",
            "implicit_hypergrad",
            "stocbio_x",
            "bsa_x",
            "ttsa_x",
            "alset",
            "alset_dagger",
            "maml",
            "fomaml",
            "anil",
            "foanil",
            "maml_fd",
            "anil_fd",
        ] {
            assert!(names.contains(&expected), "missing row {expected}");
        }
        for row in &rows {
            assert!(row.ok(), "{row}");
        }
    }

    #[test]
    fn a_failing_row_is_reported_as_failing() {
        let mut worst = Worst::default();
        worst.record("x", 1e-8, 1e-9);
        worst.record("x", 1e-8, 1e-3);
        worst.record("y", 1e-8, f64::NAN);
        assert!(!worst.0[0].ok() && !worst.0[1].ok());
    }
}
