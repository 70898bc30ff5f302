//! The tables of a reproduction run: `metrics.csv` (every recorded iteration of every run),
//! `summary.json` (final numbers, mean ± std over seeds, and the experiment's checks) and
//! `summary.md` (the same as markdown tables), plus the seed aggregation the plots draw.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bilevel_core::{IterRecord, OracleCounts};
use serde::{Deserialize, Serialize};

/// Outer loss column name (the `f(x, y)` the algorithm evaluated).
pub(crate) const OUTER_LOSS: &str = "outer_loss";
/// Estimated hypergradient norm column name.
pub(crate) const HYPERGRAD_NORM: &str = "hypergrad_norm";

/// One method's run on one problem variant with one seed (kept as `run.json` in its run
/// folder once finished, so that a resumed plan does not run it again).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct SeedRun {
    /// Problem variant (e.g. `p=0.1`).
    pub variant: String,
    /// Method label as the paper names it (e.g. `stocBiO`).
    pub method: String,
    /// Algorithm name of the method spec (e.g. `stocbio`).
    pub algorithm: String,
    pub seed: u64,
    pub records: Vec<IterRecord>,
    /// Why the run stopped, in words.
    pub termination: String,
    /// Metrics evaluated at the final point.
    pub final_metrics: Vec<(String, f64)>,
    pub wall_time_s: f64,
    pub iterations: u64,
    pub counts: OracleCounts,
}

/// A column's value in a record: the outer loss, the hypergradient norm or a metric.
pub(crate) fn record_value(record: &IterRecord, name: &str) -> Option<f64> {
    match name {
        OUTER_LOSS => record.outer_loss,
        HYPERGRAD_NORM => record.hypergrad_norm,
        _ => record
            .metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v),
    }
}

impl SeedRun {
    /// The value at the end: the final evaluation if there is one, else the last recorded.
    pub(crate) fn final_value(&self, name: &str) -> Option<f64> {
        self.final_metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .or_else(|| {
                self.records
                    .iter()
                    .rev()
                    .find_map(|r| record_value(r, name))
            })
    }

    /// The first recorded value (the start of the run where the runner records iteration 0).
    pub(crate) fn first_value(&self, name: &str) -> Option<f64> {
        self.records.iter().find_map(|r| record_value(r, name))
    }

    /// `(iteration, wall time, value)` wherever the column was recorded and finite.
    pub(crate) fn series(&self, name: &str) -> Vec<(f64, f64, f64)> {
        self.records
            .iter()
            .filter_map(|r| {
                record_value(r, name)
                    .filter(|v| v.is_finite())
                    .map(|v| (r.iter as f64, r.wall_time_s, v))
            })
            .collect()
    }
}

/// Metric columns of a set of runs (record metrics and final metrics), in first-seen order.
pub(crate) fn metric_names(runs: &[SeedRun]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for run in runs {
        let from_records = run.records.iter().flat_map(|r| r.metrics.iter());
        for (name, _) in from_records.chain(run.final_metrics.iter()) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

/// The distinct values of `key` over `runs`, in first-seen order.
pub(crate) fn distinct<'a>(
    runs: impl IntoIterator<Item = &'a SeedRun>,
    key: impl Fn(&'a SeedRun) -> &'a str,
) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for run in runs {
        let k = key(run);
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// metrics.csv

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// One row per recorded iteration of every run; metric cells are empty where not evaluated.
pub(crate) fn metrics_csv(runs: &[SeedRun]) -> String {
    let metrics = metric_names(runs);
    let mut out = String::from("variant,method,seed,iter,wall_time_s,");
    out.push_str(&OracleCounts::COLUMNS.join(","));
    out.push_str(",outer_loss,hypergrad_norm");
    for m in &metrics {
        out.push(',');
        out.push_str(&csv_field(m));
    }
    out.push('\n');
    for run in runs {
        for r in &run.records {
            let _ = write!(
                out,
                "{},{},{},{},{}",
                csv_field(&run.variant),
                csv_field(&run.method),
                run.seed,
                r.iter,
                r.wall_time_s
            );
            for c in r.counts.values() {
                let _ = write!(out, ",{c}");
            }
            let _ = write!(out, ",{},{}", opt(r.outer_loss), opt(r.hypergrad_norm));
            for m in &metrics {
                let _ = write!(out, ",{}", opt(record_value(r, m)));
            }
            out.push('\n');
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Statistics over seeds

/// Mean ± sample standard deviation of one number over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Stats {
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for a single seed.
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// Per seed, in seed order.
    pub values: Vec<f64>,
}

impl Stats {
    /// `None` for no values.
    pub(crate) fn of(values: &[f64]) -> Option<Stats> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Some(Stats {
            mean,
            std,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            values: values.to_vec(),
        })
    }

    fn mean_pm_std(&self) -> String {
        if self.values.len() > 1 {
            format!("{} ± {}", fmt_num(self.mean), fmt_num(self.std))
        } else {
            fmt_num(self.mean)
        }
    }
}

/// Four significant digits in plain notation for moderate magnitudes, scientific otherwise.
pub(crate) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if (1e-3..1e5).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.3e}")
    }
}

// ---------------------------------------------------------------------------------------------
// summary.json / summary.md

/// The machine-readable summary (`summary.json`); the CI test reads it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Summary {
    pub experiment: String,
    pub paper: String,
    pub title: String,
    /// `quick` or `full`.
    pub mode: String,
    pub seeds: Vec<u64>,
    pub data: String,
    pub variants: Vec<VariantSummary>,
    pub checks: Vec<CheckResult>,
    /// Time-to-target per `[[target]]` and variant (absent in summaries written before them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetResult>,
    /// A remark on the checks (e.g. that they were calibrated for other seeds).
    pub checks_note: Option<String>,
    /// Remarks on the run as a whole, shown under the header (e.g. the backend and device of a
    /// wgpu run, and that it ran in f32); empty on ndarray.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Plot files, relative to the run directory.
    pub plots: Vec<String>,
}

