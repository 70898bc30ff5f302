//! Runs one (variant, method, seed) through the shared runner of `bilevel-problems` on the
//! backend `bilevel_core::backend::dispatch` picks (flex or ndarray; in builds with the `wgpu`
//! feature, burn's wgpu backend in f32) and turns its report into a [`SeedRun`].

use std::path::{Path, PathBuf};

use anyhow::Result;
use bilevel_core::backend::{dispatch, BackendTask};
use bilevel_core::TerminationReason;
use bilevel_problems::spec::{BuildContext, ProblemSpec};
use bilevel_problems::ProblemError;
use bilevel_run::runner::CHECKPOINT_FILE;
use bilevel_run::{run_spec, ResumeFrom, RunHooks, RunReport, RunSpec};
use burn::tensor::backend::AutodiffBackend;
use serde_json::json;

use super::experiments::{problem_for, Method, Plan, Precision, Variant};
use super::report::SeedRun;
use super::Backend;

/// What every run of an invocation shares.
pub(crate) struct Context {
    pub data_dir: Option<PathBuf>,
    pub backend: Backend,
    pub precision: Precision,
}

/// The runner's settings for one method of a plan.
pub(crate) fn run_spec_for(plan: &Plan, method: &Method, seed: u64) -> RunSpec {
    RunSpec {
        max_iters: method.max_iters.unwrap_or(plan.run.max_iters),
        time_budget_s: plan.run.time_budget_s,
        seed,
        eval_every: plan.run.eval_every,
        checkpoint_every: Some(
            plan.run
                .checkpoint_every
                .unwrap_or(plan.run.eval_every.max(10)),
        ),
        ..Default::default()
    }
}

/// Runs `method` on `variant` with `seed` (which also seeds the problem's data split or
/// instance, so all methods of a seed see the same problem), checkpointing into `dir`; if
/// `dir` holds a checkpoint of this run (an interrupted invocation), continues from it.
pub(crate) fn run_one(
    ctx: &Context,
    plan: &Plan,
    variant: &Variant,
    method: &Method,
    seed: u64,
    dir: &Path,
) -> Result<SeedRun> {
    let run = run_spec_for(plan, method, seed);
    let problem = problem_for(variant, method)?;
    let task = RunOn {
        ctx,
        problem: &problem,
        method,
        run: &run,
        dir,
    };
    let report = dispatch(ctx.backend, ctx.precision, task)??;
    Ok(seed_run(variant, method, report))
}

/// One run, on the backend `dispatch` picks.
struct RunOn<'a> {
    ctx: &'a Context,
    problem: &'a ProblemSpec,
    method: &'a Method,
    run: &'a RunSpec,
    dir: &'a Path,
}

impl BackendTask for RunOn<'_> {
    type Output = Result<RunReport>;

    fn run<B: AutodiffBackend>(self, device: B::Device, _label: &str) -> Result<RunReport> {
        run_on::<B>(self, device)
    }
}

fn run_on<B: AutodiffBackend>(task: RunOn<'_>, device: B::Device) -> Result<RunReport> {
    let build = BuildContext::<B> {
        device,
        data_dir: task.ctx.data_dir.clone(),
        seed: task.run.seed,
    };
    let resume = if task.dir.join(CHECKPOINT_FILE).exists() {
        let from = ResumeFrom::load(task.dir)?;
        eprintln!(
            "  continuing from the checkpoint at iteration {} in {}",
            from.checkpoint.state.iter,
            task.dir.display()
        );
        Some(from)
    } else {
        None
    };
    let hooks = RunHooks {
        progress: true,
        checkpoint_dir: Some(task.dir.to_path_buf()),
        resume,
        ..Default::default()
    };
    Ok(run_spec(
        task.problem,
        &task.method.spec,
        task.run,
        &build,
        hooks,
    )?)
}

/// Whether an error is about the set-up (data, configuration) rather than a method's run.
pub(crate) fn is_setup_error(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<ProblemError>(),
        Some(ProblemError::Data(_) | ProblemError::Model(_) | ProblemError::Config { .. })
    )
}

/// The record of a run that stopped with an error: no iterations, the error as termination.
pub(crate) fn failed_run(
    variant: &Variant,
    method: &Method,
    seed: u64,
    error: &anyhow::Error,
) -> SeedRun {
    SeedRun {
        variant: variant.name.clone(),
        method: method.label.to_string(),
        algorithm: method.spec.name().to_string(),
        seed,
        records: Vec::new(),
        termination: format!("failed: {error:#}"),
        final_metrics: Vec::new(),
        wall_time_s: 0.0,
        iterations: 0,
        counts: Default::default(),
    }
}

/// Short words for the summary tables.
pub(crate) fn termination_words(t: &TerminationReason) -> String {
    match t {
        TerminationReason::MaxItersReached => "max iterations".into(),
        TerminationReason::Converged => "converged".into(),
        TerminationReason::Timeout => "time budget".into(),
        TerminationReason::NonFinite(what) => format!("diverged ({what})"),
        TerminationReason::Interrupted => "interrupted".into(),
    }
}

fn seed_run(variant: &Variant, method: &Method, report: RunReport) -> SeedRun {
    SeedRun {
        variant: variant.name.clone(),
        method: method.label.to_string(),
        algorithm: report.method,
        seed: report.seed,
        records: report.records,
        termination: termination_words(&report.termination),
        // The method's output's metrics, then those of the points it reports beside it, as
        // `<point>:<metric>` (IGFM: `best:x_error`, `last:x_error`, …).
        final_metrics: report
            .final_metrics
            .into_iter()
            .map(|m| (m.name, m.value))
            .chain(report.alternatives.into_iter().flat_map(|alt| {
                alt.metrics
                    .into_iter()
                    .map(move |m| (format!("{}:{}", alt.name, m.name), m.value))
            }))
            .collect(),
        wall_time_s: report.wall_time_s,
        iterations: report.iterations,
        counts: report.counts,
    }
}

/// A CPU backend's device, in words.
pub(crate) fn cpu_device_name(backend: Backend) -> String {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let build = match backend {
        Backend::Ndarray => bilevel_core::ndarray_build().to_string(),
        _ => bilevel_core::flex_build(),
    };
    format!("{} ({build}; {threads} hardware threads)", backend.name())
}

/// The problem, method and run specs of a plan, for `provenance.json`.
pub(crate) fn specs_json(plan: &Plan) -> Result<serde_json::Value> {
    let variants: Vec<serde_json::Value> = plan
        .variants
        .iter()
        .map(|v| json!({ "name": v.name, "problem": v.problem }))
        .collect();
    let methods: Vec<serde_json::Value> = plan
        .methods
        .iter()
        .map(|m| {
            json!({
                "label": m.label,
                "algorithm": m.spec,
                "problem": m.problem,
                "max_iters": m.max_iters.unwrap_or(plan.run.max_iters),
                "time_budget_s": plan.run.time_budget_s,
                "eval_every": plan.run.eval_every,
            })
        })
        .collect();
    Ok(json!({ "variants": variants, "methods": methods }))
}
