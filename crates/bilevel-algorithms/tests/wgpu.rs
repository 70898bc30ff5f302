//! The GPU subset (cargo feature `wgpu`): exact second-order products, one estimator per
//! family and one model, all on burn's wgpu backend in f32 (`Autodiff<Wgpu>`, and
//! `Autodiff<Autodiff<Wgpu>>` inside the oracle's exact HVP/JVP).
//!
//! Every number is checked against a reference computed without the GPU: the closed forms of
//! the quadratic problems (host `f64`), host replicas of the randomised estimators, or the same
//! code on `Autodiff<NdArray<f64>>` with the same settings and seeds (random draws come from
//! the host ChaCha generator in `State`, so they do not depend on the backend). Tolerances are
//! those of f32 arithmetic (about `1e-7` per operation), with margin.
//!
//! CI runs this file on Mesa's software Vulkan driver (lavapipe): `cargo test -p
//! bilevel-algorithms --features wgpu --test wgpu`. A machine without an adapter fails every
//! test with the message of [`probe_adapter`] (a missing driver is an error, never a skip).
//! Problems are small (dimensions ≤ 20, one model of 64 + 15 parameters): on a software
//! driver every kernel launch costs, and every new kernel is compiled on first use (the first
//! exact HVP through the MLP takes ~8 s on lavapipe, later ones ~50 ms). The tests take a
//! process-wide lock ([`serial`]) and so run one at a time even under the default parallel
//! harness.
//!
//! Only `NdArray<f64>` is used on the CPU: burn-ndarray fixes its float type from the first
//! tensor a process creates.
//!
//! (The `cfg` comes after this comment: before it, a build without the feature would drop the
//! comment too and fail the workspace's `missing_docs` lint.)
#![cfg(feature = "wgpu")]

mod common;

use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use bilevel_algorithms::aid::{Aid, AidConfig, InnerSteps, LinearSolver};
use bilevel_algorithms::fsla::{ApproximateHypergradient, Fsla, FslaConfig};
use bilevel_algorithms::igfm::{
    IgfmConfig, IgfmEstimator, FEASIBLE_STEPS, LOWER_SOLUTION_MINUS, LOWER_SOLUTION_PLUS,
};
use bilevel_algorithms::itd::{Itd, ItdConfig};
use bilevel_algorithms::pzobo::{InnerStart, Pzobo, PzoboConfig};
use bilevel_algorithms::sgm::{Sgm, SgmConfig};
use bilevel_algorithms::sid::{InnerStepSchedule, LowerLevel, Sid, SidConfig};
use bilevel_algorithms::stocbio::{HessianBatch, StocBio, StocBioConfig};
use bilevel_core::dense::{axpy, norm};
use bilevel_core::gpu::{probe_adapter, WgpuAutodiff};
use bilevel_core::problems::{QuadraticBilevel, QuadraticForm, QuadraticSpec};
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{rel_err_host, scalar, to_vec, vector};
use bilevel_core::{
    Batch, BilevelProblem, Constraint, Executor, ExecutorConfig, HypergradientEstimator, Lift,
    Oracle, OuterLoop, OuterOptimizer, SecondOrder, Solver, State, TerminationReason,
};
use bilevel_models::flat::{he_normal_init, VectorInit};
use bilevel_models::linear::{cross_entropy_per_sample, mean};
use bilevel_models::{unflatten, Activation, Linear, LinearConfig, Mlp, MlpConfig};
use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use common::sid::LsData;

/// The backend under test: burn wgpu, f32, with first-order autodiff.
type Gpu = WgpuAutodiff;
/// The f64 reference backend.
type Cpu = Autodiff<NdArray<f64>>;

/// Serialises the tests of this binary on the GPU and checks that an adapter exists (failing
/// the test with [`probe_adapter`]'s message otherwise). Call first in every test; hold the
/// guard to the end.
///
/// Why serialise: cubecl 0.10's device channel and wgpu poll thread busy-wait (spin, then
/// yield) while work is queued, so concurrent test threads on a 2-core CI runner starve
/// lavapipe's worker threads — the file took ~3× longer in parallel than in series.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    static ADAPTER: OnceLock<Result<String, String>> = OnceLock::new();
    // A failed test poisons the lock; the others still run.
    let guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let adapter = ADAPTER.get_or_init(|| {
        let probed = probe_adapter().map_err(|e| e.to_string());
        if let Ok(name) = &probed {
            println!("wgpu adapter: {name}");
        }
        probed
    });
    if let Err(e) = adapter {
        panic!("the wgpu tests need a GPU adapter (CI installs lavapipe): {e}");
    }
    guard
}

/// burn's default wgpu device (the adapter [`serial`] checked).
fn gpu() -> burn::tensor::Device<Gpu> {
    Default::default()
}

fn cpu() -> burn::tensor::Device<Cpu> {
    Default::default()
}

fn host<B: Backend>(t: &Tensor<B, 1>) -> Vec<f64> {
    to_vec(t.clone()).unwrap()
}

fn normal(seed: u64, n: usize) -> Vec<f64> {
    Rng::seed(seed).normal_vec(n)
}

/// Prints and returns the relative error `‖a − b‖/‖b‖` of `a` (wgpu) against `b` (a reference).
fn report(name: &str, what: &str, a: &[f64], b: &[f64]) -> f64 {
    let e = rel_err_host(a, b);
    println!(
        "{name}: rel err vs {what} = {e:.2e} (‖ref‖ = {:.3e})",
        norm(b)
    );
    e
}

// ---------------------------------------------------------------------------------------------
// Problems
// ---------------------------------------------------------------------------------------------

const X_DIM: usize = 6;
const Y_DIM: usize = 12;

