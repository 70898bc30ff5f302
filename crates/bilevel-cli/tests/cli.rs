//! The `bilevel` binary end to end: every failure mode of issue #7 gives a one-paragraph error
//! with a hint, the right exit code, no panic trace and no result that looks complete; a run
//! killed with SIGKILL (or stopped by SIGINT) and resumed ends on the uninterrupted iterate.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bilevel_run::method::METHODS;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn bilevel(args: &[&str], cwd: &Path) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the binary runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Exit code, one paragraph `error: … hint: …`, no panic trace, and the given substrings.
fn assert_clean_error(out: &Out, code: i32, needles: &[&str]) {
    let err = out.stderr.trim();
    assert_eq!(out.code, code, "stderr: {err}\nstdout: {}", out.stdout);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("\nhint: "), "{err}");
    assert!(!err.contains("\n\n"), "not one paragraph: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    for n in needles {
        assert!(err.contains(n), "missing {n:?} in: {err}");
    }
}

const QUADRATIC: &str = "[problem]\nkind = \"quadratic\"\nx_dim = 3\ny_dim = 4\ninner_rows = 60\n\
                         outer_rows = 40\n";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn config_error(text: &str, code: i32, needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "c.toml", text);
    let out = bilevel(
        &["run", "--config", cfg.to_str().unwrap(), "--out", "out"],
        tmp.path(),
    );
    assert_clean_error(&out, code, needles);
    assert!(
        !tmp.path().join("out").exists(),
        "a config error must not create the run folder"
    );
    // check-config reports the same error without running.
    let check = bilevel(&["check-config", cfg.to_str().unwrap()], tmp.path());
    assert_clean_error(&check, code, needles);
}

#[test]
fn malformed_toml() {
    config_error(
        "[problem\nkind = \"quadratic\"\n",
        2,
        &["invalid config", "c.toml:1", "TOML syntax"],
    );
}

#[test]
fn unknown_algorithm() {
    config_error(
        &format!("{QUADRATIC}[algorithm]\nname = \"adam-bio\"\n"),
        2,
        &["unknown algorithm `adam-bio`", "aid-cg", "bilevel list"],
    );
}

#[test]
fn unknown_key() {
    config_error(
        &format!("{QUADRATIC}[algorithm]\nname = \"aid-cg\"\ninner_stepz = 0.1\n"),
        2,
        &["unknown field `inner_stepz`", "misspelt"],
    );
    config_error(
        &format!("{QUADRATIC}[algorithm]\nname = \"aid-cg\"\n[run]\nmax_iter = 3\n"),
        2,
        &["unknown field `max_iter`"],
    );
    config_error(
        &format!("{QUADRATIC}noize = 0.1\n[algorithm]\nname = \"aid-cg\"\n"),
        2,
        &["unknown field `noize`"],
    );
}

#[test]
fn negative_step() {
    config_error(
        &format!("{QUADRATIC}[algorithm]\nname = \"aid-cg\"\ninner_step = -0.1\n"),
        2,
        &["[algorithm]", "`inner_step`", "must be > 0", "got -0.1"],
    );
    config_error(
        &format!("{QUADRATIC}[algorithm]\nname = \"stocbio\"\nouter_step = -1.0\n"),
        2,
        &["`outer_step`"],
    );
}

#[test]
fn zero_neumann_terms() {
    config_error(
        &format!("{QUADRATIC}[algorithm]\nname = \"stocbio\"\nneumann_terms = 0\n"),
        2,
        &["`neumann_terms`", "must be ≥ 1"],
    );
}

#[test]
fn out_of_range_problem_and_run_settings() {
    config_error(
        "[problem]\nkind = \"quadratic\"\nx_dim = 0\n[algorithm]\nname = \"itd\"\n",
        2,
        &["[problem]", "x_dim"],
    );
    config_error(
        &format!("{QUADRATIC}[algorithm]\nname = \"itd\"\n[run]\nmax_iters = 0\n"),
        2,
        &["run.max_iters"],
    );
}

