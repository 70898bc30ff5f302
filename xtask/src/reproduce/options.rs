//! The command line of `cargo xtask reproduce`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::experiments::{Mode, Precision};
use super::Backend;

pub(crate) const USAGE: &str = "usage:
  cargo xtask reproduce --list
      the experiments (the files in assets/experiments/, docs/REPRODUCTION.md): id, paper,
      methods, whether it can run yet
  cargo xtask reproduce <id | FILE.toml | --plan FILE> [--quick] [--seeds N] [--budget S]
                        [--backend flex|ndarray|wgpu] [--precision f32|f64] [--data-dir D]
                        [--out DIR]
  cargo xtask reproduce --resume DIR
      run the paper's comparison (assets/experiments/<id>.toml), or the experiment of your
      own file (any argument ending in .toml, or --plan FILE; the format is in
      docs/REPRODUCTION.md, \"Writing your own experiment\"); write metrics.csv,
      summary.md/json, PNG plots and provenance.json into results/<id>/<run-id>/ (or DIR).
      --quick: the small CI variant (minutes on 2 cores), whose checks must pass. --seeds N:
      seeds 0..N instead of the plan's. --budget S: wall-clock budget of each (method, seed)
      run in seconds, replacing the plan's (runs stop at the plan's iteration count or the
      budget, whichever is first).
      --backend: flex (CPU, the default), ndarray (CPU), wgpu: the GPU through wgpu, f32
      only (plans in f64 run in f32 there); needs an xtask built with `--features wgpu`:
      cargo run --release -p xtask --features wgpu -- reproduce <id> --backend wgpu
      --resume DIR: continue the unfinished run DIR (or DIR.partial) with the options it was
      started with: finished (variant, method, seed) runs are kept, the one that was running
      continues from its last checkpoint (every `run.checkpoint_every` iterations, default
      `eval_every`), bit-identically; a plan edited since is refused.";

fn parse_backend(name: &str) -> Result<Backend> {
    name.parse::<Backend>().map_err(anyhow::Error::msg)
}

/// Parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Options {
    /// A shipped experiment's id (`assets/experiments/<id>.toml`); empty when `plan` is given.
    pub id: String,
    /// An experiment file of the user's (an argument ending in `.toml`, or `--plan FILE`).
    pub plan: Option<PathBuf>,
    pub mode: Mode,
    pub seeds: Option<usize>,
    pub budget_s: Option<f64>,
    pub backend: Backend,
    pub precision: Option<Precision>,
    pub data_dir: Option<PathBuf>,
    pub out: Option<PathBuf>,
}

pub(crate) enum Command {
    List,
    Help,
    Run(Options),
    /// `--resume DIR`: continue the unfinished run in DIR.
    Resume(PathBuf),
}

pub(crate) fn parse(args: &[String]) -> Result<Command> {
    let mut id: Option<String> = None;
    let mut opts = Options {
        id: String::new(),
        plan: None,
        mode: Mode::Full,
        seeds: None,
        budget_s: None,
        backend: Backend::Flex,
        precision: None,
        data_dir: None,
        out: None,
    };
    let mut list = false;
    if args.first().map(String::as_str) == Some("--resume") {
        return match &args[1..] {
            [dir] => Ok(Command::Resume(PathBuf::from(dir))),
            _ => bail!(
                "--resume takes the run folder and nothing else (the run keeps the options it \
                 was started with)\n\n{USAGE}"
            ),
        };
    }
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .with_context(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--list" => list = true,
            "-h" | "--help" | "help" => return Ok(Command::Help),
            "--quick" => opts.mode = Mode::Quick,
            "--seeds" => {
                let n: usize = value("--seeds")?
                    .parse()
                    .context("--seeds takes a positive integer")?;
                if n == 0 {
                    bail!("--seeds must be ≥ 1");
                }
                opts.seeds = Some(n);
            }
            "--budget" => {
                let s: f64 = value("--budget")?
                    .parse()
                    .context("--budget takes a number of seconds")?;
                if !(s.is_finite() && s > 0.0) {
                    bail!("--budget must be a positive number of seconds, got {s}");
                }
                opts.budget_s = Some(s);
            }
            "--backend" => opts.backend = parse_backend(&value("--backend")?)?,
            "--precision" => {
                opts.precision = Some(match value("--precision")?.as_str() {
                    "f32" => Precision::F32,
                    "f64" => Precision::F64,
                    other => bail!("--precision is f32 or f64, got `{other}`"),
                })
            }
            "--data-dir" => opts.data_dir = Some(PathBuf::from(value("--data-dir")?)),
            "--out" => opts.out = Some(PathBuf::from(value("--out")?)),
            "--plan" => {
                let file = value("--plan")?;
                set_experiment(&mut id, &mut opts.plan, file, true)?;
            }
            flag if flag.starts_with('-') => bail!("unknown option `{flag}`\n\n{USAGE}"),
            name => {
                let is_file = name.ends_with(".toml");
                set_experiment(&mut id, &mut opts.plan, name.to_string(), is_file)?;
            }
        }
    }
    if list {
        if id.is_some() || opts.plan.is_some() {
            bail!("--list takes no experiment");
        }
        return Ok(Command::List);
    }
    match (id, &opts.plan) {
        (Some(id), _) => {
            opts.id = id;
            Ok(Command::Run(opts))
        }
        (None, Some(_)) => Ok(Command::Run(opts)),
        (None, None) => Ok(Command::Help),
    }
}

