//! Fault injection for the `bilevel` binary: about 200 faults in seven groups (malformed
//! configs, out-of-range sizes, damaged data, signals at random points, a full disk, concurrent
//! runs on one folder, damaged and foreign checkpoints), each run on the debug binary with a
//! timeout and an address-space limit, and classified as
//!
//! - `clear error`: the expected non-zero exit, one short paragraph `error: … hint: …` naming
//!   what it should, no panic or backtrace;
//! - `handled`: the specified behaviour, checked (e.g. a resumed run ends bit-identical to the
//!   uninterrupted one, with the same records and CSV rows);
//! - `silent`: exit 0 where an error was expected, or wrong output (another exit code, a
//!   message that does not name the key, a wrong result);
//! - `abort`: killed by a signal the suite did not send, exit 134 or 101, or `panicked`;
//! - `hang`: past its timeout (then stopped with SIGINT, then SIGKILL).
//!
//! One test runs the table on a few threads, prints every case and the totals (`cargo test -p
//! bilevel-cli --test faults -- --nocapture`) and fails unless every case got its expected
//! class. `FAULTS_ONLY=text` runs only the cases whose `group/name` contains `text`.
//!
//! cli.rs holds the individual end-to-end tests; this file is the broad table.
//!
//! Mutation checks of the classification (each on a subset that passed before, each reverted):
//! - `configs/empty file` expected as `Handled`: the test failed, listing "configs/empty file:
//!   expected handled, got clear error";
//! - `Exit::sane` without its abort branch: `sizes/stocbio inner_batch = 1e12` (SIGABRT on an
//!   8 TB allocation) went from `abort` to `silent`, so that branch is what makes a process
//!   killed by a signal an abort;
//! - one bit of the baseline's x flipped in `matches`: `signals/SIGINT … after iteration 5`
//!   became `silent` ("final x bits differ from the uninterrupted run's …");
//! - SIGTERM expected to exit 0 instead of 130 in `stop`: `signals/SIGTERM … after iteration 99`
//!   became `silent` ("after SIGTERM: exit 130, expected exit 0").

#![cfg(unix)]

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bilevel_core::Checkpoint;
use bilevel_run::method::METHODS;

/// Longest a case's process may run before it counts as a hang.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How long a run has to honour SIGINT (and a long run to get going before it).
const GRACE: Duration = Duration::from_secs(5);
/// Address-space limit of every process (KiB): a missing size check fails with an allocation
/// error (an abort) instead of taking the machine's memory.
const MEMORY_LIMIT_KIB: u64 = 4 << 20;
/// Cases run at once.
const WORKERS: usize = 3;

// ---------------------------------------------------------------------------------------------
// Classes and verdicts

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    ClearError,
    Handled,
    Silent,
    Abort,
    Hang,
}

impl Class {
    const ALL: [Class; 5] = [
        Class::ClearError,
        Class::Handled,
        Class::Silent,
        Class::Abort,
        Class::Hang,
    ];

    fn label(self) -> &'static str {
        match self {
            Class::ClearError => "clear error",
            Class::Handled => "handled",
            Class::Silent => "silent",
            Class::Abort => "abort",
            Class::Hang => "hang",
        }
    }
}

/// How a case ended when it was not a clear error or handled.
#[derive(Debug)]
struct Verdict {
    class: Class,
    detail: String,
}

impl Verdict {
    fn new(class: Class, detail: impl Into<String>) -> Self {
        Self {
            class,
            detail: detail.into(),
        }
    }

    fn silent(detail: impl Into<String>) -> Self {
        Self::new(Class::Silent, detail)
    }
}

/// A case's result: the class it ended in, or the verdict of the first check that failed.
type Outcome = Result<Class, Verdict>;
/// One check inside a case.
type Step = Result<(), Verdict>;

/// `Ok` if `ok`, else silent misbehaviour described by `detail`.
fn check(ok: bool, detail: impl FnOnce() -> String) -> Step {
    if ok {
        Ok(())
    } else {
        Err(Verdict::silent(detail()))
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// How a process ended.
struct Exit {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    /// The limit it ran past, if it did.
    timed_out: Option<Duration>,
}

impl Exit {
    /// The first lines of stderr (else stdout), each cut short.
    fn head(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        text.trim()
            .lines()
            .take(3)
            .map(|l| l.chars().take(240).collect::<String>())
            .collect::<Vec<_>>()
            .join(" | ")
    }

    fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => "no status".into(),
        }
    }

    /// `Err` when the process hung, died of a signal, panicked or reported an internal error.
    fn sane(&self) -> Step {
        if let Some(limit) = self.timed_out {
            return Err(Verdict::new(
                Class::Hang,
                format!("no exit within {} s: {}", limit.as_secs(), self.head()),
            ));
        }
        let panicked = ["panicked", "RUST_BACKTRACE", "stack backtrace"]
            .iter()
            .any(|p| self.stderr.contains(p));
        if self.signal.is_some() || matches!(self.code, Some(101 | 134)) || panicked {
            return Err(Verdict::new(
                Class::Abort,
                format!("{}: {}", self.describe(), self.head()),
            ));
        }
        Ok(())
    }

    /// A sane exit with `code`.
    fn expect_code(&self, code: i32, what: &str) -> Step {
        self.sane()?;
        check(self.code == Some(code), || {
            format!(
                "{what}: {}, expected exit {code}: {}",
                self.describe(),
                self.head()
            )
        })
    }

    /// A clear error: exit in `codes`, one short paragraph `error: … hint: …`, and each needle
    /// (a needle `a|b` matches either) in stderr.
    fn clear_error(&self, codes: &[i32], needles: &[&str]) -> Outcome {
        self.sane()?;
        if self.code == Some(0) {
            return Err(Verdict::silent(format!(
                "exit 0 where an error was expected (stdout and stderr: {:?})",
                self.head()
            )));
        }
        let err = self.stderr.trim();
        let mut wrong = Vec::new();
        if !self.code.is_some_and(|c| codes.contains(&c)) {
            wrong.push(format!("{}, expected {codes:?}", self.describe()));
        }
        if !err.starts_with("error: ") || !err.contains("\nhint: ") || err.contains("\n\n") {
            wrong.push("not one `error: … hint: …` paragraph".into());
        }
        if err.len() > 8_000 {
            wrong.push(format!("a {}-byte error", err.len()));
        }
        for n in needles {
            if !n.split('|').any(|alt| err.contains(alt)) {
                wrong.push(format!("no {n:?}"));
            }
        }
        if wrong.is_empty() {
            Ok(Class::ClearError)
        } else {
            Err(Verdict::silent(format!(
                "{}: {}",
                wrong.join("; "),
                self.head()
            )))
        }
    }
}

/// A running `bilevel` (under `sh`, which sets the memory limit and execs it: same pid).
struct Proc {
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

fn drain(mut from: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        bytes
    })
}

fn start_with(cwd: &Path, args: &[&str], env: &[(&str, &Path)]) -> Proc {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -v {MEMORY_LIMIT_KIB} 2>/dev/null; exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_bilevel"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_BACKTRACE")
        // Few malloc arenas: their address-space reservations stay far below the limit on
        // machines with many cores.
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("sh runs");
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    Proc {
        child,
        stdout,
        stderr,
    }
}

fn start(cwd: &Path, args: &[&str]) -> Proc {
    start_with(cwd, args, &[])
}

/// Runs `bilevel args` in `cwd` to its end (or its timeout).
fn exec(cwd: &Path, args: &[&str]) -> Exit {
    start(cwd, args).finish(TIMEOUT)
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

impl Proc {
    /// Sends `SIG<name>` (`INT`, `TERM`, `HUP`, `KILL`, `STOP`, `CONT`).
    fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits (at most `limit`) until `ready()` while the process runs; false if it ended first
    /// or the time ran out.
    fn wait_until(&mut self, limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        while self.running() && start.elapsed() < limit {
            if ready() {
                return true;
            }
            sleep_ms(2);
        }
        false
    }

    /// Waits at most `limit` for the exit; past it, SIGINT, then SIGKILL 3 s later, and the
    /// exit counts as timed out.
    fn finish(&mut self, limit: Duration) -> Exit {
        let start = Instant::now();
        let mut timed_out = None;
        let status = loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                break s;
            }
            if start.elapsed() > limit {
                timed_out = Some(limit);
                self.signal("INT");
                let stop = Instant::now();
                while self.running() && stop.elapsed() < Duration::from_secs(3) {
                    sleep_ms(10);
                }
                let _ = self.child.kill();
                break self.child.wait().expect("wait");
            }
            sleep_ms(3);
        };
        let text = |h: Option<JoinHandle<Vec<u8>>>| {
            String::from_utf8_lossy(&h.map(|h| h.join().unwrap()).unwrap_or_default()).into_owned()
        };
        Exit {
            code: status.code(),
            signal: status.signal(),
            stdout: text(self.stdout.take()),
            stderr: text(self.stderr.take()),
            timed_out,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Files and configs

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// `status` in `run/status.json`, if readable.
fn status_of(run: &Path) -> Option<String> {
    read_json(&run.join("status.json"))?["status"]
        .as_str()
        .map(str::to_string)
}

/// Copies the plain files of `from` into a new folder `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Deterministic pseudo-random numbers (xorshift64*), for delays and garbage bytes.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 56) as u8).collect()
    }
}