#[test]
fn shape_mismatch_in_the_config() {
    config_error(
        "[problem]\nkind = \"liu-hard\"\ny0 = [1.0, 2.0, 3.0]\n[algorithm]\nname = \"itd\"\n",
        2,
        &["invalid length 3", "length"],
    );
}

/// A run folder whose checkpoint was written for other dimensions than its config.
#[test]
fn shape_mismatch_between_checkpoint_and_config() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "c.toml",
        &format!("{QUADRATIC}[algorithm]\nname = \"aid-cg\"\n[run]\nmax_iters = 2\n"),
    );
    let out = bilevel(
        &[
            "run",
            "-q",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            "run",
        ],
        tmp.path(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = tmp.path().join("run");
    let text = std::fs::read_to_string(run.join("config.toml"))
        .unwrap()
        .replace("x_dim = 3", "x_dim = 4")
        .replace("max_iters = 2", "max_iters = 4");
    std::fs::write(run.join("config.toml"), text).unwrap();
    std::fs::remove_file(run.join("status.json")).unwrap();
    let out = bilevel(&["run", "--resume", "run"], tmp.path());
    assert_clean_error(&out, 2, &["shape mismatch", "checkpoint x", "resume only"]);
}

fn hyper_cleaning(mnist_dir: &Path) -> String {
    format!(
        "[problem]\nkind = \"hyper-cleaning\"\ntrain = 200\nval = 100\ntest = 100\n\
         mnist_dir = \"{}\"\n[algorithm]\nname = \"stocbio\"\n[run]\nmax_iters = 2\n",
        mnist_dir.display()
    )
}

/// A data failure: exit 1, the run folder says `failed`, and holds no metrics or report.
fn data_error(mnist_dir: &Path, needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "c.toml", &hyper_cleaning(mnist_dir));
    let out = bilevel(
        &["run", "--config", cfg.to_str().unwrap(), "--out", "run"],
        tmp.path(),
    );
    assert_clean_error(&out, 1, needles);
    let run = tmp.path().join("run");
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["status"], "failed");
    assert!(status["reason"].as_str().unwrap().contains(needles[0]));
    for f in ["metrics.csv", "metrics.csv.partial", "report.json"] {
        assert!(!run.join(f).exists(), "{f} after a failed run");
    }
}

fn bundled_mnist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/mnist")
}

/// A copy of the bundled MNIST with `damage` applied.
fn mnist_copy(damage: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        std::fs::copy(bundled_mnist().join(name), dir.path().join(name)).unwrap();
    }
    damage(dir.path());
    dir
}

#[test]
fn missing_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-mnist");
    data_error(&missing, &["missing", "no-such-mnist", "mnist_dir"]);
}

#[test]
fn truncated_dataset() {
    let mnist = mnist_copy(|dir| {
        let path = dir.join("t10k-labels-idx1-ubyte.gz");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    });
    data_error(
        mnist.path(),
        &["corrupt", "t10k-labels-idx1-ubyte", "fetch it again"],
    );
}

#[test]
fn corrupt_dataset() {
    let mnist = mnist_copy(|dir| {
        std::fs::remove_file(dir.join("train-labels-idx1-ubyte.gz")).unwrap();
        std::fs::write(
            dir.join("train-labels-idx1-ubyte"),
            b"this is not an IDX file at all",
        )
        .unwrap();
    });
    data_error(
        mnist.path(),
        &["corrupt", "train-labels-idx1-ubyte", "fetch it again"],
    );
}

#[test]
fn divergence_stops_with_the_reason_and_keeps_the_last_finite_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "c.toml",
        &format!(
            "{QUADRATIC}[algorithm]\nname = \"aid-cg\"\nouter_step = 1e300\n[run]\n\
             max_iters = 50\ncheckpoint_every = 1\n"
        ),
    );
    let out = bilevel(
        &["run", "--config", cfg.to_str().unwrap(), "--out", "run"],
        tmp.path(),
    );
    assert_clean_error(
        &out,
        1,
        &["diverged", "non-finite", "checkpoint.json", "outer_step"],
    );
    let run = tmp.path().join("run");
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["status"], "failed");
    assert!(status["reason"].as_str().unwrap().contains("diverged"));
    let ckpt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("checkpoint.json")).unwrap())
            .unwrap();
    let x = ckpt["state"]["x"].as_array().unwrap();
    assert_eq!(x.len(), 3);
    assert!(x.iter().all(|v| v.as_f64().is_some_and(f64::is_finite)));
    assert!(!run.join("metrics.csv").exists());
    assert!(!run.join("report.json").exists());
}