/// `∇²_yy g` spectrum in `[1, 4]`, so GD with step `0.4 = 2/(L + μ)` contracts by `0.6` per step.
fn quadratic<B: Backend>(device: &B::Device) -> QuadraticBilevel<B> {
    QuadraticBilevel::random(
        &QuadraticSpec {
            x_dim: X_DIM,
            y_dim: Y_DIM,
            min_curvature: 1.0,
            max_curvature: 4.0,
            x_regularization: 1.0,
            cross_scale: 0.3,
            seed: 5,
        },
        device,
    )
    .unwrap()
}

/// GD step `2/(L + μ)` of [`quadratic`].
const QUAD_STEP: f64 = 0.4;

const LS_X: usize = 4;
const LS_Y: usize = 8;
const LS_ROWS: usize = 96;

/// FSLA's least-squares data with `x`-features correlated with the `y`-features (so that
/// `∇_x∇_y g` is O(1)), labels from a planted point plus noise `0.1` (the SID tests' builder; the
/// host data is kept to form mini-batch products on the host).
fn ls_data() -> LsData {
    LsData::correlated(LS_X, LS_Y, LS_ROWS, 0.1, 17)
}

impl LsData {
    /// `(H_S v, J_S v)` of the mini-batch inner loss `(1/2|S|) Σ_{i∈S} (a_x,iᵀx + a_y,iᵀy − b_i)²`
    /// (rows repeated as often as they occur in `S`).
    fn batch_products(&self, rows: &[usize], v: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let (mut hv, mut jv) = (vec![0.0; LS_Y], vec![0.0; LS_X]);
        let scale = 1.0 / rows.len() as f64;
        for &i in rows {
            let s: f64 = (0..LS_Y).map(|j| self.a_y.get(i, j) * v[j]).sum::<f64>() * scale;
            for (j, h) in hv.iter_mut().enumerate() {
                *h += self.a_y.get(i, j) * s;
            }
            for (j, g) in jv.iter_mut().enumerate() {
                *g += self.a_x.get(i, j) * s;
            }
        }
        (hv, jv)
    }
}

// ---------------------------------------------------------------------------------------------
// Runners, generic over the backend
// ---------------------------------------------------------------------------------------------

/// One estimate at `(x, y0)` with a fresh state seeded `seed`.
fn estimate_at<B, P, E>(
    estimator: &mut E,
    problem: &P,
    x: &[f64],
    y0: &[f64],
    seed: u64,
) -> Vec<f64>
where
    B: AutodiffBackend,
    P: BilevelProblem<B>,
    E: HypergradientEstimator<B>,
{
    let device = problem.device();
    let mut oracle = Oracle::new(problem);
    let mut state = State::new(vector(x, &device), vector(y0, &device), seed);
    host(&estimator.estimate(&mut oracle, &mut state).unwrap())
}

/// `iters` iterations of `solver` from `(x0, y0)`; returns host `(x, y, v)` at the end.
fn run_solver<B, P, S>(
    solver: &mut S,
    problem: &P,
    x0: &[f64],
    y0: &[f64],
    seed: u64,
    iters: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>)
where
    B: AutodiffBackend,
    P: BilevelProblem<B>,
    S: Solver<B>,
{
    let device = problem.device();
    let mut oracle = Oracle::new(problem);
    let mut state = State::new(vector(x0, &device), vector(y0, &device), seed);
    state = solver.init(&mut oracle, state).unwrap();
    for _ in 0..iters {
        state = solver.next_iter(&mut oracle, state).unwrap();
    }
    (host(&state.x), host(&state.y), host(&state.v))
}

/// The estimation point of the quadratic tests.
fn quad_point() -> (Vec<f64>, Vec<f64>) {
    (normal(101, X_DIM), vec![0.0; Y_DIM])
}

/// Runs `estimator` at [`quad_point`] on wgpu and on ndarray-f64 and compares both with the
/// closed-form `∇Φ(x)`; returns `(wgpu vs ∇Φ, wgpu vs ndarray)`.
fn quad_estimate<E>(name: &str, estimator: E) -> (f64, f64)
where
    E: HypergradientEstimator<Gpu> + HypergradientEstimator<Cpu> + Clone,
{
    let clock = Instant::now();
    let (x, y0) = quad_point();
    let p_gpu = quadratic::<Gpu>(&gpu());
    let p_cpu = quadratic::<Cpu>(&cpu());
    let exact = p_gpu.closed_form().hypergradient(&x).unwrap();
    let g_gpu = estimate_at(&mut estimator.clone(), &p_gpu, &x, &y0, 7);
    let g_cpu = estimate_at(&mut estimator.clone(), &p_cpu, &x, &y0, 7);
    let vs_exact = report(name, "closed-form ∇Φ", &g_gpu, &exact);
    let vs_cpu = report(name, "ndarray-f64", &g_gpu, &g_cpu);
    report(
        &format!("{name} (ndarray-f64)"),
        "closed-form ∇Φ",
        &g_cpu,
        &exact,
    );
    println!("{name}: {:.2}s", clock.elapsed().as_secs_f64());
    (vs_exact, vs_cpu)
}

/// Runs `estimator` on the least-squares data at `(x, 0)` with state seed `seed` on wgpu and on
/// ndarray-f64 (the same mini-batches: they come from the host generator); returns
/// `(wgpu estimate, ndarray estimate)`.
fn ls_estimates<E>(estimator: &E, x: &[f64], seed: u64) -> (Vec<f64>, Vec<f64>)
where
    E: HypergradientEstimator<Gpu> + HypergradientEstimator<Cpu> + Clone,
{
    let (data, y0) = (ls_data(), vec![0.0; LS_Y]);
    let p_gpu = data.problem_on::<Gpu>(&gpu());
    let p_cpu = data.problem_on::<Cpu>(&cpu());
    (
        estimate_at(&mut estimator.clone(), &p_gpu, x, &y0, seed),
        estimate_at(&mut estimator.clone(), &p_cpu, x, &y0, seed),
    )
}

// ---------------------------------------------------------------------------------------------
// Second-order products
// ---------------------------------------------------------------------------------------------

