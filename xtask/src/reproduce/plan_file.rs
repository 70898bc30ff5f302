//! Experiment files: one TOML file per experiment, `assets/experiments/<id>.toml` for the
//! shipped ones (`cargo xtask reproduce <id>`), any path for a user's own
//! (`cargo xtask reproduce path/to/file.toml`, or `--plan FILE`).
//!
//! ```toml
//! id = "my-quadratic"                   # names the results folder: results/<id>/…
//! title = "AID-CG against ITD on the synthetic least squares"
//! paper = "001 §Synthetic"              # optional, shown in summary.md and --list
//! data = "generated"                    # optional, idem
//! compares = ["AID-CG", "ITD"]          # optional, --list; default: the [[method]] labels
//! seeds = [0, 1, 2]                     # default [0]
//! precision = "f64"                     # "f32" or "f64" (default)
//! headline = ["grad_norm", "phi_gap"]   # metrics shown first in the tables (default none)
//!
//! [run]
//! max_iters = 1000                      # required
//! time_budget_s = 600.0                 # wall-clock cap per (method, seed) run; default none
//! eval_every = 20                       # metrics every this many iterations (default 1)
//!
//! [[variant]]                           # one or more problem instances
//! name = "quadratic"
//! description = "dimension 5 / 5, 10 000 rows"
//! [variant.problem]                     # exactly the [problem] table of `bilevel run` configs
//! kind = "quadratic"
//! inner_rows = 10000
//!
//! [[method]]                            # one or more compared methods
//! label = "AID-CG"                      # as the paper names it; unique
//! max_iters = 2000                      # optional: replaces run.max_iters for this method
//! problem = { noise = 0.2 }             # optional: merged over each variant's [problem] table
//!                                       # for this method only (not `kind`)
//! [method.algorithm]                    # exactly the [algorithm] table of `bilevel run` configs
//! name = "aid-cg"
//! outer_step = 600.0
//!
//! [[method]]
//! label = "ITD"
//! [method.algorithm]
//! name = "itd"
//!
//! [[check]]                             # conditions every seed's final value must meet
//! metric = "grad_norm"
//! methods = ["AID-CG"]                  # default: every method
//! variant = "quadratic"                 # default: every variant
//! fraction_of_start = 1e-2              # exactly one of: at_most = x, at_least = x,
//!                                       # fraction_of_start = r, beats = [labels] + higher = bool
//!
//! [[target]]                            # time-to-target: when each run first records
//! metric = "grad_norm"                  # the metric at the level (summary.md)
//! at_most = 1e-4                        # exactly one of: at_most = x, at_least = x
//!
//! [quick]                               # what --quick changes
//! seeds = [0]
//! [quick.run]
//! max_iters = 200
//! ```
//!
//! **Quick mode.** `--quick` runs the file with its `[quick]` table merged over the root before
//! it is parsed: tables merge key by key (so `[quick.run] max_iters = 200` changes that key
//! only), everything else replaces the root's value — arrays included, arrays of tables too: a
//! `[[quick.method]]` list is the quick mode's whole method list. A file thus states its full
//! plan once and only what the quick variant changes. Both modes are parsed and checked
//! whichever runs, so a mistake in `[quick]` shows without `--quick`.
//!
//! **Checks.** The description in `summary.md` is derived from the table (`Check::new`). A
//! failing check makes `reproduce` exit non-zero after writing the report; the shipped files
//! have checks in quick mode only (what CI runs).
//!
//! **Targets.** Each `[[target]]` (optionally for one `variant`) adds a time-to-target table per
//! variant to `summary.md` / `summary.json` (`Target::evaluate`): per method, the seeds that
//! reached the level and the algorithm's wall time and iteration at the first record there.
//!
//! **Errors.** Unknown keys are errors everywhere (every table has `deny_unknown_fields`), and
//! every message names the file and the key; beyond parsing, a file is rejected when it has
//! no variant or method, repeats a label or variant name, a check names a label or variant
//! the plan lacks, or a problem or algorithm table is out of range (their own `validate`).
//!
//! **Unavailable experiments.** `missing = "why"` with no plan keys (`seeds`, `precision`,
//! `headline`, `run`, `variant`, `method`, `check`, `target`) lists the experiment as not
//! available yet.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use super::experiments::{
    problem_for, Check, Experiment, Method, Mode, Plan, Precision, RunSettings, Target, Variant,
    EXPERIMENT_IDS,
};