#[cfg(not(feature = "wgpu"))]
#[test]
fn wgpu_without_gpu_support() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "c.toml",
        &format!("{QUADRATIC}[algorithm]\nname = \"aid-cg\"\n"),
    );
    let out = bilevel(
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--backend",
            "wgpu",
            "--out",
            "run",
        ],
        tmp.path(),
    );
    assert_clean_error(
        &out,
        2,
        &["without GPU support", "--features wgpu", "--backend flex"],
    );
    assert!(!tmp.path().join("run").exists());
}

#[test]
fn usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    assert_clean_error(&bilevel(&["run"], tmp.path()), 2, &["needs a config"]);
    assert_clean_error(
        &bilevel(&["run", "--config", "nope.toml"], tmp.path()),
        2,
        &["cannot read the config file", "nope.toml"],
    );
    assert_clean_error(
        &bilevel(&["run", "--resume", "nowhere"], tmp.path()),
        2,
        &["not a run folder"],
    );
    // clap's own errors: exit 2, no panic.
    let out = bilevel(&["run", "--backend", "tpu"], tmp.path());
    assert_eq!(out.code, 2);
    assert!(!out.stderr.contains("panicked"));
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_completed_run_leaves_its_results_and_refuses_to_be_overwritten_or_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "c.toml",
        &format!(
            "{QUADRATIC}[algorithm]\nname = \"aid-cg\"\nouter_step = 0.5\n[run]\nmax_iters = 6\n\
             eval_every = 3\n[output]\nlog_every = 2\n"
        ),
    );
    let out = bilevel(
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            "run",
            "--seed",
            "5",
        ],
        tmp.path(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("aid-cg on quadratic"), "{}", out.stdout);
    let run = tmp.path().join("run");
    assert_eq!(read_json(&run.join("status.json"))["status"], "completed");
    let report = read_json(&run.join("report.json"));
    assert_eq!(report["seed"], 5);
    assert_eq!(report["iterations"], 6);
    assert_eq!(report["termination"], "MaxItersReached");
    assert_eq!(report["final_metrics"].as_array().unwrap().len(), 3);
    assert!(!run.join("metrics.csv.partial").exists());
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let iters: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(iters, ["0", "2", "4", "6"]);
    // The resolved config is a valid config with every default written out and the seed.
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(resolved.contains("seed = 5") && resolved.contains("cg_steps = 10"));
    let check = bilevel(&["check-config", "run/config.toml"], tmp.path());
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert_clean_error(
        &bilevel(&["run", "--config", "c.toml", "--out", "run"], tmp.path()),
        2,
        &["already holds a run", "--resume"],
    );
    assert_clean_error(
        &bilevel(&["run", "--resume", "run"], tmp.path()),
        2,
        &["already completed"],
    );
}

#[test]
fn log_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "c.toml",
        &format!("{QUADRATIC}[algorithm]\nname = \"itd\"\n[run]\nmax_iters = 4\neval_every = 2\n"),
    );
    let cfg = cfg.to_str().unwrap();
    let json = bilevel(
        &["run", "--config", cfg, "--out", "j", "--log-format", "json"],
        tmp.path(),
    );
    assert_eq!(json.code, 0, "{}", json.stderr);
    let lines: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 3, "{}", json.stdout);
    assert_eq!(lines[0]["iter"], 2);
    assert_eq!(lines[2]["termination"], "MaxItersReached");
    let csv = bilevel(
        &["run", "--config", cfg, "--out", "c", "--log-format", "csv"],
        tmp.path(),
    );
    assert_eq!(csv.code, 0, "{}", csv.stderr);
    assert!(csv
        .stdout
        .starts_with("iter,wall_time_s,outer_loss,hypergrad_norm,grad_norm"));
    let quiet = bilevel(
        &["run", "--config", cfg, "--out", "q", "--quiet"],
        tmp.path(),
    );
    assert_eq!(quiet.code, 0, "{}", quiet.stderr);
    assert_eq!(quiet.stdout, "");
}

