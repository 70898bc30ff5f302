//! `cargo xtask reproduce`: runs a paper's comparison and writes its report (one section per
//! experiment id in `docs/REPRODUCTION.md`).
//!
//! `reproduce --list` prints the experiment table (the files in `assets/experiments/`);
//! `reproduce <id> [--quick] [--seeds N] [--backend flex|ndarray|wgpu] [--precision f32|f64]
//! [--data-dir D] [--out DIR]` runs the plan of `assets/experiments/<id>.toml`
//! ([`plan_file`] documents the format): every method the paper compares on every problem
//! variant and seed. `reproduce path/to/file.toml` (any argument ending in `.toml`) or
//! `reproduce --plan FILE` runs a user's own experiment file the same way. Either writes into
//! `results/<id>/<run-id>/` (or `DIR`):
//!
//! - `metrics.csv`: one row per recorded iteration of every (variant, method, seed): wall time,
//!   oracle counts, outer loss, estimated hypergradient norm and the problem's metrics (empty
//!   where not evaluated);
//! - `summary.json` / `summary.md`: final metrics as mean ± std over seeds, iterations, wall
//!   time, oracle counts, and the experiment's checks (quick mode);
//! - `<metric>_vs_iter.png`, `<metric>_vs_time.png` (prefixed `<variant>_` when the experiment
//!   has several variants): a line per method, mean ± std band over seeds;
//! - `provenance.json`: git commit and dirty flag, command line, backend, device, precision,
//!   seeds, crate versions, rustc, host, times.
//!
//! Everything is written into `<run-id>.partial/` first and renamed at the end, so an aborted
//! run never looks complete. A failed check makes the command exit non-zero after the report
//! is written.
//!
//! Backends: `ndarray` (CPU, the default) in the plan's precision or `--precision`; `wgpu`
//! (burn's wgpu backend, `bilevel_core::gpu::WgpuAutodiff`) only in xtask builds with the cargo
//! feature `wgpu` (`cargo run --release -p xtask --features wgpu -- reproduce …`). wgpu runs in
//! f32 only (WGSL has no 64-bit floats): a plan whose precision is f64 runs in f32 there, and
//! `summary.md`/`summary.json` (`notes`) and `provenance.json` (`precision_note`) say so;
//! `--precision f64 --backend wgpu` is an error. The checks were calibrated on ndarray in the
//! plan's precision. The adapter is probed before anything is written (no adapter: an error
//! naming the fix) and recorded as `device` in `provenance.json`.

mod execute;
mod experiments;
mod options;
mod plan_file;
mod plot;
mod provenance;
mod report;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bilevel_core::utc::Utc;

use experiments::{Experiment, Mode, Plan, Precision};
use options::{Command, Options, USAGE};
use provenance::{GitInfo, Host, Provenance, RunTiming};
use report::{SeedRun, Summary};

/// `--backend`: the workspace's one backend choice (`bilevel_core::backend`).
pub(crate) use bilevel_core::backend::BackendKind as Backend;

/// Where an invocation's runs execute, resolved from the flags and the plan before anything
/// is written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    pub backend: Backend,
    pub precision: Precision,
    /// The device in words (`provenance.json`'s `device`).
    pub device: String,
    /// Set when the precision differs from the plan's for the backend's sake.
    pub precision_note: Option<String>,
}

/// Checks that this build can run on `backend` (for wgpu: that an adapter exists) and picks
/// the precision: `requested`, else the plan's; on wgpu always f32.
fn resolve_target(
    backend: Backend,
    requested: Option<Precision>,
    plan_precision: Precision,
) -> Result<Target> {
    match backend {
        Backend::Flex | Backend::Ndarray => Ok(Target {
            backend,
            precision: requested.unwrap_or(plan_precision),
            device: execute::cpu_device_name(backend),
            precision_note: None,
        }),
        Backend::Wgpu => resolve_wgpu(requested, plan_precision),
    }
}

