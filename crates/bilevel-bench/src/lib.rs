//! The benchmark cases of bilevel-rs (issue #8), shared by the two harnesses:
//!
//! - `cargo bench -p bilevel-bench` (criterion, `benches/hypergradient.rs`): statistics per case
//!   (confidence intervals, outliers, change against a saved baseline with
//!   `-- --save-baseline NAME` / `-- --baseline NAME`);
//! - `cargo xtask-release bench` (`xtask/src/bench.rs`): the report with GFLOP/s, oracle call
//!   counts, peak memory per case (a child process each), the closed-form-vs-autodiff ratio
//!   table, a meta-learning CNN4 case and the ndarray/wgpu ratios.
//!
//! The problem is data hyper-cleaning on MNIST (paper 004, App. A: linear `784×10` classifier,
//! one weight `σ(λ_i)` per training image; by default `n = 20 000` train / `5 000` validation
//! images, [`spec`]). One case is one hypergradient by an [`Estimator`] from a fresh state
//! `(λ, W) = (0, 0)`, or one Hessian-vector product `∇²_yy g · v` at [`HvpPoint`], through an
//! [`Oracle`] in a [`SecondOrder`] mode: [`SecondOrder::Exact`] (the default: the problem's
//! hand-derived derivatives, [`BilevelProblem::closed_form`]), [`SecondOrder::Autodiff`]
//! (autodiff gradients, nested-autodiff `Autodiff<Autodiff<B>>` products) or
//! [`SecondOrder::FiniteDifference`]. [`Derivatives::of`] says which derivatives a mode
//! actually uses on a problem.

use bilevel_algorithms::aid::{Aid, AidConfig, InnerSteps, LinearSolver};
use bilevel_algorithms::itd::{Itd, ItdConfig};
use bilevel_algorithms::stocbio::{HessianBatch, StocBio, StocBioConfig};
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::vector;
use bilevel_core::{
    Batch, BilevelError, BilevelProblem, HypergradientEstimator, Oracle, OracleCounts, SecondOrder,
    State,
};
use bilevel_problems::common::MNIST_CLASSES;
use bilevel_problems::hyper_cleaning::HyperCleaningSpec;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

/// Seed of the data split and of the random point of the HVP cases.
pub const SEED: u64 = 0;
/// Features `d` times classes `c` of the hyper-cleaning classifier (`W ∈ ℝ^{d×c}`).
pub const DC: usize = 784 * MNIST_CLASSES;
/// `T`: inner gradient steps of every estimator.
pub const INNER_STEPS: usize = 10;
/// `N`: steps of AID's linear solver.
pub const LINEAR_STEPS: usize = 10;
/// `Q`: Neumann terms of stocBiO.
pub const NEUMANN_TERMS: usize = 10;
/// stocBiO's batch sizes (`B = S = D`).
pub const STOCBIO_BATCH: usize = 50;

/// The hyper-cleaning problem of the benchmarks: `train` / `val` images, the paper's other
/// settings (10 % corrupted labels, `C_r = 10⁻³`, no bias); one test image (evaluation data is
/// never touched).
pub fn spec(train: usize, val: usize) -> HyperCleaningSpec {
    HyperCleaningSpec {
        train,
        val,
        test: 1,
        ..HyperCleaningSpec::default()
    }
}

/// Waits for the device's queued work (a no-op on NdArray; required before reading a clock on
/// lazy backends such as wgpu).
pub fn sync<B: Backend>(device: &B::Device) -> Result<(), BilevelError> {
    B::sync(device).map_err(|e| BilevelError::Backend(format!("device sync failed: {e:?}")))
}

/// What an oracle actually differentiates with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Derivatives {
    /// The problem's hand-derived gradients and products ([`BilevelProblem::closed_form`]).
    ClosedForm,
    /// Autodiff gradients, nested-autodiff products.
    Autodiff,
    /// Central finite differences of autodiff gradients.
    FiniteDifference,
}

impl Derivatives {
    /// What an oracle in `mode` uses on `problem`.
    pub fn of<B: AutodiffBackend, P: BilevelProblem<B>>(problem: &P, mode: SecondOrder) -> Self {
        match mode {
            SecondOrder::Exact if problem.closed_form().is_some() => Derivatives::ClosedForm,
            SecondOrder::Exact | SecondOrder::Autodiff => Derivatives::Autodiff,
            SecondOrder::FiniteDifference { .. } => Derivatives::FiniteDifference,
        }
    }

