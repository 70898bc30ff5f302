//! `cargo xtask bench`: per-hypergradient time and peak memory of the estimators, the problem's
//! closed-form derivatives vs autodiff, exact vs finite-difference vs closed-form
//! Hessian-vector products, ITD memory vs `T`, and a meta-learning CNN4 task batch (issue #8),
//! on the CPU (burn-flex, burn-ndarray) and, in builds with the `wgpu` feature, on burn's wgpu
//! backend.
//! The problem sizes, estimator settings, flop counts and the HVP point are `bilevel_bench`'s,
//! shared with the criterion harness (`cargo bench -p bilevel-bench`).
//!
//! `bench [--quick] [--filter NAME] [--repeats R] [--backend flex|ndarray|wgpu|cpu|all]` prints a
//! markdown table and writes `results/bench/<UTC timestamp>.json`. Run it optimised:
//! `cargo xtask-release bench` (alias of `cargo run --release -p xtask -- bench`); `cargo xtask
//! bench` uses the dev profile. The wgpu backend needs `cargo run --release -p xtask --features
//! wgpu -- bench --backend wgpu|all`; without the feature those flags fail with that command.
//!
//! Backends (`--backend`, default `flex`; a comma-separated list, `cpu` = `flex,ndarray`, `all`
//! = all three): `flex` and `ndarray` run every case below (ndarray single-threaded as the
//! workspace configures burn, flex with its SIMD kernels and rayon pool); `wgpu` runs the f32
//! cases (1, 2, 3 in f32, 4, 5) on `bilevel_core::gpu::Wgpu` / `WgpuAutodiff` (WGSL has no f64,
//! so no f64 cases) after probing the adapter, whose description goes into the report's
//! `backend`. With more than one backend the report adds median-time ratios per case
//! (ndarray/flex, ndarray/wgpu, flex/wgpu: > 1 means the second is faster). Every row has a
//! `backend` field (and table column). Peak memory is not measured on wgpu (`peak_mib` is
//! empty): [`memory`] reads the process's resident set, and GPU memory is not part of it.
//! Each (backend, precision) runs in its own worker process, which fixes its precision through
//! `bilevel_core::backend::dispatch` (the workspace's one backend choice).
//!
//! Oracle modes: every case that runs through an [`Oracle`] names its [`SecondOrder`] mode, and
//! each row records in `derivatives` what the oracle actually used (`closed-form`, `autodiff`,
//! `finite-difference`). [`SecondOrder::Exact`] (the default) is the problem's hand-derived
//! derivatives where [`BilevelProblem::closed_form`] has them (hyper-cleaning does), else
//! autodiff; [`SecondOrder::Autodiff`] is autodiff gradients and nested-autodiff products only.
//! The cases timed in both modes in one run give the closed form's before/after: the printed
//! "closed form vs autodiff" table and the report's `closed_form_ratios` (autodiff median /
//! exact median, [`mode_ratios`]).
//!
//! Cases:
//! 1. `matmul/1024-f32|f64`: a plain `1024×1024` matmul, `2n³/t` GFLOP/s: the backend's ceiling.
//! 2. `hypergrad/<estimator>` ([`SecondOrder::Exact`]) and `hypergrad/<estimator>-autodiff`
//!    ([`SecondOrder::Autodiff`]): one hypergradient of hyper-cleaning (MNIST, linear `784×10`,
//!    `n = 20 000` train / `5 000` validation, f32, the precision `reproduce hyper-cleaning` runs)
//!    by AID-CG (`T = 10`, `N = 10`), AID-FP (`T = 10`, `N = 10`), ITD (`T = 10`) and stocBiO
//!    (`B = 50`, `T = 10`, `Q = 10`), each from a fresh state `(λ, W) = (0, 0)`. The GFLOP/s
//!    column counts only the `n×d×c` products with the data matrix (`X W`, `Xᵀ G`, …),
//!    analytically for the derivatives the oracle used (see [`Estimator::matmul_flops`]: a
//!    closed-form product does `6·n·d·c`, a nested-autodiff one `8·n·d·c`), over the whole
//!    hypergradient's time.
//! 3. `hvp/<kind>-<precision>`: one `∇²_yy g · v` at a random `(λ, W, v)` by [`Oracle::hvp`]
//!    with [`SecondOrder::Autodiff`] (`autodiff`: nested autodiff, the reference), with
//!    [`SecondOrder::Exact`] (`oracle-closed`: the problem's closed form, `softmax(X W)`
//!    recomputed per call), with central finite differences (`fd`), and by the bench's own
//!    closed form of [`closed_form`] (`closed`, `closed-xt-view`, and its per-`(λ, W)` part
//!    `closed-setup`). Both closed forms must equal the nested-autodiff product to `1e-10`
//!    (relative) in f64 or the bench fails.
//! 4. `itd/T=<T>`: ITD's time and peak memory for `T ∈ {1, 5, 10, 20}` with
//!    [`SecondOrder::Exact`] (the default path: hyper-cleaning's closed form), and
//!    `itd/T=10-autodiff` with [`SecondOrder::Autodiff`] for the ratio.
//! 5. `meta/cnn4/<estimator>`: one hypergradient of few-shot meta-learning (CNN4 backbone, one
//!    head per task) on a task batch of 4 tasks, 5-way 5-shot, 15 queries per class, 32 filters
//!    (the spec's default is 64: see [`meta`]), by ITD, AID-CG, PZOBO and BSGM as `reproduce
//!    meta-learning` runs them (`T = N = 10`), through [`SecondOrder::Exact`] (= autodiff: the
//!    problem has no closed form), on synthetic glyphs (a labelled substitute for
//!    miniImageNet); at most 3 timed runs; no GFLOP/s.
//!
//! `--quick`: 2 000 / 500 hyper-cleaning images, 2 repeats, and a smaller meta-learning case
//! ([`meta`]).
//!
//! Timing: one warm-up run, then `R` runs; median and minimum; the device is synchronised
//! (`B::sync`) before the clock is read (a no-op on NdArray; on wgpu it waits for the queued
//! kernels, so the times are the work's, not its submission's). The warm-up run also pays wgpu's
//! one-off shader compilation. Peak memory: see [`memory`] (a fresh child process per case,
//! ndarray only).

