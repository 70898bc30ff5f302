//! Case 5, `meta/cnn4/<estimator>`: one hypergradient of few-shot meta-learning
//! ([`bilevel_problems::meta_learning`]: CNN4 backbone `x`, one linear head per task `y`) on a
//! task batch, by each estimator `reproduce meta-learning` runs (ITD-BiO on the heads, AID-BiO with
//! CG, PZOBO, BSGM), with the hyper-parameters of its plan (`assets/experiments/meta-learning.toml`).
//!
//! Sizes ([`Sizes`]): 5-way 5-shot, 15 query images per class, a task batch of 4 tasks, CNN4
//! with 32 filters, `T = N = 10` (the full plan's steps); `--quick`: 2 tasks, 8 filters,
//! `T = N = 5` (the quick plan's CNN4 and steps). The spec's default CNN4 has 64 filters (see
//! [`FILTERS`] for why the bench uses 32). The problem's pool holds exactly the batch's tasks,
//! so the deterministic estimators' `Batch::Full` *is* the task batch, and BSGM samples batches
//! of that size from it. Images: synthetic glyphs, 28×28 (the problem's default data, a
//! labelled substitute for miniImageNet / Omniglot, which cannot be obtained offline). Every
//! run starts from the problem's seeded initial point (He-normal backbone, zero heads),
//! computed once outside the clock. At most [`MAX_REPEATS`] timed runs per case.
//!
//! The oracle runs with [`SecondOrder::Exact`]: the problem has no closed form, so that is
//! autodiff gradients and nested-autodiff products through the whole backbone. GFLOP/s is not
//! given (the convolutions' flops are not counted). Peak memory: the same child-process
//! measurement as the other cases ([`super::memory`]), ndarray only.

use anyhow::{bail, Result};
use bilevel_algorithms::aid::{Aid, AidConfig, InnerSteps, LinearSolver};
use bilevel_algorithms::itd::{Itd, ItdConfig};
use bilevel_algorithms::pzobo::{Pzobo, PzoboConfig};
use bilevel_algorithms::sid::{LowerLevel, Sid, SidConfig};
use bilevel_bench::{sync, Derivatives, SEED};
use bilevel_core::State;
use bilevel_core::{BilevelProblem, HypergradientEstimator, Oracle, OracleCounts, SecondOrder};
use bilevel_problems::meta_learning::{MetaLearning, MetaLearningSpec};
use bilevel_problems::Application;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use super::memory;
use super::options::{Options, Runtime};
use super::report::{time, to_mib, Row};

/// Prefix of the case names.
pub(super) const PREFIX: &str = "meta/cnn4/";

/// Prefix of the case at the spec's 64 filters (AID-CG only; not with `--quick`).
pub(super) const WIDE_PREFIX: &str = "meta/cnn4-64/";

/// Prefix of the memory-child cases (`meta-<estimator>`).
pub(super) const MEMORY_PREFIX: &str = "meta-";

/// The report's note when meta-learning rows ran.
pub(super) const NOTE: &str = "meta/cnn4 runs on synthetic glyphs (bilevel_data::synthetic, \
    28×28), a labelled substitute for miniImageNet / Omniglot, which cannot be obtained offline; \
    CNN4 with 32 filters (8 with --quick) and, for AID-CG, the meta-learning spec's default 64 \
    (meta/cnn4-64/aid-cg; not with --quick); at most 3 timed runs per case; GFLOP/s is not \
    counted for the convolutions (–)";

/// Inner (and BSGM's lower-level) step `α = γ`: the `reproduce meta-learning` plan's.
const INNER_STEP: f64 = 0.1;

/// CNN4 filters of the full case: 32, the CNN4 of paper 004's miniImageNet runs (MAML / ANIL's
/// Conv-4). The meta-learning spec's (and full `reproduce meta-learning`'s) default is 64: one
/// PZOBO hypergradient took 71.7 s with 64 filters and 4 tasks on the 2-core bench machine
/// (about 4× the 32-filter cost; ITD does about 2.5× PZOBO's work), too long for a bench run.
const FILTERS: usize = 32;

/// Most timed runs of a meta-learning case (after the warm-up): one full-size ITD
/// hypergradient takes about a minute on 2 cores.
const MAX_REPEATS: usize = 3;

/// The sizes of the case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Sizes {
    /// Tasks in the batch (= the problem's pool).
    pub(super) tasks: usize,
    /// CNN4 filters per block.
    pub(super) filters: usize,
    /// Inner steps `T` (ITD, AID, PZOBO's `N`, BSGM's `t`), CG steps `N` (AID) and BSGM's `k`.
    pub(super) steps: usize,
}

impl Sizes {
    /// The spec's 64 filters, otherwise as the full case.
    fn wide() -> Self {
        Self {
            filters: 64,
            ..Self::new(false)
        }
    }