const QUADRATIC: &str = "[problem]\nkind = \"quadratic\"\nx_dim = 3\ny_dim = 4\ninner_rows = 60\n\
                         outer_rows = 60\n";
const LIU_HARD: &str = "[problem]\nkind = \"liu-hard\"\n";
/// `[run]` of a config that only has to start.
const SHORT: &str = "max_iters = 2\n";

/// `problem`, then `[algorithm] name = "algorithm"` with `keys`, then `[run]` with `run`.
fn config(problem: &str, algorithm: &str, keys: &str, run: &str) -> String {
    format!("{problem}[algorithm]\nname = \"{algorithm}\"\n{keys}[run]\n{run}")
}

/// A short quadratic config with `keys` in `[algorithm]` (of `algorithm`) and `run` in `[run]`.
fn quadratic(algorithm: &str, keys: &str, run: &str) -> String {
    config(QUADRATIC, algorithm, keys, run)
}

/// stocBiO settings of the long run (it draws batches: its RNG must survive a checkpoint).
const STOCBIO: &str = "inner_steps = 2\ninner_batch = 5\nouter_batch = 5\njacobian_batch = 5\n\
                       hessian_batch = 5\nneumann_terms = 2\nneumann_step = 0.1\n\
                       outer_step = 0.05\n";
const LONG_ITERS: u64 = 1000;

/// The run the signal, disk and concurrency groups stop: ~2 s, a checkpoint every iteration.
fn long_config(seed: u64) -> String {
    quadratic(
        "stocbio",
        STOCBIO,
        &format!(
            "max_iters = {LONG_ITERS}\neval_every = 25\ncheckpoint_every = 1\nseed = {seed}\n"
        ),
    )
}

/// Writes the long config to `cwd/c.toml` and starts it into `cwd/run`.
fn start_long(cwd: &Path) -> Proc {
    write(&cwd.join("c.toml"), long_config(11));
    start(cwd, &["run", "-q", "--config", "c.toml", "--out", "run"])
}

/// The iteration of `run/checkpoint.json`, if it is readable.
fn checkpoint_iter(run: &Path) -> Option<u64> {
    read_json(&run.join("checkpoint.json"))?["state"]["iter"].as_u64()
}

/// Waits while `p` runs until `cwd/run/checkpoint.json` is at iteration `k` or later (a point
/// in the run that does not depend on the machine's speed).
fn wait_iteration(p: &mut Proc, cwd: &Path, k: u64) -> Step {
    let run = cwd.join("run");
    if p.wait_until(TIMEOUT, || checkpoint_iter(&run).is_some_and(|i| i >= k)) {
        return Ok(());
    }
    if p.running() {
        return Err(Verdict::new(
            Class::Hang,
            format!(
                "no checkpoint of iteration {k} within {} s",
                TIMEOUT.as_secs()
            ),
        ));
    }
    let exit = p.finish(Duration::ZERO);
    exit.sane()?;
    Err(Verdict::silent(format!(
        "the run ended ({}) before its checkpoint of iteration {k}: {}",
        exit.describe(),
        exit.head()
    )))
}

/// What a finished run folder must agree on with the uninterrupted run.
#[derive(Debug, PartialEq)]
struct Fingerprint {
    /// Bits of the report's final x.
    x: Vec<u64>,
    /// Iterations of the report's records.
    records: Vec<u64>,
    /// Iteration column of metrics.csv.
    csv: Vec<String>,
}

fn fingerprint(run: &Path) -> Result<Fingerprint, String> {
    let report = read_json(&run.join("report.json")).ok_or("no readable report.json")?;
    let numbers =
        |key: &str, f: fn(&serde_json::Value) -> Option<u64>| -> Result<Vec<u64>, String> {
            report[key]
                .as_array()
                .ok_or(format!("report.json has no {key}"))?
                .iter()
                .map(|v| f(v).ok_or(format!("bad {key} entry {v}")))
                .collect()
        };
    let csv = std::fs::read_to_string(run.join("metrics.csv"))
        .map_err(|e| format!("metrics.csv: {e}"))?;
    Ok(Fingerprint {
        x: numbers("final_x", |v| v.as_f64().map(f64::to_bits))?,
        records: numbers("records", |v| v["iter"].as_u64())?,
        csv: csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap_or("").to_string())
            .collect(),
    })
}

/// The uninterrupted long run.
fn baseline() -> &'static Fingerprint {
    static BASELINE: OnceLock<Fingerprint> = OnceLock::new();
    BASELINE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let exit = start_long(tmp.path()).finish(TIMEOUT);
        assert_eq!(
            exit.code,
            Some(0),
            "the baseline run failed: {}",
            exit.stderr
        );
        fingerprint(&tmp.path().join("run")).expect("the baseline's report")
    })
}

/// `run` is completed and agrees bit for bit with `want`.
fn matches(run: &Path, want: &Fingerprint) -> Step {
    has_status(run, "completed")?;
    let got = fingerprint(run).map_err(Verdict::silent)?;
    differ("final x bits", &got.x, &want.x)?;
    differ("record iterations", &got.records, &want.records)?;
    differ("CSV iterations", &got.csv, &want.csv)
}

/// `Err` naming the first difference of `got` from the uninterrupted run's `want`.
fn differ<T: PartialEq + std::fmt::Debug>(what: &str, got: &[T], want: &[T]) -> Step {
    let at = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i));
    check(at.is_none(), || {
        let i = at.unwrap_or(0);
        format!(
            "{what} differ from the uninterrupted run's: {} entries instead of {}, the first \
             difference at entry {i}: {:?} instead of {:?}",
            got.len(),
            want.len(),
            got.get(i),
            want.get(i)
        )
    })
}

fn matches_baseline(run: &Path) -> Step {
    matches(run, baseline())
}

/// `bilevel run -q --resume run` in `cwd`.
fn resume(cwd: &Path) -> Exit {
    exec(cwd, &["run", "-q", "--resume", "run"])
}

/// Resumes `cwd/run` to its end: exit 0 and the uninterrupted run's result.
fn resume_matches(cwd: &Path) -> Outcome {
    resume(cwd).expect_code(0, "the resume")?;
    matches_baseline(&cwd.join("run"))?;
    Ok(Class::Handled)
}

/// `run/status.json` says `want`.
fn has_status(run: &Path, want: &str) -> Step {
    let status = status_of(run);
    check(status.as_deref() == Some(want), || {
        format!("status {status:?}, expected {want:?}")
    })
}

/// Nothing in `run` claims a completed run.
fn not_completed(run: &Path) -> Step {
    let status = status_of(run);
    check(status.as_deref() != Some("completed"), || {
        "status.json says completed after a failure".into()
    })?;
    check(!run.join("report.json").exists(), || {
        "report.json written by a failed run".into()
    })
}

// ---------------------------------------------------------------------------------------------
// Cases

type Body = Box<dyn FnOnce(&Path) -> Outcome + Send>;

struct Case {
    group: &'static str,
    name: String,
    expect: Class,
    /// Runs in a fresh temporary folder.
    body: Body,
}

fn case(
    group: &'static str,
    name: impl Into<String>,
    expect: Class,
    body: impl FnOnce(&Path) -> Outcome + Send + 'static,
) -> Case {
    Case {
        group,
        name: name.into(),
        expect,
        body: Box::new(body),
    }
}

// --- 1. Malformed configs ---------------------------------------------------------------------

/// `run --config c.toml --out out` and `check-config c.toml` both fail with exit 2 and the
/// needles, and no run folder is created.
fn bad_config(
    name: impl Into<String>,
    bytes: impl Into<Vec<u8>>,
    needles: &'static [&str],
) -> Case {
    let bytes = bytes.into();
    case("configs", name, Class::ClearError, move |cwd| {
        write(&cwd.join("c.toml"), &bytes);
        let run = exec(cwd, &["run", "-q", "--config", "c.toml", "--out", "out"]);
        run.clear_error(&[2], needles)?;
        check(!cwd.join("out").exists(), || {
            "a config error created the run folder".into()
        })?;
        exec(cwd, &["check-config", "c.toml"]).clear_error(&[2], needles)
    })
}

/// A valid config (`check-config` accepts it) whose run, with `extra` arguments, completes.
fn good_config(name: &str, text: String, extra: &'static [&'static str]) -> Case {
    case("configs", name, Class::Handled, move |cwd| {
        write(&cwd.join("c.toml"), &text);
        exec(cwd, &["check-config", "c.toml"]).expect_code(0, "check-config")?;
        let mut args = vec!["run", "-q", "--config", "c.toml", "--out", "out"];
        args.extend_from_slice(extra);
        exec(cwd, &args).expect_code(0, "the run")?;
        has_status(&cwd.join("out"), "completed")?;
        Ok(Class::Handled)
    })
}