mod closed_form;
mod hvp;
mod hypergrad;
mod memory;
mod meta;
mod options;
mod report;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bilevel_bench::{sync, Estimator, SEED};
use bilevel_core::backend::{dispatch, BackendTask, Precision};
#[cfg(doc)]
use bilevel_core::{BilevelProblem, Oracle, SecondOrder};
use bilevel_problems::common::{load_mnist, MNIST_CLASSES};
use bilevel_problems::hyper_cleaning::HyperCleaning;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Tensor};
#[cfg(doc)]
use report::RATIO_PAIRS;
use serde::{Deserialize, Serialize};

use hvp::{hvp_agreement, hvp_cases, HvpKind, HvpSetup};
use hypergrad::{estimator_cases, itd_case_names, itd_cases, mode_name, parse_mode, MODES};
use options::{wgpu_adapter, Options, Runtime, Worker, WGPU_MEMORY_NOTE};
use report::{mode_ratios, print_table, ratios, time, HvpAgreement, ModeRatio, Ratio, Row};

/// Largest relative difference allowed, in f64, between a closed-form HVP (the bench's and the
/// oracle's with [`SecondOrder::Exact`]) and the nested-autodiff one.
const CLOSED_FORM_TOL: f64 = 1e-10;

/// Host facts for the report.
#[derive(Clone, Debug, Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    mem_total_gib: f64,
    os: String,
}