/// Records the experiment to run (an id, or a file), refusing a second one.
fn set_experiment(
    id: &mut Option<String>,
    plan: &mut Option<PathBuf>,
    name: String,
    is_file: bool,
) -> Result<()> {
    let previous = id
        .clone()
        .or_else(|| plan.as_ref().map(|p| p.display().to_string()));
    if let Some(prev) = previous {
        bail!("one experiment at a time (got `{prev}` and `{name}`)");
    }
    if is_file {
        *plan = Some(PathBuf::from(name));
    } else {
        *id = Some(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn run(s: &str) -> Options {
        match parse(&args(s)).unwrap() {
            Command::Run(o) => o,
            _ => panic!("expected a run"),
        }
    }

    #[test]
    fn parses_the_command_line() {
        assert!(matches!(parse(&args("--list")).unwrap(), Command::List));
        assert!(matches!(parse(&[]).unwrap(), Command::Help));
        let o = run(
            "hyper-cleaning --quick --seeds 2 --budget 12.5 --data-dir d --out o --precision f64",
        );
        assert_eq!(o.id, "hyper-cleaning");
        assert_eq!(o.plan, None);
        assert_eq!(o.mode, Mode::Quick);
        assert_eq!(o.seeds, Some(2));
        assert_eq!(o.budget_s, Some(12.5));
        assert_eq!(o.precision, Some(Precision::F64));
        assert_eq!(o.data_dir, Some(PathBuf::from("d")));
        assert_eq!(o.out, Some(PathBuf::from("o")));
        assert!(parse(&args("quadratic --seeds 0")).is_err());
        assert!(parse(&args("quadratic --budget 0")).is_err());
        assert!(parse(&args("quadratic --budget nan")).is_err());
        assert!(parse(&args("quadratic --budget -3")).is_err());
        assert!(parse(&args("quadratic --bogus")).is_err());
        assert!(parse(&args("quadratic liu-hard")).is_err());
        assert!(parse(&args("quadratic --seeds")).is_err());
        assert!(matches!(
            parse(&args("--resume results/x/1")).unwrap(),
            Command::Resume(d) if d == Path::new("results/x/1")
        ));
        assert!(parse(&args("--resume")).is_err());
        assert!(parse(&args("--resume d --seeds 2")).is_err());
        assert!(parse(&args("quadratic --resume d")).is_err());
    }

    /// An argument ending in `.toml`, or `--plan FILE`, is a user's experiment file; one
    /// experiment at a time. (Treating `.toml` arguments as ids makes this fail.)
    #[test]
    fn parses_a_plan_file() {
        let o = run("my/exp.toml --quick");
        assert_eq!(
            (o.id.as_str(), o.plan),
            ("", Some(PathBuf::from("my/exp.toml")))
        );
        assert_eq!(o.mode, Mode::Quick);
        let o = run("--plan my/exp --seeds 2");
        assert_eq!(o.plan, Some(PathBuf::from("my/exp")));
        assert_eq!(o.seeds, Some(2));
        for bad in [
            "a.toml b.toml",
            "quadratic --plan a.toml",
            "--plan a.toml quadratic",
            "--list a.toml",
            "--plan",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_the_backend() {
        assert_eq!(run("liu-hard").backend, Backend::Flex);
        assert_eq!(run("liu-hard --backend flex").backend, Backend::Flex);
        assert_eq!(run("liu-hard --backend ndarray").backend, Backend::Ndarray);
        assert_eq!(run("liu-hard --backend wgpu").backend, Backend::Wgpu);
        assert!(parse(&args("liu-hard --backend cuda")).is_err());
        assert!(parse(&args("liu-hard --backend")).is_err());
    }
}
