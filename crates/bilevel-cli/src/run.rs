//! `bilevel run`: a config → a run folder.
//!
//! The folder holds `config.toml` (resolved), `status.json`, `checkpoint.json` and
//! `records.jsonl` (written during the run), `metrics.csv.partial` (renamed `metrics.csv` when
//! the run completes) and `report.json` (only for a completed run). `status.json` is
//! `{"status": "running" | "completed" | "failed" | "interrupted", "reason": ...}`; a failed or
//! interrupted run never leaves `metrics.csv` or `report.json`, so nothing incomplete looks
//! complete. While a process works on the folder it holds `run.lock` (its process id): a second
//! `run` or `--resume` on the folder is refused; a lock left by a killed process is taken over.
//! Ctrl-C, SIGTERM and SIGHUP stop the run after the current iteration with a checkpoint.
//! `--out` refuses a folder that holds result files of something else.

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use bilevel_core::{IterRecord, Observe, ObserverMode, State, TerminationReason};
use bilevel_problems::spec::BuildContext;
use bilevel_run::runner::{CHECKPOINT_FILE, RECORDS_FILE};
use bilevel_run::{run_spec, ResumeFrom, RunHooks, RunReport};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::backend::{dispatch, BackendKind, BackendTask, Precision};
use crate::config::Config;
use crate::failure::{self, Failure, EXIT_INTERNAL, EXIT_INTERRUPTED};

/// File names inside a run folder.
pub const CONFIG_FILE: &str = "config.toml";
/// See the module documentation.
pub const STATUS_FILE: &str = "status.json";
/// See the module documentation.
pub const METRICS_FILE: &str = "metrics.csv";
/// See the module documentation.
pub const PARTIAL_METRICS_FILE: &str = "metrics.csv.partial";
/// See the module documentation.
pub const REPORT_FILE: &str = "report.json";

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// A progress bar (on a terminal) and a summary.
    #[default]
    Human,
    /// CSV rows on stdout.
    Csv,
    /// One JSON object per logged iteration on stdout, then the report summary.
    Json,
}

/// The arguments of `bilevel run`.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// The experiment config (TOML).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Tensor backend: flex (CPU, the default for new runs), ndarray (CPU) or wgpu (GPU, f32;
    /// builds with the `wgpu` feature). A resumed run keeps its own unless this is given.
    #[arg(long, value_name = "BACKEND")]
    pub backend: Option<BackendKind>,
    /// Float precision, f32 or f64 (default f64 on flex and ndarray, f32 on wgpu; a resumed run
    /// keeps its own).
    #[arg(long, value_name = "PRECISION")]
    pub precision: Option<Precision>,
    /// Overrides `run.seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run folder (default `results/<problem>/<algorithm>-seed<S>-<UTC time>/`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run in DIR from its checkpoint (uses DIR/config.toml).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["config", "seed", "out"])]
    pub resume: Option<PathBuf>,
    /// Folder of fetched data sets (default `$BILEVEL_DATA` or the workspace's `data/`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// No progress bar, log or summary (errors are still printed).
    #[arg(long, short)]
    pub quiet: bool,
    /// How progress is reported on stdout.
    #[arg(long, value_enum, default_value = "human")]
    pub log_format: LogFormat,
}

/// `status.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// `running`, `completed`, `failed` or `interrupted`.
    pub status: String,
    /// Why it stopped (null while running).
    pub reason: Option<String>,
    /// Completed iterations, when known.
    pub iterations: Option<u64>,
    /// The checkpoint to resume from, when one exists.
    pub checkpoint: Option<PathBuf>,
    /// Backend label (e.g. `ndarray-f64`).
    pub backend: String,
    /// Float precision, kept by `--resume`.
    pub precision: Precision,
    /// The run's seed.
    pub seed: u64,
}

fn write_atomic(path: &Path, text: &str) -> Result<(), Failure> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| Failure::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Failure::io(path, e))
}

fn write_status(dir: &Path, status: &Status) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(status).unwrap_or_default();
    write_atomic(&dir.join(STATUS_FILE), &text)
}

