//! Numeric delimited text tables (CSV), plain or gzip-compressed.
//!
//! [`read_csv`] reads a table of numbers with an optional header line into a row-major
//! [`CsvTable`]. It is deliberately narrow — every data field must be a finite number — and
//! strict: a ragged row, a non-numeric or empty field, a blank line inside the table or a cut-short
//! gzip stream is an error naming the file and the line, never a silently shorter table.
//!
//! Accepted syntax:
//! - fields separated by one byte ([`CsvOptions::delimiter`]); spaces and tabs around a field
//!   are ignored (unless one of them is the delimiter);
//! - fields may be quoted (`"fixed acidity"`, with `""` for a literal quote); quoted fields may
//!   not span lines;
//! - `\n` or `\r\n` line ends, with or without a final line end, and blank lines at the end;
//! - gzip compression, detected from the magic bytes `1f 8b` (not from the `.gz` suffix).

use std::path::Path;

use crate::error::{DataError, Result};
use crate::idx::read_maybe_gzip;

/// Name of the format in [`DataError::Format`] errors.
const FORMAT: &str = "CSV";

/// How to read a delimited table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvOptions {
    /// Field separator (`b','` for CSV, `b';'` for the UCI wine files, `b'\t'` for TSV). Must be
    /// an ASCII byte other than `"`, `\r` and `\n`.
    pub delimiter: u8,
    /// Whether the first line holds column names rather than numbers.
    pub has_header: bool,
}

impl Default for CsvOptions {
    /// Comma-separated with a header line.
    fn default() -> Self {
        Self {
            delimiter: b',',
            has_header: true,
        }
    }
}

impl CsvOptions {
    /// Comma-separated without a header line.
    pub fn headerless() -> Self {
        Self {
            has_header: false,
            ..Self::default()
        }
    }
}

/// A numeric table read by [`read_csv`].
#[derive(Debug, Clone, PartialEq)]
pub struct CsvTable {
    /// Column names (quotes removed), when the file has a header line.
    pub header: Option<Vec<String>>,
    /// Number of data rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// `rows * cols` values, row-major.
    pub values: Vec<f64>,
}

impl CsvTable {
    /// The values of column `j`, top to bottom, or `None` if there is no such column.
    pub fn column(&self, j: usize) -> Option<Vec<f64>> {
        (j < self.cols).then(|| {
            self.values
                .chunks_exact(self.cols)
                .map(|row| row[j])
                .collect()
        })
    }

    /// The values of row `i`, or `None` past the end.
    pub fn row(&self, i: usize) -> Option<&[f64]> {
        (i < self.rows).then(|| &self.values[i * self.cols..(i + 1) * self.cols])
    }

    /// Index of the column named `name` in the header, if there is a header and such a column.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.header.as_ref()?.iter().position(|h| h == name)
    }

    /// 1-based line of the file on which data row `i` (0-based) stands.
    ///
    /// Exact because blank lines are only accepted after the last row.
    pub fn line_of_row(&self, i: usize) -> usize {
        i + 1 + usize::from(self.header.is_some())
    }
}

/// Reads a numeric table from `path`, plain or gzip.
///
/// # Errors
/// [`DataError::Io`] if the file cannot be read, [`DataError::Decompress`] for a corrupt or
/// truncated gzip stream, [`DataError::Format`] for an empty file or one that is not UTF-8,
/// [`DataError::Parse`] (with the line number) for a ragged row, an empty, unterminated or
/// non-numeric field, or a blank line before the end, and [`DataError::InvalidParameter`] for an
/// unusable delimiter.
pub fn read_csv(path: &Path, opts: &CsvOptions) -> Result<CsvTable> {
    let bytes = read_maybe_gzip(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        DataError::format(path, FORMAT, format!("line {line} is not valid UTF-8"))
    })?;
    parse_csv(text, path, opts)
}

