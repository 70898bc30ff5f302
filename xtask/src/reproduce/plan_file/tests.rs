//! Tests of the experiment-file loader.

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
problem = { inner_rows = 300 }
[method.algorithm]
name = "itd"

[[target]]
metric = "grad_norm"
at_most = 1e-3

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
    let over = toml_table("seeds = [3]\n[run]\nmax_iters = 10\n[a.b]\nchange = 2\n[[m]]\ny = 9\n");
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
    // A method's `problem` keys are merged over the variant's problem for it alone.
    use crate::reproduce::experiments::problem_for;
    let rows = |p: bilevel_problems::spec::ProblemSpec| match p {
        bilevel_problems::spec::ProblemSpec::Quadratic(q) => (q.inner_rows, q.outer_rows),
        other => panic!("{other:?}"),
    };
    let v = &plan.variants[0];
    assert_eq!(rows(problem_for(v, &plan.methods[0]).unwrap()), (200, 200));
    assert_eq!(rows(problem_for(v, &plan.methods[1]).unwrap()), (300, 200));
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
/// that a check's methods exist, the one against repeated labels, the one-bound rule of
/// `Check::try_from` or `Target::try_from`, or the check of a target's variant makes this
/// fail.)
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
        (
            "at_most = 1e-3",
            "at_most = 1e-3\nat_least = 0.5",
            "exactly one of `at_most`",
        ),
        ("at_most = 1e-3", "", "exactly one of `at_most`"),
        ("at_most = 1e-3", "at_most = inf", "finite"),
        (
            "at_most = 1e-3",
            "at_most = 1e-3\nvariant = \"big\"",
            "[[target]]",
        ),
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

/// `--list` shows every shipped file, in the order of docs/REPRODUCTION.md.
#[test]
fn list_names_every_design_experiment() {
    let text = list_text().unwrap();
    let firsts: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(firsts, EXPERIMENT_IDS);
}

/// The first ```toml block after `marker` in `text`, with `prefix` stripped from each line.
fn example(text: &str, marker: &str, prefix: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| {
            l.strip_prefix(prefix)
                .unwrap_or(l.trim_start_matches(prefix.trim_end()))
        })
        .collect();
    let at = lines.iter().position(|l| l.contains(marker)).expect(marker);
    let start = at + lines[at..].iter().position(|l| *l == "```toml").unwrap() + 1;
    let len = lines[start..].iter().position(|l| *l == "```").unwrap();
    lines[start..start + len].join("\n")
}

/// The examples of docs/REPRODUCTION.md and of this module's documentation load in both
/// modes. (Misspelling a key in either example makes this fail.)
#[test]
fn the_documented_examples_load() {
    let docs = include_str!("../../../../docs/REPRODUCTION.md");
    let module = include_str!("../plan_file.rs");
    for (origin, text) in [
        (
            "docs/REPRODUCTION.md",
            example(docs, "## Writing your own experiment", ""),
        ),
        (
            "plan_file.rs",
            example(module, "Experiment files: one TOML file", "//! "),
        ),
    ] {
        for mode in [Mode::Full, Mode::Quick] {
            let e = parse(&text, Path::new(origin), mode).unwrap();
            let plan = e.plan.unwrap();
            assert_eq!(plan.methods.len(), 2, "{origin}");
            assert!(mode == Mode::Full || !plan.checks.is_empty(), "{origin}");
        }
    }
}