/// `assets/experiments/` at the workspace root (found from this crate's manifest directory,
/// as `bilevel_data` finds `assets/`).
pub(crate) fn experiments_dir() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask
        .parent()
        .unwrap_or(xtask)
        .join("assets")
        .join("experiments")
}

/// The shipped experiment ids: the `*.toml` file names in [`experiments_dir`], those of
/// `docs/REPRODUCTION.md` first in its order, then any others alphabetically.
pub(crate) fn shipped_ids() -> Result<Vec<String>> {
    let dir = experiments_dir();
    let entries =
        std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut ids = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                ids.push(stem.to_string());
            }
        }
    }
    let rank = |id: &str| EXPERIMENT_IDS.iter().position(|k| *k == id);
    ids.sort_by_key(|id| (rank(id).unwrap_or(usize::MAX), id.clone()));
    Ok(ids)
}

/// The file of the shipped experiment `id`: `assets/experiments/<id>.toml`.
pub(crate) fn shipped_file(id: &str) -> PathBuf {
    experiments_dir().join(format!("{id}.toml"))
}

/// The shipped experiment `id` (`assets/experiments/<id>.toml`) in `mode`.
pub(crate) fn load_shipped(id: &str, mode: Mode) -> Result<Experiment> {
    let path = shipped_file(id);
    if !path.is_file() {
        bail!(
            "unknown experiment `{id}`; the experiments are: {} (files in {}); to run a file \
             of your own, pass its path (ending in .toml) or --plan FILE",
            shipped_ids()?.join(", "),
            experiments_dir().display()
        );
    }
    let experiment = load(&path, mode)?;
    if experiment.id != id {
        bail!(
            "{}: `id` is `{}`, but a shipped file's id must be its file name (`{id}`)",
            path.display(),
            experiment.id
        );
    }
    Ok(experiment)
}

/// The `--list` output: one block per file in `assets/experiments/`.
pub(crate) fn list_text() -> Result<String> {
    let mut out = String::new();
    for id in shipped_ids()? {
        let e = match load_shipped(&id, Mode::Full) {
            Ok(e) => e,
            Err(err) => {
                out.push_str(&format!("{id:<20} status: cannot be read: {err:#}\n"));
                continue;
            }
        };
        let status = match e.plan {
            Some(_) => "available".to_string(),
            None => format!("not available yet: {}", e.missing),
        };
        out.push_str(&format!("{:<20} {} — {}\n", e.id, e.paper, e.title));
        out.push_str(&format!("{:<20} methods: {}\n", "", e.methods.join(", ")));
        out.push_str(&format!("{:<20} data: {}\n", "", e.data));
        out.push_str(&format!("{:<20} status: {status}\n", ""));
    }
    Ok(out)
}

/// Reads and parses an experiment file in `mode`.
pub(crate) fn load(path: &Path, mode: Mode) -> Result<Experiment> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow!(
            "cannot read the experiment file {}: {e} (the shipped files are in {})",
            path.display(),
            experiments_dir().display()
        )
    })?;
    parse(&text, path, mode)
}

