//! The numeric CSV reader on committed fixtures in `tests/fixtures/csv`.

mod common;

use std::path::PathBuf;

use bilevel_data::csv::{parse_csv, read_csv, CsvOptions};
use bilevel_data::DataError;
use common::{fixtures, gzip, scratch, write};

fn fixture(name: &str) -> PathBuf {
    fixtures().join("csv").join(name)
}

/// The `Parse` error's line and reason, after checking that it names `file`.
fn parse_error(err: &DataError, file: &str) -> (usize, String) {
    let DataError::Parse { path, line, reason } = err else {
        panic!("expected Parse, got {err:?}");
    };
    assert!(path.ends_with(file), "{path}");
    assert!(
        err.to_string().contains(&format!("{file}:{line}:")),
        "{err}"
    );
    (*line, reason.clone())
}

#[test]
fn quoted_header_crlf_and_trailing_blank_lines() {
    let t = read_csv(&fixture("quoted-header.csv"), &CsvOptions::default()).unwrap();
    assert_eq!(
        t.header.as_deref().unwrap(),
        ["fixed acidity", "volatile acidity", "quality"]
    );
    assert_eq!((t.rows, t.cols), (3, 3));
    assert_eq!(t.values, [7.4, 0.7, 5.0, 7.8, 0.88, 5.0, 11.2, 0.28, 6.0]);
    assert_eq!(t.column(1).unwrap(), [0.7, 0.88, 0.28]);
    assert_eq!(t.column(2).unwrap(), [5.0, 5.0, 6.0]);
    assert_eq!(t.column(3), None);
    assert_eq!(t.row(2).unwrap(), [11.2, 0.28, 6.0]);
    assert_eq!(t.row(3), None);
    assert_eq!(t.column_index("quality"), Some(2));
    assert_eq!(t.column_index("pH"), None);
    assert_eq!(t.line_of_row(0), 2);
}

#[test]
fn headerless_other_delimiter_padding_and_no_final_newline() {
    let opts = CsvOptions {
        delimiter: b';',
        has_header: false,
    };
    let t = read_csv(&fixture("semicolon-headerless.csv"), &opts).unwrap();
    assert_eq!(t.header, None);
    assert_eq!((t.rows, t.cols), (2, 3));
    assert_eq!(t.values, [1.0, 2.5, -0.03, 4.0, 5.0, 6.0]);
    assert_eq!(t.line_of_row(1), 2);
}

#[test]
fn gzip_is_read_transparently() {
    let t = read_csv(&fixture("table.csv.gz"), &CsvOptions::default()).unwrap();
    assert_eq!(t.header.as_deref().unwrap(), ["x1", "x2", "y"]);
    assert_eq!((t.rows, t.cols), (200, 3));
    assert_eq!(t.row(0).unwrap(), [0.0, 0.0, 0.0]);
    assert_eq!(t.row(199).unwrap(), [199.0, 99.5, 1.0]);
    let x2_sum: f64 = t.column(1).unwrap().iter().sum();
    assert_eq!(x2_sum, 0.5 * 199.0 * 200.0 / 2.0);
    // Detection is by content: the same bytes under a name without `.gz` read the same.
    let dir = scratch("csv-gzip-renamed");
    let renamed = write(
        &dir,
        "table.csv",
        &std::fs::read(fixture("table.csv.gz")).unwrap(),
    );
    assert_eq!(read_csv(&renamed, &CsvOptions::default()).unwrap(), t);
    // A gzip written by flate2 rather than gzip(1) reads as well.
    let plain = "a,b\n1,2\n";
    let path = write(&dir, "flate2.csv.gz", &gzip(plain.as_bytes(), 6));
    let t = read_csv(&path, &CsvOptions::default()).unwrap();
    assert_eq!(t.values, [1.0, 2.0]);
}

#[test]
fn truncated_gzip_is_a_decompression_error() {
    let err = read_csv(&fixture("truncated.csv.gz"), &CsvOptions::default()).unwrap_err();
    let DataError::Decompress { path, .. } = &err else {
        panic!("expected Decompress, got {err:?}");
    };
    assert!(path.ends_with("truncated.csv.gz"), "{path}");
}

#[test]
fn ragged_row_names_line_and_counts() {
    let err = read_csv(&fixture("ragged.csv"), &CsvOptions::default()).unwrap_err();
    let (line, reason) = parse_error(&err, "ragged.csv");
    assert_eq!(line, 3);
    assert!(reason.contains("expected 3 fields"), "{reason}");
    assert!(reason.contains("found 2"), "{reason}");
}

#[test]
fn non_numeric_field_is_named() {
    let err = read_csv(&fixture("non-numeric.csv"), &CsvOptions::default()).unwrap_err();
    let (line, reason) = parse_error(&err, "non-numeric.csv");
    assert_eq!(line, 3);
    assert!(reason.contains("field 2"), "{reason}");
    assert!(reason.contains("\"y\""), "{reason}");
    assert!(reason.contains("\"abc\""), "{reason}");
}