#[cfg(feature = "wgpu")]
fn resolve_wgpu(requested: Option<Precision>, plan_precision: Precision) -> Result<Target> {
    if requested == Some(Precision::F64) {
        bail!(
            "--backend wgpu runs in f32 only (WGSL has no 64-bit floats): drop --precision f64 \
             (wgpu uses f32), or use --backend flex for f64"
        );
    }
    let adapter = bilevel_core::gpu::probe_adapter().map_err(|e| {
        anyhow::anyhow!("--backend wgpu was requested, but no GPU adapter was found: {e}")
    })?;
    let precision_note = (requested.is_none() && plan_precision == Precision::F64).then(|| {
        "Ran in f32 on wgpu (WGSL has no 64-bit floats); the plan's precision is f64, in which \
         its checks were calibrated on ndarray."
            .to_string()
    });
    Ok(Target {
        backend: Backend::Wgpu,
        precision: Precision::F32,
        device: format!("burn-wgpu on {adapter}"),
        precision_note,
    })
}

#[cfg(not(feature = "wgpu"))]
fn resolve_wgpu(_requested: Option<Precision>, _plan_precision: Precision) -> Result<Target> {
    bail!(
        "--backend wgpu needs an xtask built with the `wgpu` cargo feature, and this one was \
         built without it: rebuild and run with `cargo run --release -p xtask --features wgpu \
         -- reproduce <id> --backend wgpu …`, or run on the CPU with --backend flex (the default)"
    )
}

/// Entry point of the subcommand.
pub(crate) fn main(args: &[String]) -> Result<()> {
    match options::parse(args)? {
        Command::Help => {
            println!("{USAGE}");
            Ok(())
        }
        Command::List => {
            print!("{}", plan_file::list_text()?);
            Ok(())
        }
        Command::Run(opts) => run(&opts, false),
        Command::Resume(dir) => {
            let (final_dir, partial) = if dir.extension().is_some_and(|e| e == "partial") {
                (dir.with_extension(""), dir.clone())
            } else {
                (dir.clone(), partial_dir(&dir))
            };
            if final_dir.exists() {
                bail!(
                    "{} is a finished run: there is nothing to resume",
                    final_dir.display()
                );
            }
            let invocation = Invocation::load(&partial)?;
            let mut opts = match options::parse(&invocation.args)? {
                Command::Run(opts) => opts,
                _ => bail!(
                    "{} does not record a run's options",
                    partial.join(INVOCATION_FILE).display()
                ),
            };
            opts.out = Some(final_dir);
            run(&opts, true)
        }
    }
}

/// The file in a partial run folder that records how it was started (`reproduce --resume`
/// reads it back).
const INVOCATION_FILE: &str = "invocation.json";

/// How a plan's run was started: its command-line options (without `--out`, which is the
/// folder itself) and the resolved specs, so that a resume runs the same plan or refuses.
#[derive(serde::Serialize, serde::Deserialize)]
struct Invocation {
    args: Vec<String>,
    specs: serde_json::Value,
    /// Start times (UTC) of every invocation that worked on the folder, the first included.
    starts_utc: Vec<String>,
}

impl Invocation {
    fn load(partial: &Path) -> Result<Self> {
        let path = partial.join(INVOCATION_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (is {} an unfinished `reproduce` run?)",
                path.display(),
                partial.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))
    }
}

/// The command-line options that define a plan's run, for [`Invocation::args`]: everything
/// but `--out DIR`.
fn defining_args() -> Vec<String> {
    let all: Vec<String> = std::env::args()
        .skip_while(|a| a != "reproduce")
        .skip(1)
        .collect();
    let mut kept = Vec::new();
    let mut it = all.into_iter();
    while let Some(a) = it.next() {
        if a == "--out" {
            it.next();
        } else {
            kept.push(a);
        }
    }
    kept
}

