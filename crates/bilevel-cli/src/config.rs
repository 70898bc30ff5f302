//! The experiment config file: `[problem]`, `[algorithm]`, `[run]` and `[output]` tables.
//!
//! ```toml
//! [problem]            # bilevel_problems::spec::ProblemSpec
//! kind = "quadratic"
//!
//! [algorithm]          # bilevel_run::method::MethodSpec
//! name = "aid-cg"
//! outer_step = 0.5
//!
//! [run]                # bilevel_run::RunSpec (optional)
//! max_iters = 200
//!
//! [output]             # OutputSpec (optional)
//! log_every = 10
//! ```
//!
//! Unknown keys are errors everywhere; omitted keys take their documented defaults, and the
//! fully resolved config is written to the run's folder as `config.toml`.

use std::path::{Path, PathBuf};

use bilevel_problems::spec::ProblemSpec;
use bilevel_run::{MethodSpec, RunSpec};
use serde::{Deserialize, Serialize};

use crate::failure::{self, Failure};

/// The `[output]` table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputSpec {
    /// Run folder (default `results/<problem>/<algorithm>-seed<S>-<UTC time>/`); `--out`
    /// overrides it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// A row in `metrics.csv` (and a log line with `--log-format csv|json`) every this many
    /// iterations (default: `run.eval_every`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_every: Option<u64>,
}

impl OutputSpec {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A whole config file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What to solve.
    pub problem: ProblemSpec,
    /// How to solve it.
    pub algorithm: MethodSpec,
    /// Stopping rules, seed and cadences.
    #[serde(default)]
    pub run: RunSpec,
    /// Where results go.
    #[serde(default, skip_serializing_if = "OutputSpec::is_empty")]
    pub output: OutputSpec,
}

impl Config {
    /// Reads and parses `path` (not validated: see [`Config::validate`]).
    pub fn load(path: &Path) -> Result<Self, Failure> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::usage(
                format!("cannot read the config file {}: {e}", path.display()),
                "pass an existing TOML file with `--config FILE` (examples are in \
                 assets/configs/)",
            )
        })?;
        Self::parse(&text, path)
    }

    /// Parses TOML text; `origin` names the file in messages.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, Failure> {
        toml::from_str::<Config>(text).map_err(|e| {
            // A wrong value inside [problem] or [algorithm] (tagged by `kind` / `name`) is
            // reported by serde at the table, not at the key: find the key.
            match blame_key(text, e.message()) {
                Some((table, key, offset)) => toml_failure(
                    &format!("`{key}` in [{table}]: {}", e.message().trim()),
                    Some(offset),
                    text,
                    origin,
                ),
                None => toml_failure(e.message(), e.span().map(|s| s.start), text, origin),
            }
        })
    }

    /// Checks every range of every table without loading data.
    pub fn validate(&self) -> Result<(), Failure> {
        let with_table = |table: &str, f: Failure| Failure {
            message: format!("[{table}] {}", f.message),
            ..f
        };
        self.problem
            .validate()
            .map_err(|e| with_table("problem", failure::from_problem(&e)))?;
        self.algorithm
            .validate()
            .map_err(|e| with_table("algorithm", failure::from_problem(&e)))?;
        self.run.validate().map_err(|e| failure::from_problem(&e))?;
        if self.output.log_every == Some(0) {
            return Err(Failure::usage(
                "[output] invalid configuration `log_every`: must be ≥ 1",
                "omit `log_every` to log every `run.eval_every` iterations",
            ));
        }
        Ok(())
    }

    /// The resolved config (every default written out) as TOML.
    pub fn to_toml(&self) -> Result<String, Failure> {
        to_toml(self)
    }
}

/// `value` as TOML; failing is a bug (exit code [`failure::EXIT_INTERNAL`]).
pub fn to_toml<T: Serialize + ?Sized>(value: &T) -> Result<String, Failure> {
    toml::to_string(value).map_err(|e| Failure {
        code: failure::EXIT_INTERNAL,
        message: format!("cannot write TOML: {e}"),
        hint: Some("this is a bug in bilevel; please report it with the config".into()),
    })
}

