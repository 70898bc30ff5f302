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
mod memory;
mod meta;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bilevel_bench::{sync, Derivatives, Estimator, HvpPoint, DC, INNER_STEPS, SEED};
use bilevel_core::backend::{dispatch, BackendKind, BackendTask, Precision};
use bilevel_core::tensor::rel_err;
use bilevel_core::{Batch, BilevelProblem, Oracle, OracleCounts, SecondOrder};
use bilevel_data::Mnist;
use bilevel_problems::common::{load_mnist, matrix_f32, split_mnist, MNIST_CLASSES};
use bilevel_problems::hyper_cleaning::{HyperCleaning, HyperCleaningSpec};
use bilevel_problems::linear_ce::{RowBlocks, BLOCK_ELEMENTS};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Tensor};
use serde::{Deserialize, Serialize};

use closed_form::{contiguous_transpose, Layout, LinearCeHessian};

const USAGE: &str = "usage: cargo xtask-release bench [--quick] [--filter NAME] [--repeats R]
                                [--backend flex|ndarray|wgpu|cpu|all]
  (= cargo run --release -p xtask -- bench ...; plain `cargo xtask bench` is an unoptimised build)
  --quick       n = 2000 training images instead of 20000, 2 repeats, a smaller meta-learning
                case (2 tasks, 8 filters, T = 5 instead of 4, 32, 10)
  --filter NAME run only cases whose name contains NAME, or one of comma-separated NAMEs
                (e.g. hvp, hypergrad/aid, autodiff, itd, meta, matmul; hypergrad,hvp)
  --repeats R   timed runs per case after one warm-up (default 5, quick 2)
  --backend B   flex (CPU, default), ndarray (CPU), wgpu (GPU, f32 cases only), a comma-
                separated list of them, cpu (= flex,ndarray) or all; with two or more, tables of
                median-time ratios per case; wgpu and all need an xtask built with the `wgpu`
                feature: cargo run --release -p xtask --features wgpu -- bench --backend all";

/// Largest relative difference allowed, in f64, between a closed-form HVP (the bench's and the
/// oracle's with [`SecondOrder::Exact`]) and the nested-autodiff one.
const CLOSED_FORM_TOL: f64 = 1e-10;

/// The backend a worker's rows ran on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Runtime {
    Flex,
    Ndarray,
    // Constructed only in builds with the `wgpu` feature.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    Wgpu,
}

impl Runtime {
    const ALL: [Runtime; 3] = [Runtime::Flex, Runtime::Ndarray, Runtime::Wgpu];

    fn kind(self) -> BackendKind {
        match self {
            Runtime::Flex => BackendKind::Flex,
            Runtime::Ndarray => BackendKind::Ndarray,
            Runtime::Wgpu => BackendKind::Wgpu,
        }
    }

    fn of(kind: BackendKind) -> Self {
        match kind {
            BackendKind::Flex => Runtime::Flex,
            BackendKind::Ndarray => Runtime::Ndarray,
            BackendKind::Wgpu => Runtime::Wgpu,
        }
    }

    /// The `backend` of its rows.
    fn label(self) -> &'static str {
        self.kind().name()
    }

    /// Whether [`memory`] can measure it (the resident set holds the tensors on the CPU only).
    fn measures_memory(self) -> bool {
        self != Runtime::Wgpu
    }

    /// The precisions it runs (`--worker <backend>-<precision>`): wgpu has no f64.
    fn precisions(self) -> &'static [Precision] {
        match self {
            Runtime::Wgpu => &[Precision::F32],
            _ => &[Precision::F32, Precision::F64],
        }
    }

    /// The report's `backend` text for a CPU backend.
    fn description(self) -> String {
        match self {
            Runtime::Flex => format!("burn 0.21 Flex + Autodiff ({})", bilevel_core::flex_build()),
            _ => ndarray_description(),
        }
    }
}