/// Runs (or, with `resuming`, continues in `opts.out`'s partial folder) a plan.
fn run(opts: &Options, resuming: bool) -> Result<()> {
    let (experiment, plan_path) = match &opts.plan {
        Some(path) => (plan_file::load(path, opts.mode)?, path.clone()),
        None => (
            plan_file::load_shipped(&opts.id, opts.mode)?,
            plan_file::shipped_file(&opts.id),
        ),
    };
    let Some(mut plan) = experiment.plan.clone() else {
        bail!(
            "experiment `{}` is not available yet: {}",
            experiment.id,
            experiment.missing
        );
    };
    let target = resolve_target(opts.backend, opts.precision, plan.precision)?;
    let default_seeds = plan.seeds.clone();
    if let Some(n) = opts.seeds {
        plan.seeds = (0..n as u64).collect();
    }
    if let Some(b) = opts.budget_s {
        plan.run.time_budget_s = Some(b);
    }
    let checks_note = (plan.seeds != default_seeds && !plan.checks.is_empty()).then(|| {
        format!(
            "The checks were calibrated on the default seeds {default_seeds:?}; this run used \
             {:?}.",
            plan.seeds
        )
    });
    let precision = target.precision;

    let final_dir = match &opts.out {
        Some(dir) => dir.clone(),
        None => {
            let base = Path::new("results").join(&experiment.id);
            unique_run_dir(&base, opts.mode)
        }
    };
    if final_dir.exists() {
        bail!(
            "{} already exists; choose another --out or remove it",
            final_dir.display()
        );
    }
    let partial = partial_dir(&final_dir);
    let start_unix = bilevel_core::utc::unix_now();
    let specs = execute::specs_json(&plan)?;
    let invocation = if resuming {
        let mut invocation = Invocation::load(&partial)?;
        if invocation.specs != specs {
            bail!(
                "the plan changed since {} was started (was {} edited?): its runs would not \
                 belong to one experiment; start a new run instead",
                partial.display(),
                plan_path.display()
            );
        }
        invocation.starts_utc.push(Utc::from_unix(start_unix).iso());
        invocation
    } else {
        if partial.exists() {
            bail!(
                "{} holds an unfinished run of this experiment: continue it with `cargo xtask \
                 reproduce --resume {}`, or remove it",
                partial.display(),
                final_dir.display()
            );
        }
        std::fs::create_dir_all(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        Invocation {
            args: defining_args(),
            specs: specs.clone(),
            starts_utc: vec![Utc::from_unix(start_unix).iso()],
        }
    };
    write(
        &partial.join(INVOCATION_FILE),
        &serde_json::to_string_pretty(&invocation)?,
    )?;

    let start = Instant::now();
    eprintln!(
        "reproduce {} ({} mode, {} seeds, {} variant(s) × {} method(s), {}, {}): writing {}",
        experiment.id,
        opts.mode.name(),
        plan.seeds.len(),
        plan.variants.len(),
        plan.methods.len(),
        target.backend.name(),
        precision.name(),
        partial.display()
    );
    eprintln!("device: {}", target.device);
    if let Some(note) = &target.precision_note {
        eprintln!("note: {note}");
    }
    let ctx = execute::Context {
        data_dir: opts.data_dir.clone(),
        backend: target.backend,
        precision,
    };
    let mut runs: Vec<SeedRun> = Vec::new();
    for variant in &plan.variants {
        for &seed in &plan.seeds {
            for method in &plan.methods {
                let what = format!(
                    "{} / {} / {} / seed {seed}",
                    experiment.id, variant.name, method.label
                );
                // Each run's checkpoints, records and (once finished) `run.json` live in a
                // folder of their own, from which `--resume` continues.
                let run_dir = partial
                    .join("runs")
                    .join(file_safe(&variant.name))
                    .join(format!("{}-seed{seed}", file_safe(&method.label)));
                let finished = run_dir.join(FINISHED_RUN_FILE);
                if finished.exists() {
                    let text = std::fs::read_to_string(&finished)?;
                    let run: SeedRun = serde_json::from_str(&text)
                        .with_context(|| format!("{} is damaged", finished.display()))?;
                    eprintln!("  {} (finished before the resume)", describe_run(&run));
                    runs.push(run);
                    continue;
                }
                std::fs::create_dir_all(&run_dir)
                    .with_context(|| format!("cannot create {}", run_dir.display()))?;
                // Missing data or a bad spec stops everything; a method that fails on its own
                // (e.g. IGFM's sub-routine finding no feasible iterate) is reported as failed.
                let run = match execute::run_one(&ctx, &plan, variant, method, seed, &run_dir) {
                    Ok(run) => run,
                    Err(e) if execute::is_setup_error(&e) => {
                        return Err(e.context(what));
                    }
                    Err(e) => {
                        eprintln!("  {what} failed: {e:#}");
                        execute::failed_run(variant, method, seed, &e)
                    }
                };
                write(&finished, &serde_json::to_string(&run)?)?;
                eprintln!("  {}", describe_run(&run));
                runs.push(run);
                // Rewritten after every run, so a long run's progress is inspectable.
                write(&partial.join("metrics.csv"), &report::metrics_csv(&runs))?;
            }
        }
    }

    let notes = run_notes(&target);
    let summary = write_report(
        &partial,
        &experiment,
        &plan,
        opts.mode,
        &runs,
        checks_note,
        notes,
    )?;
    let provenance = Provenance {
        experiment: experiment.id.to_string(),
        plan_file: plan_path.display().to_string(),
        mode: opts.mode.name().to_string(),
        command_line: std::env::args().collect(),
        git: GitInfo::current(),
        backend: target.backend.name().to_string(),
        device: target.device.clone(),
        precision: precision.name().to_string(),
        precision_note: target.precision_note.clone(),
        seeds: plan.seeds.clone(),
        data_dir: opts.data_dir.as_ref().map(|d| d.display().to_string()),
        crate_versions: provenance::crate_versions(),
        rustc: provenance::rustc_version(),
        host: Host::current(),
        start_utc: invocation.starts_utc[0].clone(),
        resumed_utc: invocation.starts_utc[1..].to_vec(),
        end_utc: Utc::now().iso(),
        wall_time_s: start.elapsed().as_secs_f64(),
        runs: runs
            .iter()
            .map(|r| RunTiming {
                variant: r.variant.clone(),
                method: r.method.clone(),
                seed: r.seed,
                wall_time_s: r.wall_time_s,
                iterations: r.iterations,
                termination: r.termination.clone(),
            })
            .collect(),
        specs,
    };
    write(
        &partial.join("provenance.json"),
        &serde_json::to_string_pretty(&provenance)?,
    )?;
    std::fs::rename(&partial, &final_dir).with_context(|| {
        format!(
            "cannot rename {} to {}",
            partial.display(),
            final_dir.display()
        )
    })?;

    println!("{}", report::summary_markdown(&summary));
    println!(
        "wrote {} ({:.1} s)",
        final_dir.display(),
        start.elapsed().as_secs_f64()
    );
    let failed: Vec<&str> = summary
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.description.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} checks failed:\n  {}",
            failed.len(),
            summary.checks.len(),
            failed.join("\n  ")
        );
    }
    Ok(())
}

