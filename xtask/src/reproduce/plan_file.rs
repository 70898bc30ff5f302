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
//! **Errors.** Unknown keys are errors everywhere (every table has `deny_unknown_fields`), and
//! every message names the file and the key; beyond parsing, a file is rejected when it has
//! no variant or method, repeats a label or variant name, a check names a label or variant
//! the plan lacks, or a problem or algorithm table is out of range (their own `validate`).
//!
//! **Unavailable experiments.** `missing = "why"` with no plan keys (`seeds`, `precision`,
//! `headline`, `run`, `variant`, `method`, `check`) lists the experiment as not available yet.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use super::experiments::{
    Check, Experiment, Method, Mode, Plan, Precision, RunSettings, Variant, EXPERIMENT_IDS,
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
    let rank = |id: &String| EXPERIMENT_IDS.iter().position(|k| k == id);
    ids.sort_by(|a, b| (rank(a).unwrap_or(usize::MAX), a).cmp(&(rank(b).unwrap_or(usize::MAX), b)));
    Ok(ids)
}

/// The shipped experiment `id` (`assets/experiments/<id>.toml`) in `mode`.
pub(crate) fn load_shipped(id: &str, mode: Mode) -> Result<Experiment> {
    let path = experiments_dir().join(format!("{id}.toml"));
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
    let mut root: toml::Table = toml::from_str(text).map_err(|e| anyhow!("{file}: {e}"))?;
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
    let full: RawFile =
        toml::from_str(text).map_err(|e| anyhow!("{file}: {e}{}", key_hint(&e, &root, "")))?;
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
                        key_paths(t, key, &format!("{here}[{i}]."), out);
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
mod tests {
    use super::*;
    use crate::reproduce::experiments::Bound;

    /// A small user file: one variant, two methods, a check in quick mode.
    const USER_FILE: &str = r#"
id = "my-quadratic"
title = "AID-CG against ITD"
headline = ["grad_norm"]

[run]
max_iters = 40
eval_every = 10

[[variant]]
name = "small"
description = "200 rows"
[variant.problem]
kind = "quadratic"
inner_rows = 200
outer_rows = 200

[[method]]
label = "AID-CG"
[method.algorithm]
name = "aid-cg"
outer_step = 50.0

[[method]]
label = "ITD"
max_iters = 80
[method.algorithm]
name = "itd"

[quick]
seeds = [3]
[quick.run]
max_iters = 5
[[quick.check]]
metric = "grad_norm"
methods = ["AID-CG"]
beats = ["ITD"]
higher = false
"#;

    fn err(text: &str, mode: Mode) -> String {
        format!(
            "{:#}",
            parse(text, Path::new("my.toml"), mode).expect_err("an error")
        )
    }

    fn toml_table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    /// Tables merge key by key, at any depth; arrays (of values or of tables) and scalars
    /// replace. (Replacing tables instead of merging them makes this fail, and so does another
    /// default for `seeds`.)
    #[test]
    fn quick_tables_merge_and_arrays_replace() {
        let mut base = toml_table(
            "seeds = [0, 1, 2]\nkeep = 1\n[run]\nmax_iters = 100\neval_every = 5\n\
             [a.b]\nkeep = true\nchange = 1\n[[m]]\nx = 1\n[[m]]\nx = 2\n",
        );
        let over =
            toml_table("seeds = [3]\n[run]\nmax_iters = 10\n[a.b]\nchange = 2\n[[m]]\ny = 9\n");
        merge(&mut base, over);
        let want = toml_table(
            "seeds = [3]\nkeep = 1\n[run]\nmax_iters = 10\neval_every = 5\n\
             [a.b]\nkeep = true\nchange = 2\n[[m]]\ny = 9\n",
        );
        assert_eq!(base, want);

        // The same through a file: quick changes max_iters only, adds a check, replaces seeds.
        let full = parse(USER_FILE, Path::new("my.toml"), Mode::Full).unwrap();
        let quick = parse(USER_FILE, Path::new("my.toml"), Mode::Quick).unwrap();
        let (f, q) = (full.plan.unwrap(), quick.plan.unwrap());
        assert_eq!((f.run.max_iters, f.run.eval_every), (40, 10));
        assert_eq!((q.run.max_iters, q.run.eval_every), (5, 10));
        assert_eq!((f.seeds, q.seeds), (vec![0], vec![3]));
        assert!(f.checks.is_empty());
        assert_eq!(q.checks.len(), 1);
        assert_eq!(f.methods, q.methods);
        assert_eq!(f.variants, q.variants);
    }

    /// A user's file at any path loads with every default filled in. (Defaulting `compares` to
    /// nothing instead of the [[method]] labels makes this fail.)
    #[test]
    fn a_user_file_at_any_path_loads() {
        let dir = std::env::temp_dir().join(format!("xtask-plan-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mine.toml");
        std::fs::write(&path, USER_FILE).unwrap();
        let e = load(&path, Mode::Quick).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(e.id, "my-quadratic");
        assert_eq!((e.paper.as_str(), e.data.as_str()), ("", ""));
        assert_eq!(e.methods, ["AID-CG", "ITD"]);
        let plan = e.plan.unwrap();
        assert_eq!(plan.precision, Precision::F64);
        assert_eq!(plan.headline, ["grad_norm"]);
        assert_eq!(plan.run.time_budget_s, None);
        assert_eq!(plan.methods[0].spec.name(), "aid-cg");
        assert_eq!(plan.methods[1].max_iters, Some(80));
        assert_eq!(plan.variants[0].problem.id(), "quadratic");
        let check = &plan.checks[0];
        assert_eq!(
            check.bound,
            Bound::Beats {
                others: vec!["ITD".into()],
                higher: false
            }
        );
        assert_eq!(
            check.description,
            "AID-CG: final grad_norm lower than ITD's (every seed)"
        );

        let missing = load(&dir.join("absent.toml"), Mode::Full).unwrap_err();
        assert!(format!("{missing:#}").contains("cannot read the experiment file"));
    }

    /// Unknown keys are errors in every table, in both parts of the file, and the message
    /// names the file and the key. (Removing `deny_unknown_fields` from `RawFile`,
    /// `RunSettings`, `Method` or `CheckTable` makes the matching case fail.)
    #[test]
    fn unknown_keys_are_errors_naming_file_and_key() {
        let cases = [
            (
                "id = \"my-quadratic\"",
                "id = \"x\"\ncolour = \"red\"",
                "colour",
            ),
            (
                "max_iters = 40\n",
                "max_iters = 40\nmax_iter = 3\n",
                "max_iter",
            ),
            ("label = \"ITD\"\n", "label = \"ITD\"\nlabl = 1\n", "labl"),
            (
                "outer_step = 50.0",
                "outer_step = 50.0\nouter_stp = 1.0",
                "outer_stp",
            ),
            (
                "inner_rows = 200\n",
                "inner_rows = 200\ninner_row = 1\n",
                "inner_row",
            ),
            ("higher = false", "higher = false\nabove = 1", "above"),
            ("[quick.run]\n", "[quick.run]\nmax_itres = 3\n", "max_itres"),
        ];
        for (anchor, replacement, key) in cases {
            assert!(USER_FILE.contains(anchor), "{anchor}");
            let text = USER_FILE.replacen(anchor, replacement, 1);
            for mode in [Mode::Full, Mode::Quick] {
                let e = err(&text, mode);
                assert!(e.starts_with("my.toml"), "{e}");
                assert!(e.contains(&format!("`{key}`")), "{key}: {e}");
            }
        }
        // In [quick], the message also says where the key is.
        let e = err(
            &USER_FILE.replacen("[quick.run]\n", "[quick.run]\nmax_itres = 3\n", 1),
            Mode::Full,
        );
        assert!(e.contains("quick.run.max_itres"), "{e}");
    }

    /// What parsing cannot reject: bounds, labels, names, missing tables. (Dropping the check
    /// that a check's methods exist, the one against repeated labels, or the one-bound rule of
    /// `Check::try_from` makes this fail.)
    #[test]
    fn inconsistent_plans_are_rejected() {
        let cases = [
            (
                "higher = false",
                "higher = false\nat_most = 1.0",
                "exactly one of",
            ),
            ("higher = false", "", "`beats` needs `higher"),
            (
                "beats = [\"ITD\"]\nhigher = false",
                "at_most = 1.0\nhigher = true",
                "only with",
            ),
            ("beats = [\"ITD\"]", "beats = [\"HOAG\"]", "`HOAG`"),
            (
                "methods = [\"AID-CG\"]",
                "methods = [\"AID-CG\"]\nvariant = \"big\"",
                "`big`",
            ),
            ("label = \"ITD\"", "label = \"AID-CG\"", "labelled `AID-CG`"),
            (
                "[run]\nmax_iters = 40\neval_every = 10\n",
                "",
                "no [run] table",
            ),
            ("eval_every = 10", "eval_every = 0", "≥ 1"),
            ("seeds = [3]", "seeds = [3, 3]", "twice"),
            ("outer_step = 50.0", "outer_step = -1.0", "AID-CG"),
            ("inner_rows = 200", "inner_rows = 0", "small"),
        ];
        for (anchor, replacement, needle) in cases {
            assert!(USER_FILE.contains(anchor), "{anchor}");
            let e = err(&USER_FILE.replacen(anchor, replacement, 1), Mode::Quick);
            assert!(e.contains(needle), "{needle}: {e}");
            assert!(e.starts_with("my.toml"), "{e}");
        }
    }

    /// `missing` keeps an experiment listed without a plan, and then takes no plan keys.
    /// (Accepting plan keys beside `missing` makes this fail.)
    #[test]
    fn missing_experiments_have_no_plan() {
        let text = "id = \"later\"\ntitle = \"t\"\ncompares = [\"A\"]\nmissing = \"no data\"\n";
        for mode in [Mode::Full, Mode::Quick] {
            let e = parse(text, Path::new("later.toml"), mode).unwrap();
            assert!(e.plan.is_none());
            assert_eq!((e.missing.as_str(), e.methods.len()), ("no data", 1));
        }
        let e = err(&format!("{text}seeds = [1]\n"), Mode::Full);
        assert!(e.contains("remove `seeds`"), "{e}");
    }

    /// Floats come back bit for bit, from the file's root and from `[quick]`, through the
    /// merge and TOML's float printing (shortest round-trip digits), also ones that are not
    /// short in decimal. (Passing the merged floats through f32 makes it fail.)
    #[test]
    fn floats_round_trip_exactly() {
        for x in [0.1, 1.0 / 3.0, 0.9 / 50.0, 1e-12, 6e23, f64::MIN_POSITIVE] {
            let text = USER_FILE.replacen("outer_step = 50.0", &format!("outer_step = {x:?}"), 1);
            let text = text.replacen(
                "[quick.run]\n",
                &format!("[quick.run]\ntime_budget_s = {x:?}\n"),
                1,
            );
            for mode in [Mode::Full, Mode::Quick] {
                let plan = parse(&text, Path::new("f.toml"), mode)
                    .unwrap()
                    .plan
                    .unwrap();
                let spec = serde_json::to_value(&plan.methods[0].spec).unwrap();
                let got = spec["outer_step"].as_f64().unwrap();
                assert_eq!(got.to_bits(), x.to_bits(), "{x:?} in {mode:?}");
                if mode == Mode::Quick {
                    let budget = plan.run.time_budget_s.unwrap();
                    assert_eq!(budget.to_bits(), x.to_bits(), "{x:?} in [quick]");
                }
            }
        }
    }
}
