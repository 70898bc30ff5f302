//! Criterion benchmarks of one hypergradient and one Hessian-vector product on data
//! hyper-cleaning (MNIST, linear `784×10`), with the problem's hand-derived derivatives
//! (`SecondOrder::Exact`, the default) and with autodiff (`SecondOrder::Autodiff`); the cases are
//! in `bilevel_bench` (`src/lib.rs`), shared with `cargo xtask bench`.
//!
//! ```sh
//! cargo bench -p bilevel-bench                         # ndarray f32, n = 20 000 / 5 000
//! BILEVEL_BENCH_TRAIN=2000 BILEVEL_BENCH_VAL=500 cargo bench -p bilevel-bench   # quick
//! cargo bench -p bilevel-bench -- hvp                  # the groups/cases whose id contains `hvp`
//! cargo bench -p bilevel-bench -- --save-baseline before   # then: -- --baseline before
//! cargo bench -p bilevel-bench --features wgpu         # adds the same groups on burn's wgpu
//! ```
//!
//! Groups (`<backend>` is `ndarray-f32`, or `wgpu-f32` with the feature):
//! - `hypergradient-<backend>/<estimator>/<derivatives>`: AID-CG, AID-FP, ITD (`T = 10`) and
//!   stocBiO, each from `(λ, W) = (0, 0)`, derivatives `closed-form` or `autodiff`;
//! - `hvp-<backend>/<derivatives>`: `∇²_yy g · v` at a seeded random point by the closed form,
//!   nested autodiff and central finite differences (`ε = 10⁻³`); before timing, the closed
//!   form must equal the nested-autodiff product to `10⁻⁵` (relative, f32) or the bench fails;
//! - `itd-vs-T-<backend>/T=<T>`: ITD with the closed form for `T ∈ {1, 5, 10, 20}`.
//!
//! Every case is synchronised with the device before its clock stops. Flat sampling, 10 samples
//! of one run each (a full-size AID hypergradient is 3 s with the closed form, 10 s with
//! autodiff on 2 cores): the whole default run takes about 10 minutes. Peak memory, GFLOP/s and
//! oracle counts are `cargo xtask-release bench`'s.

use std::error::Error;
use std::time::Duration;

use bilevel_bench::{spec, Derivatives, Estimator, HvpPoint, SEED};
use bilevel_core::tensor::rel_err;
use bilevel_core::{BilevelError, SecondOrder};
use bilevel_problems::common::load_mnist;
use bilevel_problems::hyper_cleaning::HyperCleaning;
use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::AutodiffBackend;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Largest relative difference allowed between the closed-form and the nested-autodiff HVP in
/// f32 (measured: 6e-8 on ndarray, 1.6e-7 on wgpu).
const HVP_TOL: f64 = 1e-5;
/// `ε` of the finite-difference HVP (f32).
const FD_EPS: f64 = 1e-3;
/// `T` of the ITD-vs-`T` group.
const ITD_STEPS: [usize; 4] = [1, 5, 10, 20];
/// The two oracle modes of the hypergradient group.
const MODES: [SecondOrder; 2] = [SecondOrder::Exact, SecondOrder::Autodiff];

fn main() {
    if let Err(e) = run() {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let train = env_size("BILEVEL_BENCH_TRAIN", 20_000)?;
    let val = env_size("BILEVEL_BENCH_VAL", 5_000)?;
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    bench_backend::<Autodiff<NdArray<f32>>>(&mut c, "ndarray-f32", train, val)?;
    #[cfg(feature = "wgpu")]
    {
        let adapter = bilevel_core::gpu::probe_adapter()?;
        eprintln!("bench: wgpu adapter {adapter}");
        bench_backend::<bilevel_core::gpu::WgpuAutodiff>(&mut c, "wgpu-f32", train, val)?;
    }
    c.final_summary();
    Ok(())
}

/// A positive image count from the environment, or `default`.
fn env_size(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(default),
        Ok(s) => match s.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{name}={s:?} is not a positive number of images").into()),
        },
        Err(e) => Err(format!("{name}: {e}").into()),
    }
}

/// Every group on backend `B`.
fn bench_backend<B: AutodiffBackend>(
    c: &mut Criterion,
    label: &str,
    train: usize,
    val: usize,
) -> Result<()> {
    let mnist = load_mnist(None)?;
    let device = Default::default();
    let problem = HyperCleaning::<B>::from_mnist(&spec(train, val), &mnist, SEED, &device)?;
    eprintln!("bench: {label}: hyper-cleaning, {train} train / {val} validation images");

    let mut group = slow_group(c, &format!("hypergradient-{label}"));
    for est in Estimator::ALL {
        for mode in MODES {
            let id = format!("{}/{}", est.key(), Derivatives::of(&problem, mode).label());
            timed(&mut group, id, || est.run(&problem, mode).map(drop))?;
        }
    }
    group.finish();

    let point = HvpPoint::new(&problem);
    let closed = point.hvp(&problem, SecondOrder::Exact)?;
    let reference = point.hvp(&problem, SecondOrder::Autodiff)?;
    let err = rel_err(&closed, &reference);
    if err.is_nan() || err > HVP_TOL {
        return Err(format!(
            "{label}: the closed-form HVP differs from the nested-autodiff one by {err:.3e} \
             (relative) > {HVP_TOL:e}"
        )
        .into());
    }
    let mut group = slow_group(c, &format!("hvp-{label}"));
    let fd = SecondOrder::FiniteDifference { eps: FD_EPS };
    for mode in [SecondOrder::Exact, SecondOrder::Autodiff, fd] {
        let id = Derivatives::of(&problem, mode).label().to_string();
        timed(&mut group, id, || point.hvp(&problem, mode).map(drop))?;
    }
    group.finish();

    let mut group = slow_group(c, &format!("itd-vs-T-{label}"));
    for t in ITD_STEPS {
        let id = format!("T={t}");
        timed(&mut group, id, || {
            Estimator::Itd(t)
                .run(&problem, SecondOrder::Exact)
                .map(drop)
        })?;
    }
    group.finish();
    Ok(())
}

/// A group for runs of 10 ms to 10 s: flat sampling (every sample the same number of runs,
/// at least one).
fn slow_group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group.sampling_mode(SamplingMode::Flat);
    group
}

/// Times `case`; its first error (the timed closure cannot return one) fails the bench after
/// the case.
fn timed(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: String,
    mut case: impl FnMut() -> std::result::Result<(), BilevelError>,
) -> Result<()> {
    let mut failure = None;
    group.bench_function(id.clone(), |b| {
        b.iter(|| {
            if let Err(e) = case() {
                failure.get_or_insert(e);
            }
        })
    });
    match failure {
        Some(e) => Err(format!("{id}: {e}").into()),
        None => Ok(()),
    }
}