#[test]
fn empty_files_are_format_errors() {
    for name in ["empty.csv", "blank-lines-only.csv"] {
        let err = read_csv(&fixture(name), &CsvOptions::default()).unwrap_err();
        let DataError::Format {
            path,
            format,
            reason,
        } = &err
        else {
            panic!("expected Format, got {err:?}");
        };
        assert!(path.ends_with(name), "{path}");
        assert_eq!(format, "CSV");
        assert!(reason.contains("empty"), "{reason}");
    }
}

#[test]
fn blank_line_inside_the_table_is_rejected() {
    let err = read_csv(&fixture("interior-blank.csv"), &CsvOptions::default()).unwrap_err();
    let (line, reason) = parse_error(&err, "interior-blank.csv");
    assert_eq!(line, 3);
    assert!(reason.contains("blank line"), "{reason}");
}

#[test]
fn header_only_is_an_empty_table() {
    let t = read_csv(&fixture("header-only.csv"), &CsvOptions::default()).unwrap();
    assert_eq!((t.rows, t.cols), (0, 2));
    assert!(t.values.is_empty());
    assert_eq!(t.column(0).unwrap(), Vec::<f64>::new());
}

#[test]
fn missing_file_is_an_io_error() {
    let err = read_csv(&fixture("no-such.csv"), &CsvOptions::default()).unwrap_err();
    assert!(
        matches!(&err, DataError::Io { path, .. } if path.ends_with("no-such.csv")),
        "{err:?}"
    );
}

#[test]
fn field_level_errors() {
    let p = std::path::Path::new("mem.csv");
    let opts = CsvOptions::default();
    let cases = [
        ("a,b\n1,\n", 2, "field 2 (\"b\") is empty"),
        ("a,b\n\"1,2\n", 2, "unterminated quoted field"),
        ("a,b\n\"1\"x,2\n", 2, "after a closing quote"),
        ("a,b\n1,inf\n", 2, "not a finite number"),
        ("a,b\n1,NaN\n", 2, "not a finite number"),
    ];
    for (text, want_line, want) in cases {
        let err = parse_csv(text, p, &opts).unwrap_err();
        let (line, reason) = parse_error(&err, "mem.csv");
        assert_eq!(line, want_line, "{text:?}");
        assert!(reason.contains(want), "{text:?}: {reason}");
    }
    // Headerless: the first line fixes the width.
    let err = parse_csv("1,2\n3\n", p, &CsvOptions::headerless()).unwrap_err();
    let (line, reason) = parse_error(&err, "mem.csv");
    assert_eq!(line, 2);
    assert!(reason.contains("as in the first line"), "{reason}");
}

#[test]
fn quoting_rules() {
    let p = std::path::Path::new("mem.csv");
    let t = parse_csv(
        "\u{feff}\"say \"\"hi\"\"\" , plain ,\"2\"\n \"1\" ,-2.5e3, 3 \n",
        p,
        &CsvOptions::default(),
    )
    .unwrap();
    assert_eq!(t.header.as_deref().unwrap(), ["say \"hi\"", "plain", "2"]);
    assert_eq!(t.values, [1.0, -2500.0, 3.0]);
    // Tab-separated: a tab is then a delimiter, not padding.
    let opts = CsvOptions {
        delimiter: b'\t',
        has_header: false,
    };
    let t = parse_csv("1\t 2\n3\t4\n", p, &opts).unwrap();
    assert_eq!(
        (t.rows, t.cols, t.values.as_slice()),
        (2, 2, &[1.0, 2.0, 3.0, 4.0][..])
    );
}

#[test]
fn unusable_delimiters_are_rejected() {
    let p = std::path::Path::new("mem.csv");
    for delimiter in [b'"', b'\n', b'\r', 0xe9] {
        let opts = CsvOptions {
            delimiter,
            has_header: true,
        };
        let err = parse_csv("a\n1\n", p, &opts).unwrap_err();
        assert!(
            matches!(&err, DataError::InvalidParameter { name, .. } if name == "delimiter"),
            "{err:?}"
        );
    }
}

#[test]
fn non_utf8_is_a_format_error_with_line() {
    let dir = scratch("csv-non-utf8");
    let path = write(&dir, "latin1.csv", b"a,b\n1,2\n3,\xe9\n");
    let err = read_csv(&path, &CsvOptions::default()).unwrap_err();
    let DataError::Format { path, reason, .. } = &err else {
        panic!("expected Format, got {err:?}");
    };
    assert!(path.ends_with("latin1.csv"), "{path}");
    assert!(reason.contains("line 3"), "{reason}");
}
