//! `cargo xtask reproduce`: the quick variants that CI runs write every file, and their numbers
//! reproduce the papers' claims (checked here from `summary.json`, independently of the checks
//! the command evaluates itself).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("the xtask binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A fresh, not yet existing directory under the system temp dir.
fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "xtask-reproduce-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    assert!(!dir.exists());
    dir
}

fn partial(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap().to_os_string();
    name.push(".partial");
    dir.with_file_name(name)
}

/// Width and height from a PNG's signature and IHDR chunk.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    const SIG: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    if bytes.len() < 24 || bytes[..8] != SIG || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(&bytes[16..20]), be(&bytes[20..24])))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `reproduce <id> --quick` into a temp dir, checks the files every run writes, and
/// returns the directory and its `summary.json`.
fn quick_run(id: &str) -> (PathBuf, Value) {
    let dir = out_dir(id);
    let start = std::time::Instant::now();
    let out = xtask(&["reproduce", id, "--quick", "--out", dir.to_str().unwrap()]);
    eprintln!(
        "reproduce {id} --quick: {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.is_dir(), "{}", text(&out));
    assert!(!partial(&dir).exists(), "the .partial directory was left");

    let summary = read_json(&dir.join("summary.json"));
    assert_eq!(summary["experiment"], id);
    assert_eq!(summary["mode"], "quick");
    for check in summary["checks"].as_array().unwrap() {
        assert_eq!(check["passed"], true, "{check}");
    }

    // metrics.csv: the header, then one row per recorded iteration, all of the same width.
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        header[..15],
        [
            "variant",
            "method",
            "seed",
            "iter",
            "wall_time_s",
            "f_values",
            "g_values",
            "grad_f",
            "grad_g",
            "hvp",
            "jvp",
            "map_values",
            "map_vjps",
            "samples_f",
            "samples_g"
        ]
    );
    assert!(header.contains(&"outer_loss") && header.contains(&"hypergrad_norm"));
    let rows: Vec<&str> = lines.collect();
    assert!(!rows.is_empty());
    for row in &rows {
        assert_eq!(row.split(',').count(), header.len(), "{row}");
    }
    let variants = summary["variants"].as_array().unwrap();
    for v in variants {
        for m in v["methods"].as_array().unwrap() {
            let label = m["label"].as_str().unwrap();
            let prefix = format!("{},{label},", v["name"].as_str().unwrap());
            assert!(
                rows.iter().any(|r| r.starts_with(&prefix)),
                "no CSV rows for {prefix}"
            );
        }
    }

    // Plots: every listed PNG decodes as a PNG of the plot size; one per metric and axis.
    let plots = summary["plots"].as_array().unwrap();
    assert!(!plots.is_empty());
    for p in plots {
        let bytes = std::fs::read(dir.join(p.as_str().unwrap())).unwrap();
        assert_eq!(png_size(&bytes), Some((960, 600)), "{p}");
    }
    // Metrics of the points a method reports beside its output (`<point>:<metric>`, e.g. IGFM's
    // `best:x_error`) are final values only: no series, no plot.
    let n_metrics: usize = variants
        .iter()
        .map(|v| {
            let metrics = v["metrics"].as_array().unwrap();
            metrics
                .iter()
                .filter(|m| !m.as_str().unwrap().contains(':'))
                .count()
        })
        .sum();
    assert_eq!(plots.len(), 2 * n_metrics, "{plots:?}");

    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains("| method |") && md.contains("**pass**"), "{md}");

    let prov = read_json(&dir.join("provenance.json"));
    assert_eq!(prov["experiment"], id);
    assert_eq!(prov["backend"], "flex");
    assert!(prov["git"].get("commit").is_some() && prov["git"].get("dirty").is_some());
    assert!(prov["rustc"]
        .as_str()
        .is_some_and(|s| s.starts_with("rustc ")));
    let versions = prov["crate_versions"].as_array().unwrap();
    assert!(versions.iter().any(|v| v[0] == "burn"));
    assert!(!prov["runs"].as_array().unwrap().is_empty());
    assert!(prov["start_utc"].as_str().unwrap().ends_with('Z'));
    (dir, summary)
}

/// `final_metrics[metric].values` of one method on one variant (one per seed).
fn finals(summary: &Value, variant: &str, method: &str, metric: &str) -> Vec<f64> {
    values(summary, variant, method, "final_metrics", metric)
}

