//! The command line: [`Options`], the backends ([`Runtime`]) and the worker processes
//! ([`Worker`]) a bench run is split into.

use anyhow::{bail, Context, Result};
use bilevel_core::backend::{BackendKind, Precision};
use bilevel_problems::hyper_cleaning::HyperCleaningSpec;

#[cfg(doc)]
use super::memory;

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

/// The backend a worker's rows ran on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Runtime {
    Flex,
    Ndarray,
    // Constructed only in builds with the `wgpu` feature.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    Wgpu,
}

impl Runtime {
    const ALL: [Runtime; 3] = [Runtime::Flex, Runtime::Ndarray, Runtime::Wgpu];

    pub(super) fn kind(self) -> BackendKind {
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
    pub(super) fn label(self) -> &'static str {
        self.kind().name()
    }

    /// Whether [`memory`] can measure it (the resident set holds the tensors on the CPU only).
    pub(super) fn measures_memory(self) -> bool {
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
    pub(super) fn description(self) -> String {
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
pub(super) struct Worker {
    pub(super) runtime: Runtime,
    pub(super) precision: Precision,
}

impl Worker {
    pub(super) fn name(self) -> String {
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
    pub(super) fn all(backends: &[Runtime]) -> Vec<Worker> {
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
pub(super) const WGPU_MEMORY_NOTE: &str =
    "peak MiB is not measured on wgpu (–): the memory bench reads \
    the process's resident set (VmHWM), and GPU memory is not part of it";

/// Parsed command line.
#[derive(Clone, Debug)]
pub(super) struct Options {
    pub(super) quick: bool,
    filter: Option<String>,
    pub(super) repeats: usize,
    /// Internal: measure one case's peak memory in this (child) process.
    pub(super) memory_child: Option<String>,
    /// Internal: run the cases of one backend and precision (`flex-f32`, `ndarray-f64`,
    /// `wgpu-f32`, …) in this (worker) process.
    pub(super) worker: Option<Worker>,
    pub(super) backends: Vec<Runtime>,
    /// Training images (set for children by the parent; default from `quick`).
    pub(super) train: usize,
    pub(super) val: usize,
}

impl Options {
    pub(super) fn parse(args: &[String]) -> Result<Self> {
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

    pub(super) fn selected(&self, name: &str) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|f| f.split(',').any(|part| name.contains(part.trim())))
    }

    pub(super) fn spec(&self) -> HyperCleaningSpec {
        bilevel_bench::spec(self.train, self.val)
    }

    /// Arguments that make a child build the same problem (`--quick` selects the meta-learning
    /// case's quick sizes).
    pub(super) fn child_args(&self) -> Vec<String> {
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
    pub(super) fn worker(&self) -> Result<Worker> {
        self.worker
            .context("internal: a bench worker or memory child was started without --worker")
    }
}

/// The adapter burn's default wgpu device uses, or an error naming the fix (also when this
/// build has no wgpu).
#[cfg(feature = "wgpu")]
pub(super) fn wgpu_adapter() -> Result<String> {
    bilevel_core::gpu::probe_adapter()
        .map_err(|e| anyhow::anyhow!("--backend wgpu: no GPU adapter was found: {e}"))
}

#[cfg(not(feature = "wgpu"))]
pub(super) fn wgpu_adapter() -> Result<String> {
    bail!(
        "--backend wgpu|all needs an xtask built with the `wgpu` cargo feature, and this one \
         was built without it: rebuild and run with `cargo run --release -p xtask --features \
         wgpu -- bench --backend wgpu …`, or bench the CPU only with --backend cpu"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::meta;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
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