/// The lines `summary.md` shows under the header: none on the CPU backends (provenance.json
/// names the device); the backend, device and precision (with the f32 remark) on wgpu.
fn run_notes(target: &Target) -> Vec<String> {
    if target.backend != Backend::Wgpu {
        return Vec::new();
    }
    let mut notes = vec![format!(
        "Backend: {}, {}; device: {}.",
        target.backend.name(),
        target.precision.name(),
        target.device
    )];
    notes.extend(target.precision_note.clone());
    notes
}

fn describe_run(run: &SeedRun) -> String {
    let metrics: Vec<String> = run
        .final_metrics
        .iter()
        .map(|(n, v)| format!("{n}={}", report::fmt_num(*v)))
        .collect();
    format!(
        "[{}] {} seed {}: {} iterations, {:.2} s, {} ({})",
        run.variant,
        run.method,
        run.seed,
        run.iterations,
        run.wall_time_s,
        metrics.join(" "),
        run.termination
    )
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// `DIR.partial` next to `DIR`.
fn partial_dir(dir: &Path) -> PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "run".into());
    name.push(".partial");
    dir.with_file_name(name)
}

/// The file a finished (variant, method, seed) run is kept in, inside its run folder.
const FINISHED_RUN_FILE: &str = "run.json";

/// `<base>/<UTC time>-<mode>`, with a counter if that exists already.
fn unique_run_dir(base: &Path, mode: Mode) -> PathBuf {
    let stamp = Utc::now().compact();
    let first = base.join(format!("{stamp}-{}", mode.name()));
    if !first.exists() && !partial_dir(&first).exists() {
        return first;
    }
    (2..)
        .map(|i| base.join(format!("{stamp}-{}-{i}", mode.name())))
        .find(|d| !d.exists() && !partial_dir(d).exists())
        .expect("an unused name")
}