/// The table, key and byte offset (of the key in `text`) whose value causes `message`: the
/// first key of a table whose removal makes the config parse without that message. `None`
/// when the text is not valid TOML or no single key is to blame.
fn blame_key(text: &str, message: &str) -> Option<(String, String, usize)> {
    if !(message.contains("invalid type") || message.contains("invalid value")) {
        return None;
    }
    let doc: toml::Table = toml::from_str(text).ok()?;
    for (table, value) in &doc {
        let Some(keys) = value.as_table() else {
            continue;
        };
        // `kind` and `name` pick the table's type: removing them changes every error.
        for key in keys
            .keys()
            .filter(|k| !matches!(k.as_str(), "kind" | "name"))
        {
            let mut without = doc.clone();
            without.get_mut(table)?.as_table_mut()?.remove(key);
            let still = match toml::from_str::<Config>(&toml::to_string(&without).ok()?) {
                Ok(_) => false,
                Err(e) => e.message() == message,
            };
            if !still {
                return Some((table.clone(), key.clone(), key_offset(text, table, key)?));
            }
        }
    }
    None
}

/// Byte offset of `key = …` inside the `[table]` section of `text`.
fn key_offset(text: &str, table: &str, key: &str) -> Option<usize> {
    let mut offset = 0;
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            inside = trimmed
                .trim_end()
                .trim_start_matches('[')
                .split(']')
                .next()
                .is_some_and(|name| name.trim() == table);
        } else if inside {
            let name = trimmed
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"');
            if trimmed.contains('=') && name == key {
                return Some(offset + (line.len() - trimmed.len()));
            }
        }
        offset += line.len();
    }
    None
}

/// `file:line:column: message` (`at`: the byte offset of the mistake) plus a hint chosen by the
/// kind of mistake.
fn toml_failure(message: &str, at: Option<usize>, text: &str, origin: &Path) -> Failure {
    let message = message.trim().to_string();
    let place = match at {
        Some(start) => {
            let before = &text[..start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{}:{line}:{column}", origin.display())
        }
        None => origin.display().to_string(),
    };
    let hint = if message.contains("unknown algorithm")
        || (message.contains("unknown variant") && message.contains("aid-cg"))
    {
        "`name` in [algorithm] must be one of the algorithms that `bilevel list algorithms` \
         prints"
            .to_string()
    } else if message.contains("unknown variant") {
        "use one of the values listed in the message (`bilevel list` prints the problems and \
         algorithms)"
            .to_string()
    } else if message.contains("unknown field") {
        "remove or correct the misspelt key: only the keys listed in the message are allowed \
         there (`bilevel list --defaults` prints every algorithm's keys with their defaults)"
            .to_string()
    } else if message.contains("missing field `problem`")
        || message.contains("missing field `algorithm`")
    {
        "a config needs a [problem] table (with `kind`) and an [algorithm] table (with `name`); \
         see assets/configs/ for complete examples"
            .to_string()
    } else if message.contains("missing field `kind`") || message.contains("missing field `name`") {
        "[problem] needs `kind = \"<problem>\"` and [algorithm] needs `name = \"<algorithm>\"` \
         (`bilevel list` prints both)"
            .to_string()
    } else if message.contains("invalid parameter") {
        "change the key named in the message as it says (`bilevel list --defaults` prints \
         every table with its defaults)"
            .to_string()
    } else if message.contains("invalid type")
        || message.contains("invalid length")
        || message.contains("invalid value")
    {
        "give the key a value of the type and length stated in the message (see \
         assets/configs/ for examples)"
            .to_string()
    } else {
        "fix the TOML syntax at the position shown (strings need quotes, tables are written \
         `[name]`); see assets/configs/ for examples"
            .to_string()
    };
    Failure::usage(
        format!("invalid config {place}: {}", message.replace('\n', " ")),
        hint,
    )
}