fn read_status(dir: &Path) -> Option<Status> {
    let text = std::fs::read_to_string(dir.join(STATUS_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether `dir` holds a run of ours that stopped before completing an iteration: status
/// `failed` or `interrupted` (e.g. a refused setting, or Ctrl-C while the data loaded) with no
/// iteration count and no checkpoint, and no checkpoint, report or CSV on disk.
fn stopped_before_its_first_iteration(dir: &Path) -> bool {
    read_status(dir).is_some_and(|s| {
        matches!(s.status.as_str(), "failed" | "interrupted")
            && s.iterations.unwrap_or(0) == 0
            && s.checkpoint.is_none()
    }) && [CHECKPOINT_FILE, REPORT_FILE, METRICS_FILE]
        .iter()
        .all(|f| !dir.join(f).exists())
}

fn default_out_dir(config: &Config) -> PathBuf {
    let base = PathBuf::from("results")
        .join(config.problem.id())
        .join(format!(
            "{}-seed{}-{}",
            config.algorithm.name(),
            config.run.seed,
            bilevel_core::utc::Utc::now().folder()
        ));
    let mut dir = base.clone();
    let mut n = 2;
    while dir.exists() {
        dir = PathBuf::from(format!("{}-{n}", base.display()));
        n += 1;
    }
    dir
}

/// Where a run starts from: a new folder or a resumed one.
struct Prepared {
    config: Config,
    dir: PathBuf,
    resume: Option<ResumeFrom>,
    precision: Precision,
    /// Held until the run ends.
    _lock: FolderLock,
}

/// File name of a run folder's lock (the owner's process id).
pub const LOCK_FILE: &str = "run.lock";

/// A run folder's lock: `run.lock`, created exclusively and holding the owner's process id;
/// removed when dropped. A lock whose process is gone (a killed run) is taken over; one whose
/// process is alive makes a second `run` / `--resume` on the folder an error instead of two
/// processes writing the same files.
struct FolderLock {
    path: PathBuf,
}

impl FolderLock {
    fn acquire(dir: &Path) -> Result<Self, Failure> {
        let path = dir.join(LOCK_FILE);
        let me = std::process::id();
        // The lock appears with its content in one step (a hard link to a file already
        // holding the pid), so another process never reads an empty lock and takes it for a
        // stale one.
        let mine = dir.join(format!("{LOCK_FILE}.{me}"));
        std::fs::write(&mine, me.to_string()).map_err(|e| Failure::io(&mine, e))?;
        let owner_of = |file: &Path| {
            std::fs::read_to_string(file)
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
        };
        let in_use = |pid: u32| {
            Failure::usage(
                format!(
                    "{} is in use by another bilevel process (pid {pid})",
                    dir.display()
                ),
                format!(
                    "wait for that run to stop (or stop it with Ctrl-C); if no bilevel process \
                     is running, delete {}",
                    path.display()
                ),
            )
        };
        let outcome = (|| {
            for _ in 0..3 {
                match std::fs::hard_link(&mine, &path) {
                    Ok(()) => return Ok(Self { path: path.clone() }),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let owner = owner_of(&path);
                        if let Some(pid) = owner.filter(|pid| process_alive(*pid)) {
                            return Err(in_use(pid));
                        }
                        // A stale lock: its process is gone. Move it aside (only one process
                        // can) and look again: if a live process had replaced it meanwhile,
                        // put its lock back and give way.
                        let aside = dir.join(format!("{LOCK_FILE}.stale.{me}"));
                        match std::fs::rename(&path, &aside) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                            Err(e) => return Err(Failure::io(&path, e)),
                        }
                        let moved = owner_of(&aside);
                        if let Some(pid) = moved.filter(|pid| process_alive(*pid)) {
                            let _ = std::fs::hard_link(&aside, &path);
                            let _ = std::fs::remove_file(&aside);
                            return Err(in_use(pid));
                        }
                        let _ = std::fs::remove_file(&aside);
                    }
                    Err(e) => return Err(Failure::io(&path, e)),
                }
            }
            Err(Failure::usage(
                format!(
                    "cannot lock {}: another process keeps taking it",
                    dir.display()
                ),
                format!(
                    "make sure no other bilevel process uses the folder, then delete {}",
                    path.display()
                ),
            ))
        })();
        let _ = std::fs::remove_file(&mine);
        outcome
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether process `pid` is alive (Linux: `/proc/<pid>`; elsewhere assumed alive, so a stale
/// lock is reported and the user removes it).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// The backend a run uses: `--backend`, else (on `--resume`) the one the run was started on
/// (`status`, the resumed folder's status.json), else flex.
fn chosen_backend(args: &RunArgs, status: Option<&Status>) -> BackendKind {
    args.backend
        .or_else(|| BackendKind::from_label(&status?.backend))
        .unwrap_or_default()
}

/// `status` is the resumed folder's status.json (read once by [`run`]), `None` for a new run.
fn prepare(
    args: &RunArgs,
    backend: BackendKind,
    status: Option<Status>,
) -> Result<Prepared, Failure> {
    if let Some(dir) = &args.resume {
        let config_path = dir.join(CONFIG_FILE);
        if !config_path.exists() {
            return Err(Failure::usage(
                format!(
                    "{} is not a run folder: it has no {CONFIG_FILE}",
                    dir.display()
                ),
                "pass the folder a previous `bilevel run` wrote (it holds config.toml and \
                 checkpoint.json)",
            ));
        }
        let lock = FolderLock::acquire(dir)?;
        let config = Config::load(&config_path)?;
        config.validate()?;
        if status.as_ref().is_some_and(|s| s.status == "completed") {
            return Err(Failure::usage(
                format!("the run in {} has already completed", dir.display()),
                "there is nothing to resume; start a new run with `--config` (raise \
                 `run.max_iters` in a copy of its config.toml to run longer)",
            ));
        }
        let resume = ResumeFrom::load(dir).map_err(|e| {
            let mut f = failure::from_problem(&e);
            if f.message.contains("no checkpoint") {
                f.hint = Some(
                    "a run writes checkpoint.json every `run.checkpoint_every` iterations and \
                     when it stops; a run killed before its first checkpoint must be started \
                     again"
                        .into(),
                );
            }
            f
        })?;
        // The CSV of the run so far: a run that stopped after renaming metrics.csv.partial to
        // metrics.csv but before writing report.json (a crash, a full disk) continues from it;
        // with neither file the resumed CSV would silently lack the rows before the resume.
        let partial = dir.join(PARTIAL_METRICS_FILE);
        let metrics = dir.join(METRICS_FILE);
        if !partial.exists() {
            if metrics.exists() {
                std::fs::rename(&metrics, &partial).map_err(|e| Failure::io(&partial, e))?;
            } else if resume.checkpoint.state.iter > 0 {
                return Err(Failure::usage(
                    format!(
                        "{} has neither {PARTIAL_METRICS_FILE} nor {METRICS_FILE}, but its \
                         checkpoint is at iteration {}: the resumed CSV would lack the rows \
                         before it",
                        dir.display(),
                        resume.checkpoint.state.iter
                    ),
                    "restore the file from a backup, or start the run again",
                ));
            }
        }
        let started_in = status.as_ref().map(|s| s.precision);
        if let (Some(asked), Some(started)) = (args.precision, started_in) {
            if asked != started {
                return Err(Failure::usage(
                    format!(
                        "the run in {} is in {started}; `--precision {asked}` cannot change it",
                        dir.display()
                    ),
                    format!(
                        "a resumed run keeps its own precision: drop `--precision`, or start a \
                         new run in {asked} with `--config {}`",
                        config_path.display()
                    ),
                ));
            }
        }
        let precision = args
            .precision
            .or(started_in)
            .unwrap_or(backend.default_precision());
        if let Some(started) = status.and_then(|s| BackendKind::from_label(&s.backend)) {
            if started != backend && !args.quiet {
                eprintln!(
                    "note: this run was started on `{started}` and continues on `{backend}`; \
                     it will not be bit-identical to an uninterrupted run"
                );
            }
        }
        return Ok(Prepared {
            config,
            dir: dir.clone(),
            resume: Some(resume),
            precision,
            _lock: lock,
        });
    }
    let Some(path) = &args.config else {
        return Err(Failure::usage(
            "`bilevel run` needs a config",
            "pass `--config FILE` (e.g. `--config assets/configs/quadratic-aid-cg.toml`) or \
             `--resume DIR`",
        ));
    };
    let mut config = Config::load(path)?;
    if let Some(seed) = args.seed {
        config.run.seed = seed;
    }
    config.validate()?;
    let dir = args
        .out
        .clone()
        .or_else(|| config.output.dir.clone())
        .unwrap_or_else(|| default_out_dir(&config));
    if dir.as_os_str().is_empty() {
        return Err(Failure::usage(
            "the run folder is empty (`--out \"\"` or `[output] dir = \"\"`): the run would be \
             written into the current directory",
            "name a folder with `--out DIR` or `[output] dir`, or omit both for the default \
             results/<problem>/<algorithm>-seed<S>-<time>/",
        ));
    }
    if stopped_before_its_first_iteration(&dir) {
        // Nothing was computed there (e.g. a setting the check before the run refused):
        // clear the run's own files so that the fixed config can use the folder.
        for f in [CONFIG_FILE, STATUS_FILE, RECORDS_FILE, PARTIAL_METRICS_FILE] {
            let path = dir.join(f);
            if path.exists() {
                std::fs::remove_file(&path).map_err(|e| Failure::io(&path, e))?;
            }
        }
        eprintln!(
            "note: {} held a run that stopped before its first iteration; starting this one \
             there",
            dir.display()
        );
    }
    if dir.join(STATUS_FILE).exists() || dir.join(CONFIG_FILE).exists() {
        return Err(Failure::usage(
            format!("{} already holds a run", dir.display()),
            format!(
                "continue it with `bilevel run --resume {}`, or choose another folder with \
                 `--out DIR`",
                dir.display()
            ),
        ));
    }
    // Files a run writes: a folder holding any of them (but no run of ours) belongs to
    // something else, and a run would overwrite them.
    let ours = [
        METRICS_FILE,
        PARTIAL_METRICS_FILE,
        REPORT_FILE,
        CHECKPOINT_FILE,
        RECORDS_FILE,
    ];
    if let Some(found) = ours.iter().find(|f| dir.join(f).exists()) {
        return Err(Failure::usage(
            format!(
                "{} already holds {found}, which this run would overwrite",
                dir.display()
            ),
            "choose another folder with `--out DIR` (nothing was written)",
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| Failure::io(&dir, e))?;
    let lock = FolderLock::acquire(&dir)?;
    let mut resolved = config.clone();
    resolved.output.dir = None;
    write_atomic(&dir.join(CONFIG_FILE), &resolved.to_toml()?)?;
    Ok(Prepared {
        config,
        dir,
        resume: None,
        precision: args.precision.unwrap_or(backend.default_precision()),
        _lock: lock,
    })
}

/// Logs records to stdout as CSV or JSON lines.
struct StdoutLog {
    format: LogFormat,
    header: bool,
    eval_every: u64,
}

impl<B: AutodiffBackend> Observe<B> for StdoutLog {
    fn observe_iter(&mut self, _state: &State<B>, record: &IterRecord) -> bilevel_core::Result<()> {
        let mut out = std::io::stdout().lock();
        let evaluated = record.iter % self.eval_every == 0;
        let line = match self.format {
            LogFormat::Json => {
                let mut record = record.clone();
                if !evaluated {
                    record.metrics.clear();
                }
                serde_json::to_string(&record).unwrap_or_default()
            }
            _ => {
                let mut line = String::new();
                if !self.header {
                    line.push_str("iter,wall_time_s,outer_loss,hypergrad_norm");
                    for (name, _) in &record.metrics {
                        line.push(',');
                        line.push_str(name);
                    }
                    line.push('\n');
                    self.header = true;
                }
                let opt = |v: Option<f64>| v.map(|v| format!("{v:e}")).unwrap_or_default();
                line.push_str(&format!(
                    "{},{:.3},{},{}",
                    record.iter,
                    record.wall_time_s,
                    opt(record.outer_loss),
                    opt(record.hypergrad_norm)
                ));
                for (_, v) in &record.metrics {
                    line.push(',');
                    if evaluated {
                        line.push_str(&format!("{v:e}"));
                    }
                }
                line
            }
        };
        // A closed stdout (e.g. piped into `head`) must not stop the run.
        let _ = writeln!(out, "{line}");
        Ok(())
    }
}

struct RunTask {
    prepared_dir: PathBuf,
    config: Config,
    resume: Option<ResumeFrom>,
    args: RunArgs,
    interrupt: Arc<AtomicBool>,
}

impl BackendTask for RunTask {
    type Output = (String, bilevel_run::Result<RunReport>);

    fn run<B: AutodiffBackend>(self, device: B::Device, label: &str) -> Self::Output {
        let RunTask {
            prepared_dir: dir,
            config,
            resume,
            args,
            interrupt,
        } = self;
        let human = args.log_format == LogFormat::Human;
        let mut observers: Vec<(Box<dyn Observe<B>>, ObserverMode)> = Vec::new();
        let log_every = config.output.log_every.unwrap_or(config.run.eval_every);
        if !args.quiet && !human {
            observers.push((
                Box::new(StdoutLog {
                    format: args.log_format,
                    header: false,
                    eval_every: config.run.eval_every,
                }),
                ObserverMode::Every(log_every),
            ));
        }
        let hooks = RunHooks::<B> {
            progress: !args.quiet && human,
            csv: Some(dir.join(PARTIAL_METRICS_FILE)),
            csv_every: Some(log_every),
            observers,
            checkpoint_dir: Some(dir.clone()),
            interrupt: Some(interrupt),
            resume,
            run_id: None,
        };
        let ctx = BuildContext::<B> {
            device,
            data_dir: Some(
                args.data_dir
                    .clone()
                    .unwrap_or_else(bilevel_data::registry::data_dir),
            ),
            seed: config.run.seed,
        };
        let report = run_spec(&config.problem, &config.algorithm, &config.run, &ctx, hooks);
        (label.to_string(), report)
    }
}

/// The message of the last panic, captured by the hook `main` installs.
pub static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

/// Runs `bilevel run`; returns the exit code of a run that stopped without an error.
pub fn run(args: RunArgs, interrupt: Arc<AtomicBool>) -> Result<i32, Failure> {
    let resumed_status = args.resume.as_deref().and_then(read_status);
    let backend = chosen_backend(&args, resumed_status.as_ref());
    if let Some(adapter) = crate::backend::check_available(backend)? {
        if !args.quiet {
            eprintln!("wgpu adapter: {adapter}");
        }
    }
    let prepared = prepare(&args, backend, resumed_status)?;
    let dir = prepared.dir.clone();
    let seed = prepared.config.run.seed;
    let precision = prepared.precision;
    let backend_label = bilevel_core::backend::label(backend, precision);
    let status = |status: &str, reason: Option<String>, iterations: Option<u64>| Status {
        status: status.to_string(),
        reason,
        iterations,
        checkpoint: dir
            .join(CHECKPOINT_FILE)
            .exists()
            .then(|| dir.join(CHECKPOINT_FILE)),
        backend: backend_label.to_string(),
        precision,
        seed,
    };
    let fail = |f: Failure, iterations: Option<u64>| -> Failure {
        // The status file is best effort here: the failure itself is what must be reported.
        let _ = write_status(&dir, &status("failed", Some(f.message.clone()), iterations));
        f
    };
    write_status(&dir, &status("running", None, None))?;
    let summary = prepared.config.algorithm.name().to_string();
    let max_iters = prepared.config.run.max_iters;
    let task = RunTask {
        prepared_dir: dir.clone(),
        config: prepared.config,
        resume: prepared.resume,
        args: args.clone(),
        interrupt,
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| dispatch(backend, precision, task)));
    let (_, result) = match outcome {
        Ok(Ok(out)) => out,
        Ok(Err(f)) => return Err(fail(f, None)),
        Err(_) => {
            let msg = PANIC_MESSAGE
                .lock()
                .ok()
                .and_then(|m| m.clone())
                .unwrap_or_else(|| "unknown panic".into());
            return Err(fail(
                Failure {
                    code: EXIT_INTERNAL,
                    message: format!("internal error while running `{summary}`: {msg}"),
                    hint: Some(
                        "this is a bug in bilevel: please report it with the config; the last \
                         checkpoint (if any) is kept in the run folder"
                            .into(),
                    ),
                },
                None,
            ));
        }
    };
    let report = match result {
        Ok(report) => report,
        Err(e) => return Err(fail(failure::from_problem(&e), None)),
    };
    let ckpt = dir.join(CHECKPOINT_FILE);
    match &report.termination {
        TerminationReason::Interrupted => {
            write_status(
                &dir,
                &status(
                    "interrupted",
                    Some(format!("interrupted after iteration {}", report.iterations)),
                    Some(report.iterations),
                ),
            )?;
            if ckpt.exists() {
                eprintln!(
                    "interrupted after iteration {} of {}; checkpoint written to {}\nhint: \
                     continue with `bilevel run --resume {}`",
                    report.iterations,
                    max_iters,
                    ckpt.display(),
                    dir.display()
                );
            } else {
                eprintln!(
                    "interrupted after iteration {} of {}; no checkpoint was written\nhint: \
                     nothing can be resumed: run the same command again (the folder is reused)",
                    report.iterations, max_iters,
                );
            }
            Ok(EXIT_INTERRUPTED)
        }
        TerminationReason::NonFinite(what) => Err(fail(
            Failure::failed(
                format!(
                    "the run diverged in iteration {}: a non-finite value appeared in {what}; the \
                     last finite iterate (iteration {}) is kept in {}",
                    report.iterations + 1,
                    report.iterations,
                    ckpt.display()
                ),
                "lower the step sizes in the [algorithm] table (`outer_step` first, then the \
                 inner and linear-system steps) and run again",
            ),
            Some(report.iterations),
        )),
        _ => {
            let partial = dir.join(PARTIAL_METRICS_FILE);
            let metrics = dir.join(METRICS_FILE);
            if partial.exists() {
                std::fs::rename(&partial, &metrics).map_err(|e| Failure::io(&metrics, e))?;
            }
            let text = serde_json::to_string_pretty(&report).unwrap_or_default();
            write_atomic(&dir.join(REPORT_FILE), &text)?;
            write_status(
                &dir,
                &status(
                    "completed",
                    Some(report.termination.to_string()),
                    Some(report.iterations),
                ),
            )?;
            if !args.quiet {
                print_summary(&report, &dir, args.log_format);
            }
            Ok(0)
        }
    }
}

fn print_summary(report: &RunReport, dir: &Path, format: LogFormat) {
    if format == LogFormat::Json {
        let summary = serde_json::json!({
            "termination": report.termination,
            "iterations": report.iterations,
            "wall_time_s": report.wall_time_s,
            "final_metrics": report.final_metrics,
            "dir": dir,
        });
        println!("{summary}");
        return;
    }
    let metrics: Vec<String> = report
        .final_metrics
        .iter()
        .map(|m| format!("{} = {:.6e}", m.name, m.value))
        .collect();
    println!(
        "{} on {}: {} after {} iterations ({:.2} s)\n  {}\n  results in {}",
        report.method,
        report.problem,
        report.termination,
        report.iterations,
        report.wall_time_s,
        metrics.join(", "),
        dir.display()
    );
}