/// One problem variant's table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct VariantSummary {
    pub name: String,
    pub description: String,
    /// Metrics in table order (headline metrics first).
    pub metrics: Vec<String>,
    pub methods: Vec<MethodSummary>,
}

/// One method's numbers on a variant, over seeds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct MethodSummary {
    pub label: String,
    pub algorithm: String,
    pub seeds: usize,
    /// Final value of every metric (and `outer_loss`, `hypergrad_norm`).
    pub final_metrics: BTreeMap<String, Stats>,
    /// First recorded value of every metric.
    pub initial_metrics: BTreeMap<String, Stats>,
    pub iterations: Stats,
    pub wall_time_s: Stats,
    /// Oracle calls at the end (`grad_f`, `hvp`, `samples_g`, ...).
    pub counts: BTreeMap<String, Stats>,
    pub terminations: Vec<String>,
}

/// One `[[target]]` on one variant: when each method first reached it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TargetResult {
    /// E.g. `test_loss ≤ 0.35`.
    pub target: String,
    pub variant: String,
    pub methods: Vec<TargetMethod>,
}

/// One method's time-to-target over its seeds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TargetMethod {
    pub label: String,
    pub seeds: usize,
    /// Seeds whose records reached the level.
    pub reached: usize,
    /// Algorithm wall time (s) at the first record at the level, over the seeds that reached it.
    pub seconds: Option<Stats>,
    /// Iteration of that record, over the same seeds.
    pub iterations: Option<Stats>,
    /// The best recorded value over all seeds (lowest for `≤` targets, highest for `≥`).
    pub best: Option<f64>,
    /// `(seed, seconds)` per seed; `None` where the level was not reached.
    pub per_seed: Vec<(u64, Option<f64>)>,
}

/// The outcome of one of the experiment's checks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CheckResult {
    pub description: String,
    pub passed: bool,
    /// Per (variant, method, seed): the value checked.
    pub values: Vec<CheckedValue>,
}

/// One value a check looked at.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CheckedValue {
    pub variant: String,
    pub method: String,
    pub seed: u64,
    pub value: Option<f64>,
    pub passed: bool,
}