/// A slow-enough stochastic run (stocBiO draws batches: the RNG must survive the checkpoint).
fn resumable_config(dir: &Path) -> PathBuf {
    write(
        dir,
        "c.toml",
        &format!(
            "{QUADRATIC}[algorithm]\nname = \"stocbio\"\ninner_steps = 2\ninner_batch = 5\n\
             outer_batch = 5\njacobian_batch = 5\nhessian_batch = 5\nneumann_terms = 2\n\
             neumann_step = 0.1\nouter_step = 0.05\n[run]\nmax_iters = 150\neval_every = 25\n\
             checkpoint_every = 3\nseed = 11\n"
        ),
    )
}

fn spawn(args: &[&str], cwd: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `path` exists (the child still running), for at most 60 s.
fn wait_for(path: &Path, child: &mut Child) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before writing {}",
            path.display()
        );
        assert!(start.elapsed() < Duration::from_secs(60), "timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn final_x_bits(run: &Path) -> Vec<u64> {
    read_json(&run.join("report.json"))["final_x"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap().to_bits())
        .collect()
}

fn uninterrupted(tmp: &Path, cfg: &Path) -> Vec<u64> {
    uninterrupted_on(tmp, cfg, &[])
}

/// `run -q --config CFG --out OUT` followed by `extra`.
fn run_args<'a>(cfg: &'a Path, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "-q", "--config", cfg.to_str().unwrap(), "--out", out];
    args.extend_from_slice(extra);
    args
}

fn uninterrupted_on(tmp: &Path, cfg: &Path, backend: &[&str]) -> Vec<u64> {
    let out = bilevel(&run_args(cfg, "full", backend), tmp);
    assert_eq!(out.code, 0, "{}", out.stderr);
    final_x_bits(&tmp.join("full"))
}

/// On the default backend (flex, f64). Flex's rayon-parallel kernels split work by size, not
/// by timing, at these sizes, so the resumed run is bit-identical there as well.
#[test]
fn kill_9_then_resume_reproduces_the_uninterrupted_final_iterate() {
    kill_9_then_resume_on(&[], "flex-f64");
}

/// The same on ndarray; the resume picks the backend up from the run's status.json.
#[test]
fn kill_9_then_resume_reproduces_the_uninterrupted_final_iterate_on_ndarray() {
    kill_9_then_resume_on(&["--backend", "ndarray"], "ndarray-f64");
}