/// `--backend`: the backends the parent runs workers on, in order.
fn parse_backends(text: &str) -> Result<Vec<Runtime>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim) {
        let add: Vec<Runtime> = match part {
            "all" => Runtime::ALL.to_vec(),
            "cpu" => vec![Runtime::Flex, Runtime::Ndarray],
            name => vec![Runtime::of(name.parse::<BackendKind>().map_err(|e| {
                anyhow::anyhow!("{e} (or cpu, all, or a comma-separated list)")
            })?)],
        };
        for r in add {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// One worker process: a backend and a precision (`--worker flex-f32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Worker {
    runtime: Runtime,
    precision: Precision,
}

impl Worker {
    fn name(self) -> String {
        bilevel_core::backend::label(self.runtime.kind(), self.precision)
    }

    fn parse(text: &str) -> Result<Self> {
        let (backend, precision) = text
            .split_once('-')
            .with_context(|| format!("a worker is <backend>-<precision>, got `{text}`"))?;
        Ok(Self {
            runtime: Runtime::of(backend.parse::<BackendKind>().map_err(anyhow::Error::msg)?),
            precision: precision.parse::<Precision>().map_err(anyhow::Error::msg)?,
        })
    }

    /// The workers of `backends`, in run order.
    fn all(backends: &[Runtime]) -> Vec<Worker> {
        backends
            .iter()
            .flat_map(|&runtime| {
                runtime
                    .precisions()
                    .iter()
                    .map(move |&precision| Worker { runtime, precision })
            })
            .collect()
    }
}

/// The report's `backend` for ndarray: burn 0.21 NdArray + Autodiff, and which of
/// burn-ndarray's `multi-threads` / `simd` features this build has.
fn ndarray_description() -> String {
    format!(
        "burn 0.21 NdArray + Autodiff ({})",
        bilevel_core::ndarray_build()
    )
}

/// The note of a report with wgpu rows.
const WGPU_MEMORY_NOTE: &str = "peak MiB is not measured on wgpu (–): the memory bench reads \
    the process's resident set (VmHWM), and GPU memory is not part of it";

/// Parsed command line.
#[derive(Clone, Debug)]
struct Options {
    quick: bool,
    filter: Option<String>,
    repeats: usize,
    /// Internal: measure one case's peak memory in this (child) process.
    memory_child: Option<String>,
    /// Internal: run the cases of one backend and precision (`flex-f32`, `ndarray-f64`,
    /// `wgpu-f32`, …) in this (worker) process.
    worker: Option<Worker>,
    backends: Vec<Runtime>,
    /// Training images (set for children by the parent; default from `quick`).
    train: usize,
    val: usize,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut quick = false;
        let (mut filter, mut repeats, mut memory_child, mut worker) = (None, None, None, None);
        let (mut train, mut val) = (None, None);
        let mut backends = vec![Runtime::Flex];
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .with_context(|| format!("{arg} needs a value\n\n{USAGE}"))
            };
            match arg.as_str() {
                "--quick" => quick = true,
                "--filter" => filter = Some(value()?),
                "--repeats" => {
                    let r: usize = value()?.parse().context("--repeats")?;
                    if r == 0 {
                        bail!("--repeats must be ≥ 1");
                    }
                    repeats = Some(r);
                }
                "--memory-child" => memory_child = Some(value()?),
                "--worker" => worker = Some(Worker::parse(&value()?)?),
                "--backend" => backends = parse_backends(&value()?)?,
                "--train" => train = Some(value()?.parse().context("--train")?),
                "--val" => val = Some(value()?.parse().context("--val")?),
                "-h" | "--help" => bail!("{USAGE}"),
                other => bail!("unknown argument `{other}`\n\n{USAGE}"),
            }
        }
        Ok(Self {
            quick,
            filter,
            repeats: repeats.unwrap_or(if quick { 2 } else { 5 }),
            memory_child,
            worker,
            backends,
            train: train.unwrap_or(if quick { 2_000 } else { 20_000 }),
            val: val.unwrap_or(if quick { 500 } else { 5_000 }),
        })
    }

    fn selected(&self, name: &str) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|f| f.split(',').any(|part| name.contains(part.trim())))
    }

    fn spec(&self) -> HyperCleaningSpec {
        bilevel_bench::spec(self.train, self.val)
    }

    /// Arguments that make a child build the same problem (`--quick` selects the meta-learning
    /// case's quick sizes).
    fn child_args(&self) -> Vec<String> {
        let mut args = vec![
            "--train".into(),
            self.train.to_string(),
            "--val".into(),
            self.val.to_string(),
        ];
        if self.quick {
            args.push("--quick".into());
        }
        if let Some(worker) = self.worker {
            args.extend(["--worker".into(), worker.name()]);
        }
        args
    }

    /// The backend and precision of this worker or memory child.
    fn worker(&self) -> Result<Worker> {
        self.worker
            .context("internal: a bench worker or memory child was started without --worker")
    }
}

/// One line of the table.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Row {
    name: String,
    /// `ndarray` or `wgpu`.
    backend: String,
    precision: String,
    median_ms: f64,
    min_ms: f64,
    samples_ms: Vec<f64>,
    /// Peak resident memory of one run on top of the problem's data (child process), MiB.
    peak_mib: Option<f64>,
    /// Counted matmul flops of one run.
    flops: Option<f64>,
    /// `flops / median time`.
    gflops: Option<f64>,
    /// Oracle calls of one run.
    counts: Option<OracleCounts>,
    /// What the oracle differentiated with: `closed-form`, `autodiff` or `finite-difference`
    /// (empty for rows without an oracle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    derivatives: Option<String>,
    note: String,
}

impl Row {
    fn new(name: impl Into<String>, runtime: Runtime, precision: &str, timing: Timing) -> Self {
        Self {
            name: name.into(),
            backend: runtime.label().to_string(),
            precision: precision.to_string(),
            median_ms: timing.median_ms,
            min_ms: timing.min_ms,
            samples_ms: timing.samples_ms,
            peak_mib: None,
            flops: None,
            gflops: None,
            counts: None,
            derivatives: None,
            note: String::new(),
        }
    }

    fn derivatives(mut self, derivs: Derivatives) -> Self {
        self.derivatives = Some(derivs.label().to_string());
        self
    }

    fn with_flops(mut self, flops: f64) -> Self {
        self.flops = Some(flops);
        self.gflops = Some(flops / (self.median_ms * 1e-3) / 1e9);
        self
    }

    fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// Median and minimum of repeated runs.
#[derive(Clone, Debug)]
struct Timing {
    median_ms: f64,
    min_ms: f64,
    samples_ms: Vec<f64>,
}

/// One warm-up run, then `repeats` timed runs; `run` must synchronise its device before it
/// returns (the clock is read right after).
fn time(repeats: usize, mut run: impl FnMut() -> Result<()>) -> Result<Timing> {
    run()?;
    let mut samples_ms = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        run()?;
        samples_ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let mut sorted = samples_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    let median_ms = if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        0.5 * (sorted[mid - 1] + sorted[mid])
    };
    Ok(Timing {
        median_ms,
        min_ms: sorted[0],
        samples_ms,
    })
}

/// The oracle modes the hypergradient and ITD cases are timed in: [`SecondOrder::Exact`] (the
/// default: the problem's hand-derived derivatives where it has them) and
/// [`SecondOrder::Autodiff`] (autodiff gradients, nested-autodiff products), the "before" of
/// the closed form.
const MODES: [SecondOrder; 2] = [SecondOrder::Exact, SecondOrder::Autodiff];

/// Suffix of the case names timed with [`SecondOrder::Autodiff`].
const AUTODIFF_SUFFIX: &str = "-autodiff";

/// `base` for [`SecondOrder::Exact`], `base-autodiff` for [`SecondOrder::Autodiff`].
fn mode_name(base: &str, mode: SecondOrder) -> String {
    match mode {
        SecondOrder::Autodiff => format!("{base}{AUTODIFF_SUFFIX}"),
        _ => base.to_string(),
    }
}

/// `key` (a memory-child case) split into its base and oracle mode (see [`mode_name`]).
fn parse_mode(key: &str) -> (&str, SecondOrder) {
    match key.strip_suffix(AUTODIFF_SUFFIX) {
        Some(base) => (base, SecondOrder::Autodiff),
        None => (key, SecondOrder::Exact),
    }
}

/// How an HVP is computed (case 3).
#[derive(Clone, Copy, Debug, PartialEq)]
enum HvpKind {
    /// `Oracle::hvp` with [`SecondOrder::Autodiff`]: nested autodiff, the reference.
    Autodiff,
    /// `Oracle::hvp` with [`SecondOrder::Exact`]: the problem's closed form
    /// ([`BilevelProblem::closed_form`]), `softmax(X W)` recomputed in every call.
    OracleClosed,
    /// `Oracle::hvp` with central finite differences.
    FiniteDifference,
    /// [`LinearCeHessian::apply`] with a contiguous `Xᵀ` (`P`, `σ(λ)` precomputed).
    Closed,
    /// The same with `Xᵀ` as a transposed view (copied by every matmul).
    ClosedView,
    /// The same with `X` in row blocks of `2²¹` elements (the problem's layout,
    /// `bilevel_problems::linear_ce::RowBlocks`).
    ClosedBlocked,
    /// [`LinearCeHessian::new`]: `P = softmax(X W)` and `σ(λ)/n`, once per `(λ, W)`.
    ClosedSetup,
}

impl HvpKind {
    const ALL: [HvpKind; 7] = [
        HvpKind::Autodiff,
        HvpKind::OracleClosed,
        HvpKind::FiniteDifference,
        HvpKind::Closed,
        HvpKind::ClosedView,
        HvpKind::ClosedBlocked,
        HvpKind::ClosedSetup,
    ];

    fn key(self) -> &'static str {
        match self {
            HvpKind::Autodiff => "autodiff",
            HvpKind::OracleClosed => "oracle-closed",
            HvpKind::FiniteDifference => "fd",
            HvpKind::Closed => "closed",
            HvpKind::ClosedView => "closed-xt-view",
            HvpKind::ClosedBlocked => "closed-blocked",
            HvpKind::ClosedSetup => "closed-setup",
        }
    }

    fn parse(key: &str) -> Option<Self> {
        HvpKind::ALL.into_iter().find(|k| k.key() == key)
    }

    /// The oracle's mode for the `Oracle::hvp` kinds.
    fn mode(self, eps: f64) -> Option<SecondOrder> {
        match self {
            HvpKind::Autodiff => Some(SecondOrder::Autodiff),
            HvpKind::OracleClosed => Some(SecondOrder::Exact),
            HvpKind::FiniteDifference => Some(SecondOrder::FiniteDifference { eps }),
            HvpKind::Closed
            | HvpKind::ClosedView
            | HvpKind::ClosedBlocked
            | HvpKind::ClosedSetup => None,
        }
    }

    /// Data-matrix flops per call (`n·dc` units: see [`Estimator::matmul_flops`]); `derivs` is
    /// what the oracle uses for the `Oracle::hvp` kinds.
    fn matmul_flops(self, n: usize, derivs: Option<Derivatives>) -> f64 {
        let units = match (self, derivs) {
            (HvpKind::Closed | HvpKind::ClosedView | HvpKind::ClosedBlocked, _) => 4.0,
            (HvpKind::ClosedSetup, _) => 2.0,
            (_, Some(d)) => d.product_units(),
            (_, None) => 8.0,
        };
        units * (n * DC) as f64
    }

    fn note(self, derivs: Option<Derivatives>) -> &'static str {
        match (self, derivs) {
            (HvpKind::Autodiff, _) => {
                "Oracle::hvp, SecondOrder::Autodiff: nested autodiff (one double backward)"
            }
            (HvpKind::OracleClosed, Some(Derivatives::ClosedForm)) => {
                "Oracle::hvp, SecondOrder::Exact = the problem's closed form (softmax(XW) \
                 recomputed per call)"
            }
            (HvpKind::OracleClosed, _) => {
                "Oracle::hvp, SecondOrder::Exact: no closed form for this problem, = nested \
                 autodiff"
            }
            (HvpKind::FiniteDifference, _) => "SecondOrder::FiniteDifference, two gradients",
            (HvpKind::Closed, _) => {
                "bench's hand-derived form, P = softmax(XW) precomputed, contiguous Xᵀ"
            }
            (HvpKind::ClosedView, _) => {
                "bench's hand-derived form, Xᵀ as a transposed view (copied per matmul)"
            }
            (HvpKind::ClosedBlocked, _) => {
                "bench's hand-derived form, X in row blocks of 2^21 elements (the problem's \
                 layout)"
            }
            (HvpKind::ClosedSetup, _) => "closed form's once-per-(λ,W) part: softmax(XW), σ(λ)",
        }
    }
}