/// Metric columns in table order: `headline` first, then the others, then the outer loss.
pub(crate) fn table_metrics(runs: &[SeedRun], headline: &[&str]) -> Vec<String> {
    let all = metric_names(runs);
    let mut out: Vec<String> = headline
        .iter()
        .filter(|h| all.iter().any(|a| a == *h) || **h == OUTER_LOSS)
        .map(|h| h.to_string())
        .collect();
    for m in all.into_iter().chain([OUTER_LOSS.to_string()]) {
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

/// Summarises the runs of one variant, methods in first-seen order.
pub(crate) fn summarize_variant(
    name: &str,
    description: &str,
    runs: &[SeedRun],
    headline: &[&str],
) -> VariantSummary {
    let runs: Vec<SeedRun> = runs.iter().filter(|r| r.variant == name).cloned().collect();
    let metrics = table_metrics(&runs, headline);
    let mut columns = metrics.clone();
    columns.push(HYPERGRAD_NORM.to_string());
    let methods = distinct(&runs, |r| r.method.as_str())
        .into_iter()
        .map(|label| {
            let mine: Vec<&SeedRun> = runs.iter().filter(|r| r.method == label).collect();
            let stat_map = |f: &dyn Fn(&SeedRun, &str) -> Option<f64>| {
                columns
                    .iter()
                    .filter_map(|m| {
                        let vals: Vec<f64> = mine.iter().filter_map(|r| f(r, m)).collect();
                        Stats::of(&vals).map(|s| (m.clone(), s))
                    })
                    .collect::<BTreeMap<_, _>>()
            };
            let of = |f: &dyn Fn(&SeedRun) -> f64| {
                Stats::of(&mine.iter().map(|r| f(r)).collect::<Vec<_>>()).expect("≥ 1 run")
            };
            let counts = OracleCounts::COLUMNS
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    (
                        c.to_string(),
                        of(&|r: &SeedRun| r.counts.values()[i] as f64),
                    )
                })
                .collect();
            MethodSummary {
                label: label.to_string(),
                algorithm: mine[0].algorithm.clone(),
                seeds: mine.len(),
                final_metrics: stat_map(&|r, m| r.final_value(m)),
                initial_metrics: stat_map(&|r, m| r.first_value(m)),
                iterations: of(&|r| r.iterations as f64),
                wall_time_s: of(&|r| r.wall_time_s),
                counts,
                terminations: mine.iter().map(|r| r.termination.clone()).collect(),
            }
        })
        .collect();
    VariantSummary {
        name: name.to_string(),
        description: description.to_string(),
        metrics,
        methods,
    }
}