fn values(summary: &Value, variant: &str, method: &str, key: &str, metric: &str) -> Vec<f64> {
    let v = summary["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == variant)
        .unwrap_or_else(|| panic!("no variant {variant}"));
    let m = v["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["label"] == method)
        .unwrap_or_else(|| panic!("no method {method} on {variant}"));
    m[key][metric]["values"]
        .as_array()
        .unwrap_or_else(|| panic!("no {key}.{metric} for {method}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn list_names_every_design_experiment() {
    let out = xtask(&["reproduce", "--list"]);
    assert!(out.status.success(), "{}", text(&out));
    let list = String::from_utf8_lossy(&out.stdout);
    for id in [
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
    ] {
        assert!(
            list.lines()
                .any(|l| l.split_whitespace().next() == Some(id)),
            "{id} missing from --list:\n{list}"
        );
    }
}

#[test]
fn unavailable_experiments_backends_and_ids_fail_clearly() {
    let out = xtask(&["reproduce", "no-such-experiment", "--quick"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("unknown experiment"), "{}", text(&out));

    // Without the `wgpu` feature, `--backend wgpu` names the rebuild command.
    if cfg!(not(feature = "wgpu")) {
        let out = xtask(&["reproduce", "quadratic", "--quick", "--backend", "wgpu"]);
        assert!(!out.status.success());
        assert!(text(&out).contains("--features wgpu"), "{}", text(&out));
    }
    // wgpu has no f64, in every build; both fail before anything is written.
    let out = xtask(&[
        "reproduce",
        "quadratic",
        "--quick",
        "--backend",
        "wgpu",
        "--precision",
        "f64",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("wgpu"), "{}", text(&out));
    let out = xtask(&["reproduce", "quadratic", "--quick", "--backend", "cuda"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("unknown backend"), "{}", text(&out));

    let list = String::from_utf8_lossy(&xtask(&["reproduce", "--list"]).stdout).into_owned();
    if let Some(id) = list
        .split("\n")
        .collect::<Vec<_>>()
        .windows(4)
        .find(|w| w[3].contains("not available yet"))
        .and_then(|w| w[0].split_whitespace().next())
    {
        let out = xtask(&["reproduce", id, "--quick"]);
        assert!(!out.status.success());
        assert!(text(&out).contains("not available yet"), "{}", text(&out));
    }
}

/// Paper 001's synthetic problem: every method drives the exact ‖∇Φ‖ down by at least 50×.
#[test]
fn quick_quadratic_every_method_converges() {
    let (dir, summary) = quick_run("quadratic");
    for method in ["FSLA", "BP (ITD)", "NS (AID-FP)", "CG (AID-CG)"] {
        let start = values(
            &summary,
            "quadratic",
            method,
            "initial_metrics",
            "grad_norm",
        );
        let end = finals(&summary, "quadratic", method, "grad_norm");
        // Quick budget: measured ×110 (FSLA), ×370 (BP/ITD) from ‖∇Φ‖ = 3.8e-3; asserted ×50.
        for (s, e) in start.iter().zip(&end) {
            eprintln!("{method}: ‖∇Φ‖ {s:e} → {e:e} (×{:.0})", s / e);
            assert!(e / s <= 2e-2, "{method}: ‖∇Φ‖ {s:e} → {e:e}");
        }
    }
    for plot in ["grad_norm_vs_iter.png", "grad_norm_vs_time.png"] {
        assert!(dir.join(plot).is_file(), "{plot}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Paper 003, Example 5.3: IGFM reaches x* = 1; AID and ITD stall where the initial y₂ puts them.
#[test]
fn quick_liu_hard_igfm_reaches_x_star_while_aid_and_itd_stall() {
    let (dir, summary) = quick_run("liu-hard");
    for variant in ["y2_0=-1", "y2_0=2"] {
        for e in finals(&summary, variant, "IGFM", "x_error") {
            assert!(e < 0.05, "{variant}: IGFM |x − 1| = {e}");
        }
        for method in ["AID-FP", "ITD"] {
            for e in finals(&summary, variant, method, "x_error") {
                assert!(e > 0.3, "{variant}: {method} |x − 1| = {e}");
            }
        }
    }
    assert!(dir.join("y2_0_-1_x_error_vs_iter.png").is_file());
    std::fs::remove_dir_all(dir).unwrap();
}

/// Paper 004, App. A: stocBiO (batch 50) cleans the labels to a good test accuracy and beats
/// the single-sample BSA and TTSA.
#[test]
fn quick_hyper_cleaning_stocbio_reaches_the_accuracy_floor() {
    let (dir, summary) = quick_run("hyper-cleaning");
    for variant in ["p=0.1", "p=0.2"] {
        let stocbio = finals(&summary, variant, "stocBiO", "test_accuracy");
        for (i, acc) in stocbio.iter().enumerate() {
            assert!(*acc >= 0.78, "{variant}: stocBiO test accuracy {acc}");
            for other in ["BSA", "TTSA"] {
                let theirs = finals(&summary, variant, other, "test_accuracy")[i];
                assert!(*acc > theirs, "{variant}: stocBiO {acc} ≤ {other} {theirs}");
            }
        }
        for method in ["BSA", "TTSA", "HOAG"] {
            assert!(!finals(&summary, variant, method, "test_loss").is_empty());
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A user's own experiment: paper 003's Example 5.3 from one start, IGFM against ITD with
/// the settings of assets/experiments/liu-hard.toml, 10 iterations (25 and a check in quick
/// mode).
const USER_PLAN: &str = r#"
id = "my-liu-hard"
title = "IGFM against ITD from y2 = -1"
seeds = [0]
headline = ["x_error"]

[run]
max_iters = 10

[[variant]]
name = "start"
description = "x0 = 3, y0 = (0, -1)"
[variant.problem]
kind = "liu-hard"
x0 = 3.0
y0 = [0.0, -1.0]

[[method]]
label = "IGFM"
[method.algorithm]
name = "igfm"
step = 0.25
smoothing_radius = 1e-3
sgm_step = 0.5
lower_value_steps = 10
switching_steps = 50
feasibility_threshold = 1e-6
lower_constraint = { kind = "box", lower = -10.0, upper = 10.0 }

[[method]]
label = "ITD"
[method.algorithm]
name = "itd"
inner_step = 0.25
inner_steps = 10
outer_step = 0.2

[quick.run]
max_iters = 25
eval_every = 5

[[quick.check]]
metric = "x_error"
methods = ["IGFM"]
at_most = 0.05
"#;

/// `reproduce FILE.toml` and `reproduce --plan FILE` run a user's file like a shipped
/// experiment, `[quick]` applying with `--quick`; a mistake in the file fails before anything
/// is written, naming the file and the key; an unknown id lists the shipped ones. (Loading
/// a user's file in full mode whatever `--quick` says makes this fail.)
#[test]
fn a_user_experiment_file_runs() {
    let dir = out_dir("user-file");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mine.toml");
    std::fs::write(&file, USER_PLAN).unwrap();

    let full = dir.join("full");
    let out = xtask(&[
        "reproduce",
        file.to_str().unwrap(),
        "--out",
        full.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let summary = read_json(&full.join("summary.json"));
    assert_eq!(summary["experiment"], "my-liu-hard");
    assert_eq!(summary["mode"], "full");
    assert!(summary["checks"].as_array().unwrap().is_empty());
    let provenance = read_json(&full.join("provenance.json"));
    assert_eq!(provenance["plan_file"], file.to_str().unwrap());
    assert_eq!(provenance["runs"][0]["iterations"], 10);

    let quick = dir.join("quick");
    let out = xtask(&[
        "reproduce",
        "--plan",
        file.to_str().unwrap(),
        "--quick",
        "--out",
        quick.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let summary = read_json(&quick.join("summary.json"));
    let checks = summary["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0]["passed"], true, "{}", checks[0]);
    assert_eq!(finals(&summary, "start", "ITD", "x_error").len(), 1);

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        USER_PLAN.replace("outer_step = 0.2", "outer_stp = 0.2"),
    )
    .unwrap();
    let never = dir.join("never");
    let out = xtask(&[
        "reproduce",
        bad.to_str().unwrap(),
        "--out",
        never.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("outer_stp"),
        "{err}"
    );
    assert!(!never.exists() && !partial(&never).exists());

    let out = xtask(&["reproduce", "no-such-experiment"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("quadratic, hr-shallow"),
        "{}",
        text(&out)
    );
    let out = xtask(&["reproduce", dir.join("absent.toml").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("absent.toml"), "{}", text(&out));
    std::fs::remove_dir_all(dir).unwrap();
}