/// The random point and direction of the HVP cases ([`HvpPoint`]), with the closed form's
/// inputs.
struct HvpSetup<B: AutodiffBackend> {
    x: Tensor<B, 1>,
    y: Tensor<B, 1>,
    v: Tensor<B, 1>,
    features: Tensor<B::InnerBackend, 2>,
    features_t: Tensor<B::InnerBackend, 2>,
    blocks: RowBlocks<B::InnerBackend>,
    eps: f64,
}

impl<B: AutodiffBackend> HvpSetup<B> {
    /// [`HvpPoint::new`]; `X` from the same split as the problem's training set.
    fn new(mnist: &Mnist, opts: &Options, problem: &HyperCleaning<B>, eps: f64) -> Result<Self> {
        let device = problem.device();
        let HvpPoint { x, y, v } = HvpPoint::new(problem);
        let spec = opts.spec();
        let parts = split_mnist(mnist, spec.train, spec.val, spec.test, false, SEED)?;
        let train = &parts.train;
        let features =
            matrix_f32::<B::InnerBackend>(&train.images, train.len, train.features(), &device);
        let features_t = contiguous_transpose(&features);
        let blocks = RowBlocks::new(&features, BLOCK_ELEMENTS);
        Ok(Self {
            x,
            y,
            v,
            features,
            features_t,
            blocks,
            eps,
        })
    }

    /// The bench's closed form with the layout of `kind` (contiguous `Xᵀ` for the setup).
    fn hessian(&self, kind: HvpKind) -> LinearCeHessian<B::InnerBackend> {
        let layout = match kind {
            HvpKind::ClosedView => Layout::TransposedView,
            HvpKind::ClosedBlocked => Layout::Blocked(self.blocks.clone()),
            _ => Layout::Contiguous(self.features_t.clone()),
        };
        LinearCeHessian::new(
            self.features.clone(),
            layout,
            self.x.clone().inner(),
            self.y.clone().inner(),
            MNIST_CLASSES,
            HyperCleaningSpec::default().reg,
        )
    }

    /// The product by `kind`, synchronised.
    fn product(&self, problem: &HyperCleaning<B>, kind: HvpKind) -> Result<Tensor<B, 1>> {
        let device = problem.device();
        let out = match kind.mode(self.eps) {
            Some(mode) => {
                Oracle::with_mode(problem, mode).hvp(&self.x, &self.y, &self.v, &Batch::Full)?
            }
            None if kind == HvpKind::ClosedSetup => {
                let h = self.hessian(kind);
                drop(h);
                self.v.clone()
            }
            None => Tensor::from_inner(self.hessian(kind).apply(self.v.clone().inner())),
        };
        sync::<B>(&device)?;
        Ok(out)
    }

    /// What the oracle of an `Oracle::hvp` kind differentiates with.
    fn derivatives(&self, problem: &HyperCleaning<B>, kind: HvpKind) -> Option<Derivatives> {
        kind.mode(self.eps)
            .map(|mode| Derivatives::of(problem, mode))
    }

    /// A runner for timing: the closed form's setup is done once, outside the clock.
    fn runner<'a>(
        &'a self,
        problem: &'a HyperCleaning<B>,
        kind: HvpKind,
    ) -> Box<dyn FnMut() -> Result<()> + 'a> {
        let device = problem.device();
        match kind {
            HvpKind::Closed | HvpKind::ClosedView | HvpKind::ClosedBlocked => {
                let h = self.hessian(kind);
                let v = self.v.clone().inner();
                Box::new(move || {
                    let out = h.apply(v.clone());
                    sync::<B>(&device)?;
                    drop(out);
                    Ok(())
                })
            }
            _ => Box::new(move || self.product(problem, kind).map(drop)),
        }
    }
}

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

/// Relative differences of the HVPs from the nested-autodiff one ([`SecondOrder::Autodiff`])
/// at the bench's random point.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct HvpAgreement {
    backend: String,
    precision: String,
    /// `Oracle::hvp` with [`SecondOrder::Exact`] (the problem's closed form).
    oracle_closed_vs_autodiff: f64,
    /// What that oracle used (`closed-form`, or `autodiff` for a problem without one).
    oracle_derivatives: String,
    /// The bench's own closed form ([`LinearCeHessian`]), contiguous `Xᵀ`.
    closed_vs_autodiff: f64,
    /// The same with `Xᵀ` as a transposed view.
    closed_view_vs_autodiff: f64,
    /// Central finite differences with step `fd_eps`.
    fd_vs_autodiff: f64,
    fd_eps: f64,
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