/// `run --config c.toml --out out` with `extra` arguments is refused with exit 2 and the
/// needles (any `error:` line where `needles` is empty: clap's own errors), creating nothing.
fn bad_usage(name: &str, extra: &'static [&'static str], needles: &'static [&str]) -> Case {
    case("configs", name, Class::ClearError, move |cwd| {
        write(&cwd.join("c.toml"), short_itd());
        let mut args = vec!["run", "-q", "--config", "c.toml", "--out", "out"];
        args.extend_from_slice(extra);
        let exit = exec(cwd, &args);
        if needles.is_empty() {
            exit.expect_code(2, "clap")?;
            check(exit.stderr.starts_with("error:"), || exit.head())?;
        } else {
            exit.clear_error(&[2], needles)?;
        }
        check(!cwd.join("out").exists(), || {
            "a refused command line created the run folder".into()
        })?;
        Ok(Class::ClearError)
    })
}

/// `text` with `byte` inserted after the first character of `at`.
fn with_byte(text: String, at: &str, byte: u8) -> Vec<u8> {
    let i = text.find(at).expect("marker") + 1;
    let mut bytes = text.into_bytes();
    bytes.insert(i, byte);
    bytes
}

/// The config the edits below start from: `[problem]` on lines 1-6, `[algorithm]` on 7-8,
/// `[run]` on 9-10.
fn short_itd() -> String {
    quadratic("itd", "", SHORT)
}

/// Edits of [`short_itd`]: (case, text replaced, replacement, needles of the error).
#[rustfmt::skip]
const EDITS: &[(&str, &str, &str, &[&str])] = &[
    ("unclosed table header", "[problem]", "[problem", &["c.toml:1"]),
    ("bare word value", "\"quadratic\"", "quadratic", &["c.toml:2"]),
    ("missing equals", "kind =", "kind", &["c.toml:2"]),
    ("unterminated string", "\"itd\"", "\"itd", &["c.toml:8"]),
    ("two values on a line", "x_dim = 3", "x_dim = 3 4", &["c.toml:3"]),
    ("NUL byte in a table name", "[algorithm]", "[algo\0rithm]", &["c.toml:7"]),
    ("duplicate key", "x_dim = 3", "x_dim = 3\nx_dim = 4", &["duplicate key", "c.toml:4"]),
    ("duplicate table", "[run]", "[problem]\n[run]", &["duplicate"]),
    ("no [algorithm]", "[algorithm]\nname = \"itd\"\n", "", &["missing field `algorithm`"]),
    ("[problem] without kind", "kind = \"quadratic\"\n", "", &["missing field `kind`"]),
    ("[algorithm] without name", "name = \"itd\"\n", "", &["missing field `name`"]),
    ("algorithm name in capitals", "\"itd\"", "\"ITD\"", &["unknown algorithm `ITD`", "list"]),
    ("unknown problem kind", "quadratic", "quadratik", &["quadratik", "quadratic"]),
    ("unknown key in [problem]", "x_dim", "xdim", &["unknown field `xdim`"]),
    ("unknown table", "[run]", "[runn]\nx = 1\n[run]", &["unknown field `runn`"]),
    ("[problem] is a number", "[problem]\n", "problem = 5\n[p]\n", &["c.toml:1"]),
    ("kind is a number", "\"quadratic\"", "5", &["kind|c.toml:2"]),
    ("name is a number", "\"itd\"", "5", &["name|c.toml:8"]),
    ("x_dim is a string", "x_dim = 3", "x_dim = \"3\"", &["invalid type", "x_dim|c.toml:3"]),
    ("x_dim is a float", "x_dim = 3", "x_dim = 3.5", &["invalid type", "x_dim|c.toml:3"]),
    ("y_dim is negative", "y_dim = 4", "y_dim = -4", &["-4", "y_dim|c.toml:4"]),
    ("noise = nan", "outer_rows = 60", "outer_rows = 60\nnoise = nan", &["noise"]),
    ("noise = -1", "outer_rows = 60", "outer_rows = 60\nnoise = -1.0", &["noise"]),
    ("stocbio neumann_step = nan", "\"itd\"", "\"stocbio\"\nneumann_step = nan", &["neumann_step"]),
    ("max_iters is a string", "max_iters = 2", "max_iters = \"2\"", &["invalid type", "c.toml:10"]),
    ("max_iters = 0", "max_iters = 2", "max_iters = 0", &["run.max_iters"]),
    ("max_iters = -5", "max_iters = 2", "max_iters = -5", &["-5", "c.toml:10"]),
];

/// Keys added to a table of [`short_itd`] (`[algorithm]` on line 9, `[run]` on 11, a new
/// `[output]` on 12): (table, key line, needles of the error).
#[rustfmt::skip]
const KEYS: &[(&str, &str, &[&str])] = &[
    ("algorithm", "inner_step = \"0.1\"", &["invalid type", "inner_step|c.toml:9"]),
    ("algorithm", "inner_steps = 2.5", &["invalid type", "inner_steps|c.toml:9"]),
    ("algorithm", "inner_steps = -1", &["-1", "inner_steps|c.toml:9"]),
    ("algorithm", "inner_steps = 0", &["`inner_steps`"]),
    ("algorithm", "inner_step = nan", &["`inner_step`"]),
    ("algorithm", "inner_step = inf", &["`inner_step`"]),
    ("algorithm", "inner_step = 0.0", &["`inner_step`"]),
    ("algorithm", "outer_step = -inf", &["`outer_step`"]),
    ("run", "max_iterations = 3", &["unknown field `max_iterations`"]),
    ("run", "eval_every = true", &["invalid type", "c.toml:11"]),
    ("run", "checkpoint_every = [1]", &["invalid type", "c.toml:11"]),
    ("run", "time_budget_s = \"1h\"", &["invalid type", "c.toml:11"]),
    ("run", "eval_every = 0", &["run.eval_every"]),
    ("run", "checkpoint_every = 0", &["run.checkpoint_every"]),
    ("run", "time_budget_s = nan", &["run.time_budget_s"]),
    ("run", "time_budget_s = -1.0", &["run.time_budget_s"]),
    ("run", "grad_tolerance = nan", &["grad_tolerance"]),
    ("run", "finite_difference_step = 0.0", &["finite_difference_step"]),
    ("run", "seed = -1", &["-1", "c.toml:11"]),
    ("run", "seed = 18446744073709551616", &["c.toml:11"]),
    ("output", "log_evry = 2", &["unknown field `log_evry`"]),
    ("output", "dir = 5", &["invalid type", "c.toml:12"]),
    ("output", "log_every = -1", &["-1", "c.toml:12"]),
    ("output", "log_every = 0", &["log_every"]),
];

fn config_cases() -> Vec<Case> {
    let base = short_itd();
    let huge = "x".repeat(1 << 20);
    let deep = 5_000;
    let nested = |value: String| base.clone() + &format!("[output]\nx = {value}\n");
    let mut cases = vec![
        bad_config("empty file", "", &["missing field `problem`"]),
        bad_config(
            "no [problem]",
            base.replace(QUADRATIC, ""),
            &["missing field `problem`"],
        ),
        bad_config(
            "binary garbage",
            XorShift(7).bytes(4096),
            &["cannot read the config file"],
        ),
        bad_config(
            "non-UTF-8 in a string",
            with_byte(base.clone(), "itd", 0xff),
            &["UTF-8"],
        ),
        bad_config(
            "1 MB key",
            base.replace(SHORT, &format!("{huge} = 1\n")),
            &["characters left out"],
        ),
        bad_config(
            "1 MB problem kind",
            base.replace("quadratic", &huge),
            &["characters left out"],
        ),
        bad_config(
            "deeply nested arrays",
            nested("[".repeat(deep) + &"]".repeat(deep)),
            &["recursion"],
        ),
        bad_config(
            "deeply nested inline tables",
            nested("{a = ".repeat(deep) + "1" + &"}".repeat(deep)),
            &["recursion"],
        ),
        bad_config(
            "deeply nested table header",
            base.clone() + &format!("[{}]\n", vec!["t"; deep].join(".")),
            &["recursion"],
        ),
        bad_usage("--seed -1", &["--seed", "-1"], &[]),
        bad_usage("--seed 2^64", &["--seed", "18446744073709551616"], &[]),
        bad_usage("--log-format xml", &["--log-format", "xml"], &[]),
        bad_usage(
            "--seed 2^64-1 (no TOML integer holds it)",
            &["--seed", "18446744073709551615"],
            &["seed"],
        ),
        good_config(
            "seed = 2^63-1",
            base.replace(SHORT, "max_iters = 2\nseed = 9223372036854775807\n"),
            &[],
        ),
        good_config(
            "--seed 2^63-1",
            base.clone(),
            &["--seed", "9223372036854775807"],
        ),
        good_config("CRLF line endings", base.replace('\n', "\r\n"), &[]),
    ];
    for (name, from, to, needles) in EDITS {
        assert!(base.contains(from), "{name}: {from:?}");
        cases.push(bad_config(*name, base.replacen(from, to, 1), needles));
    }
    for (table, key, needles) in KEYS {
        let (after, new) = match *table {
            "algorithm" => ("\"itd\"\n", format!("{key}\n")),
            "run" => (SHORT, format!("{key}\n")),
            _ => (SHORT, format!("[output]\n{key}\n")),
        };
        let text = base.replacen(after, &format!("{after}{new}"), 1);
        cases.push(bad_config(format!("[{table}] {key}"), text, needles));
    }
    // Every algorithm with one key it does not have.
    for m in METHODS {
        cases.push(bad_config(
            format!("{} with a bogus key", m.name),
            quadratic(m.name, "bogus_key = 1\n", SHORT),
            &["unknown field `bogus_key`"],
        ));
    }
    cases
}