    /// `closed-form`, `autodiff` or `finite-difference`.
    pub fn label(self) -> &'static str {
        match self {
            Derivatives::ClosedForm => "closed-form",
            Derivatives::Autodiff => "autodiff",
            Derivatives::FiniteDifference => "finite-difference",
        }
    }

    /// Data-matrix flops of one second-order product, in `n·d·c` units (see
    /// [`Estimator::matmul_flops`]).
    pub fn product_units(self) -> f64 {
        match self {
            Derivatives::ClosedForm => 6.0,
            Derivatives::Autodiff | Derivatives::FiniteDifference => 8.0,
        }
    }

    /// A note on what an oracle in `mode` computes with these derivatives.
    pub fn note(self, mode: SecondOrder) -> &'static str {
        match (mode, self) {
            (SecondOrder::Exact, Derivatives::ClosedForm) => "SecondOrder::Exact = closed form",
            (SecondOrder::Exact, _) => "SecondOrder::Exact = autodiff (no closed form)",
            (SecondOrder::Autodiff, _) => "SecondOrder::Autodiff",
            (SecondOrder::FiniteDifference { .. }, _) => "SecondOrder::FiniteDifference",
        }
    }
}

/// The estimators timed per hypergradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Estimator {
    /// AID-BiO, `T` warm-started inner steps, `N` conjugate-gradient steps.
    AidCg,
    /// AID-BiO, `T` inner steps, `N` fixed-point (Neumann) steps.
    AidFp,
    /// ITD-BiO, reverse mode through `T` inner steps.
    Itd(usize),
    /// stocBiO, batches of [`STOCBIO_BATCH`], `T` inner steps, `Q` Neumann terms.
    StocBio,
}

impl Estimator {
    /// The four estimators of the hypergradient cases (ITD with `T` = [`INNER_STEPS`]).
    pub const ALL: [Estimator; 4] = [
        Estimator::AidCg,
        Estimator::AidFp,
        Estimator::Itd(INNER_STEPS),
        Estimator::StocBio,
    ];

    /// `aid-cg`, `aid-fp`, `itd-<T>`, `stocbio`.
    pub fn key(self) -> String {
        match self {
            Estimator::AidCg => "aid-cg".into(),
            Estimator::AidFp => "aid-fp".into(),
            Estimator::Itd(t) => format!("itd-{t}"),
            Estimator::StocBio => "stocbio".into(),
        }
    }

    /// The inverse of [`Estimator::key`].
    pub fn parse(key: &str) -> Option<Self> {
        match key {
            "aid-cg" => Some(Estimator::AidCg),
            "aid-fp" => Some(Estimator::AidFp),
            "stocbio" => Some(Estimator::StocBio),
            _ => key.strip_prefix("itd-")?.parse().ok().map(Estimator::Itd),
        }
    }

    /// Its settings, for reports.
    pub fn describe(self) -> String {
        match self {
            Estimator::AidCg => format!("T={INNER_STEPS}, N={LINEAR_STEPS} CG"),
            Estimator::AidFp => format!("T={INNER_STEPS}, N={LINEAR_STEPS} fixed point"),
            Estimator::Itd(t) => format!("T={t}"),
            Estimator::StocBio => {
                format!("B=S=D={STOCBIO_BATCH}, T={INNER_STEPS}, Q={NEUMANN_TERMS}")
            }
        }
    }

    /// Flops of the products with the data matrix in one hypergradient (`n` train, `n_v`
    /// validation samples; `dc = d·c`). A gradient costs the forward `X W` and the backward
    /// `Xᵀ G` (`4·n·dc`) on either path. A second-order product (HVP, JVP, or ITD's `hvp_jvp`)
    /// costs, by nested autodiff (one double backward), `X W`, `Xᵀ G` on the first level and
    /// `X V`, `Xᵀ G'` on the second (`8·n·dc`); by the problem's closed form
    /// (`bilevel_problems::linear_ce`), `X [W V]` and `Xᵀ R` (`6·n·dc`: `softmax(X W)` is
    /// recomputed in every call, and a JVP shares the HVP's products).
    pub fn matmul_flops(self, n: usize, n_v: usize, derivs: Derivatives) -> f64 {
        let (n, n_v, dc) = (n as f64, n_v as f64, DC as f64);
        let t = INNER_STEPS as f64;
        let p = derivs.product_units();
        dc * match self {
            Estimator::AidCg | Estimator::AidFp => {
                t * 4.0 * n + 4.0 * n_v + (LINEAR_STEPS as f64 + 1.0) * p * n
            }
            Estimator::Itd(steps) => {
                let steps = steps as f64;
                steps * 4.0 * n + 4.0 * n_v + steps * p * n
            }
            Estimator::StocBio => {
                let b = STOCBIO_BATCH as f64;
                t * 4.0 * b + 4.0 * b + NEUMANN_TERMS as f64 * p * b + p * b
            }
        }
    }