/// The same case on two backends.
#[derive(Clone, Debug, Serialize)]
struct Ratio {
    name: String,
    precision: String,
    /// The backend divided by (`ndarray`, or `flex` against wgpu).
    base: String,
    /// The backend compared with it.
    other: String,
    base_median_ms: f64,
    other_median_ms: f64,
    /// `base_median_ms / other_median_ms` (> 1: `other` is faster).
    base_over_other: f64,
}

/// The backend pairs compared, base first.
const RATIO_PAIRS: [(Runtime, Runtime); 3] = [
    (Runtime::Ndarray, Runtime::Flex),
    (Runtime::Ndarray, Runtime::Wgpu),
    (Runtime::Flex, Runtime::Wgpu),
];

/// A [`Ratio`] for every pair of [`RATIO_PAIRS`] and every (name, precision) both ran.
fn ratios(rows: &[Row]) -> Vec<Ratio> {
    RATIO_PAIRS
        .iter()
        .flat_map(|&(base, other)| {
            rows.iter()
                .filter(move |r| r.backend == base.label())
                .filter_map(move |b| {
                    let o = rows.iter().find(|r| {
                        r.backend == other.label() && r.name == b.name && r.precision == b.precision
                    })?;
                    Some(Ratio {
                        name: b.name.clone(),
                        precision: b.precision.clone(),
                        base: base.label().into(),
                        other: other.label().into(),
                        base_median_ms: b.median_ms,
                        other_median_ms: o.median_ms,
                        base_over_other: b.median_ms / o.median_ms,
                    })
                })
        })
        .collect()
}

/// A case timed through an oracle with [`SecondOrder::Exact`] (the closed form where the
/// problem has one) and its [`SecondOrder::Autodiff`] counterpart from the same run: the
/// closed form's before/after.
#[derive(Clone, Debug, Serialize)]
struct ModeRatio {
    /// The exact (after) case.
    name: String,
    /// The autodiff (before) case.
    autodiff_name: String,
    backend: String,
    precision: String,
    /// What the exact case differentiated with (`closed-form`, or `autodiff` for a problem
    /// without one).
    exact_derivatives: String,
    exact_median_ms: f64,
    autodiff_median_ms: f64,
    /// `autodiff_median_ms / exact_median_ms` (> 1: the closed form is faster).
    autodiff_over_exact: f64,
}

/// The autodiff case an exact case is compared with: `hypergrad/<est>` and `itd/T=<T>` with
/// their `-autodiff` rows, the oracle's and the bench's closed-form HVPs with
/// `hvp/autodiff-<prec>`.
fn autodiff_partner(name: &str) -> Option<String> {
    if name.ends_with(AUTODIFF_SUFFIX) {
        return None;
    }
    if name.starts_with("hypergrad/") || name.starts_with("itd/") {
        return Some(mode_name(name, SecondOrder::Autodiff));
    }
    ["oracle-closed", "closed"].iter().find_map(|kind| {
        let precision = name.strip_prefix(&format!("hvp/{kind}-"))?;
        (!precision.contains('-')).then(|| format!("hvp/autodiff-{precision}"))
    })
}

