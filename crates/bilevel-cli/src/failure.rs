//! What the user sees when something goes wrong: one paragraph, `error: …` then `hint: …`, and
//! an exit code (2: the command line or config is wrong and nothing ran; 1: the run could not
//! complete; 101: an internal error, i.e. a bug).

use bilevel_core::BilevelError;
use bilevel_data::DataError;
use bilevel_problems::ProblemError;

/// Exit code of a config or usage error (nothing ran).
pub const EXIT_USAGE: i32 = 2;
/// Exit code of a run that failed (data unreadable, divergence, I/O).
pub const EXIT_FAILED: i32 = 1;
/// Exit code of a run stopped by Ctrl-C (after writing its checkpoint).
pub const EXIT_INTERRUPTED: i32 = 130;
/// Exit code of an internal error (a panic caught at the top).
pub const EXIT_INTERNAL: i32 = 101;

/// The longest error message printed whole (characters).
pub const MAX_MESSAGE_CHARS: usize = 2_000;

/// `text` if it has at most `max` characters, else its start and end around a note of how many
/// characters were left out.
pub fn shorten(text: &str, max: usize) -> String {
    let n = text.chars().count();
    if n <= max {
        return text.to_string();
    }
    let keep = max / 2;
    let head: String = text.chars().take(keep).collect();
    let tail: String = text.chars().skip(n - keep).collect();
    format!("{head} … [{} characters left out] … {tail}", n - 2 * keep)
}

/// An error with its exit code and a hint naming the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Process exit code.
    pub code: i32,
    /// What went wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl Failure {
    /// A config or usage error (exit code 2).
    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// A run failure (exit code 1).
    pub fn failed(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            code: EXIT_FAILED,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// The paragraph printed to stderr; a message longer than [`MAX_MESSAGE_CHARS`] (e.g. one
    /// quoting a huge value from a config) is cut in the middle, saying how much was left out.
    pub fn render(&self) -> String {
        let message = shorten(&self.message, MAX_MESSAGE_CHARS);
        match &self.hint {
            Some(hint) => format!("error: {message}\nhint: {hint}"),
            None => format!("error: {message}"),
        }
    }

    /// An I/O failure on `path`.
    pub fn io(path: &std::path::Path, err: impl std::fmt::Display) -> Self {
        Self::failed(
            format!("cannot write {}: {err}", path.display()),
            "check that the output folder is writable and the disk is not full (choose another \
             folder with `--out DIR`)",
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

const CHECK_HINT: &str = "every key and its default is listed by `bilevel list --defaults`; \
                          `bilevel check-config FILE` checks a config without running it";

/// Classifies an error of the problems crate (building, validating or running).
pub fn from_problem(err: &ProblemError) -> Failure {
    match err {
        // The run folder does not hold a resumable run (its message says why and what to do).
        ProblemError::Config { name, .. } if name == "resume" => Failure::usage(
            err.to_string(),
            "the folder's checkpoint.json and records.jsonl must come from one run of its \
             config.toml; restore them, or start the run again in a new folder",
        ),
        ProblemError::Config { name, .. } => Failure::usage(
            err.to_string(),
            format!("change `{name}` in the config file; {CHECK_HINT}"),
        ),
        ProblemError::Bilevel(e) => from_bilevel(e),
        ProblemError::Data(e) => from_data(e),
        // Models: parameter counts, input shapes.
        _ => Failure::usage(
            format!("the model cannot be built: {err}"),
            format!("check the [problem] table's sizes; {CHECK_HINT}"),
        ),
    }
}

fn from_bilevel(err: &BilevelError) -> Failure {
    match err {
        BilevelError::InvalidParameter { name, .. } => Failure::usage(
            err.to_string(),
            format!("set `{name}` to a value in the stated range in the config file; {CHECK_HINT}"),
        ),
        BilevelError::ShapeMismatch { .. } => Failure::usage(
            err.to_string(),
            "the sizes in the config disagree with each other or with the checkpoint being \
             resumed: check the [problem] table's dimensions (and resume only with the config \
             that wrote the checkpoint)",
        ),
        BilevelError::Checkpoint(_) => Failure::usage(
            err.to_string(),
            "resume a folder with the config.toml that wrote its checkpoint.json, or start a \
             new run without `--resume`",
        ),
        BilevelError::NonFinite { .. } => Failure::failed(
            format!("the run diverged: {err}"),
            "lower the step sizes (`outer_step`, `inner_step`, ...) in the [algorithm] table",
        ),
        BilevelError::Io { .. } => Failure::failed(
            err.to_string(),
            "check that the folder exists and is writable (choose another with `--out DIR`)",
        ),
        BilevelError::Interrupted => Failure {
            code: EXIT_INTERRUPTED,
            message: "interrupted before the first iteration; no checkpoint was written".into(),
            hint: Some(
                "nothing was computed: run the same command again (the folder is reused)".into(),
            ),
        },
        BilevelError::Backend(_) => Failure::failed(
            err.to_string(),
            "the tensor backend failed; try `--backend ndarray`",
        ),
        // Batch indices out of range, failed factorisations.
        _ => Failure::failed(
            err.to_string(),
            "the problem and the method's settings do not fit together; check batch sizes and \
             the problem's sizes",
        ),
    }
}

fn from_data(err: &DataError) -> Failure {
    let refetch = "the data file is damaged or cut short: fetch it again (`cargo xtask data fetch \
                   mnist`; `cargo xtask data verify` checks every hash) or remove the \
                   `mnist_dir`/data override from the [problem] table to use the bundled copy";
    match err {
        // The error's own text already says how to obtain the file.
        DataError::MissingFile { .. } => Failure::failed(
            format!("a data set is missing: {err}"),
            "point the data folder of the [problem] table (e.g. `mnist_dir`) at a folder that \
             holds the files, or remove that key to use the bundled copy; `--data-dir` sets \
             the folder of fetched data sets",
        ),
        DataError::Io { .. } => Failure::failed(
            format!("cannot read the data: {err}"),
            "check the path and permissions of the data folder given in the [problem] table \
             or by `--data-dir`",
        ),
        DataError::SplitTooLarge { .. }
        | DataError::ShapeMismatch { .. }
        | DataError::InvalidParameter { .. } => Failure::usage(
            format!("the data cannot be split as configured: {err}"),
            format!("reduce the sizes in the [problem] table; {CHECK_HINT}"),
        ),
        // Decompression, bad magic, truncation, checksum, parse and format errors.
        _ => Failure::failed(format!("the data is corrupt: {err}"), refetch),
    }
}