impl Machine {
    fn current() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or_else(|| "unknown".into(), |s| s.trim().to_string());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_total_gib: mem_kib / (1024.0 * 1024.0),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

/// The JSON report.
#[derive(Debug, Serialize)]
struct Report {
    timestamp_utc: String,
    command: String,
    machine: Machine,
    backend: String,
    quick: bool,
    repeats: usize,
    train: usize,
    val: usize,
    features: usize,
    classes: usize,
    rows: Vec<Row>,
    hvp_agreement: Vec<HvpAgreement>,
    /// Median-time ratios between backends of the cases both ran (see [`RATIO_PAIRS`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ratios: Vec<Ratio>,
    /// Autodiff / exact (closed-form) median-time ratios, per backend (see [`mode_ratios`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    closed_form_ratios: Vec<ModeRatio>,
    notes: Vec<String>,
}

/// What a worker process hands back to the parent (one JSON line on stdout).
#[derive(Debug, Default, Serialize, Deserialize)]
struct WorkerOutput {
    rows: Vec<Row>,
    hvp_agreement: Vec<HvpAgreement>,
    notes: Vec<String>,
}

/// The line prefix of a worker's output.
const WORKER_REPORT: &str = "bench-worker-json=";

/// Entry point of `cargo xtask bench`.
///
/// burn 0.21 keeps one default float dtype per device *type* for the whole process, fixed by
/// the first tensor created (`burn_backend::set_default_dtypes`); on Flex it is the only way
/// to get f64, and `NdArray<f32>` and `NdArray<f64>` share `NdArrayDevice`. The parent
/// therefore creates no tensor and runs each (backend, precision) in its own worker process
/// (`--worker flex-f32`, …), which fixes its precision through `bilevel_core::backend::dispatch`,
/// then merges their rows.
pub(crate) fn main(args: &[String]) -> Result<()> {
    let opts = Options::parse(args)?;
    if let Some(case) = &opts.memory_child {
        let worker = opts.worker()?;
        return dispatch(
            worker.runtime.kind(),
            worker.precision,
            MemoryChild { opts: &opts, case },
        )?;
    }
    if let Some(worker) = opts.worker {
        if worker.runtime == Runtime::Wgpu {
            // An error naming the fix instead of burn's panic on a machine without an adapter.
            wgpu_adapter()?;
        }
        let out = dispatch(
            worker.runtime.kind(),
            worker.precision,
            WorkerTask { opts: &opts },
        )??;
        println!("{WORKER_REPORT}{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    // Before any work: fail at once on a build or machine that cannot run wgpu.
    let adapter = if opts.backends.contains(&Runtime::Wgpu) {
        Some(wgpu_adapter()?)
    } else {
        None
    };
    let invocation = if cfg!(feature = "wgpu") {
        "cargo run --release -p xtask --features wgpu -- bench"
    } else {
        "cargo xtask-release bench"
    };
    let started = Instant::now();
    let machine = Machine::current();
    let cpu_builds: Vec<String> = opts
        .backends
        .iter()
        .filter(|r| r.measures_memory())
        .map(|r| r.description())
        .collect();
    eprintln!(
        "bench: {} ({} cores, {}), n = {} train / {} validation, {} repeats{}",
        machine.cpu,
        machine.cores,
        cpu_builds.join("; "),
        opts.train,
        opts.val,
        opts.repeats,
        if cfg!(debug_assertions) {
            format!(" — UNOPTIMISED build: use `{invocation}`")
        } else {
            String::new()
        }
    );
    if let Some(adapter) = &adapter {
        eprintln!("bench: wgpu adapter: {adapter}");
    }
    let mut merged = WorkerOutput::default();
    for worker in Worker::all(&opts.backends) {
        let out = spawn_worker(args, &worker.name())?;
        merged.rows.extend(out.rows);
        merged.hvp_agreement.extend(out.hvp_agreement);
        merged.notes.extend(out.notes);
    }
    let is_meta =
        |r: &Row| r.name.starts_with(meta::PREFIX) || r.name.starts_with(meta::WIDE_PREFIX);
    if merged.rows.iter().any(is_meta) {
        merged.notes.push(meta::NOTE.to_string());
    }
    // Matmuls first, then the worker order.
    merged.rows.sort_by_key(|r| !r.name.starts_with("matmul/"));
    let ratios = ratios(&merged.rows);
    let closed_form_ratios = mode_ratios(&merged.rows);

    print_table(
        &merged.rows,
        &merged.hvp_agreement,
        &ratios,
        &closed_form_ratios,
    );
    if merged.rows.iter().any(is_meta) {
        println!("\nNote: {}.", meta::NOTE);
    }
    if adapter.is_some() {
        let notes = [
            WGPU_MEMORY_NOTE,
            "wgpu runs the f32 cases only (WGSL has no 64-bit floats); the f64 cases are the \
             CPU backends'",
        ];
        for note in notes {
            println!("\nNote: {note}.");
            merged.notes.push(note.to_string());
        }
    }
    let wgpu_description =
        adapter.map(|a| format!("burn 0.21 wgpu (f32, no fusion/autotune) + Autodiff on {a}"));
    let backend = opts
        .backends
        .iter()
        .map(|&r| match r {
            Runtime::Wgpu => format!("wgpu: {}", wgpu_description.clone().unwrap_or_default()),
            cpu => format!("{}: {}", cpu.label(), cpu.description()),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let report = Report {
        timestamp_utc: bilevel_core::utc::Utc::now().compact(),
        command: std::iter::once(invocation.to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" "),
        machine,
        backend,
        quick: opts.quick,
        repeats: opts.repeats,
        train: opts.train,
        val: opts.val,
        features: 784,
        classes: MNIST_CLASSES,
        rows: merged.rows,
        hvp_agreement: merged.hvp_agreement,
        ratios,
        closed_form_ratios,
        notes: merged.notes,
    };
    let dir = PathBuf::from("results/bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.json", report.timestamp_utc));
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "bench: wrote {} ({:.0} s)",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs `xtask bench <args> --worker <backend>-<precision>` (progress on the inherited stderr).
fn spawn_worker(args: &[String], precision: &str) -> Result<WorkerOutput> {
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let out = std::process::Command::new(exe)
        .arg("bench")
        .args(args)
        .args(["--worker", precision])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running the {precision} worker"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("the {precision} worker failed ({}): {stdout}", out.status);
    }
    let json = stdout
        .lines()
        .find_map(|l| l.strip_prefix(WORKER_REPORT))
        .with_context(|| format!("the {precision} worker printed no report: {stdout}"))?;
    serde_json::from_str(json).with_context(|| format!("parsing the {precision} worker's report"))
}

/// A worker's cases, on the backend [`dispatch`] picks.
struct WorkerTask<'a> {
    opts: &'a Options,
}

impl BackendTask for WorkerTask<'_> {
    type Output = Result<WorkerOutput>;

    fn run<B: AutodiffBackend>(self, _device: B::Device, _label: &str) -> Result<WorkerOutput> {
        let worker = self.opts.worker()?;
        match worker.precision {
            Precision::F32 => worker_f32_on::<B>(self.opts, worker.runtime),
            Precision::F64 => worker_f64_on::<B>(self.opts, worker.runtime),
        }
    }
}

/// The f32 cases on `B`: matmul, hypergradients, HVPs, ITD vs `T`, meta-learning (peak memory
/// where the runtime allows it).
fn worker_f32_on<B: AutodiffBackend>(opts: &Options, runtime: Runtime) -> Result<WorkerOutput> {
    let mut out = WorkerOutput::default();
    if opts.selected("matmul/1024-f32") {
        out.rows
            .push(matmul::<B::InnerBackend>(opts.repeats.max(5), runtime)?);
    }
    let hypergrad = [
        "hypergrad/aid-cg",
        "hypergrad/aid-fp",
        "hypergrad/itd-10",
        "hypergrad/stocbio",
    ];
    let mut cases = hypergrad
        .iter()
        .flat_map(|base| MODES.map(|mode| mode_name(base, mode)))
        .chain(itd_case_names().into_iter().map(|(name, _, _)| name))
        .chain(HvpKind::ALL.map(|k| format!("hvp/{}-f32", k.key())));
    if cases.any(|name| opts.selected(&name)) {
        let mnist = load_mnist(None)?;
        let device = Default::default();
        let problem = HyperCleaning::<B>::from_mnist(&opts.spec(), &mnist, SEED, &device)?;
        estimator_cases(opts, runtime, &problem, &mut out.rows)?;
        if selected_any(opts, "hvp/", "f32") {
            let setup = HvpSetup::new(&mnist, opts, &problem, 1e-3)?;
            out.hvp_agreement
                .push(hvp_agreement(&problem, &setup, runtime, "f32")?);
            hvp_cases(opts, runtime, &problem, &setup, "f32", &mut out.rows)?;
        }
        itd_cases(opts, runtime, &problem, &mut out.rows)?;
    }
    meta::cases::<B>(opts, runtime, &mut out.rows)?;
    Ok(out)
}

/// The f64 cases on `B`: matmul, and the HVPs with the closed form's check.
fn worker_f64_on<B: AutodiffBackend>(opts: &Options, runtime: Runtime) -> Result<WorkerOutput> {
    let mut out = WorkerOutput::default();
    if opts.selected("matmul/1024-f64") {
        out.rows
            .push(matmul::<B::InnerBackend>(opts.repeats.max(5), runtime)?);
    }
    if !selected_any(opts, "hvp/", "f64") {
        return Ok(out);
    }
    let mnist = load_mnist(None)?;
    let device = Default::default();
    let problem = HyperCleaning::<B>::from_mnist(&opts.spec(), &mnist, SEED, &device)?;
    let setup = HvpSetup::new(&mnist, opts, &problem, 1e-6)?;
    let agree = hvp_agreement(&problem, &setup, runtime, "f64")?;
    let checks = [
        ("the bench's closed-form HVP", agree.closed_vs_autodiff),
        (
            "Oracle::hvp with SecondOrder::Exact (the problem's closed form)",
            agree.oracle_closed_vs_autodiff,
        ),
    ];
    for (what, err) in checks {
        if err.is_nan() || err > CLOSED_FORM_TOL {
            bail!(
                "{what} differs from the nested-autodiff HVP by {err:.3e} (relative, f64) > \
                 {CLOSED_FORM_TOL:e}"
            );
        }
    }
    out.hvp_agreement.push(agree);
    // Memory is measured for the f32 products only.
    hvp_cases(opts, runtime, &problem, &setup, "f64", &mut out.rows)?;
    Ok(out)
}

fn selected_any(opts: &Options, group: &str, precision: &str) -> bool {
    HvpKind::ALL
        .iter()
        .any(|k| opts.selected(&format!("{group}{}-{precision}", k.key())))
}

/// Case 1: a plain square matmul, the backend's ceiling (`2n³` flops).
fn matmul<B: Backend>(repeats: usize, runtime: Runtime) -> Result<Row> {
    let device = Default::default();
    let a = Tensor::<B, 2>::random([1024, 1024], Distribution::Default, &device);
    let b = Tensor::<B, 2>::random([1024, 1024], Distribution::Default, &device);
    let timing = time(repeats, || {
        let c = a.clone().matmul(b.clone());
        sync::<B>(&device)?;
        drop(c);
        Ok(())
    })?;
    // The device's dtype, not `B::FloatElem` (f32 on Flex even in f64 mode).
    let precision = Precision::of_device::<B>(&device).map_or("?", Precision::name);
    let name = format!("matmul/1024-{precision}");
    Ok(Row::new(name, runtime, precision, timing)
        .with_flops(2.0 * 1024f64.powi(3))
        .note("plain 1024×1024 · 1024×1024"))
}

/// The child side of [`memory::spawn_child`], on its worker's backend.
struct MemoryChild<'a> {
    opts: &'a Options,
    case: &'a str,
}

impl BackendTask for MemoryChild<'_> {
    type Output = Result<()>;

    fn run<B: AutodiffBackend>(self, _device: B::Device, _label: &str) -> Result<()> {
        memory_child::<B>(self.opts, self.case)
    }
}

/// Builds the f32 problem of the case on `B` and measures one run.
fn memory_child<B: AutodiffBackend>(opts: &Options, case: &str) -> Result<()> {
    if let Some(key) = case.strip_prefix(meta::MEMORY_PREFIX) {
        return meta::memory_child::<B>(opts.quick, key);
    }
    let mnist = load_mnist(None)?;
    let device = Default::default();
    let problem = HyperCleaning::<B>::from_mnist(&opts.spec(), &mnist, SEED, &device)?;
    let (base, mode) = parse_mode(case);
    if let Some(est) = Estimator::parse(base) {
        return memory::measure_in_child(|| Ok(est.run(&problem, mode).map(drop)?));
    }
    if let Some(kind) = case.strip_prefix("hvp-").and_then(HvpKind::parse) {
        let setup = HvpSetup::new(&mnist, opts, &problem, 1e-3)?;
        return memory::measure_in_child(setup.runner(&problem, kind));
    }
    bail!("unknown memory case `{case}`")
}
