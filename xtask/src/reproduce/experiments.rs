//! What an experiment is: the paper, the problem variants, the methods compared (with the
//! paper's hyper-parameters where it gives them), the run lengths, the headline metrics and
//! the checks a quick run must pass, and how a check is evaluated on the runs.
//!
//! The experiments themselves are data: `assets/experiments/<id>.toml` (one section per id in
//! `docs/REPRODUCTION.md`), read by [`super::plan_file`], whose documentation gives the format.

use bilevel_problems::spec::ProblemSpec;
use bilevel_run::MethodSpec;
use serde::Deserialize;

use super::report::{
    distinct, CheckResult, CheckedValue, SeedRun, Stats, TargetMethod, TargetResult,
};

/// Every experiment id (`docs/REPRODUCTION.md`), in the order of that document (`--list`'s).
pub(crate) const EXPERIMENT_IDS: [&str; 12] = [
    "quadratic",
    "hr-shallow",
    "hr-deep",
    "hyper-cleaning",
    "hyper-cleaning-cnn",
    "ho-logreg-text",
    "meta-learning",
    "equilibrium",
    "poisoning",
    "adversarial-ls",
    "ho-l2-mnist",
    "liu-hard",
];

/// Full (the paper's sizes, as far as they fit) or quick (the CI variant).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Full,
    Quick,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Quick => "quick",
        }
    }
}

/// f32 or f64 (the workspace's one precision type).
pub(crate) use bilevel_core::backend::Precision;

/// One experiment as loaded from its file for one mode (`plan_file`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Experiment {
    pub id: String,
    /// Paper file number and section.
    pub paper: String,
    pub title: String,
    /// The data actually used, substitutes named.
    pub data: String,
    /// The methods the paper compares, for `--list`.
    pub methods: Vec<String>,
    /// How to run it; `None` while its problem is not implemented (then `missing` says why).
    pub plan: Option<Plan>,
    /// What is missing when `plan` is `None`.
    pub missing: String,
}

/// What a run of an experiment does.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Plan {
    pub variants: Vec<Variant>,
    pub methods: Vec<Method>,
    pub run: RunSettings,
    pub seeds: Vec<u64>,
    pub precision: Precision,
    /// Metrics shown first in the tables.
    pub headline: Vec<String>,
    pub checks: Vec<Check>,
    /// Levels of a metric whose first crossing is timed (time-to-target, in the summary).
    pub targets: Vec<Target>,
}

/// One problem instance family (e.g. a corruption rate): a `[[variant]]` table.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Variant {
    pub name: String,
    pub description: String,
    /// The `[problem]` table of the CLI configs.
    pub problem: ProblemSpec,
}

/// One compared method: a `[[method]]` table.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Method {
    /// As the paper names it.
    pub label: String,
    /// Overrides the plan's iteration count (methods with cheaper iterations get more).
    #[serde(default)]
    pub max_iters: Option<u64>,
    /// The `[algorithm]` table of the CLI configs.
    #[serde(rename = "algorithm")]
    pub spec: MethodSpec,
    /// Keys merged over every variant's `[problem]` table for this method only (e.g.
    /// `problem = { adapt = "maml" }`: MAML and ANIL need their own layout of the same
    /// meta-learning problem). The problem's `kind` cannot change.
    #[serde(default)]
    pub problem: Option<toml::Table>,
}

/// The problem `method` runs on in `variant`: the variant's, with the method's `problem` keys
/// merged over it.
pub(crate) fn problem_for(variant: &Variant, method: &Method) -> anyhow::Result<ProblemSpec> {
    use anyhow::{bail, Context as _};
    let Some(over) = &method.problem else {
        return Ok(variant.problem.clone());
    };
    let context = || {
        format!(
            "[[method]] `{}`'s `problem` keys over [[variant]] `{}`'s problem",
            method.label, variant.name
        )
    };
    if over.contains_key("kind") {
        bail!(
            "{}: a method cannot change the problem's `kind`; remove `kind`",
            context()
        );
    }
    let mut table = toml::Table::try_from(&variant.problem).with_context(context)?;
    super::plan_file::merge(&mut table, over.clone());
    let spec = ProblemSpec::deserialize(toml::Value::Table(table)).with_context(context)?;
    spec.validate().with_context(context)?;
    Ok(spec)
}