// --- 2. Out-of-range sizes --------------------------------------------------------------------

/// 10^12, as an integer.
const TERA: &str = "1000000000000";

/// A run refused (exit 1 or 2) with a message naming `key`.
fn refused(name: impl Into<String>, text: String, key: &'static str) -> Case {
    case("sizes", name, Class::ClearError, move |cwd| {
        write(&cwd.join("c.toml"), &text);
        exec(cwd, &["run", "-q", "--config", "c.toml", "--out", "run"]).clear_error(&[1, 2], &[key])
    })
}

/// A run that completes; with `warn`, stderr holds a warning naming that key.
fn accepted(name: &str, text: String, warn: Option<&'static str>) -> Case {
    case("sizes", name, Class::Handled, move |cwd| {
        write(&cwd.join("c.toml"), &text);
        let exit = exec(cwd, &["run", "--config", "c.toml", "--out", "run"]);
        exit.expect_code(0, "the run")?;
        if let Some(key) = warn {
            check(
                exit.stderr.to_lowercase().contains("warning") && exit.stderr.contains(key),
                || {
                    format!(
                        "no warning naming `{key}` (stderr: {:?})",
                        exit.stderr.trim()
                    )
                },
            )?;
        }
        Ok(Class::Handled)
    })
}

/// A run that cannot end soon by design: SIGINT stops it within [`GRACE`] with exit 130, a
/// checkpoint and status "interrupted", and its `--resume` starts and stops the same way. A
/// run that completes on its own first is handled too.
fn interruptible(name: &str, text: String) -> Case {
    case("sizes", name, Class::Handled, move |cwd| {
        write(&cwd.join("c.toml"), &text);
        let mut run = start(cwd, &["run", "-q", "--config", "c.toml", "--out", "run"]);
        if !interrupt_after_start(&mut run, cwd, "the run")? {
            let mut resumed = start(cwd, &["run", "-q", "--resume", "run"]);
            interrupt_after_start(&mut resumed, cwd, "the resume")?;
        }
        Ok(Class::Handled)
    })
}

/// Lets `p` run for a second, then SIGINT (see [`interruptible`]); true if it completed first.
fn interrupt_after_start(p: &mut Proc, cwd: &Path, what: &str) -> Result<bool, Verdict> {
    let run = cwd.join("run");
    p.wait_until(TIMEOUT, || run.join("status.json").exists());
    p.wait_until(Duration::from_secs(1), || false);
    if !p.running() {
        p.finish(Duration::ZERO).expect_code(0, what)?;
        has_status(&run, "completed")?;
        return Ok(true);
    }
    p.signal("INT");
    let exit = p.finish(GRACE);
    if exit.timed_out.is_some() {
        return Err(Verdict::new(
            Class::Hang,
            format!("{what}: SIGINT not honoured within {} s", GRACE.as_secs()),
        ));
    }
    exit.expect_code(130, &format!("{what} after SIGINT"))?;
    check(run.join("checkpoint.json").exists(), || {
        format!("{what}: exit 130 without checkpoint.json")
    })?;
    has_status(&run, "interrupted")?;
    Ok(false)
}

fn size_cases() -> Vec<Case> {
    let stocbio = |keys: &str| quadratic("stocbio", keys, SHORT);
    let problem = |from: &str, to: &str| config(&QUADRATIC.replace(from, to), "itd", "", SHORT);
    let long = |algorithm: &str, keys: &str| {
        quadratic(algorithm, keys, "max_iters = 5\ncheckpoint_every = 1\n")
    };
    let mut cases = Vec::new();
    for key in [
        "inner_batch",
        "outer_batch",
        "jacobian_batch",
        "hessian_batch",
    ] {
        cases.push(refused(
            format!("stocbio {key} = 0"),
            stocbio(&format!("{key} = 0\n")),
            key,
        ));
        cases.push(refused(
            format!("stocbio {key} = 1e12"),
            stocbio(&format!("{key} = {TERA}\n")),
            key,
        ));
        cases.push(refused(
            format!("stocbio {key} = 100000 > rows"),
            stocbio(&format!("{key} = 100000\n")),
            key,
        ));
    }
    let other = |algorithm: &str, key: &'static str, value: &str| {
        refused(
            format!("{algorithm} {key} = {}", value.replace(TERA, "1e12")),
            quadratic(algorithm, &format!("{key} = {value}\n"), SHORT),
            key,
        )
    };
    cases.extend([
        refused(
            "stocbio inner_batch = inner_rows + 1",
            stocbio("inner_batch = 61\n"),
            "inner_batch",
        ),
        accepted(
            "stocbio inner_batch = inner_rows",
            stocbio("inner_batch = 60\n"),
            None,
        ),
        refused(
            "stocbio outer_batch = outer_rows + 1",
            stocbio("outer_batch = 61\n"),
            "outer_batch",
        ),
        accepted(
            "stocbio outer_batch = outer_rows",
            stocbio("outer_batch = 60\n"),
            None,
        ),
        other("bsa", "inner_batch", "100000"),
        other("ttsa", "hessian_batch", "100000"),
        other("fsla", "jacobian_batch", "100000"),
        other("pzobo-s", "outer_batch", "100000"),
        other("sid-bsgm", "batch_size", "100000"),
        other("amigo", "batch_size", TERA),
        accepted(
            "liu-hard (deterministic) stocbio inner_batch = 5 warns",
            config(LIU_HARD, "stocbio", "inner_batch = 5\n", SHORT),
            Some("inner_batch"),
        ),
        accepted(
            "liu-hard (deterministic) fsla hessian_batch = 5 warns",
            config(LIU_HARD, "fsla", "hessian_batch = 5\n", SHORT),
            Some("hessian_batch"),
        ),
        refused("x_dim = 0", problem("x_dim = 3", "x_dim = 0"), "x_dim"),
        refused("y_dim = 0", problem("y_dim = 4", "y_dim = 0"), "y_dim"),
        refused(
            "inner_rows = 0",
            problem("inner_rows = 60", "inner_rows = 0"),
            "inner_rows",
        ),
        refused(
            "x_dim = 1e12",
            problem("x_dim = 3", &format!("x_dim = {TERA}")),
            "x_dim",
        ),
        refused(
            "y_dim = 1e12",
            problem("y_dim = 4", &format!("y_dim = {TERA}")),
            "y_dim",
        ),
        refused(
            "inner_rows = 1e12",
            problem("inner_rows = 60", &format!("inner_rows = {TERA}")),
            "inner_rows",
        ),
        refused(
            "outer_rows = 1e12",
            problem("outer_rows = 60", &format!("outer_rows = {TERA}")),
            "outer_rows",
        ),
        refused(
            "itd inner_steps = 1e12 (stored trajectory)",
            quadratic("itd", &format!("inner_steps = {TERA}\n"), SHORT),
            "inner_steps",
        ),
    ]);
    for (algorithm, key) in [
        ("stocbio", "neumann_terms"),
        ("pzobo", "directions"),
        ("hozog", "directions"),
        ("aid-cg", "cg_steps"),
        ("aid-cg", "inner_steps"),
        ("stocbio", "inner_steps"),
    ] {
        cases.push(interruptible(
            &format!("{algorithm} {key} = 1e12"),
            long(algorithm, &format!("{key} = {TERA}\n")),
        ));
    }
    cases
}

// --- 3. Damaged data --------------------------------------------------------------------------

const MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// A small hyper-cleaning config reading MNIST from `dir` (else from `$BILEVEL_ASSETS/mnist`).
fn hyper_cleaning(dir: Option<&Path>) -> String {
    let data = dir
        .map(|d| format!("mnist_dir = \"{}\"\n", d.display()))
        .unwrap_or_default();
    config(
        &format!(
            "[problem]\nkind = \"hyper-cleaning\"\ntrain = 200\nval = 100\ntest = 100\n{data}"
        ),
        "stocbio",
        "",
        SHORT,
    )
}

/// Copies the bundled MNIST into `dir` and applies `damage` to it.
fn mnist_copy(dir: &Path, damage: impl FnOnce(&Path)) {
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/mnist");
    std::fs::create_dir_all(dir).unwrap();
    for name in MNIST_FILES {
        std::fs::copy(bundled.join(name), dir.join(name)).unwrap();
    }
    damage(dir);
}