fn kill_9_then_resume_on(backend: &[&str], label: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = resumable_config(tmp.path());
    let full = uninterrupted_on(tmp.path(), &cfg, backend);

    let mut child = spawn(&run_args(&cfg, "run", backend), tmp.path());
    let run = tmp.path().join("run");
    wait_for(&run.join("checkpoint.json"), &mut child);
    child.kill().unwrap(); // SIGKILL on unix: no handler runs.
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert_eq!(read_json(&run.join("status.json"))["status"], "running");
    assert!(!run.join("metrics.csv").exists() && !run.join("report.json").exists());
    let killed_at = read_json(&run.join("checkpoint.json"))["state"]["iter"]
        .as_u64()
        .unwrap();
    assert!(killed_at < 150, "killed after the end");

    let out = bilevel(&["run", "-q", "--resume", "run"], tmp.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(final_x_bits(&run), full);
    let status = read_json(&run.join("status.json"));
    assert_eq!(status["status"], "completed");
    assert_eq!(status["backend"], label);
    // The resumed CSV has each logged iteration exactly once.
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let iters: Vec<u64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(iters, (0..=6).map(|k| k * 25).collect::<Vec<_>>());
    let full_report = read_json(&tmp.path().join("full/report.json"));
    let report = read_json(&run.join("report.json"));
    assert_eq!(report["counts"], full_report["counts"]);
    assert_eq!(report["records"].as_array().unwrap().len(), 7);
}

/// Starts `run --config CFG --out run` in `tmp`, waits for its first checkpoint, runs
/// `while_running` on the folder, sends `signal` (`"INT"`, `"TERM"`) and returns the folder and
/// the process's output.
#[cfg(unix)]
fn run_until_signal(
    tmp: &Path,
    cfg: &Path,
    signal: &str,
    while_running: impl FnOnce(&Path),
) -> (PathBuf, std::process::Output) {
    let mut child = spawn(&run_args(cfg, "run", &[]), tmp);
    let run = tmp.join("run");
    wait_for(&run.join("checkpoint.json"), &mut child);
    while_running(&run);
    let sent = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    (run, child.wait_with_output().unwrap())
}

#[cfg(unix)]
#[test]
fn ctrl_c_checkpoints_and_resume_continues_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = resumable_config(tmp.path());
    let full = uninterrupted(tmp.path(), &cfg);
    let (run, out) = run_until_signal(tmp.path(), &cfg, "INT", |_| {});
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("bilevel run --resume"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let status = read_json(&run.join("status.json"));
    assert_eq!(status["status"], "interrupted");
    assert!(!run.join("metrics.csv").exists() && !run.join("report.json").exists());

    // A resumed run keeps its precision: asking for another is refused, not honoured silently
    // (fails if `--precision` overrode the folder's, as before issue 21's item 3).
    assert_clean_error(
        &bilevel(
            &["run", "-q", "--resume", "run", "--precision", "f32"],
            tmp.path(),
        ),
        2,
        &["is in f64", "--precision f32"],
    );
    let out = bilevel(&["run", "-q", "--resume", "run"], tmp.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(final_x_bits(&run), full);
}

/// SIGTERM (e.g. a batch scheduler's stop) stops a run like Ctrl-C: checkpoint, status
/// "interrupted", exit 130, and the resume continues exactly. Fails without ctrlc's
/// `termination` feature: the process dies of the signal with no final checkpoint and a stale
/// "running" status (issue 21's item 6).
#[cfg(unix)]
#[test]
fn sigterm_checkpoints_like_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = resumable_config(tmp.path());
    let full = uninterrupted(tmp.path(), &cfg);
    let (run, out) = run_until_signal(tmp.path(), &cfg, "TERM", |run| {
        // While it runs, the folder is locked: a second process on it is refused, not run
        // beside it (fails without the lock: both would write records.jsonl, issue 21's
        // item 4).
        assert!(run.join("run.lock").exists());
        assert_clean_error(
            &bilevel(&["run", "-q", "--resume", "run"], tmp.path()),
            2,
            &["in use by another bilevel process"],
        );
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert_eq!(read_json(&run.join("status.json"))["status"], "interrupted");
    assert!(!run.join("run.lock").exists(), "the lock goes with its run");
    // The checkpoint belongs to this run: with config.toml edited (another seed) the resume
    // is refused instead of continuing someone else's trajectory (issue 21's item 5).
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("seed = 11"), "{config}");
    std::fs::write(
        run.join("config.toml"),
        config.replace("seed = 11", "seed = 12"),
    )
    .unwrap();
    assert_clean_error(
        &bilevel(&["run", "-q", "--resume", "run"], tmp.path()),
        2,
        &["another run"],
    );
    std::fs::write(run.join("config.toml"), &config).unwrap();
    // Without records.jsonl the resumed report would silently lack the iterations before the
    // resume: refused, naming the file (issue 21's item 1; fails if `ResumeFrom::load` treated
    // a missing file as empty).
    let records = std::fs::read(run.join("records.jsonl")).unwrap();
    std::fs::remove_file(run.join("records.jsonl")).unwrap();
    assert_clean_error(
        &bilevel(&["run", "-q", "--resume", "run"], tmp.path()),
        2,
        &["records.jsonl", "iteration 0"],
    );
    std::fs::write(run.join("records.jsonl"), records).unwrap();
    // A run that stopped after renaming metrics.csv.partial but before report.json continues
    // its CSV instead of replacing it with the rows after the resume (fails without the
    // rename back: the CSV would start after the checkpoint).
    std::fs::rename(run.join("metrics.csv.partial"), run.join("metrics.csv")).unwrap();
    // A stale lock (a run killed with -9) is taken over.
    std::fs::write(run.join("run.lock"), "4194303").unwrap();
    let out = bilevel(&["run", "-q", "--resume", "run"], tmp.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(final_x_bits(&run), full);
    let iters = |dir: &Path| -> Vec<String> {
        std::fs::read_to_string(dir.join("metrics.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(iters(&run), iters(&tmp.path().join("full")));
}

fn asset_configs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/configs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_asset_config_passes_check_config_and_every_algorithm_has_one() {
    let tmp = tempfile::tempdir().unwrap();
    let mut names = BTreeSet::new();
    for file in asset_configs() {
        let out = bilevel(&["check-config", file.to_str().unwrap()], tmp.path());
        assert_eq!(out.code, 0, "{}: {}", file.display(), out.stderr);
        assert!(out.stdout.contains(": ok ("), "{}", out.stdout);
        let value: toml::Value = toml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        names.insert(value["algorithm"]["name"].as_str().unwrap().to_string());
    }
    let all: BTreeSet<String> = METHODS.iter().map(|m| m.name.to_string()).collect();
    assert_eq!(names, all, "one example config per algorithm");
}

#[test]
fn list_shows_problems_algorithms_and_data_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bilevel(&["list"], tmp.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    for m in METHODS {
        assert!(out.stdout.contains(m.name), "{}", m.name);
    }
    for id in ["quadratic", "liu-hard", "hyper-cleaning", "mnist"] {
        assert!(out.stdout.contains(id), "{id}");
    }
    let defaults = bilevel(&["list", "algorithms", "--defaults"], tmp.path());
    assert!(defaults.stdout.contains("[algorithm]\nname = \"stocbio\""));
    assert!(defaults.stdout.contains("neumann_terms = 10"));
}

/// `bilevel run` on the quadratic problem with `extra` args; returns the run folder.
#[cfg(feature = "wgpu")]
fn quadratic_run(tmp: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let cfg = write(
        tmp,
        "q.toml",
        &format!("{QUADRATIC}[algorithm]\nname = \"aid-cg\"\n[run]\nmax_iters = 30\n"),
    );
    let mut args = vec![
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        name,
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let out = bilevel(&args, tmp);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    tmp.join(name)
}

/// The same AID-CG run on wgpu (f32, the default there) and on ndarray (f64) ends at the same
/// iterate up to f32 rounding.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_run_matches_ndarray() {
    let tmp = tempfile::tempdir().unwrap();
    let gpu = quadratic_run(tmp.path(), "gpu", &["--backend", "wgpu"]);
    let cpu = quadratic_run(tmp.path(), "cpu", &["--backend", "ndarray"]);
    let status = read_json(&gpu.join("status.json"));
    assert_eq!(status["status"], "completed");
    assert_eq!(status["backend"], "wgpu-f32");
    let x = |run: &Path| -> Vec<f64> {
        read_json(&run.join("report.json"))["final_x"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let (g, c) = (x(&gpu), x(&cpu));
    assert_eq!(g.len(), c.len());
    let diff = g
        .iter()
        .zip(&c)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm = c.iter().map(|b| b * b).sum::<f64>().sqrt();
    assert!(norm > 1e-3, "the run did not move x: {c:?}");
    assert!(diff <= 1e-3 * norm, "wgpu {g:?} vs ndarray {c:?}");
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_rejects_f64() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "c.toml",
        &format!("{QUADRATIC}[algorithm]\nname = \"aid-cg\"\n"),
    );
    let out = bilevel(
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--backend",
            "wgpu",
            "--precision",
            "f64",
            "--out",
            "run",
        ],
        tmp.path(),
    );
    assert_clean_error(&out, 2, &["f32 only", "--backend flex"]);
}

/// No Vulkan driver (the loader pointed at a missing ICD file): a clean error naming the fix,
/// before any run folder is created, instead of wgpu's panic.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_without_an_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "c.toml",
        &format!("{QUADRATIC}[algorithm]\nname = \"aid-cg\"\n"),
    );
    let missing = tmp.path().join("no-such-icd.json");
    let out = Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args([
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--backend",
            "wgpu",
        ])
        .args(["--out", "run"])
        .env("VK_ICD_FILENAMES", &missing)
        .env("VK_DRIVER_FILES", &missing)
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let out = Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_clean_error(
        &out,
        2,
        &["no GPU adapter", "mesa-vulkan-drivers", "--backend flex"],
    );
    assert!(!tmp.path().join("run").exists());
}

/// A folder holding someone else's result files is not written into, and an empty folder name
/// (which would mean the current directory) is refused; nothing is written in either case.
/// Fails if `--out` only looked for our own status/config files (report.json would be
/// overwritten, issue 21's item 7) or if `dir = ""` ran into the current directory.
#[test]
fn foreign_result_folders_and_empty_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "c.toml",
        &format!("{QUADRATIC}[algorithm]\nname = \"itd\"\n[run]\nmax_iters = 2\n"),
    );
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("report.json"), "{\"mine\": true}").unwrap();
    assert_clean_error(
        &bilevel(
            &["run", "-q", "--config", "c.toml", "--out", "theirs"],
            tmp.path(),
        ),
        2,
        &["already holds report.json", "--out"],
    );
    assert_eq!(
        std::fs::read_to_string(theirs.join("report.json")).unwrap(),
        "{\"mine\": true}"
    );
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 1);
    // clap already refuses an empty `--out`.
    let out = bilevel(
        &["run", "-q", "--config", "c.toml", "--out", ""],
        tmp.path(),
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    write(
        tmp.path(),
        "d.toml",
        &format!("{QUADRATIC}[algorithm]\nname = \"itd\"\n[output]\ndir = \"\"\n"),
    );
    assert_clean_error(
        &bilevel(&["run", "-q", "--config", "d.toml"], tmp.path()),
        2,
        &["current directory"],
    );
    assert!(!tmp.path().join("config.toml").exists());
    assert!(!tmp.path().join("status.json").exists());
}

/// A huge value in a config is not echoed whole: the error stays a short paragraph naming
/// how much was left out (issue 21's item 9: a 10 MB string came back in the message). Fails
/// without the cut in `Failure::render` (the message is over 10 MB).
#[test]
fn huge_values_are_not_echoed_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let huge = "x".repeat(10_000_000);
    write(
        tmp.path(),
        "c.toml",
        &format!("{QUADRATIC}[algorithm]\nname = \"{huge}\"\n"),
    );
    let out = bilevel(&["check-config", "c.toml"], tmp.path());
    assert_clean_error(&out, 2, &["characters left out"]);
    assert!(out.stderr.len() < 5_000, "{} bytes", out.stderr.len());
}