/// Run lengths shared by the methods: the `[run]` table.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunSettings {
    pub max_iters: u64,
    /// Wall-clock cap per (method, seed) run.
    #[serde(default)]
    pub time_budget_s: Option<f64>,
    /// Metrics every this many iterations (default 1).
    #[serde(default = "one")]
    pub eval_every: u64,
    /// Checkpoint every this many iterations, so that `reproduce --resume` continues an
    /// interrupted run from there (default: `eval_every`, at least 10).
    #[serde(default)]
    pub checkpoint_every: Option<u64>,
}

fn one() -> u64 {
    1
}

/// A condition on every seed's final metric of some methods: a `[[check]]` table.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "CheckTable")]
pub(crate) struct Check {
    /// Derived from the other fields ([`Check::new`]).
    pub description: String,
    /// Only this variant (all if `None`).
    pub variant: Option<String>,
    /// Only these method labels (all if empty).
    pub methods: Vec<String>,
    pub metric: String,
    pub bound: Bound,
}

/// What a checked value must satisfy.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Bound {
    AtMost(f64),
    AtLeast(f64),
    /// Final value ≤ this fraction of the value at iteration 0.
    FractionOfStart(f64),
    /// Final value above (`higher`) or below every listed method's on the same variant and
    /// seed; the value checked is the smallest margin.
    Beats {
        others: Vec<String>,
        higher: bool,
    },
}

/// A `[[check]]` table as written: the metric, whom it concerns, and exactly one bound.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckTable {
    metric: String,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    at_most: Option<f64>,
    #[serde(default)]
    at_least: Option<f64>,
    #[serde(default)]
    fraction_of_start: Option<f64>,
    #[serde(default)]
    beats: Option<Vec<String>>,
    #[serde(default)]
    higher: Option<bool>,
}

impl TryFrom<CheckTable> for Check {
    type Error = String;

    fn try_from(t: CheckTable) -> Result<Self, String> {
        let bounds = [
            t.at_most.map(Bound::AtMost),
            t.at_least.map(Bound::AtLeast),
            t.fraction_of_start.map(Bound::FractionOfStart),
            t.beats.map(|others| Bound::Beats {
                others,
                higher: t.higher.unwrap_or(false),
            }),
        ];
        let mut given = bounds.into_iter().flatten();
        let (Some(bound), None) = (given.next(), given.next()) else {
            return Err(format!(
                "check on `{}`: give exactly one of `at_most`, `at_least`, \
                 `fraction_of_start`, `beats`",
                t.metric
            ));
        };
        match (&bound, t.higher) {
            (Bound::Beats { .. }, None) => {
                return Err(format!(
                    "check on `{}`: `beats` needs `higher = true` (the methods must end above \
                     the others) or `higher = false` (below)",
                    t.metric
                ))
            }
            (Bound::Beats { .. }, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(format!(
                    "check on `{}`: `higher` goes only with `beats`",
                    t.metric
                ))
            }
        }
        let mut check = Check::new(&t.metric, &t.methods, bound);
        check.variant = t.variant;
        Ok(check)
    }
}

impl Check {
    /// A check of every variant, with its description derived from the fields.
    pub(crate) fn new(metric: &str, methods: &[impl AsRef<str>], bound: Bound) -> Self {
        let methods: Vec<String> = methods.iter().map(|m| m.as_ref().to_string()).collect();
        let who = if methods.is_empty() {
            "every method".to_string()
        } else {
            methods.join(", ")
        };
        let what = match &bound {
            Bound::AtMost(b) => format!("final {metric} ≤ {b}"),
            Bound::AtLeast(b) => format!("final {metric} ≥ {b}"),
            Bound::FractionOfStart(r) => format!("final {metric} ≤ {r:e} × its value at start"),
            Bound::Beats { others, higher } => format!(
                "final {metric} {} than {}'s",
                if *higher { "higher" } else { "lower" },
                others.join("'s and ")
            ),
        };
        Self {
            description: format!("{who}: {what} (every seed)"),
            variant: None,
            methods,
            metric: metric.to_string(),
            bound,
        }
    }