/// Parses an experiment file's text in `mode` (both modes are parsed and validated);
/// `origin` names the file in messages.
pub(crate) fn parse(text: &str, origin: &Path, mode: Mode) -> Result<Experiment> {
    let file = origin.display();
    let mut root: toml::Table =
        toml::from_str(text).map_err(|e| anyhow!("{file}: {}", e.to_string().trim_end()))?;
    let quick = match root.remove("quick") {
        None => toml::Table::new(),
        Some(toml::Value::Table(t)) => t,
        Some(other) => bail!(
            "{file}: `quick` must be a table ([quick]), got a {}",
            other.type_str()
        ),
    };
    if quick.contains_key("quick") {
        bail!("{file}: [quick] cannot contain another `quick`");
    }

    // Full mode from the text itself, so that errors carry a line and column.
    let full: RawFile = toml::from_str(text).map_err(|e| {
        let hint = key_hint(&e, &root, "");
        anyhow!("{file}: {}{hint}", e.to_string().trim_end())
    })?;
    let full = full.into_experiment().with_context(|| format!("{file}"))?;

    let mut merged = root;
    merge(&mut merged, quick.clone());
    let merged_text = toml::to_string(&merged)
        .map_err(|e| anyhow!("{file}: cannot merge [quick] over the file: {e}"))?;
    let quick_mode: RawFile = toml::from_str(&merged_text).map_err(|e| {
        anyhow!(
            "{file}: in quick mode ([quick] merged over the file){}: {}{}",
            located(&e, &merged_text),
            e.message().trim(),
            key_hint(&e, &quick, "quick.")
        )
    })?;
    let quick_mode = quick_mode
        .into_experiment()
        .with_context(|| format!("{file}: in quick mode ([quick] merged over the file)"))?;
    Ok(match mode {
        Mode::Full => full,
        Mode::Quick => quick_mode,
    })
}

