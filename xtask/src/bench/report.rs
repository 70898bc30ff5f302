//! The rows of the report ([`Row`], timed by [`time`]), the ratios between them (backends,
//! oracle modes) and the printed tables.

use std::time::Instant;

use anyhow::Result;
use bilevel_bench::Derivatives;
use bilevel_core::{OracleCounts, SecondOrder};
use serde::{Deserialize, Serialize};

#[cfg(doc)]
use super::closed_form::LinearCeHessian;
use super::hypergrad::{mode_name, AUTODIFF_SUFFIX};
use super::options::Runtime;

/// One line of the table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Row {
    pub(super) name: String,
    /// `ndarray` or `wgpu`.
    backend: String,
    precision: String,
    median_ms: f64,
    min_ms: f64,
    samples_ms: Vec<f64>,
    /// Peak resident memory of one run on top of the problem's data (child process), MiB.
    pub(super) peak_mib: Option<f64>,
    /// Counted matmul flops of one run.
    flops: Option<f64>,
    /// `flops / median time`.
    gflops: Option<f64>,
    /// Oracle calls of one run.
    pub(super) counts: Option<OracleCounts>,
    /// What the oracle differentiated with: `closed-form`, `autodiff` or `finite-difference`
    /// (empty for rows without an oracle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    derivatives: Option<String>,
    note: String,
}

impl Row {
    pub(super) fn new(
        name: impl Into<String>,
        runtime: Runtime,
        precision: &str,
        timing: Timing,
    ) -> Self {
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

    pub(super) fn derivatives(mut self, derivs: Derivatives) -> Self {
        self.derivatives = Some(derivs.label().to_string());
        self
    }

    pub(super) fn with_flops(mut self, flops: f64) -> Self {
        self.flops = Some(flops);
        self.gflops = Some(flops / (self.median_ms * 1e-3) / 1e9);
        self
    }

    pub(super) fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// Median and minimum of repeated runs.
#[derive(Clone, Debug)]
pub(super) struct Timing {
    median_ms: f64,
    min_ms: f64,
    samples_ms: Vec<f64>,
}

/// One warm-up run, then `repeats` timed runs; `run` must synchronise its device before it
/// returns (the clock is read right after).
pub(super) fn time(repeats: usize, mut run: impl FnMut() -> Result<()>) -> Result<Timing> {
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

/// Relative differences of the HVPs from the nested-autodiff one ([`SecondOrder::Autodiff`])
/// at the bench's random point.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct HvpAgreement {
    pub(super) backend: String,
    pub(super) precision: String,
    /// `Oracle::hvp` with [`SecondOrder::Exact`] (the problem's closed form).
    pub(super) oracle_closed_vs_autodiff: f64,
    /// What that oracle used (`closed-form`, or `autodiff` for a problem without one).
    pub(super) oracle_derivatives: String,
    /// The bench's own closed form ([`LinearCeHessian`]), contiguous `Xᵀ`.
    pub(super) closed_vs_autodiff: f64,
    /// The same with `Xᵀ` as a transposed view.
    pub(super) closed_view_vs_autodiff: f64,
    /// Central finite differences with step `fd_eps`.
    pub(super) fd_vs_autodiff: f64,
    pub(super) fd_eps: f64,
}

/// The same case on two backends.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Ratio {
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
pub(super) const RATIO_PAIRS: [(Runtime, Runtime); 3] = [
    (Runtime::Ndarray, Runtime::Flex),
    (Runtime::Ndarray, Runtime::Wgpu),
    (Runtime::Flex, Runtime::Wgpu),
];

/// A [`Ratio`] for every pair of [`RATIO_PAIRS`] and every (name, precision) both ran.
pub(super) fn ratios(rows: &[Row]) -> Vec<Ratio> {
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
pub(super) struct ModeRatio {
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
pub(super) fn mode_ratios(rows: &[Row]) -> Vec<ModeRatio> {
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

pub(super) fn to_mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub(super) fn print_table(
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
}