    /// The methods a check names.
    pub(crate) fn named_methods(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.methods.iter().map(String::as_str).collect();
        if let Bound::Beats { others, .. } = &self.bound {
            all.extend(others.iter().map(String::as_str));
        }
        all
    }

    /// Checks every matching run; a check that matches no run fails.
    pub(crate) fn evaluate(&self, runs: &[SeedRun]) -> CheckResult {
        let in_variant = |r: &&SeedRun| self.variant.as_ref().is_none_or(|v| *v == r.variant);
        let values: Vec<CheckedValue> = runs
            .iter()
            .filter(in_variant)
            .filter(|r| self.methods.is_empty() || self.methods.contains(&r.method))
            .map(|r| {
                let last = r.final_value(&self.metric);
                let (value, passed) = match &self.bound {
                    Bound::AtMost(b) => (last, last.is_some_and(|v| v <= *b)),
                    Bound::AtLeast(b) => (last, last.is_some_and(|v| v >= *b)),
                    Bound::FractionOfStart(f) => {
                        let ratio = last.zip(r.first_value(&self.metric)).map(|(l, s)| l / s);
                        (ratio, ratio.is_some_and(|q| q <= *f))
                    }
                    Bound::Beats { others, higher } => {
                        let theirs: Vec<Option<f64>> = others
                            .iter()
                            .map(|o| {
                                runs.iter()
                                    .find(|x| {
                                        x.method == *o && x.variant == r.variant && x.seed == r.seed
                                    })
                                    .and_then(|x| x.final_value(&self.metric))
                            })
                            .collect();
                        let margin = theirs.iter().try_fold(f64::INFINITY, |m, t| {
                            let (mine, t) = (last?, (*t)?);
                            Some(m.min(if *higher { mine - t } else { t - mine }))
                        });
                        (margin, margin.is_some_and(|m| m > 0.0))
                    }
                };
                CheckedValue {
                    variant: r.variant.clone(),
                    method: r.method.clone(),
                    seed: r.seed,
                    value,
                    passed,
                }
            })
            .collect();
        CheckResult {
            description: self.description.clone(),
            passed: !values.is_empty() && values.iter().all(|v| v.passed),
            values,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::plan_file;
    use super::*;

    /// The experiments CI runs in quick mode (xtask/tests/reproduce.rs).
    const CI_IDS: [&str; 3] = ["quadratic", "liu-hard", "hyper-cleaning"];

    /// The files in `assets/experiments/` are exactly the ids of `docs/REPRODUCTION.md`, and
    /// each loads in both modes: problems of its own kind, methods and problems in range,
    /// checks naming existing methods, and checks in the quick mode of the experiments CI
    /// runs. (Before the Rust plans were removed, `files_give_exactly_the_rust_plans` proved
    /// every file equal to its Rust plan; see the commit that removed them.) (Renaming a
    /// label in a quick check of hyper-cleaning.toml, or `kind = "liu-hard"` in quadratic.toml,
    /// makes this fail.)
    #[test]
    fn ids_are_design_ids_and_plans_validate() {
        assert_eq!(plan_file::shipped_ids().unwrap(), EXPERIMENT_IDS);
        for id in EXPERIMENT_IDS {
            for mode in [Mode::Quick, Mode::Full] {
                let e = plan_file::load_shipped(id, mode).unwrap();
                let Some(p) = e.plan else {
                    assert!(!e.missing.is_empty(), "{id}");
                    continue;
                };
                assert!(!p.variants.is_empty() && !p.methods.is_empty() && !p.seeds.is_empty());
                for v in &p.variants {
                    v.problem.validate().unwrap();
                    assert_eq!(v.problem.id(), id);
                }
                for m in &p.methods {
                    m.spec
                        .validate()
                        .unwrap_or_else(|err| panic!("{}: {err}", m.label));
                }
                for c in &p.checks {
                    for m in &c.named_methods() {
                        assert!(p.methods.iter().any(|pm| pm.label == *m), "{m}");
                    }
                }
                if mode == Mode::Quick && CI_IDS.contains(&id) {
                    assert!(!p.checks.is_empty(), "{id}: quick mode has no checks");
                }
            }
        }
    }
}

/// A level of a metric whose first crossing is timed per run: a `[[target]]` table. The
/// summary reports, per variant and method, how many seeds reached it and the algorithm's wall
/// time and iteration of the first recorded iteration at the level (records come every
/// `eval_every` iterations, so that is the resolution).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "TargetTable")]
pub(crate) struct Target {
    pub metric: String,
    pub level: f64,
    /// Reached when the metric is ≥ `level` (else ≤).
    pub higher: bool,
    /// Only this variant (all if `None`).
    pub variant: Option<String>,
}

/// A `[[target]]` table as written: the metric and exactly one of `at_most`, `at_least`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetTable {
    metric: String,
    #[serde(default)]
    at_most: Option<f64>,
    #[serde(default)]
    at_least: Option<f64>,
    #[serde(default)]
    variant: Option<String>,
}

impl TryFrom<TargetTable> for Target {
    type Error = String;