#[test]
fn adapter_is_present() {
    let _gpu = serial();
    let device = gpu();
    // One round trip through the device.
    let t = vector::<Gpu>(&[1.0, -2.0, 0.5], &device);
    assert_eq!(host(&t.mul_scalar(2.0)), [2.0, -4.0, 1.0]);
}

#[test]
fn exact_products_on_the_quadratic_match_the_closed_form() {
    let _gpu = serial();
    let clock = Instant::now();
    let device = gpu();
    let p = quadratic::<Gpu>(&device);
    let form = p.closed_form();
    let (x, y, v) = (normal(1, X_DIM), normal(2, Y_DIM), normal(3, Y_DIM));
    let (xt, yt, vt) = (
        vector::<Gpu>(&x, &device),
        vector::<Gpu>(&y, &device),
        vector::<Gpu>(&v, &device),
    );
    let full = Batch::Full;
    let mut oracle = Oracle::new(&p);
    let hv = host(&oracle.hvp(&xt, &yt, &vt, &full).unwrap());
    let jv = host(&oracle.jvp(&xt, &yt, &vt, &full).unwrap());
    let (hv2, jv2) = oracle.hvp_jvp(&xt, &yt, &vt, &full).unwrap();
    let gg = oracle.grad_g(&xt, &yt, &full).unwrap();
    let gf = oracle.grad_f(&xt, &yt, &full).unwrap();
    let name = "quadratic";
    let errors = [
        report(name, "Hv = Av", &hv, &form.hvp(&v)),
        report(name, "Jv = Cᵀv", &jv, &form.jvp(&v)),
        report(name, "Hv of hvp_jvp", &host(&hv2), &form.hvp(&v)),
        report(name, "Jv of hvp_jvp", &host(&jv2), &form.jvp(&v)),
        report(name, "∇_y g", &host(&gg.y), &form.grad_y_g(&x, &y)),
        report(name, "∇_x g", &host(&gg.x), &form.grad_x_g(&x, &y)),
        report(name, "∇_x f", &host(&gf.x), &form.grad_x_f(&x, &y)),
        report(name, "∇_y f", &host(&gf.y), &form.grad_y_f(&x, &y)),
    ];
    for e in errors {
        assert!(e <= 1e-5, "{name}: relative error {e:e} > 1e-5");
    }
    let f = scalar(gf.value);
    let f_exact = form.f(&x, &y);
    assert!(
        (f - f_exact).abs() <= 1e-5 * f_exact.abs(),
        "f = {f}, closed form {f_exact}"
    );
    // Finite differences with ε = 1e-2 are exact on a quadratic up to f32 round-off
    // (≈ 1e-7 · ‖∇g‖ / ε).
    let mut fd = Oracle::with_mode(&p, SecondOrder::FiniteDifference { eps: 1e-2 });
    let (hv_fd, jv_fd) = fd.hvp_jvp(&xt, &yt, &vt, &full).unwrap();
    let e_h = report(
        name,
        "Hv (finite differences)",
        &host(&hv_fd),
        &form.hvp(&v),
    );
    let e_j = report(
        name,
        "Jv (finite differences)",
        &host(&jv_fd),
        &form.jvp(&v),
    );
    assert!(e_h <= 1e-3 && e_j <= 1e-3, "{e_h:e} {e_j:e}");
    println!("{name}: {:.2}s", clock.elapsed().as_secs_f64());
}