/// The bytes of `dir/name`, changed by `edit`.
fn edit_file(dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.join(name);
    let mut bytes = std::fs::read(&path).unwrap();
    edit(&mut bytes);
    write(&path, bytes);
}

/// Replaces `dir/name.gz` by a plain (uncompressed) `dir/name` holding `bytes`.
fn plain_instead(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::remove_file(dir.join(format!("{name}.gz"))).unwrap();
    write(&dir.join(name), bytes);
}

/// How a hyper-cleaning run on damaged data ended: a clear error naming the needles and a run
/// folder that claims nothing, or (`Handled`) a completed run.
fn data_outcome(exit: &Exit, cwd: &Path, expect: Class, needles: &[&str]) -> Outcome {
    if expect == Class::Handled {
        exit.expect_code(0, "the run")?;
        has_status(&cwd.join("run"), "completed")?;
        return Ok(Class::Handled);
    }
    let class = exit.clear_error(&[1, 2], needles)?;
    not_completed(&cwd.join("run"))?;
    Ok(class)
}

fn damaged_data(
    name: &str,
    expect: Class,
    needles: &'static [&'static str],
    damage: impl FnOnce(&Path) + Send + 'static,
) -> Case {
    case("data", name, expect, move |cwd| {
        let mnist = cwd.join("mnist");
        mnist_copy(&mnist, damage);
        write(&cwd.join("c.toml"), hyper_cleaning(Some(&mnist)));
        let exit = exec(cwd, &["run", "-q", "--config", "c.toml", "--out", "run"]);
        data_outcome(&exit, cwd, expect, needles)
    })
}

fn data_cases() -> Vec<Case> {
    use std::os::unix::fs::symlink;
    let error = Class::ClearError;
    vec![
        damaged_data(
            "train images cut in half",
            error,
            &["corrupt", "train-images-idx3-ubyte"],
            |d| edit_file(d, MNIST_FILES[0], |b| b.truncate(b.len() / 2)),
        ),
        damaged_data(
            "train images empty",
            error,
            &["train-images-idx3-ubyte"],
            |d| edit_file(d, MNIST_FILES[0], Vec::clear),
        ),
        damaged_data(
            "test images deleted",
            error,
            &["missing", "t10k-images-idx3-ubyte"],
            |d| std::fs::remove_file(d.join(MNIST_FILES[2])).unwrap(),
        ),
        damaged_data(
            "train labels with flipped bytes",
            error,
            &["corrupt", "train-labels-idx1-ubyte"],
            |d| {
                edit_file(d, MNIST_FILES[1], |b| {
                    let mid = b.len() / 2;
                    for x in &mut b[mid..mid + 16] {
                        *x = !*x;
                    }
                })
            },
        ),
        damaged_data(
            "test labels plain garbage",
            error,
            &["corrupt", "t10k-labels-idx1-ubyte"],
            |d| plain_instead(d, "t10k-labels-idx1-ubyte", &XorShift(3).bytes(10_008)),
        ),
        damaged_data(
            "train labels with the images' magic",
            error,
            &["train-labels-idx1-ubyte"],
            |d| {
                let mut bytes = vec![0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 1, 0, 0, 0, 1];
                bytes.extend([0; 10]);
                plain_instead(d, "train-labels-idx1-ubyte", &bytes)
            },
        ),
        damaged_data(
            "train labels claim 2^32-1 labels",
            error,
            &["train-labels-idx1-ubyte"],
            |d| {
                plain_instead(
                    d,
                    "train-labels-idx1-ubyte",
                    &[0, 0, 8, 1, 255, 255, 255, 255, 1, 2, 3],
                )
            },
        ),
        damaged_data(
            "train images claim 60000 of 65535x65535",
            error,
            &["train-images-idx3-ubyte"],
            |d| {
                let header = [0, 0, 8, 3, 0, 0, 0xea, 0x60, 0, 0, 255, 255, 0, 0, 255, 255];
                plain_instead(d, "train-images-idx3-ubyte", &header)
            },
        ),
        damaged_data(
            "test labels are a folder",
            error,
            &["t10k-labels-idx1-ubyte"],
            |d| {
                std::fs::remove_file(d.join(MNIST_FILES[3])).unwrap();
                std::fs::create_dir(d.join(MNIST_FILES[3])).unwrap();
            },
        ),
        damaged_data(
            "train images a dangling symlink",
            error,
            &["train-images-idx3-ubyte"],
            |d| {
                std::fs::remove_file(d.join(MNIST_FILES[0])).unwrap();
                symlink(d.join("nowhere"), d.join(MNIST_FILES[0])).unwrap();
            },
        ),
        damaged_data(
            "train images a symlink to /dev/null",
            error,
            &["train-images-idx3-ubyte"],
            |d| {
                std::fs::remove_file(d.join(MNIST_FILES[0])).unwrap();
                symlink("/dev/null", d.join(MNIST_FILES[0])).unwrap();
            },
        ),
        damaged_data(
            "train and test labels swapped",
            error,
            &["labels-idx1-ubyte"],
            |d| {
                let (a, b, t) = (
                    d.join(MNIST_FILES[1]),
                    d.join(MNIST_FILES[3]),
                    d.join("tmp"),
                );
                std::fs::rename(&a, &t).unwrap();
                std::fs::rename(&b, &a).unwrap();
                std::fs::rename(&t, &b).unwrap();
            },
        ),
        damaged_data(
            "test images only the gzip header",
            error,
            &["t10k-images-idx3-ubyte"],
            |d| edit_file(d, MNIST_FILES[2], |b| b.truncate(10)),
        ),
        damaged_data(
            "train labels gzip member twice",
            error,
            &["train-labels-idx1-ubyte"],
            |d| edit_file(d, MNIST_FILES[1], |b| b.extend(b.clone())),
        ),
        damaged_data(
            "plain garbage beside an intact .gz",
            error,
            &["train-labels-idx1-ubyte"],
            |d| write(&d.join("train-labels-idx1-ubyte"), b"not an IDX file"),
        ),
        damaged_data("mnist_dir is a file", error, &["mnist"], |d| {
            std::fs::remove_dir_all(d).unwrap();
            write(d, b"a file");
        }),
        // The gzip header's mtime is not part of the content: the same data, accepted.
        damaged_data(
            "test images with another gzip mtime",
            Class::Handled,
            &[],
            |d| {
                edit_file(d, MNIST_FILES[2], |b| {
                    b[4..8].copy_from_slice(&[1, 2, 3, 4])
                })
            },
        ),
        case(
            "data",
            "BILEVEL_ASSETS copy with cut test labels",
            error,
            |cwd| {
                let assets = cwd.join("assets");
                mnist_copy(&assets.join("mnist"), |d| {
                    edit_file(d, MNIST_FILES[3], |b| b.truncate(b.len() - 100))
                });
                write(&cwd.join("c.toml"), hyper_cleaning(None));
                let args = ["run", "-q", "--config", "c.toml", "--out", "run"];
                let exit = start_with(cwd, &args, &[("BILEVEL_ASSETS", &assets)]).finish(TIMEOUT);
                data_outcome(
                    &exit,
                    cwd,
                    Class::ClearError,
                    &["corrupt", "t10k-labels-idx1-ubyte"],
                )
            },
        ),
    ]
}

// --- 4. Signals at random points --------------------------------------------------------------

/// Sends `sig` to the long run and checks how it stopped: SIGKILL kills it (no result files),
/// SIGINT, SIGTERM and SIGHUP stop it with exit 130, a resume hint and status "interrupted".
fn stop(p: &mut Proc, cwd: &Path, sig: &str) -> Step {
    p.signal(sig);
    let exit = p.finish(TIMEOUT);
    let run = cwd.join("run");
    if sig == "KILL" {
        if exit.signal != Some(9) {
            exit.sane()?;
            return Err(Verdict::silent(format!(
                "the run ended ({}) before SIGKILL: lengthen it",
                exit.describe()
            )));
        }
    } else {
        exit.expect_code(130, &format!("after SIG{sig}"))?;
        check(exit.stderr.contains("--resume"), || {
            format!("no resume hint after SIG{sig}: {}", exit.head())
        })?;
        has_status(&run, "interrupted")?;
    }
    not_completed(&run)
}

/// The long run stopped by `sig` `us` µs after its checkpoint of iteration `k`, then resumed
/// to its end.
fn signal_then_resume(cwd: &Path, sig: &str, k: u64, us: u64) -> Outcome {
    let mut p = start_long(cwd);
    wait_iteration(&mut p, cwd, k)?;
    std::thread::sleep(Duration::from_micros(us));
    stop(&mut p, cwd, sig)?;
    resume_matches(cwd)
}