    fn try_from(t: TargetTable) -> Result<Self, String> {
        let (level, higher) = match (t.at_most, t.at_least) {
            (Some(l), None) => (l, false),
            (None, Some(l)) => (l, true),
            _ => {
                return Err(format!(
                    "target on `{}`: give exactly one of `at_most`, `at_least`",
                    t.metric
                ))
            }
        };
        if !level.is_finite() {
            return Err(format!(
                "target on `{}`: the level must be finite",
                t.metric
            ));
        }
        Ok(Target {
            metric: t.metric,
            level,
            higher,
            variant: t.variant,
        })
    }
}

impl Target {
    /// E.g. `test_loss ≤ 0.35`.
    pub(crate) fn description(&self) -> String {
        let op = if self.higher { "≥" } else { "≤" };
        format!("{} {op} {}", self.metric, self.level)
    }

    fn reached(&self, v: f64) -> bool {
        if self.higher {
            v >= self.level
        } else {
            v <= self.level
        }
    }

    /// Per variant (in the runs' order) and method: the first recorded crossing of each seed.
    pub(crate) fn evaluate(&self, runs: &[SeedRun]) -> Vec<TargetResult> {
        let in_variant = |r: &&SeedRun| self.variant.as_ref().is_none_or(|v| *v == r.variant);
        distinct(runs.iter().filter(in_variant), |r: &SeedRun| {
            r.variant.as_str()
        })
        .into_iter()
        .map(|variant| {
            let mine: Vec<&SeedRun> = runs.iter().filter(|r| r.variant == variant).collect();
            let methods = distinct(mine.iter().copied(), |r: &SeedRun| r.method.as_str())
                .into_iter()
                .map(|label| {
                    let seeds: Vec<&SeedRun> =
                        mine.iter().copied().filter(|r| r.method == label).collect();
                    let series: Vec<Vec<(f64, f64, f64)>> =
                        seeds.iter().map(|r| r.series(&self.metric)).collect();
                    let crossings: Vec<Option<(f64, f64)>> = series
                        .iter()
                        .map(|s| {
                            s.iter()
                                .find(|(_, _, v)| self.reached(*v))
                                .map(|&(iter, secs, _)| (iter, secs))
                        })
                        .collect();
                    let best = series.iter().flatten().map(|&(_, _, v)| v).reduce(|a, b| {
                        if self.higher {
                            a.max(b)
                        } else {
                            a.min(b)
                        }
                    });
                    let hit: Vec<(f64, f64)> = crossings.iter().flatten().copied().collect();
                    TargetMethod {
                        label: label.to_string(),
                        seeds: seeds.len(),
                        reached: hit.len(),
                        seconds: Stats::of(&hit.iter().map(|h| h.1).collect::<Vec<_>>()),
                        iterations: Stats::of(&hit.iter().map(|h| h.0).collect::<Vec<_>>()),
                        best,
                        per_seed: seeds
                            .iter()
                            .zip(&crossings)
                            .map(|(r, c)| (r.seed, c.map(|c| c.1)))
                            .collect(),
                    }
                })
                .collect();
            TargetResult {
                target: self.description(),
                variant: variant.to_string(),
                methods,
            }
        })
        .collect()
    }
}