/// Merges `over` into `base`: a table into a table key by key (recursively); any other value
/// (arrays and arrays of tables included) replaces the base's.
pub(crate) fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// ` at `<line>` in [<table>]` for an error in generated text (whose line numbers mean nothing
/// to the user), or nothing without a span.
fn located(e: &toml::de::Error, text: &str) -> String {
    let Some(span) = e.span() else {
        return String::new();
    };
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = text[line_start..line_end].trim();
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['));
    match table {
        Some(t) => format!(" at `{line}` in {t}"),
        None => format!(" at `{line}`"),
    }
}

/// For an unknown-key error: ` (the key `a.b.c`)`, every place the key occurs in `table`.
fn key_hint(e: &toml::de::Error, table: &toml::Table, prefix: &str) -> String {
    let message = e.message();
    let Some(rest) = message.split("unknown field `").nth(1) else {
        return String::new();
    };
    let Some(key) = rest.split('`').next() else {
        return String::new();
    };
    let mut paths = Vec::new();
    key_paths(table, key, prefix, &mut paths);
    if paths.is_empty() {
        return String::new();
    }
    format!(" (the key `{}`)", paths.join("`, `"))
}

fn key_paths(table: &toml::Table, key: &str, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in table {
        let here = format!("{prefix}{k}");
        if k == key {
            out.push(here.clone());
        }
        match v {
            toml::Value::Table(t) => key_paths(t, key, &format!("{here}."), out),
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let toml::Value::Table(t) = item {
                        // An element by its label or name where it has one, else its index.
                        let which = ["label", "name"]
                            .iter()
                            .find_map(|k| t.get(*k).and_then(|v| v.as_str()))
                            .map_or(i.to_string(), |n| format!("{n:?}"));
                        key_paths(t, key, &format!("{here}[{which}]."), out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A file as written (after the quick merge): every plan key optional, so that a file with
/// `missing` can leave them out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    id: String,
    title: String,
    #[serde(default)]
    paper: String,
    #[serde(default)]
    data: String,
    compares: Option<Vec<String>>,
    missing: Option<String>,
    seeds: Option<Vec<u64>>,
    precision: Option<Precision>,
    headline: Option<Vec<String>>,
    run: Option<RunSettings>,
    variant: Option<Vec<Variant>>,
    method: Option<Vec<Method>>,
    check: Option<Vec<Check>>,
    target: Option<Vec<Target>>,
    /// Read by [`parse`] before; accepted here so the file parses as written.
    #[allow(dead_code)]
    quick: Option<toml::Table>,
}

impl RawFile {
    fn into_experiment(self) -> Result<Experiment> {
        if self.id.is_empty() {
            bail!("`id` is empty");
        }
        if let Some(missing) = self.missing {
            let plan_keys = [
                ("seeds", self.seeds.is_some()),
                ("precision", self.precision.is_some()),
                ("headline", self.headline.is_some()),
                ("run", self.run.is_some()),
                ("variant", self.variant.is_some()),
                ("method", self.method.is_some()),
                ("check", self.check.is_some()),
                ("target", self.target.is_some()),
            ];
            if let Some((key, _)) = plan_keys.iter().find(|(_, given)| *given) {
                bail!(
                    "`missing` marks the experiment as not runnable, so it takes no plan: \
                     remove `{key}` or `missing`"
                );
            }
            return Ok(Experiment {
                id: self.id,
                paper: self.paper,
                title: self.title,
                data: self.data,
                methods: self.compares.unwrap_or_default(),
                plan: None,
                missing,
            });
        }
        let plan = Plan {
            variants: self.variant.unwrap_or_default(),
            methods: self.method.unwrap_or_default(),
            run: self
                .run
                .context("no [run] table: a plan needs at least `[run] max_iters = N`")?,
            seeds: self.seeds.unwrap_or_else(|| vec![0]),
            precision: self.precision.unwrap_or_default(),
            headline: self.headline.unwrap_or_default(),
            checks: self.check.unwrap_or_default(),
            targets: self.target.unwrap_or_default(),
        };
        validate(&plan)?;
        let methods = self
            .compares
            .unwrap_or_else(|| plan.methods.iter().map(|m| m.label.clone()).collect());
        Ok(Experiment {
            id: self.id,
            paper: self.paper,
            title: self.title,
            data: self.data,
            methods,
            plan: Some(plan),
            missing: String::new(),
        })
    }
}

/// What parsing cannot check: every list non-empty and its names unique, ranges (the problem
/// and algorithm tables' own `validate`), and that the checks name existing methods and
/// variants.
pub(crate) fn validate(plan: &Plan) -> Result<()> {
    if plan.seeds.is_empty() {
        bail!("`seeds` is empty");
    }
    if let Some(s) = duplicate(plan.seeds.iter()) {
        bail!("seed {s} is listed twice in `seeds`");
    }
    let run = &plan.run;
    if run.max_iters == 0 || run.eval_every == 0 {
        bail!("[run] `max_iters` and `eval_every` must be ≥ 1");
    }
    if let Some(b) = run.time_budget_s {
        if !(b.is_finite() && b > 0.0) {
            bail!("[run] `time_budget_s` must be a positive number of seconds, got {b}");
        }
    }
    if plan.variants.is_empty() {
        bail!("no [[variant]] table: a plan needs at least one problem variant");
    }
    if let Some(n) = duplicate(plan.variants.iter().map(|v| &v.name)) {
        bail!("two [[variant]] tables are named `{n}`");
    }
    for v in &plan.variants {
        v.problem
            .validate()
            .with_context(|| format!("[[variant]] `{}`: [variant.problem]", v.name))?;
    }
    if plan.methods.is_empty() {
        bail!("no [[method]] table: a plan needs at least one method");
    }
    if let Some(l) = duplicate(plan.methods.iter().map(|m| &m.label)) {
        bail!("two [[method]] tables are labelled `{l}`");
    }
    for m in &plan.methods {
        m.spec
            .validate()
            .with_context(|| format!("[[method]] `{}`: [method.algorithm]", m.label))?;
        if m.max_iters == Some(0) {
            bail!("[[method]] `{}`: `max_iters` must be ≥ 1", m.label);
        }
        for v in &plan.variants {
            problem_for(v, m)?;
        }
    }
    for c in &plan.checks {
        for name in c.named_methods() {
            if !plan.methods.iter().any(|m| m.label == name) {
                bail!(
                    "[[check]] on `{}` names the method `{name}`, which no [[method]] has as \
                     its label",
                    c.metric
                );
            }
        }
        if let Some(v) = &c.variant {
            if !plan.variants.iter().any(|pv| pv.name == *v) {
                bail!(
                    "[[check]] on `{}` names the variant `{v}`, which no [[variant]] has",
                    c.metric
                );
            }
        }
    }
    for t in &plan.targets {
        if let Some(v) = &t.variant {
            if !plan.variants.iter().any(|pv| pv.name == *v) {
                bail!(
                    "[[target]] on `{}` names the variant `{v}`, which no [[variant]] has",
                    t.metric
                );
            }
        }
    }
    Ok(())
}

/// The first item that occurs twice.
fn duplicate<T: PartialEq>(items: impl Iterator<Item = T>) -> Option<T> {
    let mut seen = Vec::new();
    for item in items {
        if seen.contains(&item) {
            return Some(item);
        }
        seen.push(item);
    }
    None
}

#[cfg(test)]
mod tests;
