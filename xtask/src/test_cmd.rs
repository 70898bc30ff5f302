//! `cargo xtask test`: the project's one test command (the README's, and what `.ci/run` calls).
//!
//! 1. The CPU suite: `cargo test --workspace`.
//! 2. The GPU subset, behind the `wgpu` feature, on whatever Vulkan/Metal/DX12 adapter the
//!    machine has (Mesa's lavapipe software driver counts): the wgpu tests of
//!    `bilevel-algorithms`, `bilevel-cli` and `bilevel-problems` ([`GPU_SUBSET`]).
//!
//! Where no adapter can be found (on Linux: no Vulkan loader `libvulkan.so.1`, or the loader
//! finds no device), the GPU subset is skipped with a banner on stderr saying so and how to
//! install a software driver, and the command still passes — unless `BILEVEL_REQUIRE_GPU=1`
//! (set by `.ci/run`, which installs lavapipe first), where a missing adapter fails it. A GPU
//! test that fails on a present adapter always fails the command.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The packages of the GPU subset and the features it is built with. Every part of the subset
/// selects all of them with the same features, so that burn's wgpu stack (cubecl, wgpu, naga)
/// and our crates are compiled once for the whole subset: with one `-p X --features wgpu` per
/// part, each part resolved its own feature set and CI compiled that stack three times (622
/// compile units for the whole test command against 491 now, `--message-format=json`).
const GPU_SELECTION: [&str; 8] = [
    "-p",
    "bilevel-algorithms",
    "-p",
    "bilevel-problems",
    "-p",
    "bilevel-cli",
    "--features",
    "bilevel-algorithms/wgpu,bilevel-problems/wgpu,bilevel-cli/wgpu",
];

/// The GPU subset: the test targets (and name filter) of each part, over [`GPU_SELECTION`]: the
/// `wgpu` tests of `bilevel-algorithms` and `bilevel-problems`, then the CLI's wgpu runs.
const GPU_SUBSET: [&[&str]; 2] = [&["--test", "wgpu"], &["--test", "cli", "wgpu"]];

/// `cargo test` arguments of one part of the GPU subset (`extra` goes after the part's own).
fn gpu_part<'a>(part: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["test"];
    args.extend_from_slice(&GPU_SELECTION);
    args.extend_from_slice(part);
    args.extend_from_slice(extra);
    args
}

/// The environment variable that makes a missing GPU adapter an error.
const REQUIRE_GPU: &str = "BILEVEL_REQUIRE_GPU";

/// How the Debian/Ubuntu software Vulkan driver is installed (what `.ci/run` does).
const INSTALL_HINT: &str = "sudo apt-get install -y mesa-vulkan-drivers libvulkan1";

pub fn main(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("`cargo xtask test` takes no arguments (got `{arg}`)");
    }
    let require = std::env::var(REQUIRE_GPU).is_ok_and(|v| v == "1");
    cargo(&["test", "--workspace"]).context("the CPU suite failed")?;
    match gpu_adapter()? {
        Some(()) => {
            for part in GPU_SUBSET {
                cargo(&gpu_part(part, &[])).context("the GPU subset failed")?;
            }
            println!("cargo xtask test: CPU suite and GPU subset passed");
            Ok(())
        }
        None if require => bail!(
            "no GPU adapter, and {REQUIRE_GPU}=1 requires the GPU subset: install a Vulkan \
             driver ({INSTALL_HINT})"
        ),
        None => {
            eprintln!("{}", skipped_banner());
            println!("cargo xtask test: CPU suite passed; GPU subset NOT run (no adapter)");
            Ok(())
        }
    }
}

/// The loud notice of a skipped GPU subset.
fn skipped_banner() -> String {
    let rule = "=".repeat(78);
    format!(
        "{rule}\n  GPU SUBSET NOT RUN: no GPU adapter on this machine.\n  The CPU suite passed; the \
         wgpu tests (exact second-order products on the GPU, one\n  estimator per family, the \
         CLI's wgpu runs) were skipped. To run them without a GPU,\n  install Mesa's software \
         Vulkan driver and run `cargo xtask test` again:\n    {INSTALL_HINT}\n  CI sets \
         {REQUIRE_GPU}=1, which makes a missing adapter an error.\n{rule}"
    )
}

/// `Some(())` when a GPU adapter is present: the Vulkan loader exists (Linux) and the wgpu test
/// binary's `adapter_is_present` test finds an adapter. The wgpu feature is compiled first
/// (with its output shown), so a build error is an error, not a missing adapter.
fn gpu_adapter() -> Result<Option<()>> {
    if cfg!(target_os = "linux") && !vulkan_loader_present() {
        eprintln!("cargo xtask test: no Vulkan loader (libvulkan.so.1) found");
        return Ok(None);
    }
    let probe = GPU_SUBSET[0];
    cargo(&gpu_part(probe, &["--no-run"])).context("building the GPU subset failed")?;
    let run = gpu_part(probe, &["adapter_is_present", "--", "--exact"]);
    let out = Command::new(cargo_bin())
        .args(&run)
        .output()
        .context("running cargo")?;
    if out.status.success() {
        return Ok(Some(()));
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains("need a GPU adapter") {
        eprintln!("cargo xtask test: the Vulkan loader finds no GPU adapter");
        return Ok(None);
    }
    eprintln!("{text}");
    bail!("the GPU adapter probe failed for another reason (output above)")
}

/// Whether the Vulkan loader library is installed (standard library folders, or `ldconfig`).
fn vulkan_loader_present() -> bool {
    let dirs = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/lib/x86_64-linux-gnu",
        "/usr/local/lib",
    ];
    if dirs
        .iter()
        .any(|d| Path::new(d).join("libvulkan.so.1").exists())
    {
        return true;
    }
    Command::new("ldconfig")
        .arg("-p")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libvulkan.so.1"))
}

/// The cargo that runs this xtask (`$CARGO`), else `cargo` from `PATH`.
fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs cargo with `args`, output shown; fails on a non-zero exit.
fn cargo(args: &[&str]) -> Result<()> {
    println!("cargo xtask test: cargo {}", args.join(" "));
    let status = Command::new(cargo_bin())
        .args(args)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("`cargo {}` exited with {status}", args.join(" "));
    }
    Ok(())
}