/// Writes `metrics.csv`, the plots, `summary.json` and `summary.md` into `dir`; returns the
/// summary.
pub(crate) fn write_report(
    dir: &Path,
    experiment: &Experiment,
    plan: &Plan,
    mode: Mode,
    runs: &[SeedRun],
    checks_note: Option<String>,
    notes: Vec<String>,
) -> Result<Summary> {
    write(&dir.join("metrics.csv"), &report::metrics_csv(runs))?;
    let several = plan.variants.len() > 1;
    let mut plots = Vec::new();
    let mut variants = Vec::new();
    for variant in &plan.variants {
        let mine: Vec<SeedRun> = runs
            .iter()
            .filter(|r| r.variant == variant.name)
            .cloned()
            .collect();
        if mine.is_empty() {
            continue;
        }
        let headline: Vec<&str> = plan.headline.iter().map(String::as_str).collect();
        let summary =
            report::summarize_variant(&variant.name, &variant.description, &mine, &headline);
        for metric in &summary.metrics {
            let prefix = if several {
                format!("{}_", file_safe(&variant.name))
            } else {
                String::new()
            };
            let log_y = plot::wants_log_scale(metric);
            for by_time in [false, true] {
                let file = format!(
                    "{prefix}{}_vs_{}.png",
                    file_safe(metric),
                    if by_time { "time" } else { "iter" }
                );
                let lines: Vec<plot::Line> = summary
                    .methods
                    .iter()
                    .map(|m| {
                        let seeds: Vec<&SeedRun> =
                            mine.iter().filter(|r| r.method == m.label).collect();
                        plot::Line {
                            label: m.label.clone(),
                            points: if by_time {
                                report::aggregate_by_time(&seeds, metric, 200, log_y)
                            } else {
                                report::aggregate_by_iter(&seeds, metric)
                            },
                        }
                    })
                    .filter(|l| !l.points.is_empty())
                    .collect();
                if lines.is_empty() {
                    continue;
                }
                let title = if several {
                    format!("{} ({}): {metric}", experiment.id, variant.name)
                } else {
                    format!("{}: {metric}", experiment.id)
                };
                plot::draw(
                    &dir.join(&file),
                    &plot::Figure {
                        title: &title,
                        x_label: if by_time {
                            "wall time (s)"
                        } else {
                            "iteration"
                        },
                        y_label: metric,
                        log_y,
                        lines: &lines,
                        legend: plot::legend_position(metric),
                    },
                )
                .with_context(|| format!("drawing {file}"))?;
                plots.push(file);
            }
        }
        variants.push(summary);
    }
    let checks = plan.checks.iter().map(|c| c.evaluate(runs)).collect();
    let targets = plan.targets.iter().flat_map(|t| t.evaluate(runs)).collect();
    let summary = Summary {
        experiment: experiment.id.to_string(),
        paper: experiment.paper.to_string(),
        title: experiment.title.to_string(),
        mode: mode.name().to_string(),
        seeds: plan.seeds.clone(),
        data: experiment.data.to_string(),
        variants,
        checks,
        targets,
        checks_note,
        notes,
        plots,
    };
    write(
        &dir.join("summary.json"),
        &serde_json::to_string_pretty(&summary)?,
    )?;
    write(&dir.join("summary.md"), &report::summary_markdown(&summary))?;
    Ok(summary)
}