/// A [`ModeRatio`] for every exact row whose autodiff partner ran on the same backend and
/// precision.
fn mode_ratios(rows: &[Row]) -> Vec<ModeRatio> {
    rows.iter()
        .filter_map(|exact| {
            let partner = autodiff_partner(&exact.name)?;
            let auto = rows.iter().find(|r| {
                r.name == partner && r.backend == exact.backend && r.precision == exact.precision
            })?;
            Some(ModeRatio {
                name: exact.name.clone(),
                autodiff_name: partner,
                backend: exact.backend.clone(),
                precision: exact.precision.clone(),
                exact_derivatives: exact
                    .derivatives
                    .clone()
                    .unwrap_or_else(|| "closed-form".into()),
                exact_median_ms: exact.median_ms,
                autodiff_median_ms: auto.median_ms,
                autodiff_over_exact: auto.median_ms / exact.median_ms,
            })
        })
        .collect()
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

/// The adapter burn's default wgpu device uses, or an error naming the fix (also when this
/// build has no wgpu).
#[cfg(feature = "wgpu")]
fn wgpu_adapter() -> Result<String> {
    bilevel_core::gpu::probe_adapter()
        .map_err(|e| anyhow::anyhow!("--backend wgpu: no GPU adapter was found: {e}"))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_adapter() -> Result<String> {
    bail!(
        "--backend wgpu|all needs an xtask built with the `wgpu` cargo feature, and this one \
         was built without it: rebuild and run with `cargo run --release -p xtask --features \
         wgpu -- bench --backend wgpu …`, or bench the CPU only with --backend cpu"
    )
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

/// Case 2: one hypergradient per estimator, through an oracle in each of [`MODES`]
/// (`hypergrad/<est>` exact, `hypergrad/<est>-autodiff`).
fn estimator_cases<B: AutodiffBackend>(
    opts: &Options,
    runtime: Runtime,
    problem: &HyperCleaning<B>,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let estimators = [
        Estimator::AidCg,
        Estimator::AidFp,
        Estimator::Itd(INNER_STEPS),
        Estimator::StocBio,
    ];
    for est in estimators {
        for mode in MODES {
            let name = mode_name(&format!("hypergrad/{}", est.key()), mode);
            if !opts.selected(&name) {
                continue;
            }
            eprintln!("bench: {name}");
            rows.push(estimator_row(opts, runtime, problem, est, mode, name)?);
        }
    }
    Ok(())
}

fn estimator_row<B: AutodiffBackend>(
    opts: &Options,
    runtime: Runtime,
    problem: &HyperCleaning<B>,
    est: Estimator,
    mode: SecondOrder,
    name: String,
) -> Result<Row> {
    let derivs = Derivatives::of(problem, mode);
    let mut counts = None;
    let timing = time(opts.repeats, || {
        counts = Some(est.run(problem, mode)?);
        Ok(())
    })?;
    let mut row = Row::new(name, runtime, "f32", timing)
        .with_flops(est.matmul_flops(opts.train, opts.val, derivs))
        .derivatives(derivs)
        .note(format!("{}; {}", derivs.note(mode), est.describe()));
    row.counts = counts;
    if runtime.measures_memory() {
        let key = mode_name(&est.key(), mode);
        row.peak_mib = Some(to_mib(memory::spawn_child(&key, &opts.child_args())?));
    }
    Ok(row)
}

/// `T` of the ITD-vs-`T` rows (case 4), timed with [`SecondOrder::Exact`]; `T = 10` also with
/// [`SecondOrder::Autodiff`].
const ITD_STEPS: [usize; 4] = [1, 5, 10, 20];

/// The names of case 4 with their `T` and oracle mode.
fn itd_case_names() -> Vec<(String, usize, SecondOrder)> {
    ITD_STEPS
        .iter()
        .map(|&t| (format!("itd/T={t}"), t, SecondOrder::Exact))
        .chain(std::iter::once((
            mode_name(&format!("itd/T={INNER_STEPS}"), SecondOrder::Autodiff),
            INNER_STEPS,
            SecondOrder::Autodiff,
        )))
        .collect()
}

/// Case 4: ITD time and memory vs `T`.
fn itd_cases<B: AutodiffBackend>(
    opts: &Options,
    runtime: Runtime,
    problem: &HyperCleaning<B>,
    rows: &mut Vec<Row>,
) -> Result<()> {
    for (name, t, mode) in itd_case_names() {
        if !opts.selected(&name) {
            continue;
        }
        eprintln!("bench: {name}");
        rows.push(estimator_row(
            opts,
            runtime,
            problem,
            Estimator::Itd(t),
            mode,
            name,
        )?);
    }
    Ok(())
}

/// Relative differences of the closed-form and finite-difference products from the
/// nested-autodiff one ([`SecondOrder::Autodiff`]).
fn hvp_agreement<B: AutodiffBackend>(
    problem: &HyperCleaning<B>,
    setup: &HvpSetup<B>,
    runtime: Runtime,
    precision: &'static str,
) -> Result<HvpAgreement> {
    let reference = setup.product(problem, HvpKind::Autodiff)?;
    let err = |kind| -> Result<f64> { Ok(rel_err(&setup.product(problem, kind)?, &reference)) };
    let agreement = HvpAgreement {
        backend: runtime.label().to_string(),
        precision: precision.to_string(),
        oracle_closed_vs_autodiff: err(HvpKind::OracleClosed)?,
        oracle_derivatives: setup
            .derivatives(problem, HvpKind::OracleClosed)
            .map_or_else(String::new, |d| d.label().to_string()),
        closed_vs_autodiff: err(HvpKind::Closed)?,
        closed_view_vs_autodiff: err(HvpKind::ClosedView)?,
        fd_vs_autodiff: err(HvpKind::FiniteDifference)?,
        fd_eps: setup.eps,
    };
    eprintln!(
        "bench: HVP agreement {} {precision} (vs nested autodiff): oracle closed form ({}) \
         {:.2e}, bench closed form {:.2e}, FD (ε = {:e}) {:.2e}",
        runtime.label(),
        agreement.oracle_derivatives,
        agreement.oracle_closed_vs_autodiff,
        agreement.closed_vs_autodiff,
        agreement.fd_eps,
        agreement.fd_vs_autodiff
    );
    Ok(agreement)
}

/// Case 3: HVP timings (memory measured for the f32 ones on ndarray: the memory child builds
/// the f32 ndarray problem).
fn hvp_cases<B: AutodiffBackend>(
    opts: &Options,
    runtime: Runtime,
    problem: &HyperCleaning<B>,
    setup: &HvpSetup<B>,
    precision: &'static str,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let with_memory = runtime.measures_memory() && precision == "f32";
    for kind in HvpKind::ALL {
        let name = format!("hvp/{}-{precision}", kind.key());
        if !opts.selected(&name) {
            continue;
        }
        eprintln!("bench: {name}");
        let derivs = setup.derivatives(problem, kind);
        let timing = time(opts.repeats, setup.runner(problem, kind))?;
        let mut row = Row::new(name, runtime, precision, timing)
            .with_flops(kind.matmul_flops(opts.train, derivs))
            .note(kind.note(derivs));
        if let Some(d) = derivs {
            row = row.derivatives(d);
        }
        if with_memory {
            let key = format!("hvp-{}", kind.key());
            row.peak_mib = Some(to_mib(memory::spawn_child(&key, &opts.child_args())?));
        }
        rows.push(row);
    }
    Ok(())
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

fn to_mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_table(
    rows: &[Row],
    agreement: &[HvpAgreement],
    ratios: &[Ratio],
    closed_form_ratios: &[ModeRatio],
) {
    println!("| case | backend | prec | median ms | min ms | peak MiB | GFLOP/s | notes |");
    println!("|---|---|---|---:|---:|---:|---:|---|");
    for r in rows {
        let opt = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
        };
        println!(
            "| {} | {} | {} | {:.2} | {:.2} | {} | {} | {} |",
            r.name,
            r.backend,
            r.precision,
            r.median_ms,
            r.min_ms,
            opt(r.peak_mib, 1),
            opt(r.gflops, 2),
            r.note
        );
    }
    if !agreement.is_empty() {
        println!();
        println!(
            "| HVP agreement (relative to nested autodiff) | backend | oracle closed form \
             (SecondOrder::Exact) | bench closed form | bench closed form (Xᵀ view) | FD | FD ε |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|");
        for a in agreement {
            println!(
                "| {} | {} | {:.2e}{} | {:.2e} | {:.2e} | {:.2e} | {:e} |",
                a.precision,
                a.backend,
                a.oracle_closed_vs_autodiff,
                if a.oracle_derivatives == Derivatives::ClosedForm.label() {
                    ""
                } else {
                    " (no closed form)"
                },
                a.closed_vs_autodiff,
                a.closed_view_vs_autodiff,
                a.fd_vs_autodiff,
                a.fd_eps
            );
        }
    }
    if !closed_form_ratios.is_empty() {
        println!();
        println!(
            "| closed form vs autodiff | backend | prec | exact ms | autodiff case | autodiff \
             ms | autodiff / exact |"
        );
        println!("|---|---|---|---:|---|---:|---:|");
        for r in closed_form_ratios {
            let derivs = if r.exact_derivatives == Derivatives::ClosedForm.label() {
                String::new()
            } else {
                format!(" ({})", r.exact_derivatives)
            };
            println!(
                "| {}{derivs} | {} | {} | {:.2} | {} | {:.2} | {:.2} |",
                r.name,
                r.backend,
                r.precision,
                r.exact_median_ms,
                r.autodiff_name,
                r.autodiff_median_ms,
                r.autodiff_over_exact
            );
        }
    }
    for (base, other) in RATIO_PAIRS {
        let pair: Vec<&Ratio> = ratios
            .iter()
            .filter(|r| r.base == base.label() && r.other == other.label())
            .collect();
        if pair.is_empty() {
            continue;
        }
        let (b, o) = (base.label(), other.label());
        println!();
        println!("| case | prec | {b} median ms | {o} median ms | {b} / {o} |");
        println!("|---|---|---:|---:|---:|");
        for r in pair {
            println!(
                "| {} | {} | {:.2} | {:.2} | {:.2} |",
                r.name, r.precision, r.base_median_ms, r.other_median_ms, r.base_over_other
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn row(name: &str, runtime: Runtime, median_ms: f64) -> Row {
        Row::new(
            name,
            runtime,
            "f32",
            Timing {
                median_ms,
                min_ms: median_ms,
                samples_ms: vec![median_ms],
            },
        )
    }

    #[test]
    fn parses_the_backend() {
        let workers = |s: &str| -> Vec<String> {
            let opts = Options::parse(&args(s)).unwrap();
            Worker::all(&opts.backends)
                .into_iter()
                .map(Worker::name)
                .collect()
        };
        assert_eq!(workers("--quick"), ["flex-f32", "flex-f64"]);
        assert_eq!(workers("--backend ndarray"), ["ndarray-f32", "ndarray-f64"]);
        assert_eq!(workers("--backend wgpu --quick"), ["wgpu-f32"]);
        assert_eq!(
            workers("--backend cpu"),
            ["flex-f32", "flex-f64", "ndarray-f32", "ndarray-f64"]
        );
        assert_eq!(workers("--backend ndarray,flex,ndarray").len(), 4);
        assert_eq!(
            workers("--backend all"),
            [
                "flex-f32",
                "flex-f64",
                "ndarray-f32",
                "ndarray-f64",
                "wgpu-f32"
            ]
        );
        for w in ["flex-f32", "ndarray-f64", "wgpu-f32"] {
            assert_eq!(Worker::parse(w).unwrap().name(), w);
        }
        assert!(Worker::parse("flex").is_err());
        assert!(Worker::parse("flex-f16").is_err());
        let child = Options::parse(&args("--quick --worker ndarray-f32")).unwrap();
        assert!(child
            .child_args()
            .ends_with(&["--worker".into(), "ndarray-f32".into()]));
        assert!(Options::parse(&args("--backend cuda")).is_err());
        assert!(Options::parse(&args("--backend")).is_err());
        if cfg!(not(feature = "wgpu")) {
            let err = wgpu_adapter().unwrap_err().to_string();
            assert!(err.contains("--features wgpu"), "{err}");
        }
    }

    #[test]
    fn filter_selects_by_any_comma_separated_part() {
        let opts = Options::parse(&args("--filter hvp,matmul/1024")).unwrap();
        assert!(opts.selected("hvp/closed-f32"));
        assert!(opts.selected("matmul/1024-f64"));
        assert!(!opts.selected("meta/cnn4/itd"));
        assert!(!opts.selected("hypergrad/aid-cg"));
        let opts = Options::parse(&args("--filter hypergrad/aid")).unwrap();
        assert!(opts.selected("hypergrad/aid-fp-autodiff"));
        assert!(!opts.selected("hypergrad/itd-10"));
        assert!(Options::parse(&args("--quick"))
            .unwrap()
            .selected("meta/cnn4/itd"));
    }

    #[test]
    fn ratios_pair_the_backends() {
        let rows = [
            row("matmul/1024-f32", Runtime::Ndarray, 60.0),
            row("hvp/autodiff-f32", Runtime::Ndarray, 600.0),
            row("matmul/1024-f32", Runtime::Wgpu, 20.0),
            row("hvp/autodiff-f32", Runtime::Flex, 150.0),
        ];
        let r = ratios(&rows);
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].base.as_str(), r[0].other.as_str()),
            ("ndarray", "flex")
        );
        assert_eq!(r[0].name, "hvp/autodiff-f32");
        assert!((r[0].base_over_other - 4.0).abs() < 1e-12);
        assert_eq!(
            (r[1].base.as_str(), r[1].other.as_str()),
            ("ndarray", "wgpu")
        );
        assert_eq!(r[1].name, "matmul/1024-f32");
        assert!((r[1].base_over_other - 3.0).abs() < 1e-12);
        assert!(ratios(&rows[..2]).is_empty());
    }

    #[test]
    fn mode_names_round_trip() {
        assert_eq!(mode_name("aid-cg", SecondOrder::Exact), "aid-cg");
        assert_eq!(
            mode_name("aid-cg", SecondOrder::Autodiff),
            "aid-cg-autodiff"
        );
        for key in ["aid-cg", "aid-fp", "itd-10", "stocbio"] {
            for mode in MODES {
                let name = mode_name(key, mode);
                let (base, parsed) = parse_mode(&name);
                assert_eq!(base, key);
                assert_eq!(parsed, mode);
                assert!(Estimator::parse(base).is_some(), "{base}");
            }
        }
        for kind in HvpKind::ALL {
            assert_eq!(HvpKind::parse(kind.key()), Some(kind));
        }
        for est in meta::MetaEstimator::ALL {
            assert_eq!(meta::MetaEstimator::parse(est.key()), Some(est));
            assert!(est.name().starts_with(meta::PREFIX));
        }
        let itd: Vec<_> = itd_case_names().into_iter().map(|(n, _, _)| n).collect();
        assert_eq!(
            itd,
            [
                "itd/T=1",
                "itd/T=5",
                "itd/T=10",
                "itd/T=20",
                "itd/T=10-autodiff"
            ]
        );
    }

    #[test]
    fn closed_form_ratios_pair_the_modes() {
        assert_eq!(
            autodiff_partner("hypergrad/aid-cg").as_deref(),
            Some("hypergrad/aid-cg-autodiff")
        );
        assert_eq!(autodiff_partner("hypergrad/aid-cg-autodiff"), None);
        assert_eq!(
            autodiff_partner("itd/T=10").as_deref(),
            Some("itd/T=10-autodiff")
        );
        assert_eq!(
            autodiff_partner("hvp/oracle-closed-f64").as_deref(),
            Some("hvp/autodiff-f64")
        );
        assert_eq!(
            autodiff_partner("hvp/closed-f32").as_deref(),
            Some("hvp/autodiff-f32")
        );
        assert_eq!(autodiff_partner("hvp/closed-xt-view-f32"), None);
        assert_eq!(autodiff_partner("hvp/fd-f32"), None);
        assert_eq!(autodiff_partner("meta/cnn4/itd"), None);
        let rows = [
            row("hypergrad/aid-cg", Runtime::Ndarray, 100.0).derivatives(Derivatives::ClosedForm),
            row("hypergrad/aid-cg-autodiff", Runtime::Ndarray, 400.0),
            row("hypergrad/aid-cg", Runtime::Wgpu, 50.0),
            row("itd/T=1", Runtime::Ndarray, 10.0),
            row("hvp/oracle-closed-f32", Runtime::Ndarray, 20.0),
            row("hvp/autodiff-f32", Runtime::Ndarray, 60.0),
        ];
        let r = mode_ratios(&rows);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name, "hypergrad/aid-cg");
        assert_eq!(r[0].backend, "ndarray");
        assert_eq!(r[0].exact_derivatives, "closed-form");
        assert!((r[0].autodiff_over_exact - 4.0).abs() < 1e-12);
        assert_eq!(r[1].autodiff_name, "hvp/autodiff-f32");
        assert!((r[1].autodiff_over_exact - 3.0).abs() < 1e-12);
    }

    #[test]
    fn quick_children_get_quick_sizes() {
        let opts = Options::parse(&args("--quick")).unwrap();
        assert!(opts.child_args().contains(&"--quick".to_string()));
        let opts = Options::parse(&args("--repeats 3")).unwrap();
        assert!(!opts.child_args().contains(&"--quick".to_string()));
        assert!(meta::spec(true).tasks < meta::spec(false).tasks);
        meta::spec(false).validate().unwrap();
        meta::spec(true).validate().unwrap();
    }
}
