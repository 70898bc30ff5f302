//! `cargo xtask hypergrad-check`: every estimator and product against a closed form.
//!
//! Runs in f64 on both CPU backends (`Autodiff<Flex>` and `Autodiff<NdArray<f64>>`, or the one
//! `--backend` names) over random quadratic instances (varying dimensions and condition
//! numbers) and FSLA's least-squares problem. Each row is the worst relative error over all
//! instances on one backend. The checks (`checks_*.rs`) are written against a type `B` of their
//! parent module and compiled once per backend (modules `on_flex`, `on_ndarray` in `main.rs`).

use anyhow::{bail, Result};
use bilevel_core::backend::{flex_device, ndarray_device, BackendKind, Precision};

use crate::check_rows::Worst;
pub use crate::check_rows::{Options, Row};

/// Runs every check on every backend of `opts` (f64) and returns one row per check and backend.
pub fn run(opts: &Options) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &backend in &opts.backends {
        let mut worst = Worst::default();
        match backend {
            BackendKind::Flex => {
                flex_device(Precision::F64)?;
                crate::on_flex::run_all(opts, &mut worst)?;
            }
            BackendKind::Ndarray => {
                ndarray_device(Precision::F64)?;
                crate::on_ndarray::run_all(opts, &mut worst)?;
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
