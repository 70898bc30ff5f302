//! `bilevel`: run a TOML experiment config on a backend.
//!
//! - `bilevel run --config FILE [--backend flex|ndarray|wgpu] [--precision f32|f64] [--seed S]
//!   [--out DIR] [--quiet] [--log-format human|csv|json]`
//! - `bilevel run --resume DIR` continues a stopped run from its checkpoint.
//! - `bilevel list [problems|algorithms|datasets] [--defaults]`
//! - `bilevel check-config FILE [--print]`
//!
//! Exit codes: 0 success, 1 the run failed (unreadable data, divergence, I/O), 2 the command
//! line or config is wrong (nothing ran), 130 interrupted by Ctrl-C (checkpoint written),
//! 101 internal error.

mod backend;
mod config;
mod failure;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bilevel_problems::spec::{ProblemSpec, PROBLEMS};
use bilevel_run::method::{MethodSpec, METHODS};
use bilevel_run::RunSpec;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::failure::{Failure, EXIT_INTERRUPTED};

#[derive(Debug, Parser)]
#[command(
    name = "bilevel",
    version,
    about = "Gradient-based bilevel optimization: run experiment configs",
    after_help = "Exit codes: 0 success, 1 run failed, 2 bad command line or config, \
                  130 interrupted (checkpoint written; continue with `--resume DIR`)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an experiment config (or resume a stopped run).
    Run(run::RunArgs),
    /// List the problems, algorithms and data sets a config can name.
    List {
        /// Only this section.
        #[arg(value_enum)]
        what: Option<ListWhat>,
        /// Also print every table with all its defaults (`[problem]` of every kind,
        /// `[algorithm]` of every name, `[run]`, `[output]`).
        #[arg(long)]
        defaults: bool,
    },
    /// Parse and validate a config without running it (no data is read).
    CheckConfig {
        /// The config file.
        file: PathBuf,
        /// Print the resolved config (every default filled in).
        #[arg(long)]
        print: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ListWhat {
    Problems,
    Algorithms,
    Datasets,
}

fn list(what: Option<ListWhat>, defaults: bool) -> Result<(), Failure> {
    let show = |w: ListWhat| what.is_none_or(|x| x == w);
    if show(ListWhat::Problems) {
        println!("Problems ([problem] kind = ...):");
        for p in PROBLEMS {
            println!("  {:<18} {}", p.id, p.description);
        }
        println!();
        if defaults {
            for p in PROBLEMS {
                if let Some(spec) = ProblemSpec::default_for(p.id) {
                    print_table("problem", &spec)?;
                }
            }
        }
    }
    if show(ListWhat::Algorithms) {
        println!("Algorithms ([algorithm] name = ...):");
        for m in METHODS {
            println!("  {:<12} {} [{}]", m.name, m.description, m.paper);
        }
        println!();
        if defaults {
            for m in METHODS {
                if let Some(spec) = MethodSpec::default_for(m.name) {
                    print_table("algorithm", &spec)?;
                }
            }
        }
    }
    if defaults && what.is_none() {
        println!("# The optional tables ([output] dir and log_every default to none):");
        print_table("run", &RunSpec::default())?;
        print_table("output", &config::OutputSpec::default())?;
    }
    if show(ListWhat::Datasets) {
        println!("Data sets (cargo xtask data fetch <name>):");
        for d in bilevel_data::registry::all() {
            let bundled = if d.fetch.is_bundled() {
                " (bundled)"
            } else {
                ""
            };
            println!("  {:<14} {}{bundled} [{}]", d.name, d.description, d.source);
        }
    }
    Ok(())
}

/// Prints `value` as the TOML table `[name]`.
fn print_table<T: serde::Serialize>(name: &str, value: &T) -> Result<(), Failure> {
    let table = std::collections::BTreeMap::from([(name, value)]);
    println!("{}", config::to_toml(&table)?);
    Ok(())
}

fn check_config(file: &std::path::Path, print: bool) -> Result<(), Failure> {
    let config = Config::load(file)?;
    config.validate()?;
    if print {
        print!("{}", config.to_toml()?);
    } else {
        println!(
            "{}: ok ({} × {}, {} iterations, seed {})",
            file.display(),
            config.problem.id(),
            config.algorithm.name(),
            config.run.max_iters,
            config.run.seed
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    // A panic is reported as an internal error by `run`; keep its message, print no trace.
    std::panic::set_hook(Box::new(|info| {
        let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
            s.to_string()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "panic".to_string()
        };
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut m) = run::PANIC_MESSAGE.lock() {
            *m = Some(format!("{msg}{place}"));
        }
    }));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => {
            let interrupt = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&interrupt);
            // Ctrl-C, SIGTERM and SIGHUP (ctrlc's `termination` feature) stop the run after the
            // current iteration with a checkpoint; without a handler they would kill it, and
            // only the last periodic checkpoint would survive.
            let _ = ctrlc::set_handler(move || {
                if flag.swap(true, Ordering::SeqCst) {
                    std::process::exit(EXIT_INTERRUPTED);
                }
                eprintln!(
                    "\ninterrupt: stopping after the current iteration and writing a \
                     checkpoint (press Ctrl-C again to abort at once)"
                );
            });
            run::run(args, interrupt)
        }
        Command::List { what, defaults } => list(what, defaults).map(|_| 0),
        Command::CheckConfig { file, print } => check_config(&file, print).map(|_| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(f) => {
            eprintln!("{}", f.render());
            ExitCode::from(f.code as u8)
        }
    }
}