fn signal_cases() -> Vec<Case> {
    let mut rng = XorShift(2024);
    let sigs = [
        "KILL", "KILL", "KILL", "KILL", "KILL", "KILL", "INT", "INT", "INT", "TERM", "TERM", "HUP",
    ];
    let mut cases: Vec<Case> = sigs
        .into_iter()
        .map(|sig| {
            let k = 1 + rng.next() % 600;
            let us = rng.next() % 3_000;
            case(
                "signals",
                format!("SIG{sig} {us} µs after iteration {k}"),
                Class::Handled,
                move |cwd| signal_then_resume(cwd, sig, k, us),
            )
        })
        .collect();
    cases.extend([
        case(
            "signals",
            "SIGINT twice (abort at once)",
            Class::Handled,
            |cwd| {
                let mut p = start_long(cwd);
                wait_iteration(&mut p, cwd, 1)?;
                p.signal("INT");
                sleep_ms(1);
                p.signal("INT");
                p.finish(TIMEOUT).expect_code(130, "after two SIGINTs")?;
                not_completed(&cwd.join("run"))?;
                resume_matches(cwd)
            },
        ),
        case(
            "signals",
            "SIGKILL, then SIGKILL during the resume",
            Class::Handled,
            |cwd| {
                let mut p = start_long(cwd);
                wait_iteration(&mut p, cwd, 100)?;
                stop(&mut p, cwd, "KILL")?;
                let mut resumed = start(cwd, &["run", "-q", "--resume", "run"]);
                wait_iteration(&mut resumed, cwd, 300)?;
                stop(&mut resumed, cwd, "KILL")?;
                resume_matches(cwd)
            },
        ),
        case("signals", "SIGSTOP, then SIGCONT", Class::Handled, |cwd| {
            let mut p = start_long(cwd);
            wait_iteration(&mut p, cwd, 1)?;
            p.signal("STOP");
            sleep_ms(300);
            p.signal("CONT");
            p.finish(TIMEOUT).expect_code(0, "the run")?;
            matches_baseline(&cwd.join("run"))?;
            Ok(Class::Handled)
        }),
        case(
            "signals",
            "SIGKILL at start, then --resume",
            Class::ClearError,
            |cwd| {
                let mut p = start_long(cwd);
                p.signal("KILL");
                p.finish(TIMEOUT);
                resume(cwd).clear_error(&[2], &["not a run folder|no checkpoint"])
            },
        ),
    ]);
    cases
}

// --- 5. Disk full -----------------------------------------------------------------------------

/// The temporary files `stem.json` is written through (`stem.tmp`, `stem.json.tmp`) in a new
/// `cwd/run`, as symbolic links to /dev/full: every write of them fails with ENOSPC.
fn full_disk_files(cwd: &Path, stem: &str) -> Vec<PathBuf> {
    let run = cwd.join("run");
    std::fs::create_dir_all(&run).unwrap();
    [format!("{stem}.tmp"), format!("{stem}.json.tmp")]
        .iter()
        .map(|name| {
            let path = run.join(name);
            std::os::unix::fs::symlink("/dev/full", &path).unwrap();
            path
        })
        .collect()
}

/// A tmpfs mounted on a folder, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    /// Mounts a tmpfs of `size` on `dir` (only as root; `None` if it fails).
    fn tmpfs(dir: &Path, size: &str) -> Option<Self> {
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return None;
        }
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_path_buf()))
    }

    fn resize(&self, size: &str) -> bool {
        Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The fault (the links in `unlink`) is removed and the run resumed to the uninterrupted
/// result.
fn recovers(cwd: &Path, class: Class, unlink: &[PathBuf]) -> Outcome {
    not_completed(&cwd.join("run"))?;
    unlink.iter().for_each(|l| std::fs::remove_file(l).unwrap());
    resume_matches(cwd)?;
    Ok(class)
}

const ENOSPC: &str = "No space left on device";

/// A checkpoint write of the running long run fails: the run stops with a clear error and
/// resumes from its last checkpoint once the fault is gone.
fn checkpoint_write_fails(cwd: &Path) -> Outcome {
    let mut p = start_long(cwd);
    wait_iteration(&mut p, cwd, 1)?;
    // The writer creates the file and renames it away: the link goes in between.
    let tmp = cwd.join("run/checkpoint.json.tmp");
    let linked = p.wait_until(TIMEOUT, || {
        std::os::unix::fs::symlink("/dev/full", &tmp).is_ok()
    });
    let exit = p.finish(TIMEOUT);
    check(linked, || {
        "the run ended before the fault was placed".into()
    })?;
    let class = exit.clear_error(&[1], &["checkpoint.json", ENOSPC])?;
    recovers(cwd, class, &[tmp])
}

/// The report of the long run cannot be written: a clear error, no completed status, and a
/// resume (the fault gone) that writes it.
fn report_write_fails(cwd: &Path) -> Outcome {
    let links = full_disk_files(cwd, "report");
    let exit = start_long(cwd).finish(TIMEOUT);
    let class = exit.clear_error(&[1], &["report", ENOSPC])?;
    recovers(cwd, class, &links)
}

/// The first status cannot be written: a clear error before any checkpoint, so the resume
/// (the fault gone) is refused clearly.
fn status_write_fails(cwd: &Path) -> Outcome {
    let links = full_disk_files(cwd, "status");
    let exit = start_long(cwd).finish(TIMEOUT);
    let class = exit.clear_error(&[1], &["status", ENOSPC])?;
    not_completed(&cwd.join("run"))?;
    links.iter().for_each(|l| std::fs::remove_file(l).unwrap());
    resume(cwd).clear_error(&[2], &["no checkpoint"])?;
    Ok(class)
}

fn disk_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    if Path::new("/dev/full").exists() {
        let e = Class::ClearError;
        cases.extend([
            case(
                "disk",
                "checkpoint write fails mid-run",
                e,
                checkpoint_write_fails,
            ),
            case(
                "disk",
                "report write fails at the end",
                e,
                report_write_fails,
            ),
            case(
                "disk",
                "status write fails at the start",
                e,
                status_write_fails,
            ),
        ]);
    } else {
        println!("disk: no /dev/full here, its three cases are skipped");
    }
    let probe = tempfile::tempdir().unwrap();
    if Mount::tmpfs(&probe.path().join("m"), "64k").is_some() {
        cases.push(case(
            "disk",
            "run folder on a 48 KiB tmpfs",
            Class::ClearError,
            tmpfs_case,
        ));
    } else {
        println!("disk: cannot mount a tmpfs (not root?), its case is skipped");
    }
    cases
}

/// A run whose folder is on a tiny tmpfs fails when it fills up; after the tmpfs grows, the
/// resume ends on the result of the same run on a roomy disk.
fn tmpfs_case(cwd: &Path) -> Outcome {
    let text = quadratic(
        "stocbio",
        STOCBIO,
        "max_iters = 300\neval_every = 1\ncheckpoint_every = 1\nseed = 11\n",
    );
    write(&cwd.join("c.toml"), text);
    exec(cwd, &["run", "-q", "--config", "c.toml", "--out", "roomy"]).expect_code(0, "on disk")?;
    let want = fingerprint(&cwd.join("roomy")).map_err(Verdict::silent)?;
    let mount = Mount::tmpfs(&cwd.join("small"), "48k").ok_or(Verdict::silent("no tmpfs"))?;
    let exit = exec(
        cwd,
        &["run", "-q", "--config", "c.toml", "--out", "small/run"],
    );
    let class = exit.clear_error(&[1], &[ENOSPC])?;
    let run = cwd.join("small/run");
    not_completed(&run)?;
    check(mount.resize("16m"), || "remount failed".into())?;
    exec(cwd, &["run", "-q", "--resume", "small/run"]).expect_code(0, "the resume")?;
    matches(&run, &want)?;
    Ok(class)
}

// --- 6. Concurrent runs on one folder ---------------------------------------------------------

/// Every line of `run/records.jsonl` is a JSON object.
fn records_are_json(run: &Path) -> Step {
    let text = std::fs::read_to_string(run.join("records.jsonl")).unwrap_or_default();
    let bad = text
        .lines()
        .position(|l| serde_json::from_str::<serde_json::Value>(l).is_err());
    check(bad.is_none(), || {
        format!("records.jsonl line {} is not JSON", bad.unwrap_or(0) + 1)
    })
}

/// While the long run runs, `args` is refused with the needles; the run still ends on the
/// uninterrupted result with valid records.
fn beside_a_running_run(cwd: &Path, args: &[&str], needles: &[&str]) -> Outcome {
    let mut p = start_long(cwd);
    wait_iteration(&mut p, cwd, 1)?;
    let class = exec(cwd, args).clear_error(&[2], needles)?;
    p.finish(TIMEOUT).expect_code(0, "the first run")?;
    records_are_json(&cwd.join("run"))?;
    matches_baseline(&cwd.join("run"))?;
    Ok(class)
}

