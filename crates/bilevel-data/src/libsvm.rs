//! The LIBSVM / svmlight sparse text format, plain or gzip-compressed.
//!
//! One sample per line:
//!
//! ```text
//! <label> [qid:<n>] <index>:<value> <index>:<value> ... [# comment]
//! ```
//!
//! Indices are 1-based and strictly increasing within a line; they are stored 0-based. The
//! `qid:` field of ranking data is validated and ignored. Everything from `#` to the end of the
//! line is a comment; blank and comment-only lines are skipped (line numbers in errors still
//! count them). Compression is detected from the gzip magic bytes.
//!
//! [`read_libsvm`] checks every token and reports the first bad one as a
//! [`DataError::Parse`] naming the file and line: a label that is not a finite number, a token
//! that is not `index:value`, index 0, an index not above its predecessor, a non-finite value,
//! or an index beyond the declared number of features.

use std::path::Path;

use crate::error::{DataError, Result};
use crate::idx::read_maybe_gzip;

/// Name of the format in [`DataError::Format`] errors.
const FORMAT: &str = "LIBSVM";

/// Largest feature count representable with `u32` 0-based indices.
const MAX_FEATURES: u64 = u32::MAX as u64 + 1;

/// Labelled sparse samples in compressed sparse row (CSR) layout.
///
/// Row `i`'s features are `indices[indptr[i]..indptr[i + 1]]` (0-based, strictly increasing)
/// with values `values[indptr[i]..indptr[i + 1]]`; `indptr` has `len() + 1` entries, starting
/// at 0 and ending at `indices.len()`.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseDataset {
    /// One label per sample (class labels such as `-1`/`+1`, or regression targets).
    pub labels: Vec<f64>,
    /// Row offsets into `indices` / `values`, `len() + 1` entries.
    pub indptr: Vec<usize>,
    /// 0-based feature indices, row by row.
    pub indices: Vec<u32>,
    /// Feature values matching `indices`.
    pub values: Vec<f32>,
    /// Number of features (columns); every index is below it.
    pub n_features: usize,
}

impl SparseDataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of stored (explicit) entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// The 0-based feature indices and values of sample `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`, like slice indexing.
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let range = self.indptr[i]..self.indptr[i + 1];
        (&self.indices[range.clone()], &self.values[range])
    }

    /// The samples as a dense row-major `len() * n_features` matrix (absent entries are 0).
    pub fn to_dense(&self) -> Vec<f32> {
        let mut dense = vec![0f32; self.len() * self.n_features];
        for (i, row) in dense.chunks_exact_mut(self.n_features.max(1)).enumerate() {
            let (indices, values) = self.row(i);
            for (&j, &v) in indices.iter().zip(values) {
                row[j as usize] = v;
            }
        }
        dense
    }
}

/// Reads a LIBSVM file, plain or gzip.
///
/// `n_features`: `None` takes the largest index seen (so a file whose last features are all
/// zero yields fewer columns than the data set has: pass the known count where it matters);
/// `Some(n)` fixes the column count and makes any index above `n` an error.
///
/// # Errors
/// [`DataError::Io`] / [`DataError::Decompress`] when the file cannot be read,
/// [`DataError::Format`] when it is not UTF-8 or holds no sample, [`DataError::Parse`] (file
/// and line) for a malformed line, and [`DataError::InvalidParameter`] for `n_features` above
/// 2^32.
pub fn read_libsvm(path: &Path, n_features: Option<usize>) -> Result<SparseDataset> {
    let bytes = read_maybe_gzip(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        DataError::format(path, FORMAT, format!("line {line} is not valid UTF-8"))
    })?;
    parse_libsvm(text, path, n_features)
}

/// Parses LIBSVM text; `path` only labels errors. See [`read_libsvm`].
pub fn parse_libsvm(text: &str, path: &Path, n_features: Option<usize>) -> Result<SparseDataset> {
    if let Some(n) = n_features {
        if n as u64 > MAX_FEATURES {
            return Err(DataError::invalid(
                "n_features",
                format!("at most 2^32 features (u32 indices), got {n}"),
            ));
        }
    }
    let mut labels = Vec::new();
    let mut indptr = vec![0usize];
    let mut indices = Vec::new();
    let mut values = Vec::new();
    let mut max_index = 0u64; // 1-based; 0 = no feature seen yet
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let err = |reason: String| DataError::parse(path, line_no, reason);
        let content = raw.split_once('#').map_or(raw, |(before, _)| before);
        let mut tokens = content.split_ascii_whitespace();
        let Some(label_token) = tokens.next() else {
            continue;
        };
        let label: f64 = label_token
            .parse()
            .ok()
            .filter(|l: &f64| l.is_finite())
            .ok_or_else(|| err(format!("label {label_token:?} is not a finite number")))?;
        let mut previous = 0u64;
        for (k, token) in tokens.enumerate() {
            let Some((index_text, value_text)) = token.split_once(':') else {
                return Err(err(format!(
                    "token {token:?} is not of the form index:value"
                )));
            };
            if index_text == "qid" {
                if k != 0 {
                    return Err(err(format!(
                        "{token:?}: qid must come right after the label"
                    )));
                }
                value_text
                    .parse::<u64>()
                    .map_err(|_| err(format!("{token:?}: qid is not a non-negative integer")))?;
                continue;
            }
            let index: u64 = index_text.parse().map_err(|_| {
                err(format!(
                    "token {token:?}: index {index_text:?} is not a positive integer"
                ))
            })?;
            if index == 0 {
                return Err(err(format!(
                    "token {token:?}: indices are 1-based, 0 is not allowed"
                )));
            }
            if index <= previous {
                return Err(err(format!(
                    "token {token:?}: index {index} does not increase on the previous {previous} \
                     (indices must be strictly increasing within a line)"
                )));
            }
            match n_features {
                Some(n) if index > n as u64 => {
                    return Err(err(format!(
                        "token {token:?}: index {index} exceeds n_features = {n}"
                    )))
                }
                None if index > MAX_FEATURES => {
                    return Err(err(format!(
                        "token {token:?}: index {index} exceeds the supported 2^32 features"
                    )))
                }
                _ => {}
            }
            let value: f32 = value_text
                .parse()
                .ok()
                .filter(|v: &f32| v.is_finite())
                .ok_or_else(|| {
                    err(format!(
                        "token {token:?}: value {value_text:?} is not a finite number"
                    ))
                })?;
            previous = index;
            max_index = max_index.max(index);
            // index <= 2^32 was checked above, so index - 1 fits in u32.
            indices.push((index - 1) as u32);
            values.push(value);
        }
        labels.push(label);
        indptr.push(indices.len());
    }
    if labels.is_empty() {
        return Err(DataError::format(
            path,
            FORMAT,
            "no samples (the file is empty or holds only comments)",
        ));
    }
    Ok(SparseDataset {
        labels,
        indptr,
        indices,
        values,
        n_features: n_features.unwrap_or(max_index as usize),
    })
}
