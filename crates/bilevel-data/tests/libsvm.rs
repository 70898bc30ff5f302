//! The LIBSVM reader on committed fixtures in `tests/fixtures/libsvm`.

mod common;

use std::path::{Path, PathBuf};

use bilevel_data::libsvm::{parse_libsvm, read_libsvm, SparseDataset};
use bilevel_data::DataError;
use common::fixtures;

fn fixture(name: &str) -> PathBuf {
    fixtures().join("libsvm").join(name)
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

fn check_small(d: &SparseDataset, n_features: usize) {
    assert_eq!(d.len(), 4);
    assert!(!d.is_empty());
    assert_eq!(d.labels, [1.0, -1.0, 0.0, 1.5]);
    assert_eq!(d.indptr, [0, 2, 4, 4, 5]);
    assert_eq!(d.indices, [0, 2, 1, 3, 4]);
    assert_eq!(d.values, [0.5, -1.25, 2.0, 0.1, 3.0]);
    assert_eq!(d.nnz(), 5);
    assert_eq!(d.n_features, n_features);
    assert_eq!(d.row(0), (&[0u32, 2][..], &[0.5f32, -1.25][..]));
    assert_eq!(d.row(2), (&[][..], &[][..]));
    assert_eq!(d.row(3), (&[4u32][..], &[3.0f32][..]));
}

#[test]
fn reads_labels_indices_values_comments_qid_and_blank_lines() {
    let d = read_libsvm(&fixture("small.svm"), None).unwrap();
    check_small(&d, 5);
    #[rustfmt::skip]
    let dense = [
        0.5, 0.0, -1.25, 0.0, 0.0,
        0.0, 2.0, 0.0, 0.1, 0.0,
        0.0, 0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0, 3.0,
    ];
    assert_eq!(d.to_dense(), dense);
}

#[test]
fn explicit_feature_count_widens_the_matrix() {
    let d = read_libsvm(&fixture("small.svm"), Some(7)).unwrap();
    check_small(&d, 7);
    let dense = d.to_dense();
    assert_eq!(dense.len(), 4 * 7);
    assert_eq!(dense[7 + 1], 2.0);
    assert_eq!(dense[3 * 7 + 4], 3.0);
}

#[test]
fn gzip_reads_like_plain_and_truncation_is_reported() {
    let plain = read_libsvm(&fixture("small.svm"), None).unwrap();
    assert_eq!(read_libsvm(&fixture("small.svm.gz"), None).unwrap(), plain);
    let err = read_libsvm(&fixture("truncated.svm.gz"), None).unwrap_err();
    assert!(
        matches!(&err, DataError::Decompress { path, .. } if path.ends_with("truncated.svm.gz")),
        "{err:?}"
    );
}

#[test]
fn index_zero_is_rejected_with_line() {
    let err = read_libsvm(&fixture("index-zero.svm"), None).unwrap_err();
    let (line, reason) = parse_error(&err, "index-zero.svm");
    assert_eq!(line, 2);
    assert!(reason.contains("1-based"), "{reason}");
}

#[test]
fn non_increasing_index_is_rejected_with_line() {
    let err = read_libsvm(&fixture("non-increasing.svm"), None).unwrap_err();
    let (line, reason) = parse_error(&err, "non-increasing.svm");
    assert_eq!(line, 3);
    assert!(reason.contains("\"2:5\""), "{reason}");
    assert!(reason.contains("strictly increasing"), "{reason}");
}

#[test]
fn bad_token_and_bad_label_are_rejected_with_line() {
    let err = read_libsvm(&fixture("bad-token.svm"), None).unwrap_err();
    let (line, reason) = parse_error(&err, "bad-token.svm");
    assert_eq!(line, 2);
    assert!(reason.contains("\"2=3\""), "{reason}");
    assert!(reason.contains("index:value"), "{reason}");

    let err = read_libsvm(&fixture("bad-label.svm"), None).unwrap_err();
    let (line, reason) = parse_error(&err, "bad-label.svm");
    assert_eq!(line, 2);
    assert!(reason.contains("label \"spam\""), "{reason}");
}

#[test]
fn index_beyond_n_features_is_rejected() {
    let d = read_libsvm(&fixture("wide.svm"), None).unwrap();
    assert_eq!(d.n_features, 7);
    assert_eq!(read_libsvm(&fixture("wide.svm"), Some(7)).unwrap(), d);
    let err = read_libsvm(&fixture("wide.svm"), Some(6)).unwrap_err();
    let (line, reason) = parse_error(&err, "wide.svm");
    assert_eq!(line, 1);
    assert!(
        reason.contains("index 7 exceeds n_features = 6"),
        "{reason}"
    );
}

#[test]
fn no_samples_is_a_format_error() {
    let err = read_libsvm(&fixture("comments-only.svm"), None).unwrap_err();
    let DataError::Format { path, format, .. } = &err else {
        panic!("expected Format, got {err:?}");
    };
    assert!(path.ends_with("comments-only.svm"), "{path}");
    assert_eq!(format, "LIBSVM");
}

#[test]
fn token_level_errors() {
    let p = Path::new("mem.svm");
    let cases = [
        ("1 a:1\n", 1, "not a positive integer"),
        ("1 -3:1\n", 1, "not a positive integer"),
        ("1 2:x\n", 1, "value \"x\" is not a finite number"),
        ("1 2:nan\n", 1, "not a finite number"),
        ("inf 2:1\n", 1, "label \"inf\""),
        (
            "1 2:1\n1 1:1 qid:2\n",
            2,
            "qid must come right after the label",
        ),
        ("1 qid:x 1:1\n", 1, "qid is not a non-negative integer"),
        (
            "1 1:1 1:2\n",
            1,
            "index 1 does not increase on the previous 1",
        ),
        ("1 4294967297:1\n", 1, "2^32"),
    ];
    for (text, want_line, want) in cases {
        let err = parse_libsvm(text, p, None).unwrap_err();
        let (line, reason) = parse_error(&err, "mem.svm");
        assert_eq!(line, want_line, "{text:?}");
        assert!(reason.contains(want), "{text:?}: {reason}");
    }
    // CRLF line ends and tabs between tokens are fine.
    let d = parse_libsvm("1\t2:1.5\r\n-1 1:2\r\n", p, None).unwrap();
    assert_eq!((d.labels.as_slice(), d.n_features), (&[1.0, -1.0][..], 2));
    assert_eq!(d.to_dense(), [0.0, 1.5, 2.0, 0.0]);
}