/// `n` processes started at once with `args`: exactly one completes, the others are refused
/// with the needles, and the folder holds the uninterrupted result.
fn one_of(cwd: &Path, n: usize, args: &[&str], needles: &[&str]) -> Outcome {
    let mut procs: Vec<Proc> = (0..n).map(|_| start(cwd, args)).collect();
    let exits: Vec<Exit> = procs.iter_mut().map(|p| p.finish(TIMEOUT)).collect();
    for e in &exits {
        e.sane()?;
    }
    let winners = exits.iter().filter(|e| e.code == Some(0)).count();
    check(winners == 1, || {
        format!("{winners} of {n} processes completed")
    })?;
    for e in exits.iter().filter(|e| e.code != Some(0)) {
        e.clear_error(&[2], needles)?;
    }
    records_are_json(&cwd.join("run"))?;
    matches_baseline(&cwd.join("run"))?;
    Ok(Class::ClearError)
}

const IN_USE: &str = "in use by another bilevel process";

fn concurrency_cases() -> Vec<Case> {
    vec![
        case(
            "concurrency",
            "run --out a running folder",
            Class::ClearError,
            |cwd| {
                let args = ["run", "-q", "--config", "c.toml", "--out", "run"];
                beside_a_running_run(cwd, &args, &["already holds a run|in use"])
            },
        ),
        case(
            "concurrency",
            "--resume a running folder",
            Class::ClearError,
            |cwd| beside_a_running_run(cwd, &["run", "-q", "--resume", "run"], &[IN_USE]),
        ),
        case(
            "concurrency",
            "two new runs on one folder at once",
            Class::ClearError,
            |cwd| {
                write(&cwd.join("c.toml"), long_config(11));
                let args = ["run", "-q", "--config", "c.toml", "--out", "run"];
                one_of(cwd, 2, &args, &["already holds a run|in use"])
            },
        ),
        case(
            "concurrency",
            "four resumes of one folder at once",
            Class::ClearError,
            |cwd| {
                copy_dir(&template().run, &cwd.join("run"));
                one_of(cwd, 4, &["run", "-q", "--resume", "run"], &[IN_USE])
            },
        ),
    ]
}

// --- 7. Damaged and foreign checkpoints -------------------------------------------------------

/// An interrupted long run, copied by every case of the group.
struct Template {
    dir: tempfile::TempDir,
    run: PathBuf,
    /// Its first checkpoint file.
    first: Vec<u8>,
}

static TEMPLATE: OnceLock<Template> = OnceLock::new();

fn template() -> &'static Template {
    TEMPLATE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let ckpt = run.join("checkpoint.json");
        let mut p = start_long(dir.path());
        let mut first = Vec::new();
        assert!(p.wait_until(TIMEOUT, || {
            first = std::fs::read(&ckpt).unwrap_or_default();
            !first.is_empty()
        }));
        // Far enough for a few records (every 25 iterations).
        assert!(wait_iteration(&mut p, dir.path(), 100).is_ok());
        p.signal("INT");
        let exit = p.finish(TIMEOUT);
        assert_eq!(exit.code, Some(130), "the template run: {}", exit.stderr);
        Template { dir, run, first }
    })
}

/// Edits `path`'s JSON (a checkpoint keeps its now stale digest).
fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut value = read_json(path).expect("JSON");
    edit(&mut value);
    write(path, value.to_string());
}

/// Edits the checkpoint and signs it again (a valid digest: only the content is wrong).
fn forge(run: &Path, edit: impl FnOnce(&mut Checkpoint)) {
    let path = run.join("checkpoint.json");
    let mut checkpoint = Checkpoint::load(&path).expect("a valid checkpoint");
    edit(&mut checkpoint);
    checkpoint.save(&path).unwrap();
}

/// The checkpoint of `text` run to its end in `cwd/other`.
fn checkpoint_of(cwd: &Path, text: String) -> Vec<u8> {
    write(&cwd.join("other.toml"), text);
    let exit = exec(
        cwd,
        &["run", "-q", "--config", "other.toml", "--out", "other"],
    );
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
    std::fs::read(cwd.join("other/checkpoint.json")).unwrap()
}

/// Replaces `text` in `run/name`.
fn replace_in(run: &Path, name: &str, from: &str, to: &str) {
    let path = run.join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in {name}");
    write(&path, text.replacen(from, to, 1));
}

/// A copy of the template with `damage(cwd, run)` applied, resumed: a clear error (exit 1 or
/// 2, the needles) that completes nothing, or (`Handled`) the uninterrupted result. A resume
/// that was expected to be refused but completes is `handled` if its result is right (still
/// not the expected class) and `silent` if not.
fn damaged_run(
    name: &str,
    expect: Class,
    needles: &'static [&'static str],
    damage: impl FnOnce(&Path, &Path) + Send + 'static,
) -> Case {
    case("checkpoints", name, expect, move |cwd| {
        let run = cwd.join("run");
        copy_dir(&template().run, &run);
        damage(cwd, &run);
        if expect == Class::Handled {
            return resume_matches(cwd);
        }
        let exit = resume(cwd);
        if exit.code == Some(0) {
            // Accepted: say how the result differs from the uninterrupted run's, if it does.
            matches_baseline(&run)?;
            return Ok(Class::Handled);
        }
        let class = exit.clear_error(&[1, 2], needles)?;
        not_completed(&run)?;
        Ok(class)
    })
}

