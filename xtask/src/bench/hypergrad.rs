//! Cases 2 and 4: one hypergradient of hyper-cleaning per estimator, and ITD's time and
//! memory vs `T`, each through an oracle in the modes of [`MODES`].

use anyhow::Result;
use bilevel_bench::{Derivatives, Estimator, INNER_STEPS};
use bilevel_core::SecondOrder;
use bilevel_problems::hyper_cleaning::HyperCleaning;
use burn::tensor::backend::AutodiffBackend;

use super::memory;
use super::options::{Options, Runtime};
use super::report::{time, to_mib, Row};

/// The oracle modes the hypergradient and ITD cases are timed in: [`SecondOrder::Exact`] (the
/// default: the problem's hand-derived derivatives where it has them) and
/// [`SecondOrder::Autodiff`] (autodiff gradients, nested-autodiff products), the "before" of
/// the closed form.
pub(super) const MODES: [SecondOrder; 2] = [SecondOrder::Exact, SecondOrder::Autodiff];

/// Suffix of the case names timed with [`SecondOrder::Autodiff`].
pub(super) const AUTODIFF_SUFFIX: &str = "-autodiff";

/// `base` for [`SecondOrder::Exact`], `base-autodiff` for [`SecondOrder::Autodiff`].
pub(super) fn mode_name(base: &str, mode: SecondOrder) -> String {
    match mode {
        SecondOrder::Autodiff => format!("{base}{AUTODIFF_SUFFIX}"),
        _ => base.to_string(),
    }
}

/// `key` (a memory-child case) split into its base and oracle mode (see [`mode_name`]).
pub(super) fn parse_mode(key: &str) -> (&str, SecondOrder) {
    match key.strip_suffix(AUTODIFF_SUFFIX) {
        Some(base) => (base, SecondOrder::Autodiff),
        None => (key, SecondOrder::Exact),
    }
}

/// Case 2: one hypergradient per estimator, through an oracle in each of [`MODES`]
/// (`hypergrad/<est>` exact, `hypergrad/<est>-autodiff`).
pub(super) fn estimator_cases<B: AutodiffBackend>(
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
pub(super) fn itd_case_names() -> Vec<(String, usize, SecondOrder)> {
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
pub(super) fn itd_cases<B: AutodiffBackend>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::hvp::HvpKind;
    use crate::bench::meta;

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
}