/// The markdown summary: a header, one table per variant, the checks and the plots.
pub(crate) fn summary_markdown(summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {} — {} ({} mode)\n",
        summary.experiment, summary.title, summary.mode
    );
    let _ = writeln!(out, "Paper: {}  ", summary.paper);
    let _ = writeln!(out, "Data: {}  ", summary.data);
    let seeds: Vec<String> = summary.seeds.iter().map(|s| s.to_string()).collect();
    let _ = writeln!(
        out,
        "Seeds: {} (final values: mean ± sample std over seeds)\n",
        seeds.join(", ")
    );
    for note in &summary.notes {
        let _ = writeln!(out, "{note}\n");
    }
    for v in &summary.variants {
        let _ = writeln!(out, "## {}\n", v.name);
        if !v.description.is_empty() {
            let _ = writeln!(out, "{}\n", v.description);
        }
        let mut header = vec!["method".to_string()];
        header.extend(v.metrics.iter().cloned());
        header.extend(
            [
                "iterations",
                "wall time (s)",
                "grad f",
                "grad g",
                "HVP",
                "JVP",
                "samples",
                "stopped",
            ]
            .map(String::from),
        );
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
        for m in &v.methods {
            let mut row = vec![m.label.clone()];
            for name in &v.metrics {
                row.push(
                    m.final_metrics
                        .get(name)
                        .map(Stats::mean_pm_std)
                        .unwrap_or_else(|| "–".into()),
                );
            }
            row.push(if m.iterations.mean.fract() == 0.0 {
                format!("{:.0}", m.iterations.mean)
            } else {
                fmt_num(m.iterations.mean)
            });
            row.push(m.wall_time_s.mean_pm_std());
            let count = |c: &str| {
                m.counts
                    .get(c)
                    .map(|s| format!("{:.0}", s.mean))
                    .unwrap_or_default()
            };
            row.push(count("grad_f"));
            row.push(count("grad_g"));
            row.push(count("hvp"));
            row.push(count("jvp"));
            let samples = m.counts.get("samples_f").map_or(0.0, |s| s.mean)
                + m.counts.get("samples_g").map_or(0.0, |s| s.mean);
            row.push(format!("{samples:.0}"));
            let mut stops = m.terminations.clone();
            stops.dedup();
            row.push(stops.join("; "));
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out.push('\n');
    }
    if !summary.targets.is_empty() {
        let _ = writeln!(
            out,
            "## Time to target\n\nThe algorithm's wall time (metric evaluation and checkpoints \
             left out) at the first recorded iteration at the level, mean ± sample std over \
             the seeds that reached it; records come every `eval_every` iterations.\n"
        );
        for t in &summary.targets {
            let _ = writeln!(out, "### {} — {}\n", t.variant, t.target);
            let _ = writeln!(
                out,
                "| method | seeds reached | seconds | iterations | best recorded |\n|---|---|---|---|---|"
            );
            for m in &t.methods {
                let dash = || "–".to_string();
                let _ = writeln!(
                    out,
                    "| {} | {} / {} | {} | {} | {} |",
                    m.label,
                    m.reached,
                    m.seeds,
                    m.seconds.as_ref().map_or_else(dash, Stats::mean_pm_std),
                    m.iterations.as_ref().map_or_else(dash, Stats::mean_pm_std),
                    m.best.map_or_else(dash, fmt_num),
                );
            }
            out.push('\n');
        }
    }
    if !summary.checks.is_empty() {
        let _ = writeln!(out, "## Checks\n");
        if let Some(note) = &summary.checks_note {
            let _ = writeln!(out, "{note}\n");
        }
        for c in &summary.checks {
            let worst = c
                .values
                .iter()
                .filter(|v| !v.passed)
                .map(|v| {
                    format!(
                        "{} / {} / seed {}: {}",
                        v.variant,
                        v.method,
                        v.seed,
                        v.value.map_or("missing".into(), fmt_num)
                    )
                })
                .collect::<Vec<_>>();
            let mark = if c.passed { "pass" } else { "FAIL" };
            let _ = write!(out, "- **{mark}**: {}", c.description);
            if !worst.is_empty() {
                let _ = write!(out, " (failing: {})", worst.join(", "));
            }
            out.push('\n');
        }
        out.push('\n');
    }
    if !summary.plots.is_empty() {
        let _ = writeln!(out, "## Plots\n");
        for p in &summary.plots {
            let _ = writeln!(out, "![{p}]({p})");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Aggregation for plots

/// One point of a seed-aggregated curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct BandPoint {
    pub x: f64,
    pub mean: f64,
    /// Sample standard deviation over the seeds present at `x` (0 for one).
    pub std: f64,
    /// Seeds present at `x`.
    pub n: usize,
}

fn band_point(x: f64, vals: &[f64]) -> Option<BandPoint> {
    Stats::of(vals).map(|s| BandPoint {
        x,
        mean: s.mean,
        std: s.std,
        n: vals.len(),
    })
}

/// Mean ± std over seeds at each recorded iteration.
pub(crate) fn aggregate_by_iter(runs: &[&SeedRun], metric: &str) -> Vec<BandPoint> {
    let mut by_iter: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for run in runs {
        for (it, _, v) in run.series(metric) {
            by_iter.entry(it as u64).or_default().push(v);
        }
    }
    by_iter
        .into_iter()
        .filter_map(|(it, vals)| band_point(it as f64, &vals))
        .collect()
}

/// Mean ± std over seeds on a grid of `points` times from the earliest to the latest record.
/// Each seed contributes between its first and last record, interpolated linearly between
/// records (geometrically where `log` and both ends are positive), so seeds whose evaluations
/// fall at different times still average smoothly.
pub(crate) fn aggregate_by_time(
    runs: &[&SeedRun],
    metric: &str,
    points: usize,
    log: bool,
) -> Vec<BandPoint> {
    let series: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|r| {
            r.series(metric)
                .into_iter()
                .map(|(_, t, v)| (t, v))
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .collect();
    if series.is_empty() {
        return Vec::new();
    }
    if series.len() == 1 {
        return series[0]
            .iter()
            .map(|&(t, v)| BandPoint {
                x: t,
                mean: v,
                std: 0.0,
                n: 1,
            })
            .collect();
    }
    let t0 = series.iter().map(|s| s[0].0).fold(f64::INFINITY, f64::min);
    let t1 = series
        .iter()
        .map(|s| s[s.len() - 1].0)
        .fold(f64::NEG_INFINITY, f64::max);
    let points = points.max(2);
    (0..points)
        .filter_map(|i| {
            let t = t0 + (t1 - t0) * i as f64 / (points - 1) as f64;
            let vals: Vec<f64> = series
                .iter()
                .filter_map(|s| interpolate(s, t, log))
                .collect();
            band_point(t, &vals)
        })
        .collect()
}

/// The series' value at `t`, `None` outside its time range.
fn interpolate(s: &[(f64, f64)], t: f64, log: bool) -> Option<f64> {
    const SLACK: f64 = 1e-12;
    let (first, last) = (s[0], s[s.len() - 1]);
    if t < first.0 - SLACK || t > last.0 + SLACK {
        return None;
    }
    let k = s.partition_point(|&(ts, _)| ts <= t);
    if k == 0 {
        return Some(first.1);
    }
    if k == s.len() {
        return Some(last.1);
    }
    let ((ta, a), (tb, b)) = (s[k - 1], s[k]);
    let w = if tb > ta { (t - ta) / (tb - ta) } else { 1.0 };
    Some(if log && a > 0.0 && b > 0.0 {
        (a.ln() + w * (b.ln() - a.ln())).exp()
    } else {
        a + w * (b - a)
    })
}

#[cfg(test)]
pub(crate) mod tests;