/// Parses the text of a numeric table; `path` only labels errors. See [`read_csv`].
pub fn parse_csv(text: &str, path: &Path, opts: &CsvOptions) -> Result<CsvTable> {
    let delimiter = check_delimiter(opts.delimiter)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    // Blank lines are tolerated only after the last row, so that row numbers map to lines.
    let used = lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(0, |last| last + 1);
    if used == 0 {
        return Err(DataError::format(path, FORMAT, "the file is empty"));
    }
    let mut header = None;
    let mut cols = None;
    let mut values = Vec::new();
    let mut fields = Vec::new();
    for (i, line) in lines[..used].iter().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            return Err(DataError::parse(
                path,
                line_no,
                "blank line inside the table (blank lines are only allowed at the end)",
            ));
        }
        split_fields(line, delimiter, &mut fields)
            .map_err(|r| DataError::parse(path, line_no, r))?;
        if i == 0 && opts.has_header {
            cols = Some(fields.len());
            header = Some(fields.iter().map(|f| f.to_string()).collect::<Vec<_>>());
            continue;
        }
        let expected = *cols.get_or_insert(fields.len());
        if fields.len() != expected {
            let origin = if opts.has_header {
                "as in the header"
            } else {
                "as in the first line"
            };
            return Err(DataError::parse(
                path,
                line_no,
                format!(
                    "expected {expected} fields ({origin}), found {}",
                    fields.len()
                ),
            ));
        }
        for (j, field) in fields.iter().enumerate() {
            let name = || match &header {
                Some(h) => format!("field {} ({:?})", j + 1, h[j]),
                None => format!("field {}", j + 1),
            };
            if field.is_empty() {
                return Err(DataError::parse(
                    path,
                    line_no,
                    format!("{} is empty", name()),
                ));
            }
            let value: f64 = field.parse().map_err(|_| {
                DataError::parse(
                    path,
                    line_no,
                    format!("{} {field:?} is not a number", name()),
                )
            })?;
            if !value.is_finite() {
                return Err(DataError::parse(
                    path,
                    line_no,
                    format!("{} {field:?} is not a finite number", name()),
                ));
            }
            values.push(value);
        }
    }
    let cols = cols.unwrap_or(0);
    let rows = values.len().checked_div(cols).unwrap_or(0);
    Ok(CsvTable {
        header,
        rows,
        cols,
        values,
    })
}

/// The delimiter as a `char`, or an error if it cannot separate fields unambiguously.
fn check_delimiter(delimiter: u8) -> Result<char> {
    if !delimiter.is_ascii() || matches!(delimiter, b'"' | b'\r' | b'\n') {
        return Err(DataError::invalid(
            "delimiter",
            format!("an ASCII byte other than '\"', '\\r' and '\\n', got 0x{delimiter:02x}"),
        ));
    }
    Ok(char::from(delimiter))
}

/// Splits one line into `out` (cleared first): fields trimmed of surrounding spaces and tabs
/// (other than the delimiter), quotes removed and `""` unescaped.
fn split_fields<'a>(
    line: &'a str,
    delimiter: char,
    out: &mut Vec<std::borrow::Cow<'a, str>>,
) -> std::result::Result<(), String> {
    use std::borrow::Cow;
    out.clear();
    let is_pad = |c: char| (c == ' ' || c == '\t') && c != delimiter;
    let mut rest = line;
    loop {
        rest = rest.trim_start_matches(is_pad);
        let field_no = out.len() + 1;
        if let Some(quoted) = rest.strip_prefix('"') {
            // Find the closing quote, skipping doubled quotes.
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err(format!("field {field_no}: unterminated quoted field")),
                    Some((k, '"')) => {
                        if quoted[k + 1..].starts_with('"') {
                            value.push('"');
                            chars.next();
                        } else {
                            break k + 1;
                        }
                    }
                    Some((_, c)) => value.push(c),
                }
            };
            out.push(Cow::Owned(value));
            let after = quoted[end..].trim_start_matches(is_pad);
            match after.chars().next() {
                None => return Ok(()),
                Some(c) if c == delimiter => rest = &after[c.len_utf8()..],
                Some(c) => {
                    return Err(format!(
                        "field {field_no}: unexpected {c:?} after a closing quote"
                    ))
                }
            }
        } else {
            match rest.find(delimiter) {
                Some(at) => {
                    out.push(Cow::Borrowed(rest[..at].trim_end_matches(is_pad)));
                    rest = &rest[at + delimiter.len_utf8()..];
                }
                None => {
                    out.push(Cow::Borrowed(rest.trim_end_matches(is_pad)));
                    return Ok(());
                }
            }
        }
    }
}