    /// The sizes a memory child's `filters` names (see [`memory_key`]).
    fn of_filters(quick: bool, filters: usize) -> Self {
        if !quick && filters == 64 {
            Self::wide()
        } else {
            Self::new(quick)
        }
    }

    /// Full: 4 tasks, 32 filters, `T = N = 10` (the full plan's steps). Quick: 2 tasks, 8
    /// filters (the quick plan's CNN4), `T = N = 5` (the quick plan's steps).
    pub(super) fn new(quick: bool) -> Self {
        if quick {
            Self {
                tasks: 2,
                filters: 8,
                steps: 5,
            }
        } else {
            Self {
                tasks: 4,
                filters: FILTERS,
                steps: 10,
            }
        }
    }
}

/// The problem: 5-way 5-shot, 15 queries per class, one task per batch slot, synthetic glyphs
/// at their default 28×28; one meta-test episode (never evaluated here).
#[cfg(test)]
pub(super) fn spec(quick: bool) -> MetaLearningSpec {
    spec_of(Sizes::new(quick))
}

fn spec_of(sizes: Sizes) -> MetaLearningSpec {
    MetaLearningSpec {
        n_way: 5,
        k_shot: 5,
        n_query: 15,
        tasks: sizes.tasks,
        filters: sizes.filters,
        eval_episodes: 1,
        head_steps: 1,
        ..MetaLearningSpec::default()
    }
}

/// The estimators of `reproduce meta-learning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MetaEstimator {
    /// ITD-BiO: ITD on the heads (from zero heads; not ANIL, which learns their initialisation).
    Itd,
    /// AID-BiO with conjugate gradients.
    AidCg,
    /// PZOBO (Hessian-free, one Gaussian direction).
    Pzobo,
    /// BSGM: SID without warm starts, task batches.
    Bsgm,
}

impl MetaEstimator {
    pub(super) const ALL: [MetaEstimator; 4] = [
        MetaEstimator::Itd,
        MetaEstimator::AidCg,
        MetaEstimator::Pzobo,
        MetaEstimator::Bsgm,
    ];

    pub(super) fn key(self) -> &'static str {
        match self {
            MetaEstimator::Itd => "itd",
            MetaEstimator::AidCg => "aid-cg",
            MetaEstimator::Pzobo => "pzobo",
            MetaEstimator::Bsgm => "bsgm",
        }
    }

    pub(super) fn parse(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.key() == key)
    }

    #[cfg(test)]
    pub(super) fn name(self) -> String {
        format!("{PREFIX}{}", self.key())
    }

    fn describe(self, sizes: Sizes) -> String {
        let (t, tasks) = (sizes.steps, sizes.tasks);
        match self {
            MetaEstimator::Itd => format!("ITD-BiO, T={t}"),
            MetaEstimator::AidCg => format!("AID-BiO, T={t}, N={t} CG"),
            MetaEstimator::Pzobo => format!("PZOBO, N={t}, Q=1, μ=1e-3"),
            MetaEstimator::Bsgm => format!("BSGM (SID), t=k={t}, task batches of {tasks}"),
        }
    }

    /// One hypergradient from `(x0, y0)` with `steps` inner (and linear-solver) steps;
    /// returns the oracle calls.
    pub(super) fn run<B: AutodiffBackend>(
        self,
        problem: &MetaLearning<B>,
        steps: usize,
        x0: &Tensor<B, 1>,
        y0: &Tensor<B, 1>,
    ) -> Result<OracleCounts> {
        let device = problem.device();
        let mut state = State::new(x0.clone(), y0.clone(), SEED);
        let mut oracle = Oracle::with_mode(problem, SecondOrder::Exact);
        let tasks = problem.num_tasks();
        let g = match self {
            MetaEstimator::Itd => Itd::new(ItdConfig {
                inner_step: INNER_STEP,
                inner_steps: steps,
                warm_start: true,
                truncation: None,
            })?
            .estimate(&mut oracle, &mut state)?,
            MetaEstimator::AidCg => Aid::new(AidConfig {
                inner_step: INNER_STEP,
                inner_steps: InnerSteps::Constant { steps },
                warm_start_inner: true,
                linear_solver: LinearSolver::ConjugateGradient { steps, tol: 0.0 },
                warm_start_linear: true,
                batches: Default::default(),
            })?
            .estimate(&mut oracle, &mut state)?,
            MetaEstimator::Pzobo => Pzobo::new(PzoboConfig {
                inner_steps: steps,
                inner_step: INNER_STEP,
                ..PzoboConfig::default()
            })?
            .estimate(&mut oracle, &mut state)?,
            MetaEstimator::Bsgm => Sid::new(SidConfig {
                lower_level: LowerLevel::GradientStep { step: INNER_STEP },
                inner_steps: steps,
                linear_steps: steps,
                batch_size: Some(tasks),
                inner_batch: Some(tasks),
                linear_batch: Some(tasks),
                ..SidConfig::default()
            })?
            .estimate(&mut oracle, &mut state)?,
        };
        sync::<B>(&device)?;
        drop(g);
        Ok(oracle.counts())
    }
}