    /// One hypergradient from a fresh state `(x, y) = (0, 0)` (so that every run does the same
    /// work: AID's CG starts from `v = 0`, i.e. exactly `N` HVPs) through an oracle in `mode`,
    /// with the device synchronised before it returns; returns the oracle calls.
    pub fn run<B: AutodiffBackend, P: BilevelProblem<B>>(
        self,
        problem: &P,
        mode: SecondOrder,
    ) -> Result<OracleCounts, BilevelError> {
        let device = problem.device();
        let x = Tensor::<B, 1>::zeros([problem.x_dim()], &device);
        let y = Tensor::<B, 1>::zeros([problem.y_dim()], &device);
        let mut state = State::new(x, y, SEED);
        let mut oracle = Oracle::with_mode(problem, mode);
        let aid = |linear_solver| AidConfig {
            inner_step: 0.1,
            inner_steps: InnerSteps::Constant { steps: INNER_STEPS },
            warm_start_inner: true,
            linear_solver,
            warm_start_linear: true,
            batches: Default::default(),
        };
        let g = match self {
            Estimator::AidCg => Aid::new(aid(LinearSolver::ConjugateGradient {
                steps: LINEAR_STEPS,
                tol: 0.0,
            }))?
            .estimate(&mut oracle, &mut state)?,
            Estimator::AidFp => Aid::new(aid(LinearSolver::FixedPoint {
                step: 0.1,
                steps: LINEAR_STEPS,
            }))?
            .estimate(&mut oracle, &mut state)?,
            Estimator::Itd(steps) => Itd::new(ItdConfig {
                inner_step: 0.1,
                inner_steps: steps,
                warm_start: true,
                truncation: None,
            })?
            .estimate(&mut oracle, &mut state)?,
            Estimator::StocBio => StocBio::new(StocBioConfig {
                inner_steps: INNER_STEPS,
                inner_step: 0.1,
                inner_batch: Some(STOCBIO_BATCH),
                outer_batch: Some(STOCBIO_BATCH),
                jacobian_batch: Some(STOCBIO_BATCH),
                hessian_batch: HessianBatch::Fixed(Some(STOCBIO_BATCH)),
                neumann_terms: NEUMANN_TERMS,
                neumann_step: 0.5,
            })?
            .estimate(&mut oracle, &mut state)?,
        };
        sync::<B>(&device)?;
        drop(g);
        Ok(oracle.counts())
    }
}

/// The point and direction of the HVP cases: `x ~ N(0, 1)` (hyper-cleaning's `λ`),
/// `y ~ N(0, 0.05²)` (`W`), `v ~ N(0, 1)`, seeded from [`SEED`].
pub struct HvpPoint<B: Backend> {
    /// Upper-level point.
    pub x: Tensor<B, 1>,
    /// Lower-level point.
    pub y: Tensor<B, 1>,
    /// Direction.
    pub v: Tensor<B, 1>,
}

impl<B: AutodiffBackend> HvpPoint<B> {
    /// The seeded point for `problem`'s dimensions.
    pub fn new<P: BilevelProblem<B>>(problem: &P) -> Self {
        let device = problem.device();
        let mut rng = Rng::seed(SEED ^ 0x4e55);
        let x = vector(&rng.normal_vec(problem.x_dim()), &device);
        let w: Vec<f64> = rng
            .normal_vec(problem.y_dim())
            .iter()
            .map(|w| 0.05 * w)
            .collect();
        let y = vector(&w, &device);
        let v = vector(&rng.normal_vec(problem.y_dim()), &device);
        Self { x, y, v }
    }

    /// `∇²_yy g(x, y) v` on the full batch through an oracle in `mode`, synchronised.
    pub fn hvp<P: BilevelProblem<B>>(
        &self,
        problem: &P,
        mode: SecondOrder,
    ) -> Result<Tensor<B, 1>, BilevelError> {
        let out = Oracle::with_mode(problem, mode).hvp(&self.x, &self.y, &self.v, &Batch::Full)?;
        sync::<B>(&problem.device())?;
        Ok(out)
    }
}