#[test]
fn exact_products_on_least_squares_match_the_closed_form_full_and_mini_batch() {
    let _gpu = serial();
    let clock = Instant::now();
    let device = gpu();
    let data = ls_data();
    let p = data.problem_on::<Gpu>(&device);
    let form = p.closed_form();
    let (x, y, v) = (normal(4, LS_X), normal(5, LS_Y), normal(6, LS_Y));
    let (xt, yt, vt) = (
        vector::<Gpu>(&x, &device),
        vector::<Gpu>(&y, &device),
        vector::<Gpu>(&v, &device),
    );
    let mut oracle = Oracle::new(&p);
    let name = "least squares";
    let (hv, jv) = oracle.hvp_jvp(&xt, &yt, &vt, &Batch::Full).unwrap();
    let e_h = report(name, "Hv (full batch)", &host(&hv), &form.hvp(&v));
    let e_j = report(name, "Jv (full batch)", &host(&jv), &form.jvp(&v));
    assert!(e_h <= 1e-5 && e_j <= 1e-5, "{e_h:e} {e_j:e}");
    // A mini-batch with repeated rows: `select` and its backward, twice differentiated.
    let rows: Vec<usize> = {
        let mut rng = Rng::seed(8);
        match rng.batch(Some(LS_ROWS), Some(24)) {
            Batch::Indices(idx) => idx,
            Batch::Full => unreachable!(),
        }
    };
    let batch = Batch::Indices(rows.clone());
    let (hv, jv) = oracle.hvp_jvp(&xt, &yt, &vt, &batch).unwrap();
    let (hv_exact, jv_exact) = data.batch_products(&rows, &v);
    let e_h = report(name, "Hv (mini-batch)", &host(&hv), &hv_exact);
    let e_j = report(name, "Jv (mini-batch)", &host(&jv), &jv_exact);
    assert!(e_h <= 1e-5 && e_j <= 1e-5, "{e_h:e} {e_j:e}");
    println!("{name}: {:.2}s", clock.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// One estimator per family
// ---------------------------------------------------------------------------------------------

/// Implicit differentiation: AID with `T = 30` GD steps (error `0.6^30 ≈ 2e-7`) and `N = 12`
/// CG steps (exact in `dim y = 12` steps).
#[test]
fn aid_cg_matches_the_closed_form() {
    let _gpu = serial();
    let aid = Aid::new(AidConfig {
        inner_step: QUAD_STEP,
        inner_steps: InnerSteps::Constant { steps: 30 },
        warm_start_inner: false,
        linear_solver: LinearSolver::ConjugateGradient {
            steps: 12,
            tol: 0.0,
        },
        warm_start_linear: false,
        batches: Default::default(),
    })
    .unwrap();
    let (vs_exact, vs_cpu) = quad_estimate("aid-cg", aid);
    assert!(vs_exact <= 1e-4, "aid-cg vs ∇Φ: {vs_exact:e}");
    assert!(vs_cpu <= 1e-4, "aid-cg vs ndarray: {vs_cpu:e}");
}

/// Iterative differentiation: ITD through `T = 30` GD steps (`∇Φ_T` is `0.6^30`-close to `∇Φ`).
#[test]
fn itd_matches_the_closed_form() {
    let _gpu = serial();
    let itd = Itd::new(ItdConfig {
        inner_step: QUAD_STEP,
        inner_steps: 30,
        warm_start: false,
        truncation: None,
    })
    .unwrap();
    let (vs_exact, vs_cpu) = quad_estimate("itd", itd);
    assert!(vs_exact <= 1e-4, "itd vs ∇Φ: {vs_exact:e}");
    assert!(vs_cpu <= 1e-4, "itd vs ndarray: {vs_cpu:e}");
}

/// Stochastic Neumann series: stocBiO with full batches on the quadratic (`T = 30`, `Q = 30`,
/// truncation error `0.6^31`), and with mini-batches on least squares against ndarray-f64 along
/// the same batches.
#[test]
fn stocbio_matches_the_closed_form_and_ndarray_on_mini_batches() {
    let _gpu = serial();
    let full = StocBio::new(StocBioConfig {
        inner_steps: 30,
        inner_step: QUAD_STEP,
        inner_batch: None,
        outer_batch: None,
        jacobian_batch: None,
        hessian_batch: HessianBatch::Fixed(None),
        neumann_terms: 30,
        neumann_step: QUAD_STEP,
    })
    .unwrap();
    let (vs_exact, vs_cpu) = quad_estimate("stocbio (full batch)", full);
    assert!(vs_exact <= 1e-4, "stocbio vs ∇Φ: {vs_exact:e}");
    assert!(vs_cpu <= 1e-4, "stocbio vs ndarray: {vs_cpu:e}");

    let clock = Instant::now();
    let mini = StocBio::new(StocBioConfig {
        inner_steps: 8,
        inner_step: 0.3,
        inner_batch: Some(16),
        outer_batch: Some(16),
        jacobian_batch: Some(16),
        hessian_batch: HessianBatch::Fixed(Some(16)),
        neumann_terms: 8,
        neumann_step: 0.3,
    })
    .unwrap();
    let (g_gpu, g_cpu) = ls_estimates(&mini, &normal(9, LS_X), 3);
    let name = "stocbio (mini-batch)";
    let vs_cpu = report(name, "ndarray-f64", &g_gpu, &g_cpu);
    println!("{name}: {:.2}s", clock.elapsed().as_secs_f64());
    assert!(vs_cpu <= 1e-4, "{name} vs ndarray: {vs_cpu:e}");
}

/// Hessian-free: PZOBO's random estimate, against its host replay in f64 (same directions
/// `u_j` from the same seed) and against ndarray-f64. The inner map is affine in `x`, so
/// `δ_j = (∂y^N/∂x) u_j` for any radius `μ`; `μ = 0.5` keeps the f32 round-off of the
/// difference `y^N_j − y^N` small.
#[test]
fn pzobo_matches_its_host_replay_and_ndarray() {
    let _gpu = serial();
    let (steps, directions, mu, seed) = (30, 3, 0.5, 11);
    let cfg = PzoboConfig {
        inner_steps: steps,
        inner_step: QUAD_STEP,
        directions,
        smoothing_radius: mu,
        inner_start: InnerStart::Zeros,
        inner_batch: None,
        outer_batch: None,
    };
    let clock = Instant::now();
    let (x, y0) = quad_point();
    let p_gpu = quadratic::<Gpu>(&gpu());
    let form = p_gpu.closed_form();
    let g_gpu = estimate_at(&mut Pzobo::new(cfg).unwrap(), &p_gpu, &x, &y0, seed);
    let g_cpu = estimate_at(
        &mut Pzobo::new(cfg).unwrap(),
        &quadratic::<Cpu>(&cpu()),
        &x,
        &y0,
        seed,
    );
    // Host replay: y^N by GD from 0; z_N(u) = ∂y^N/∂x · u by z ← z − α(Hz + Cu) from 0.
    let mut y = vec![0.0; Y_DIM];
    for _ in 0..steps {
        y = axpy(&y, -QUAD_STEP, &form.grad_y_g(&x, &y));
    }
    let grad_y_f = form.grad_y_f(&x, &y);
    let mut expected = form.grad_x_f(&x, &y);
    let mut rng = Rng::seed(seed);
    for _ in 0..directions {
        let u = rng.normal_vec(X_DIM);
        let cu = form.c.matvec(&u);
        let mut z = vec![0.0; Y_DIM];
        for _ in 0..steps {
            z = axpy(&z, -QUAD_STEP, &axpy(&form.hvp(&z), 1.0, &cu));
        }
        let coefficient: f64 = z.iter().zip(&grad_y_f).map(|(a, b)| a * b).sum();
        expected = axpy(&expected, coefficient / directions as f64, &u);
    }
    let name = "pzobo";
    let vs_replay = report(name, "host replay", &g_gpu, &expected);
    let vs_cpu = report(name, "ndarray-f64", &g_gpu, &g_cpu);
    report(
        &format!("{name} (ndarray-f64)"),
        "host replay",
        &g_cpu,
        &expected,
    );
    println!("{name}: {:.2}s", clock.elapsed().as_secs_f64());
    assert!(vs_replay <= 1e-4, "{name} vs host replay: {vs_replay:e}");
    assert!(vs_cpu <= 1e-4, "{name} vs ndarray: {vs_cpu:e}");
}

/// One FSLA iteration in host f64 (`docs/ALGORITHMS.md` "FSLA"), deterministic problem,
/// constant steps.
#[allow(clippy::too_many_arguments)]
fn host_fsla_step(
    form: &QuadraticForm,
    (x, y, v, d): (&[f64], &[f64], &[f64], &[f64]),
    alpha: f64,
    tau: f64,
    beta: f64,
    eta: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let h = |x: &[f64], y: &[f64], v: &[f64]| axpy(&form.grad_x_f(x, y), -1.0, &form.jvp(v));
    let x1 = axpy(x, -alpha, d);
    let y1 = axpy(y, -tau, &form.grad_y_g(&x1, y));
    let v1 = axpy(v, beta, &axpy(&form.grad_y_f(&x1, y), -1.0, &form.hvp(v)));
    let d1 = axpy(&h(&x1, &y1, &v1), 1.0 - eta, &axpy(d, -1.0, &h(x, y, v)));
    (x1, y1, v1, d1)
}

/// Single loop: FSLA (`y`, `v` and the STORM direction updated once per outer step) for 40
/// iterations, against its host replay in f64 and against ndarray-f64; then Lemma 2's CG form
/// of the approximate hypergradient at `y*(x)` against the closed form.
#[test]
fn fsla_matches_its_host_replay_and_the_closed_form() {
    let _gpu = serial();
    let clock = Instant::now();
    let (alpha, iters) = (0.3, 40);
    let cfg = FslaConfig {
        base_step: alpha,
        step_decay: 0.0,
        inner_step_ratio: QUAD_STEP / alpha,
        linear_step_ratio: QUAD_STEP / alpha,
        momentum_ratio: 2.0,
        inner_batch: None,
        outer_batch: None,
        hessian_batch: None,
        jacobian_batch: None,
    };
    let (x0, y0) = quad_point();
    let p_gpu = quadratic::<Gpu>(&gpu());
    let form = p_gpu.closed_form();
    let (x_gpu, y_gpu, v_gpu) =
        run_solver(&mut Fsla::new(cfg).unwrap(), &p_gpu, &x0, &y0, 1, iters);
    let (x_cpu, _, _) = run_solver(
        &mut Fsla::new(cfg).unwrap(),
        &quadratic::<Cpu>(&cpu()),
        &x0,
        &y0,
        1,
        iters,
    );
    let v0 = vec![0.0; Y_DIM];
    let mut it = (x0.clone(), y0.clone(), v0.clone(), {
        axpy(&form.grad_x_f(&x0, &y0), -1.0, &form.jvp(&v0))
    });
    let steps = cfg.steps_at(0);
    for _ in 0..iters {
        it = host_fsla_step(
            form,
            (&it.0, &it.1, &it.2, &it.3),
            steps.outer,
            steps.inner,
            steps.linear,
            steps.momentum,
        );
    }
    let name = "fsla";
    let errors = [
        report(name, "host replay (x_K)", &x_gpu, &it.0),
        report(name, "host replay (y_K)", &y_gpu, &it.1),
        report(name, "host replay (v_K)", &v_gpu, &it.2),
        report(name, "ndarray-f64 (x_K)", &x_gpu, &x_cpu),
    ];
    let g0 = norm(&form.hypergradient(&x0).unwrap());
    let gk = norm(&form.hypergradient(&x_gpu).unwrap());
    println!("{name}: ‖∇Φ(x_0)‖ = {g0:.3e}, ‖∇Φ(x_{iters})‖ = {gk:.3e} on wgpu");
    for e in errors {
        assert!(e <= 1e-4, "{name}: relative error {e:e} > 1e-4");
    }
    assert!(
        gk <= 1e-2 * g0,
        "FSLA did not reduce ‖∇Φ‖ 100×: {g0:e} → {gk:e}"
    );

    // Lemma 2's CG form at y*(x): K = dim y CG steps solve H z = ∇_y f exactly.
    let device = gpu();
    let y_star = form.y_star(&x0).unwrap();
    let mut oracle = Oracle::new(&p_gpu);
    let g = ApproximateHypergradient::ConjugateGradient { steps: Y_DIM }
        .estimate(
            &mut oracle,
            &vector(&x0, &device),
            &vector(&y_star, &device),
            &Batch::Full,
        )
        .unwrap();
    let exact = form.hypergradient(&x0).unwrap();
    let e = report(
        "fsla general form (CG)",
        "closed-form ∇Φ",
        &host(&g),
        &exact,
    );
    println!("{name}: {:.2}s", clock.elapsed().as_secs_f64());
    assert!(e <= 1e-4, "CG general form vs ∇Φ: {e:e}");
}

/// Fixed-point implicit differentiation: SID with the gradient-step contraction (`γ = 0.4`,
/// `t = k = 30` steps, factor `0.6`), deterministic against the closed form, and with
/// mini-batches on least squares against ndarray-f64.
#[test]
fn sid_matches_the_closed_form_and_ndarray_on_mini_batches() {
    let _gpu = serial();
    let deterministic = Sid::new(SidConfig {
        lower_level: LowerLevel::GradientStep { step: QUAD_STEP },
        inner_steps: 30,
        linear_steps: 30,
        batch_size: None,
        inner_batch: None,
        linear_batch: None,
        inner_step_schedule: InnerStepSchedule::Constant { step: 1.0 },
        warm_start_inner: false,
        warm_start_linear: false,
    })
    .unwrap();
    let (vs_exact, vs_cpu) = quad_estimate("sid (deterministic)", deterministic);
    assert!(vs_exact <= 1e-4, "sid vs ∇Φ: {vs_exact:e}");
    assert!(vs_cpu <= 1e-4, "sid vs ndarray: {vs_cpu:e}");

    let clock = Instant::now();
    let mini = Sid::new(SidConfig {
        lower_level: LowerLevel::GradientStep { step: 0.3 },
        inner_steps: 8,
        linear_steps: 8,
        batch_size: Some(32),
        inner_batch: Some(8),
        linear_batch: Some(8),
        inner_step_schedule: InnerStepSchedule::harmonic(2.0, 2.0),
        warm_start_inner: false,
        warm_start_linear: false,
    })
    .unwrap();
    let (g_gpu, g_cpu) = ls_estimates(&mini, &normal(12, LS_X), 4);
    let name = "sid (mini-batch)";
    let vs_cpu = report(name, "ndarray-f64", &g_gpu, &g_cpu);
    println!("{name}: {:.2}s", clock.elapsed().as_secs_f64());
    assert!(vs_cpu <= 1e-4, "{name} vs ndarray: {vs_cpu:e}");
}

/// `g(x, y) = ½yᵀHy + yᵀ(Cx + d)` of [`quadratic`] (it has no constant term).
fn quadratic_g(form: &QuadraticForm, x: &[f64], y: &[f64]) -> f64 {
    let shift = axpy(&form.c.matvec(x), 1.0, &form.d);
    let hy = form.h.matvec(y);
    y.iter()
        .zip(&hy)
        .zip(&shift)
        .map(|((yi, hyi), si)| yi * (0.5 * hyi + si))
        .sum()
}

/// SGM at `(x, y0)`: `(y_out, |I|, ĝ*)`.
fn sgm_solve<B: AutodiffBackend, P: BilevelProblem<B>>(
    sgm: &Sgm,
    problem: &P,
    x: &[f64],
    y0: &[f64],
) -> (Vec<f64>, usize, f64) {
    let device = problem.device();
    let mut oracle = Oracle::new(problem);
    let out = sgm
        .solve(&mut oracle, &vector(x, &device), vector(y0, &device))
        .unwrap();
    (
        host(&out.solution),
        out.feasible_steps,
        out.lower_value_estimate,
    )
}

/// One IGFM estimate at `(x, y0)`: `(ĝ, y_out at x + δu, y_out at x − δu, |I⁺| + |I⁻|)`.
fn igfm_estimate<B: AutodiffBackend, P: BilevelProblem<B>>(
    cfg: &IgfmConfig,
    problem: &P,
    x: &[f64],
    y0: &[f64],
    seed: u64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, f64) {
    let device = problem.device();
    let mut oracle = Oracle::new(problem);
    let mut state = State::new(vector(x, &device), vector(y0, &device), seed);
    let g = IgfmEstimator::new(cfg.clone())
        .unwrap()
        .estimate(&mut oracle, &mut state)
        .unwrap();
    (
        host(&g),
        host(&state.memory[LOWER_SOLUTION_PLUS]),
        host(&state.memory[LOWER_SOLUTION_MINUS]),
        state.scalars[FEASIBLE_STEPS],
    )
}

/// Lower level without strong convexity (paper 003): SGM (Alg. 1) and one IGFM estimate
/// (Alg. 2, zeroth order). Here `g` is 1-strongly convex, so `Y*(x) = {y*(x)}`, and every
/// iterate SGM averages has `g(x, y) − g* ≤ 2θ + (ĝ* − g*)`, hence `‖y − y*‖ ≤ r =
/// √(2(2θ + ĝ* − g*))`: so does `y_out` (`θ = 1e-4`, far above the f32 round-off of `g`).
/// IGFM's estimate is `d(f(x + δu, y⁺) − f(x − δu, y⁻))/2δ · u` with SGM's outputs `y±`
/// (recomputed on the host); `Φ` is quadratic, so with exact lower solutions it would be
/// `d⟨∇Φ(x), u⟩u`. Both also match ndarray-f64 (same switching decisions, same direction `u`).
#[test]
fn sgm_and_igfm_match_the_closed_form_and_ndarray() {
    let _gpu = serial();
    let clock = Instant::now();
    let theta = 1e-4;
    let sgm_cfg = SgmConfig {
        step: 0.25,
        lower_value_steps: 40,
        switching_steps: 60,
        feasibility_threshold: theta,
        lower_constraint: Constraint::Unconstrained,
    };
    let sgm = Sgm::new(sgm_cfg.clone()).unwrap();
    let p_gpu = quadratic::<Gpu>(&gpu());
    let p_cpu = quadratic::<Cpu>(&cpu());
    let form = p_gpu.closed_form();
    let (x, y0) = quad_point();
    let (y_gpu, feasible, g_hat) = sgm_solve(&sgm, &p_gpu, &x, &y0);
    let (y_cpu, feasible_cpu, _) = sgm_solve(&sgm, &p_cpu, &x, &y0);
    // The radius of the feasible iterates around y*, with 1e-5 for the f32 round-off of g.
    let radius_at = |x: &[f64], g_hat: f64| {
        let y_star = form.y_star(x).unwrap();
        let g_star = quadratic_g(form, x, &y_star);
        (2.0 * (2.0 * theta + (g_hat - g_star).max(0.0) + 1e-5)).sqrt()
    };
    let r = radius_at(&x, g_hat);
    let dist = norm(&axpy(&y_gpu, -1.0, &form.y_star(&x).unwrap()));
    let name = "sgm";
    println!("{name}: ‖y_out − y*(x)‖ = {dist:.3e} ≤ r = {r:.3e}, |I| = {feasible} of 60");
    let vs_cpu = report(name, "ndarray-f64", &y_gpu, &y_cpu);
    assert!(feasible >= 2, "|I| = {feasible}");
    assert_eq!(
        feasible, feasible_cpu,
        "switching decisions differ from ndarray-f64"
    );
    assert!(dist <= r, "‖y_out − y*‖ = {dist:e} > {r:e}");
    assert!(vs_cpu <= 1e-4, "{name} vs ndarray: {vs_cpu:e}");

    let (delta, seed) = (0.1, 9);
    let igfm_cfg = IgfmConfig {
        step: 0.1,
        smoothing_radius: delta,
        lower_solver: sgm_cfg,
        warm_start: false,
    };
    let (g_gpu, y_plus, y_minus, feasible) = igfm_estimate(&igfm_cfg, &p_gpu, &x, &y0, seed);
    let (g_cpu, _, _, feasible_cpu) = igfm_estimate(&igfm_cfg, &p_cpu, &x, &y0, seed);
    // u as the estimator draws it: the reservoir draw, then z/‖z‖.
    let mut rng = Rng::seed(seed);
    rng.index(1);
    let z = rng.normal_vec(X_DIM);
    let u: Vec<f64> = z.iter().map(|v| v / norm(&z)).collect();
    let (x_plus, x_minus) = (axpy(&x, delta, &u), axpy(&x, -delta, &u));
    let scale = X_DIM as f64 / (2.0 * delta);
    let two_point = scale * (form.f(&x_plus, &y_plus) - form.f(&x_minus, &y_minus));
    let formula: Vec<f64> = u.iter().map(|v| two_point * v).collect();
    let slope: f64 = (form.hypergradient(&x).unwrap().iter())
        .zip(&u)
        .map(|(a, b)| a * b)
        .sum();
    let exact: Vec<f64> = u.iter().map(|v| X_DIM as f64 * slope * v).collect();
    let name = "igfm";
    let vs_formula = report(name, "host two-point formula at SGM's y±", &g_gpu, &formula);
    let vs_exact = report(name, "d⟨∇Φ(x), u⟩u (exact lower solutions)", &g_gpu, &exact);
    let vs_cpu = report(name, "ndarray-f64", &g_gpu, &g_cpu);
    for (xs, ys) in [(&x_plus, &y_plus), (&x_minus, &y_minus)] {
        let y_star = form.y_star(xs).unwrap();
        // ĝ* is within 1e-9 of g* here (K₀ = 40 steps contracting by 0.75).
        let r = radius_at(xs, quadratic_g(form, xs, &y_star));
        let dist = norm(&axpy(ys, -1.0, &y_star));
        println!("{name}: ‖y± − y*(x ± δu)‖ = {dist:.3e} ≤ r = {r:.3e}");
        assert!(dist <= r, "{name}: ‖y± − y*‖ = {dist:e} > {r:e}");
    }
    println!("{name}: |I⁺| + |I⁻| = {feasible}");
    println!("sgm + igfm: {:.2}s", clock.elapsed().as_secs_f64());
    assert_eq!(
        feasible, feasible_cpu,
        "switching decisions differ from ndarray-f64"
    );
    assert!(vs_formula <= 1e-3, "{name} vs its formula: {vs_formula:e}");
    // SGM's φ̃ at θ = 1e-4 is accurate enough that the estimate is within 2% of the exact
    // two-point value (measured 2.9e-3).
    assert!(vs_exact <= 2e-2, "{name} vs d⟨∇Φ, u⟩u: {vs_exact:e}");
    assert!(vs_cpu <= 1e-3, "{name} vs ndarray: {vs_cpu:e}");
}

/// A short outer run through [`Executor`]: AID-CG with warm starts (`T = N = 5`) and SGD, 30
/// iterations on a well-conditioned instance.
#[test]
fn aid_cg_outer_run_reduces_the_hypergradient_norm() {
    let _gpu = serial();
    let clock = Instant::now();
    let device = gpu();
    let p = QuadraticBilevel::<Gpu>::random(
        &QuadraticSpec {
            x_dim: 5,
            y_dim: 8,
            max_curvature: 10.0,
            x_regularization: 1.0,
            seed: 21,
            ..Default::default()
        },
        &device,
    )
    .unwrap();
    let form = p.closed_form();
    let solver = OuterLoop::new(
        Aid::new(AidConfig {
            inner_step: 0.15,
            inner_steps: InnerSteps::Constant { steps: 5 },
            warm_start_inner: true,
            linear_solver: LinearSolver::ConjugateGradient { steps: 5, tol: 0.0 },
            warm_start_linear: true,
            batches: Default::default(),
        })
        .unwrap(),
        OuterOptimizer::sgd(0.4),
    );
    let iters = 30;
    let start = State::new(vector(&[0.0; 5], &device), vector(&[0.0; 8], &device), 0);
    let outcome = Executor::new(&p, solver)
        .configure(|c| ExecutorConfig {
            max_iters: iters,
            ..c
        })
        .run(start)
        .unwrap();
    assert_eq!(outcome.termination, TerminationReason::MaxItersReached);
    assert_eq!(outcome.state.iter, iters);
    let first = norm(&form.hypergradient(&[0.0; 5]).unwrap());
    let last = norm(&form.hypergradient(&host(&outcome.state.x)).unwrap());
    let x_star = form.x_star().unwrap();
    let dist = rel_err_host(&host(&outcome.state.x), &x_star);
    println!(
        "aid-cg outer run: ‖∇Φ(x_0)‖ = {first:.3e}, ‖∇Φ(x_{iters})‖ = {last:.3e} (reduction \
         {:.1e}×), ‖x − x*‖/‖x*‖ = {dist:.2e}, {:.2}s",
        first / last,
        clock.elapsed().as_secs_f64()
    );
    assert!(first > 0.5, "‖∇Φ(x_0)‖ = {first}");
    assert!(last <= 1e-4 * first, "‖∇Φ‖: {first:e} → {last:e}");
}

// ---------------------------------------------------------------------------------------------
// One model
// ---------------------------------------------------------------------------------------------

const SAMPLES: usize = 8;
const FEATURES: usize = 5;
const HIDDEN: usize = 6;
const EMBEDDING: usize = 4;
const CLASSES: usize = 3;

/// PZOBO §4.1's representation problem on a two-layer MLP: `x` = the embedding's parameters
/// (`5·6 + 6 + 6·4 + 4 = 64`), `y` = a linear head on it (`4·3 + 3 = 15`);
/// `g = CE(head(mlp(a)), t) + (l2/2)‖y‖²`, `f = CE` on other samples.
struct Representation<B: Backend> {
    inputs: Tensor<B, 2>,
    targets: Tensor<B, 2>,
    val_inputs: Tensor<B, 2>,
    val_targets: Tensor<B, 2>,
    mlp: MlpConfig,
    head: LinearConfig,
    l2: f64,
    device: B::Device,
}

impl<B: Backend> Representation<B> {
    fn new(device: &B::Device) -> Self {
        let mut rng = Rng::seed(31);
        let matrix = |rng: &mut Rng| {
            Tensor::from_data(
                TensorData::new(rng.normal_vec(SAMPLES * FEATURES), [SAMPLES, FEATURES])
                    .convert::<B::FloatElem>(),
                device,
            )
        };
        let onehot = |labels: &[usize]| {
            let mut v = vec![0.0; SAMPLES * CLASSES];
            for (i, &l) in labels.iter().enumerate() {
                v[i * CLASSES + l] = 1.0;
            }
            Tensor::from_data(
                TensorData::new(v, [SAMPLES, CLASSES]).convert::<B::FloatElem>(),
                device,
            )
        };
        Self {
            inputs: matrix(&mut rng),
            targets: onehot(&[0, 1, 2, 0, 1, 2, 0, 1]),
            val_inputs: matrix(&mut rng),
            val_targets: onehot(&[2, 1, 0, 2, 1, 0, 2, 1]),
            mlp: MlpConfig::new(FEATURES, HIDDEN, EMBEDDING)
                .with_output_activation(Activation::Tanh),
            head: LinearConfig::new(EMBEDDING, CLASSES),
            l2: 0.1,
            device: device.clone(),
        }
    }

    fn logits<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        a: Tensor<B, 2>,
    ) -> Tensor<C, 2> {
        let mlp: Mlp<C> = unflatten(self.mlp.init(&Default::default()), x).unwrap();
        let head: Linear<C> = unflatten(self.head.init(&Default::default()), y).unwrap();
        head.forward(mlp.forward(C::lift(a)))
    }

    /// He-normal `x` and `y` from a seed (not `Config::init`, whose generator is shared).
    fn point(&self, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut rng = Rng::seed(seed);
        let x = he_normal_init(&self.mlp.init::<B>(&self.device), VectorInit::Zeros, |n| {
            rng.normal_vec(n)
        });
        let mut y = he_normal_init(&self.head.init::<B>(&self.device), VectorInit::Zeros, |n| {
            rng.normal_vec(n)
        });
        // Non-zero biases, so that their products are exercised too.
        let k = EMBEDDING * CLASSES;
        y[k..].copy_from_slice(&rng.normal_vec(CLASSES));
        (x, y)
    }
}

impl<B: Backend> BilevelProblem<B> for Representation<B> {
    fn x_dim(&self) -> usize {
        self.mlp.num_params()
    }
    fn y_dim(&self) -> usize {
        self.head.num_params()
    }
    fn device(&self) -> B::Device {
        self.device.clone()
    }
    fn inner_loss<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>, _: &Batch) -> Tensor<C, 1> {
        let logits = self.logits(x, y.clone(), self.inputs.clone());
        mean(cross_entropy_per_sample(
            logits,
            C::lift(self.targets.clone()),
        ))
        .add(y.powi_scalar(2).sum().mul_scalar(0.5 * self.l2))
    }
    fn outer_loss<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>, _: &Batch) -> Tensor<C, 1> {
        let logits = self.logits(x, y, self.val_inputs.clone());
        mean(cross_entropy_per_sample(
            logits,
            C::lift(self.val_targets.clone()),
        ))
    }
}

