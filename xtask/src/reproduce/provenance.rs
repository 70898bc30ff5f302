//! `provenance.json`: what produced a run directory — the experiment file, git commit and dirty
//! flag, the command line, backend, device, precision (and why it differs from the plan's, if
//! it does), seeds, crate versions (from the Cargo.lock this binary was built with),
//! `rustc -V`, host, start and end times and the wall time of every run.

use std::process::Command;

use serde::{Deserialize, Serialize};

/// The lock file the xtask binary was compiled against.
const CARGO_LOCK: &str = include_str!("../../../Cargo.lock");

/// Crates whose versions are recorded.
const TRACKED_CRATES: [&str; 9] = [
    "burn",
    "burn-autodiff",
    "burn-ndarray",
    "burn-tensor",
    "ndarray",
    "plotters",
    "serde_json",
    "rand",
    "rand_chacha",
];

/// The whole record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Provenance {
    pub experiment: String,
    /// The experiment file the plan was read from.
    #[serde(default)]
    pub plan_file: String,
    pub mode: String,
    pub command_line: Vec<String>,
    pub git: GitInfo,
    pub backend: String,
    pub device: String,
    pub precision: String,
    /// Why the precision differs from the plan's (wgpu runs f64 plans in f32); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision_note: Option<String>,
    pub seeds: Vec<u64>,
    pub data_dir: Option<String>,
    /// `bilevel-rs` version plus the tracked dependencies' versions.
    pub crate_versions: Vec<(String, String)>,
    pub rustc: Option<String>,
    pub host: Host,
    pub start_utc: String,
    /// When the run was continued with `reproduce --resume` (each invocation after the first);
    /// the runs finished before a resume were kept, the one running continued from its
    /// checkpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumed_utc: Vec<String>,
    pub end_utc: String,
    /// Wall time of the last invocation (each run's own `wall_time_s` spans its resumes).
    pub wall_time_s: f64,
    pub runs: Vec<RunTiming>,
    /// The specs each method ran with (problem and method, as serialised JSON).
    pub specs: serde_json::Value,
}

/// The working tree's commit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct GitInfo {
    pub commit: Option<String>,
    /// Uncommitted changes to tracked or untracked-not-ignored files.
    pub dirty: Option<bool>,
}

/// The machine.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Host {
    pub hostname: Option<String>,
    pub os: String,
    pub arch: String,
    pub cpus: usize,
}

/// One (variant, method, seed) run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RunTiming {
    pub variant: String,
    pub method: String,
    pub seed: u64,
    pub wall_time_s: f64,
    pub iterations: u64,
    pub termination: String,
}

fn command_stdout(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl GitInfo {
    /// Asks `git` in the current directory; `None` fields where git is unavailable.
    pub(crate) fn current() -> Self {
        let commit = command_stdout("git", &["rev-parse", "HEAD"]);
        let dirty = command_stdout("git", &["status", "--porcelain"]).map(|s| !s.is_empty());
        GitInfo { commit, dirty }
    }
}

impl Host {
    pub(crate) fn current() -> Self {
        let hostname = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| command_stdout("hostname", &[]));
        Host {
            hostname,
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// `rustc -V` of the toolchain on the path.
pub(crate) fn rustc_version() -> Option<String> {
    command_stdout("rustc", &["-V"])
}

/// This workspace's version and the tracked crates' versions from the lock file.
pub(crate) fn crate_versions() -> Vec<(String, String)> {
    let mut out = vec![(
        "bilevel-rs".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    )];
    let mut name: Option<&str> = None;
    for line in CARGO_LOCK.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"'));
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name) {
            if TRACKED_CRATES.contains(&n) && !out.iter().any(|(k, _)| k == n) {
                out.push((n.to_string(), v.trim_matches('"').to_string()));
            }
            name = None;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_include_burn() {
        let v = crate_versions();
        assert_eq!(v[0].0, "bilevel-rs");
        let burn = v
            .iter()
            .find(|(n, _)| n == "burn")
            .expect("burn in Cargo.lock");
        assert!(burn.1.starts_with("0.21"), "{burn:?}");
    }
}