fn checkpoint_cases() -> Vec<Case> {
    let e = Class::ClearError;
    let h = Class::Handled;
    let ckpt = |run: &Path| run.join("checkpoint.json");
    vec![
        damaged_run(
            "iteration edited",
            e,
            &["checkpoint.json", "digest"],
            move |_, r| {
                edit_json(&ckpt(r), |v| {
                    v["state"]["iter"] = (v["state"]["iter"].as_u64().unwrap() + 1).into()
                })
            },
        ),
        damaged_run(
            "x edited",
            e,
            &["checkpoint.json", "digest"],
            move |_, r| edit_json(&ckpt(r), |v| v["state"]["x"][0] = 0.5.into()),
        ),
        damaged_run(
            "rng position edited",
            e,
            &["checkpoint.json", "digest"],
            move |_, r| edit_json(&ckpt(r), |v| v["state"]["rng"]["word_pos"] = 0.into()),
        ),
        damaged_run(
            "digest altered",
            e,
            &["checkpoint.json", "digest"],
            move |_, r| {
                edit_json(&ckpt(r), |v| {
                    let d = v["digest"].as_str().unwrap();
                    let flipped = if d.starts_with('0') { "1" } else { "0" };
                    v["digest"] = format!("{flipped}{}", &d[1..]).into();
                })
            },
        ),
        damaged_run(
            "digest removed",
            e,
            &["checkpoint.json", "no digest"],
            move |_, r| {
                edit_json(&ckpt(r), |v| {
                    v.as_object_mut().unwrap().remove("digest");
                })
            },
        ),
        damaged_run("cut in half", e, &["checkpoint.json"], move |_, r| {
            let bytes = std::fs::read(ckpt(r)).unwrap();
            write(&ckpt(r), &bytes[..bytes.len() / 2]);
        }),
        damaged_run("empty", e, &["checkpoint.json"], move |_, r| {
            write(&ckpt(r), "")
        }),
        damaged_run("binary garbage", e, &["checkpoint.json"], move |_, r| {
            write(&ckpt(r), XorShift(5).bytes(2_000))
        }),
        damaged_run("a folder", e, &["checkpoint.json"], move |_, r| {
            std::fs::remove_file(ckpt(r)).unwrap();
            std::fs::create_dir(ckpt(r)).unwrap();
        }),
        damaged_run("deleted", e, &["no checkpoint"], move |_, r| {
            std::fs::remove_file(ckpt(r)).unwrap()
        }),
        damaged_run(
            "re-signed with 4 x values",
            e,
            &["shape mismatch", "checkpoint x"],
            |_, r| forge(r, |c| c.state.x.push(0.0)),
        ),
        damaged_run(
            "re-signed with 2 y values",
            e,
            &["shape mismatch", "checkpoint y"],
            |_, r| forge(r, |c| c.state.y.truncate(2)),
        ),
        damaged_run("re-signed at iteration 10^6", e, &["max_iters"], |_, r| {
            forge(r, |c| c.state.iter = 1_000_000)
        }),
        damaged_run("re-signed as aid-cg's", e, &["aid-cg"], |_, r| {
            forge(r, |c| c.solver = "aid-cg".into())
        }),
        damaged_run("re-signed for another run", e, &["another run"], |_, r| {
            forge(r, |c| c.run = Some("0".repeat(64)))
        }),
        damaged_run(
            "another seed's checkpoint",
            e,
            &["another run"],
            move |cwd, r| {
                let other = quadratic("stocbio", STOCBIO, "max_iters = 5\nseed = 12\n");
                write(&ckpt(r), checkpoint_of(cwd, other))
            },
        ),
        damaged_run(
            "aid-cg's checkpoint",
            e,
            &["aid-cg|another run"],
            move |cwd, r| {
                let other = quadratic("aid-cg", "", "max_iters = 5\nseed = 11\n");
                write(&ckpt(r), checkpoint_of(cwd, other))
            },
        ),
        damaged_run(
            "a later checkpoint of the same run",
            e,
            &["records.jsonl"],
            move |cwd, r| write(&ckpt(r), checkpoint_of(cwd, long_config(11))),
        ),
        damaged_run(
            "an earlier checkpoint of the same run",
            h,
            &[],
            move |_, r| write(&ckpt(r), &template().first),
        ),
        damaged_run(
            "config.toml: outer_step changed",
            e,
            &["another run"],
            |_, r| replace_in(r, "config.toml", "outer_step = 0.05", "outer_step = 0.06"),
        ),
        damaged_run(
            "config.toml: x_dim changed",
            e,
            &["another run|shape mismatch"],
            |_, r| replace_in(r, "config.toml", "x_dim = 3", "x_dim = 4"),
        ),
        damaged_run(
            "config.toml: empty",
            e,
            &["missing field `problem`"],
            |_, r| write(&r.join("config.toml"), ""),
        ),
        damaged_run(
            "config.toml: unknown key",
            e,
            &["unknown field `bogus`"],
            |_, r| replace_in(r, "config.toml", "[run]\n", "[run]\nbogus = 1\n"),
        ),
        damaged_run("config.toml: deleted", e, &["not a run folder"], |_, r| {
            std::fs::remove_file(r.join("config.toml")).unwrap()
        }),
        case("checkpoints", "config.toml: max_iters raised", h, |cwd| {
            let run = cwd.join("run");
            copy_dir(&template().run, &run);
            let more = LONG_ITERS + 100;
            replace_in(
                &run,
                "config.toml",
                &format!("max_iters = {LONG_ITERS}"),
                &format!("max_iters = {more}"),
            );
            resume(cwd).expect_code(0, "the resume")?;
            let got = fingerprint(&run).map_err(Verdict::silent)?;
            let want: Vec<u64> = (0..=more).step_by(25).collect();
            check(got.records == want, || {
                format!("records at {:?}", got.records)
            })?;
            let csv: Vec<String> = want.iter().map(u64::to_string).collect();
            check(got.csv == csv, || format!("CSV rows at {:?}", got.csv))?;
            Ok(Class::Handled)
        }),
        damaged_run("records.jsonl deleted", e, &["records.jsonl"], |_, r| {
            std::fs::remove_file(r.join("records.jsonl")).unwrap()
        }),
        damaged_run("records.jsonl emptied", e, &["records.jsonl"], |_, r| {
            write(&r.join("records.jsonl"), "")
        }),
        damaged_run("records.jsonl with a torn last line", h, &[], |_, r| {
            let mut text = std::fs::read_to_string(r.join("records.jsonl")).unwrap();
            text.push_str("{\"iter\":10");
            write(&r.join("records.jsonl"), text);
        }),
        damaged_run(
            "records.jsonl with a garbage line inside",
            e,
            &["records.jsonl"],
            |_, r| {
                let text = std::fs::read_to_string(r.join("records.jsonl")).unwrap();
                let mut lines: Vec<&str> = text.lines().collect();
                assert!(lines.len() >= 3, "the template run is too short: {lines:?}");
                lines[1] = "{garbage";
                write(&r.join("records.jsonl"), lines.join("\n") + "\n");
            },
        ),
        damaged_run("status.json deleted", h, &[], |_, r| {
            std::fs::remove_file(r.join("status.json")).unwrap()
        }),
        damaged_run("status.json garbage", h, &[], |_, r| {
            write(&r.join("status.json"), "{{{")
        }),
        damaged_run(
            "metrics.csv.partial deleted",
            e,
            &["metrics.csv"],
            |_, r| std::fs::remove_file(r.join("metrics.csv.partial")).unwrap(),
        ),
        damaged_run(
            "metrics.csv.partial with a torn last row",
            h,
            &[],
            |_, r| {
                let mut text = std::fs::read_to_string(r.join("metrics.csv.partial")).unwrap();
                text.push_str("1000,0.01");
                write(&r.join("metrics.csv.partial"), text);
            },
        ),
        damaged_run("run.lock held by a live process", e, &[IN_USE], |_, r| {
            write(&r.join("run.lock"), std::process::id().to_string())
        }),
        damaged_run("run.lock garbage (stale)", h, &[], |_, r| {
            write(&r.join("run.lock"), "not a pid")
        }),
    ]
}

// ---------------------------------------------------------------------------------------------
// The suite

const GROUPS: [&str; 7] = [
    "configs",
    "sizes",
    "data",
    "signals",
    "disk",
    "concurrency",
    "checkpoints",
];

struct Row {
    /// Position in the table.
    index: usize,
    group: &'static str,
    name: String,
    expect: Class,
    got: Class,
    detail: String,
}

fn run_case(index: usize, c: Case) -> Row {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let body = c.body;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(tmp.path())))
        .unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(Verdict::silent(format!(
                "the case itself panicked (a suite bug): {msg}"
            )))
        });
    let (got, detail) = match outcome {
        Ok(class) => (class, String::new()),
        Err(v) => (v.class, v.detail),
    };
    let mark = if got == c.expect { "ok  " } else { "FAIL" };
    println!(
        "{mark} {:<11} {:>5.1}s  {}/{}",
        got.label(),
        started.elapsed().as_secs_f64(),
        c.group,
        c.name
    );
    Row {
        index,
        group: c.group,
        name: c.name,
        expect: c.expect,
        got,
        detail,
    }
}

/// Runs the cases on [`WORKERS`] threads, in the given order.
fn run_all(cases: Vec<Case>) -> Vec<Row> {
    let queue = Mutex::new(cases.into_iter().enumerate().rev().collect::<Vec<_>>());
    let rows = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| loop {
                let Some((i, c)) = queue.lock().unwrap().pop() else {
                    break;
                };
                let row = run_case(i, c);
                rows.lock().unwrap().push(row);
            });
        }
    });
    rows.into_inner().unwrap()
}

/// Writes the totals (and every case not as expected) to the process's stderr directly, past
/// the test harness's capture, so that CI logs show them without `--nocapture`.
fn print_totals(rows: &[Row], seconds: f64) {
    use std::fmt::Write as _;
    let mut out = String::new();
    let count = |group: Option<&str>, class: Option<Class>, mismatch: bool| {
        rows.iter()
            .filter(|r| group.is_none_or(|g| r.group == g))
            .filter(|r| class.is_none_or(|c| r.got == c))
            .filter(|r| !mismatch || r.got != r.expect)
            .count()
    };
    let _ = writeln!(
        out,
        "\nfault injection: {} cases in {seconds:.0} s",
        rows.len()
    );
    let mut header = format!("{:<12} {:>5}", "group", "cases");
    for c in Class::ALL {
        header.push_str(&format!(" {:>11}", c.label()));
    }
    let _ = writeln!(out, "{header} {:>12}", "unexpected");
    let groups = GROUPS.iter().map(|g| Some(*g)).chain([None]);
    for g in groups {
        let mut line = format!("{:<12} {:>5}", g.unwrap_or("total"), count(g, None, false));
        for c in Class::ALL {
            line.push_str(&format!(" {:>11}", count(g, Some(c), false)));
        }
        let _ = writeln!(out, "{line} {:>12}", count(g, None, true));
    }
    let unexpected: Vec<&Row> = rows.iter().filter(|r| r.got != r.expect).collect();
    if !unexpected.is_empty() {
        let _ = writeln!(out, "\nnot as expected:");
        for r in unexpected {
            let _ = writeln!(
                out,
                "  {}/{}: expected {}, got {}\n      {}",
                r.group,
                r.name,
                r.expect.label(),
                r.got.label(),
                r.detail
            );
        }
    }
    let _ = std::io::Write::write_all(&mut std::io::stderr(), out.as_bytes());
}

#[test]
fn fault_injection_suite() {
    let started = Instant::now();
    let only = std::env::var("FAULTS_ONLY").unwrap_or_default();
    let cases: Vec<Case> = [
        size_cases(),
        signal_cases(),
        concurrency_cases(),
        disk_cases(),
        checkpoint_cases(),
        data_cases(),
        config_cases(),
    ]
    .into_iter()
    .flatten()
    .filter(|c| format!("{}/{}", c.group, c.name).contains(&only))
    .collect();
    let mut rows = run_all(cases);
    // A static is never dropped: remove the template's folder here.
    if let Some(t) = TEMPLATE.get() {
        let _ = std::fs::remove_dir_all(t.dir.path());
    }
    rows.sort_by_key(|r| (GROUPS.iter().position(|g| *g == r.group), r.index));
    print_totals(&rows, started.elapsed().as_secs_f64());
    let n = |class: Class| rows.iter().filter(|r| r.got == class).count();
    let unexpected = rows.iter().filter(|r| r.got != r.expect).count();
    assert!(
        n(Class::Silent) == 0 && n(Class::Abort) == 0 && n(Class::Hang) == 0 && unexpected == 0,
        "{unexpected} of {} fault cases did not end as expected ({} silent, {} aborts, {} hangs; \
         the list is printed above)",
        rows.len(),
        n(Class::Silent),
        n(Class::Abort),
        n(Class::Hang)
    );
}