/// Host `(Hv, Jv, ∇_y g, ∇_x f, ∇_y f)` and an AID-CG estimate of the model at its seeded
/// point, on backend `B`.
fn model_products<B: AutodiffBackend>(device: &B::Device) -> [Vec<f64>; 6] {
    let p = Representation::<B>::new(device);
    let (x, y) = p.point(41);
    let v = normal(42, p.y_dim());
    let (xt, yt, vt) = (
        vector::<B>(&x, device),
        vector(&y, device),
        vector(&v, device),
    );
    let mut oracle = Oracle::new(&p);
    let (hv, jv) = oracle.hvp_jvp(&xt, &yt, &vt, &Batch::Full).unwrap();
    let gg = oracle.grad_g(&xt, &yt, &Batch::Full).unwrap();
    let gf = oracle.grad_f(&xt, &yt, &Batch::Full).unwrap();
    let mut aid = Aid::new(AidConfig {
        inner_step: 0.5,
        inner_steps: InnerSteps::Constant { steps: 10 },
        warm_start_inner: true,
        linear_solver: LinearSolver::ConjugateGradient {
            steps: 10,
            tol: 0.0,
        },
        warm_start_linear: false,
        batches: Default::default(),
    })
    .unwrap();
    let g = estimate_at(&mut aid, &p, &x, &y, 0);
    [
        host(&hv),
        host(&jv),
        host(&gg.y),
        host(&gf.x),
        host(&gf.y),
        g,
    ]
}

#[test]
fn mlp_products_and_aid_estimate_match_ndarray_f64() {
    let _gpu = serial();
    let clock = Instant::now();
    let on_gpu = model_products::<Gpu>(&gpu());
    let on_cpu = model_products::<Cpu>(&cpu());
    let names = ["Hv", "Jv", "∇_y g", "∇_x f", "∇_y f", "AID-CG ĝ"];
    for ((name, a), b) in names.iter().zip(&on_gpu).zip(&on_cpu) {
        let e = report("mlp representation", &format!("ndarray-f64 ({name})"), a, b);
        assert!(norm(b) > 1e-3, "{name} is (nearly) zero: {}", norm(b));
        assert!(e <= 1e-4, "mlp {name}: wgpu vs ndarray-f64 {e:e}");
    }
    println!("mlp representation: {:.2}s", clock.elapsed().as_secs_f64());
}