/// The problem and its initial point.
fn build<B: AutodiffBackend>(
    sizes: Sizes,
) -> Result<(MetaLearning<B>, Tensor<B, 1>, Tensor<B, 1>)> {
    let device = Default::default();
    let problem = spec_of(sizes).build::<B>(SEED, None, &device)?;
    let (x0, y0) = problem.initial_point(SEED)?;
    Ok((problem, x0, y0))
}

/// The memory child's case key: `<filters>-<estimator>` after [`MEMORY_PREFIX`].
fn memory_key(sizes: Sizes, est: MetaEstimator) -> String {
    format!("{MEMORY_PREFIX}{}-{}", sizes.filters, est.key())
}

/// Case 5 on `B` (memory on the CPU backends): the 32-filter family, and AID-CG at 64 filters.
pub(super) fn cases<B: AutodiffBackend>(
    opts: &Options,
    runtime: Runtime,
    rows: &mut Vec<Row>,
) -> Result<()> {
    family::<B>(
        opts,
        runtime,
        rows,
        Sizes::new(opts.quick),
        PREFIX,
        &MetaEstimator::ALL,
    )?;
    if !opts.quick {
        let wide = [MetaEstimator::AidCg];
        family::<B>(opts, runtime, rows, Sizes::wide(), WIDE_PREFIX, &wide)?;
    }
    Ok(())
}

fn family<B: AutodiffBackend>(
    opts: &Options,
    runtime: Runtime,
    rows: &mut Vec<Row>,
    sizes: Sizes,
    prefix: &str,
    estimators: &[MetaEstimator],
) -> Result<()> {
    let selected: Vec<_> = estimators
        .iter()
        .copied()
        .filter(|e| opts.selected(&format!("{prefix}{}", e.key())))
        .collect();
    if selected.is_empty() {
        return Ok(());
    }
    let (problem, x0, y0) = build::<B>(sizes)?;
    let repeats = opts.repeats.min(MAX_REPEATS);
    let derivs = Derivatives::of(&problem, SecondOrder::Exact);
    let sp = spec_of(sizes);
    let side = sp.side();
    let setting = format!(
        "{}-way {}-shot, {} queries/class, {} tasks, CNN4 {} filters ({} backbone parameters), \
         synthetic glyphs {side}×{side} (substitute)",
        sp.n_way,
        sp.k_shot,
        sp.n_query,
        problem.num_tasks(),
        sp.filters,
        problem.x_dim(),
    );
    for est in selected {
        let name = format!("{prefix}{}", est.key());
        eprintln!("bench: {name}");
        let mut counts = None;
        let timing = time(repeats, || {
            counts = Some(est.run(&problem, sizes.steps, &x0, &y0)?);
            Ok(())
        })?;
        let mut row = Row::new(name, runtime, "f32", timing)
            .derivatives(derivs)
            .note(format!(
                "{}; {}; {setting}",
                derivs.note(SecondOrder::Exact),
                est.describe(sizes)
            ));
        row.counts = counts;
        if runtime.measures_memory() {
            let key = memory_key(sizes, est);
            row.peak_mib = Some(to_mib(memory::spawn_child(&key, &opts.child_args())?));
        }
        rows.push(row);
    }
    Ok(())
}

/// The memory child of `meta-<filters>-<key>`: builds the problem and measures one
/// hypergradient.
pub(super) fn memory_child<B: AutodiffBackend>(quick: bool, key: &str) -> Result<()> {
    let parsed = key.split_once('-').and_then(|(filters, est)| {
        Some((filters.parse::<usize>().ok()?, MetaEstimator::parse(est)?))
    });
    let Some((filters, est)) = parsed else {
        bail!("unknown meta-learning memory case `{key}`");
    };
    let sizes = Sizes::of_filters(quick, filters);
    let (problem, x0, y0) = build::<B>(sizes)?;
    let steps = sizes.steps;
    memory::measure_in_child(|| est.run(&problem, steps, &x0, &y0).map(drop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_keys_name_the_filters_and_round_trip() {
        let wide = Sizes::wide();
        assert_eq!((wide.filters, wide.tasks, wide.steps), (64, 4, 10));
        spec_of(wide).validate().unwrap();
        for (quick, sizes) in [
            (false, Sizes::new(false)),
            (false, wide),
            (true, Sizes::new(true)),
        ] {
            for est in MetaEstimator::ALL {
                let key = memory_key(sizes, est);
                let rest = key.strip_prefix(MEMORY_PREFIX).unwrap();
                let (filters, name) = rest.split_once('-').unwrap();
                assert_eq!(name, est.key());
                let filters: usize = filters.parse().unwrap();
                assert_eq!(Sizes::of_filters(quick, filters), sizes, "{key}");
            }
        }
    }
}
