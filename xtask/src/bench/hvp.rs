//! Case 3: Hessian-vector products of hyper-cleaning's inner objective by each [`HvpKind`], and
//! their agreement with the nested-autodiff product.

use anyhow::Result;
use bilevel_bench::{sync, Derivatives, HvpPoint, DC, SEED};
use bilevel_core::tensor::rel_err;
use bilevel_core::{Batch, BilevelProblem, Oracle, SecondOrder};
use bilevel_data::Mnist;
use bilevel_problems::common::{matrix_f32, split_mnist, MNIST_CLASSES};
use bilevel_problems::hyper_cleaning::{HyperCleaning, HyperCleaningSpec};
use bilevel_problems::linear_ce::{RowBlocks, BLOCK_ELEMENTS};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use super::closed_form::{contiguous_transpose, Layout, LinearCeHessian};
use super::memory;
use super::options::{Options, Runtime};
use super::report::{time, to_mib, HvpAgreement, Row};
#[cfg(doc)]
use bilevel_bench::Estimator;

/// How an HVP is computed (case 3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum HvpKind {
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
    pub(super) const ALL: [HvpKind; 7] = [
        HvpKind::Autodiff,
        HvpKind::OracleClosed,
        HvpKind::FiniteDifference,
        HvpKind::Closed,
        HvpKind::ClosedView,
        HvpKind::ClosedBlocked,
        HvpKind::ClosedSetup,
    ];

    pub(super) fn key(self) -> &'static str {
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

    pub(super) fn parse(key: &str) -> Option<Self> {
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
pub(super) struct HvpSetup<B: AutodiffBackend> {
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
    pub(super) fn new(
        mnist: &Mnist,
        opts: &Options,
        problem: &HyperCleaning<B>,
        eps: f64,
    ) -> Result<Self> {
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
    pub(super) fn runner<'a>(
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

/// Relative differences of the closed-form and finite-difference products from the
/// nested-autodiff one ([`SecondOrder::Autodiff`]).
pub(super) fn hvp_agreement<B: AutodiffBackend>(
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
pub(super) fn hvp_cases<B: AutodiffBackend>(
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
