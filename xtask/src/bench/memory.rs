//! Peak memory of one case, measured in a child process from the kernel's counters.
//!
//! The workspace forbids `unsafe`, so a counting `#[global_allocator]` is out; the kernel's
//! resident-set counters are read instead (`/proc/self/status`: `VmRSS` now, `VmHWM` its peak,
//! which writing `5` to `/proc/self/clear_refs` resets). glibc keeps freed memory in its heap and
//! raises its mmap threshold after large frees, so in a long-lived process the resident set
//! stays near its historical peak and the deltas of later cases read as zero. Each measurement
//! therefore runs in a fresh child (`xtask bench --memory-child <case>`) with
//! `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=65536:glibc.malloc.trim_threshold=65536`: every
//! allocation above 64 KiB is its own mapping, returned to the kernel on free, so the resident
//! set follows the live tensors. The child builds the problem, runs the case once (warm-up),
//! records `VmRSS`, resets `VmHWM`, runs it again and reports `VmHWM − VmRSS` (the extra memory
//! one run needs on top of the problem's data). Timings are never taken in such a child: a
//! mapping per tensor costs page faults.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// The child's environment variable and value.
pub(crate) const TUNABLES: (&str, &str) = (
    "GLIBC_TUNABLES",
    "glibc.malloc.mmap_threshold=65536:glibc.malloc.trim_threshold=65536",
);

/// The line prefix the child reports its measurement with.
pub(crate) const REPORT: &str = "bench-peak-bytes=";

/// A field of `/proc/self/status` in bytes (`None` off Linux).
pub(crate) fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line
        .trim_start_matches(field)
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Resets `VmHWM` to the current resident set.
pub(crate) fn reset_peak() -> Result<()> {
    std::fs::write("/proc/self/clear_refs", "5").context("resetting VmHWM (/proc/self/clear_refs)")
}

/// In the child: `run` once as warm-up, then measure a second run; prints the report line.
pub(crate) fn measure_in_child(mut run: impl FnMut() -> Result<()>) -> Result<()> {
    run()?;
    let before = status_bytes("VmRSS").context("no VmRSS in /proc/self/status")?;
    reset_peak()?;
    run()?;
    let peak = status_bytes("VmHWM").context("no VmHWM in /proc/self/status")?;
    println!("{REPORT}{}", peak.saturating_sub(before));
    Ok(())
}

/// Runs `xtask bench --memory-child <case> <extra…>` and returns the child's peak delta in bytes.
pub(crate) fn spawn_child(case: &str, extra: &[String]) -> Result<u64> {
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let out = Command::new(exe)
        .arg("bench")
        .arg("--memory-child")
        .arg(case)
        .args(extra)
        .env(TUNABLES.0, TUNABLES.1)
        .output()
        .with_context(|| format!("running the memory child of `{case}`"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "memory child of `{case}` failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(REPORT))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("memory child of `{case}` printed no `{REPORT}` line: {stdout}"))
}