/// Letters, digits, `-`, `_` and `.` kept; anything else becomes `_`.
fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use bilevel_core::IterRecord;

    /// A plan of two stochastic methods on a small quadratic, `max_iters` iterations.
    fn tiny_plan(dir: &Path, max_iters: u64) -> PathBuf {
        let text = format!(
            "id = \"tiny\"\npaper = \"none\"\ntitle = \"resume test\"\ndata = \"generated\"\n\
             seeds = [0, 1]\nprecision = \"f64\"\nheadline = [\"grad_norm\"]\n[run]\n\
             max_iters = {max_iters}\neval_every = 2\ncheckpoint_every = 4\n[[variant]]\n\
             name = \"q\"\ndescription = \"small\"\n[variant.problem]\nkind = \"quadratic\"\n\
             x_dim = 3\ny_dim = 4\ninner_rows = 60\nouter_rows = 60\n[[method]]\n\
             label = \"stocBiO\"\n[method.algorithm]\nname = \"stocbio\"\ninner_steps = 2\n\
             inner_batch = 5\nouter_batch = 5\njacobian_batch = 5\nhessian_batch = 5\n\
             neumann_terms = 2\nneumann_step = 0.1\nouter_step = 0.05\n[[method]]\n\
             label = \"AID\"\n[method.algorithm]\nname = \"aid-cg\"\n"
        );
        let path = dir.join(format!("tiny-{max_iters}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn options(plan: &Path, out: &Path) -> Options {
        match options::parse(&[
            plan.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ])
        .unwrap()
        {
            Command::Run(o) => o,
            _ => unreachable!(),
        }
    }

    /// `reproduce --resume`: a plan stopped with one run finished and the others at their
    /// iteration-4 checkpoint continues to the same bytes as an uninterrupted plan (records
    /// and final metrics of every run; stocBiO's batches depend on the restored generator).
    /// Fails when a resumed run starts over from iteration 0 (tried: ignoring the checkpoint;
    /// the early records' wall times then differ, the rest being deterministic), when a
    /// finished run is run again (its `run.json` would be rewritten with other wall times),
    /// or when the checkpoint's generator is not restored (stocBiO's iterates differ).
    #[test]
    fn a_resumed_plan_continues_to_the_uninterrupted_result() {
        let tmp = std::env::temp_dir().join(format!("xtask-resume-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let plan = tiny_plan(&tmp, 10);
        run(&options(&plan, &tmp.join("whole")), false).unwrap();
        // The same plan stopped at iteration 4: a 4-iteration plan's run folders hold the
        // checkpoints an interrupted 10-iteration plan leaves (the run id does not depend on
        // max_iters), which are copied into the 10-iteration plan's partial folder.
        run(&options(&tiny_plan(&tmp, 4), &tmp.join("short")), false).unwrap();
        let stopped = tmp.join("stopped");
        run(&options(&plan, &stopped), false).unwrap();
        let partial = partial_dir(&stopped);
        std::fs::rename(&stopped, &partial).unwrap();
        let runs = |root: &Path| -> Vec<PathBuf> {
            let mut v: Vec<PathBuf> = std::fs::read_dir(root.join("runs").join("q"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            v.sort();
            v
        };
        let (stopped_runs, short_runs) = (runs(&partial), runs(&tmp.join("short")));
        assert_eq!(stopped_runs.len(), 4);
        // The first run finished before the stop: its run.json is kept as it is.
        let kept = stopped_runs[0].join(FINISHED_RUN_FILE);
        let kept_text = std::fs::read_to_string(&kept).unwrap();
        let kept = stopped.join(kept.strip_prefix(&partial).unwrap());
        for (run_dir, short) in stopped_runs[1..].iter().zip(&short_runs[1..]) {
            for f in [FINISHED_RUN_FILE, "checkpoint.json", "records.jsonl"] {
                std::fs::remove_file(run_dir.join(f)).unwrap();
            }
            for f in ["checkpoint.json", "records.jsonl"] {
                std::fs::copy(short.join(f), run_dir.join(f)).unwrap();
            }
        }
        for f in [
            "metrics.csv",
            "summary.json",
            "summary.md",
            "provenance.json",
        ] {
            std::fs::remove_file(partial.join(f)).unwrap();
        }
        run(&options(&plan, &stopped), true).unwrap();
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), kept_text);
        let finished = |root: &Path| -> Vec<SeedRun> {
            runs(root)
                .iter()
                .map(|d| {
                    let text = std::fs::read_to_string(d.join(FINISHED_RUN_FILE)).unwrap();
                    serde_json::from_str(&text).unwrap()
                })
                .collect()
        };
        let (whole, resumed) = (finished(&tmp.join("whole")), finished(&stopped));
        // The resumed runs kept the records written before the stop, wall times included (a
        // run started over would have measured its own).
        for (b, short) in resumed[1..].iter().zip(&finished(&tmp.join("short"))[1..]) {
            let early: Vec<&IterRecord> = b.records.iter().filter(|r| r.iter <= 4).collect();
            assert_eq!(early.len(), short.records.len());
            for (rb, rs) in early.iter().zip(&short.records) {
                assert_eq!(rb.wall_time_s.to_bits(), rs.wall_time_s.to_bits());
            }
        }
        for (a, b) in whole.iter().zip(&resumed) {
            assert_eq!(a.iterations, 10);
            assert_eq!(a.records.len(), b.records.len(), "{}", a.method);
            for (ra, rb) in a.records.iter().zip(&b.records) {
                assert_eq!(ra.iter, rb.iter);
                assert_eq!(
                    ra.outer_loss.map(f64::to_bits),
                    rb.outer_loss.map(f64::to_bits)
                );
                assert_eq!(ra.counts, rb.counts);
            }
            let bits = |r: &SeedRun| -> Vec<u64> {
                r.final_metrics.iter().map(|(_, v)| v.to_bits()).collect()
            };
            assert_eq!(bits(a), bits(b), "{} seed {}", a.method, a.seed);
        }
        let provenance: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(stopped.join("provenance.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(provenance["resumed_utc"].as_array().map(Vec::len), Some(1));
        // A finished plan, or an edited one, is not resumed.
        assert!(run(&options(&plan, &stopped), true).is_err());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn resolves_the_backend() {
        for cpu in [Backend::Flex, Backend::Ndarray] {
            let t = resolve_target(cpu, None, Precision::F64).unwrap();
            assert_eq!(t.precision, Precision::F64);
            assert!(t.precision_note.is_none());
            assert!(run_notes(&t).is_empty());
            assert!(t.device.contains(cpu.name()), "{}", t.device);
        }
        let t = resolve_target(Backend::Ndarray, Some(Precision::F32), Precision::F64).unwrap();
        assert_eq!(t.precision, Precision::F32);

        // f64 is refused on wgpu whether or not this build has it.
        let err = resolve_target(Backend::Wgpu, Some(Precision::F64), Precision::F64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("wgpu"), "{err}");
        if cfg!(not(feature = "wgpu")) {
            let err = resolve_target(Backend::Wgpu, None, Precision::F32)
                .unwrap_err()
                .to_string();
            assert!(err.contains("--features wgpu"), "{err}");
        }
        #[cfg(feature = "wgpu")]
        match bilevel_core::gpu::probe_adapter() {
            Ok(adapter) => {
                let t = resolve_target(Backend::Wgpu, None, Precision::F64).unwrap();
                assert_eq!(t.precision, Precision::F32);
                assert!(t.device.contains(&adapter));
                assert!(t.precision_note.is_some());
                assert_eq!(run_notes(&t).len(), 2);
                let t = resolve_target(Backend::Wgpu, None, Precision::F32).unwrap();
                assert!(t.precision_note.is_none());
            }
            Err(_) => assert!(resolve_target(Backend::Wgpu, None, Precision::F32).is_err()),
        }
    }

    #[test]
    fn partial_dir_is_a_sibling() {
        assert_eq!(
            partial_dir(Path::new("results/q/20260101T000000Z-quick")),
            PathBuf::from("results/q/20260101T000000Z-quick.partial")
        );
        assert_eq!(file_safe("p=0.1"), "p_0.1");
    }

    #[test]
    fn writes_every_file_from_synthetic_runs() {
        let experiment = plan_file::load_shipped("quadratic", Mode::Quick).unwrap();
        let plan = experiment.plan.clone().unwrap();
        let mut runs = report::tests::synthetic_runs();
        for r in &mut runs {
            r.variant = plan.variants[0].name.clone();
        }
        let dir = std::env::temp_dir().join(format!("xtask-report-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let summary = write_report(
            &dir,
            &experiment,
            &plan,
            Mode::Quick,
            &runs,
            None,
            Vec::new(),
        )
        .unwrap();
        for f in ["metrics.csv", "summary.json", "summary.md"] {
            assert!(dir.join(f).is_file(), "{f}");
        }
        // grad_norm, test_accuracy, outer_loss: against iterations and time.
        assert_eq!(summary.plots.len(), 6, "{:?}", summary.plots);
        for p in &summary.plots {
            let bytes = std::fs::read(dir.join(p)).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        }
        // "decay" passes the ‖∇Φ‖ reduction, "flat" does not; no run is named like the
        // second check's methods, so it fails too.
        let first = &summary.checks[0];
        assert!(!first.passed);
        assert!(first
            .values
            .iter()
            .all(|v| v.passed == (v.method == "decay")));
        assert!(!summary.checks[1].passed && summary.checks[1].values.is_empty());
        let json: Summary =
            serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(json.variants[0].methods.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