/// A batch larger than the data is refused before the first iteration (issue 21, item 8:
/// `inner_batch = 1e12` aborted the process on its allocation), and the folder of that run,
/// where nothing was computed, takes the fixed config. Fails when the size is not checked
/// (exit 134 or a silent run) or when such a folder is refused as "already holds a run".
#[test]
fn a_run_refused_before_its_first_iteration_leaves_its_folder_reusable() {
    let tmp = tempfile::tempdir().unwrap();
    let text = |batch: &str| {
        format!(
            "{QUADRATIC}[algorithm]\nname = \"stocbio\"\ninner_batch = {batch}\nouter_batch = 5\n\
             jacobian_batch = 5\nhessian_batch = 5\n[run]\nmax_iters = 2\n"
        )
    };
    let cfg = write(tmp.path(), "c.toml", &text("1000000000000"));
    let out = bilevel(&run_args(&cfg, "o", &[]), tmp.path());
    assert_clean_error(&out, 2, &["inner_batch", "60 samples"]);
    let status = read_json(&tmp.path().join("o").join("status.json"));
    assert_eq!(status["status"], "failed");
    write(tmp.path(), "c.toml", &text("5"));
    let out = bilevel(&run_args(&cfg, "o", &[]), tmp.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("stopped before its first iteration"),
        "{}",
        out.stderr
    );
    assert_eq!(
        read_json(&tmp.path().join("o").join("report.json"))["iterations"],
        2
    );
}
