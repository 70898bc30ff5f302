//! Named tabular data sets on excerpts in the real formats (`tests/fixtures/tabular`, see its
//! README).

mod common;

use std::path::{Path, PathBuf};

use bilevel_data::tabular::{
    diabetes, digits, wine_quality, RegressionSet, DIABETES_LEN, DIGITS_LEN, WINE_QUALITY_LEN,
};
use bilevel_data::DataError;
use common::{fixtures, gzip, scratch, write};

fn fixture(name: &str) -> PathBuf {
    fixtures().join("tabular").join(name)
}

fn assert_close(got: f64, want: f64, tol: f64) {
    assert!((got - want).abs() < tol, "{got} vs {want}");
}

#[test]
fn wine_quality_reads_features_targets_and_names() {
    let w = wine_quality(&fixture("wine-quality")).unwrap();
    assert_eq!((w.len, w.dim), (5, 11));
    assert!(!w.is_empty());
    assert_eq!(w.feature_names[0], "fixed acidity");
    assert_eq!(w.feature_names[8], "pH");
    assert_eq!(w.feature_names[10], "alcohol");
    assert_eq!(w.targets, [5.0, 5.0, 5.0, 6.0, 5.0]);
    assert_eq!(
        w.row(3).unwrap(),
        [11.2, 0.28, 0.56, 1.9, 0.075, 17.0, 60.0, 0.998, 3.16, 0.58, 9.8]
    );
    assert_eq!(w.row(5), None);
}

#[test]
fn standardize_centres_and_scales_each_feature() {
    let mut w = wine_quality(&fixture("wine-quality")).unwrap();
    let targets = w.targets.clone();
    let scaling = w.standardize().unwrap();
    // Fixed acidity 7.4, 7.8, 7.8, 11.2, 7.4: mean 8.32, population variance 10.528 / 5.
    assert_close(scaling.mean[0], 8.32, 1e-12);
    assert_close(scaling.std[0], (10.528f64 / 5.0).sqrt(), 1e-12);
    assert_close(
        w.features[3 * 11],
        (11.2 - 8.32) / (2.1056f64).sqrt(),
        1e-12,
    );
    for j in 0..w.dim {
        let col: Vec<f64> = (0..w.len).map(|i| w.row(i).unwrap()[j]).collect();
        let mean = col.iter().sum::<f64>() / 5.0;
        let var = col.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / 5.0;
        assert_close(mean, 0.0, 1e-12);
        assert_close(var, 1.0, 1e-12);
    }
    assert_eq!(w.targets, targets, "targets are not touched");

    // The fitted scaling applies to other rows; a constant feature is only centred.
    let mut other = wine_quality(&fixture("wine-quality")).unwrap().features;
    scaling.apply(&mut other).unwrap();
    assert_eq!(other, w.features);
    let mut constant = RegressionSet::new(
        vec![3.0, 1.0, 3.0, 2.0, 3.0, 3.0],
        vec![0.0; 3],
        2,
        vec!["c".into(), "x".into()],
    )
    .unwrap();
    let s = constant.standardize().unwrap();
    assert_eq!((s.mean[0], s.std[0]), (3.0, 1.0));
    assert_eq!(constant.features[0], 0.0);
    assert!(matches!(
        s.apply(&mut [1.0, 2.0, 3.0]),
        Err(DataError::ShapeMismatch { .. })
    ));
    let mut empty = RegressionSet::new(vec![], vec![], 2, vec!["a".into(), "b".into()]).unwrap();
    assert!(matches!(
        empty.standardize(),
        Err(DataError::InvalidParameter { .. })
    ));
}

#[test]
fn subset_and_shape_checks() {
    let w = wine_quality(&fixture("wine-quality")).unwrap();
    let s = w.subset(&[3, 0, 3]).unwrap();
    assert_eq!(s.len, 3);
    assert_eq!(s.targets, [6.0, 5.0, 6.0]);
    assert_eq!(s.row(2), w.row(3));
    assert!(matches!(
        w.subset(&[5]),
        Err(DataError::InvalidParameter { .. })
    ));
    assert!(matches!(
        RegressionSet::new(vec![1.0; 5], vec![0.0; 2], 2, vec!["a".into(), "b".into()]),
        Err(DataError::ShapeMismatch {
            expected: 4,
            got: 5,
            ..
        })
    ));
    assert!(matches!(
        RegressionSet::new(vec![1.0; 4], vec![0.0; 2], 2, vec!["a".into()]),
        Err(DataError::ShapeMismatch {
            expected: 2,
            got: 1,
            ..
        })
    ));
}

#[test]
fn wine_quality_checks_its_header() {
    let dir = scratch("tabular-wine-bad-header");
    let text = "\"a\",\"b\"\n1,2\n";
    write(&dir, "winequality-red.csv.gz", &gzip(text.as_bytes(), 6));
    let err = wine_quality(&dir).unwrap_err();
    let DataError::Format { path, reason, .. } = &err else {
        panic!("expected Format, got {err:?}");
    };
    assert!(path.ends_with("winequality-red.csv.gz"), "{path}");
    assert!(reason.contains("expected 12 columns, found 2"), "{reason}");

    // Uncompressed, 12 columns, but the target is not last.
    let header: Vec<String> = (0..12).map(|i| format!("\"c{i}\"")).collect();
    let text = format!("{}\n{}\n", header.join(","), ["1"; 12].join(","));
    write(&dir, "winequality-red.csv", text.as_bytes());
    std::fs::remove_file(dir.join("winequality-red.csv.gz")).unwrap();
    let err = wine_quality(&dir).unwrap_err();
    assert!(
        matches!(&err, DataError::Format { reason, .. } if reason.contains("\"quality\"")),
        "{err:?}"
    );
}

#[test]
fn diabetes_reads_both_files() {
    let d = diabetes(&fixture("diabetes")).unwrap();
    assert_eq!((d.len, d.dim), (4, 10));
    assert_eq!(d.targets, [151.0, 75.0, 141.0, 206.0]);
    assert_eq!(d.feature_names[2], "bmi");
    assert_eq!(d.features[0], 3.807_590_643_342_41e-2);
    assert_eq!(d.row(1).unwrap()[1], -4.464_163_650_698_9e-2);
}

#[test]
fn diabetes_row_count_mismatch() {
    let err = diabetes(&fixture("diabetes-mismatch")).unwrap_err();
    let DataError::CountMismatch {
        images_path,
        labels_path,
        images,
        labels,
    } = &err
    else {
        panic!("expected CountMismatch, got {err:?}");
    };
    assert!(
        images_path.ends_with("diabetes_data.csv.gz"),
        "{images_path}"
    );
    assert!(
        labels_path.ends_with("diabetes_target.csv.gz"),
        "{labels_path}"
    );
    assert_eq!((*images, *labels), (4, 3));
}

#[test]
fn digits_reads_pixels_over_16_and_labels() {
    let d = digits(&fixture("digits")).unwrap();
    assert_eq!((d.len, d.rows, d.cols), (3, 8, 8));
    assert_eq!(d.labels, [0, 7, 9]);
    let sums: Vec<f32> = (0..3).map(|i| d.image(i).unwrap().iter().sum()).collect();
    assert_eq!(sums, [294.0 / 16.0, 506.0 / 16.0, 128.0 / 16.0]);
    // scikit-learn's first digit: row 1 is 0 0 13 15 10 15 5 0.
    assert_eq!(
        d.image(0).unwrap()[8..16],
        [
            0.0,
            0.0,
            13.0 / 16.0,
            15.0 / 16.0,
            10.0 / 16.0,
            15.0 / 16.0,
            5.0 / 16.0,
            0.0
        ]
    );
    assert_eq!(d.image(2).unwrap()[9], 1.0);
}

#[test]
fn digits_rejects_out_of_range_pixels_with_line() {
    let err = digits(&fixture("digits-bad")).unwrap_err();
    let DataError::Parse { path, line, reason } = &err else {
        panic!("expected Parse, got {err:?}");
    };
    assert!(path.ends_with("digits.csv.gz"), "{path}");
    assert_eq!(*line, 2);
    assert!(reason.contains("pixel 6 is 17"), "{reason}");

    let dir = scratch("tabular-digits-bad-label");
    let row = format!("{},10\n", ["0"; 64].join(","));
    write(&dir, "digits.csv", row.as_bytes());
    let err = digits(&dir).unwrap_err();
    assert!(
        matches!(&err, DataError::Parse { line: 1, reason, .. } if reason.contains("label is 10")),
        "{err:?}"
    );
    write(&dir, "digits.csv", b"1,2,3\n");
    let err = digits(&dir).unwrap_err();
    assert!(
        matches!(&err, DataError::Format { reason, .. } if reason.contains("expected 65 columns")),
        "{err:?}"
    );
}

#[test]
fn missing_files_name_the_fetch_command() {
    let dir = scratch("tabular-missing");
    type Loader = fn(&Path) -> Result<(), DataError>;
    let cases: [(&str, Loader); 3] = [
        ("wine-quality", |d| wine_quality(d).map(drop)),
        ("diabetes", |d| diabetes(d).map(drop)),
        ("digits", |d| digits(d).map(drop)),
    ];
    for (name, load) in cases {
        let err = load(&dir).unwrap_err();
        let DataError::MissingFile { path, hint } = &err else {
            panic!("expected MissingFile, got {err:?}");
        };
        assert!(path.ends_with(".csv.gz"), "{path}");
        assert!(
            hint.contains(&format!("cargo xtask data fetch {name}")),
            "{hint}"
        );
    }
    // Only the target file missing.
    let dir = scratch("tabular-missing-target");
    std::fs::copy(
        fixture("diabetes").join("diabetes_data.csv.gz"),
        dir.join("diabetes_data.csv.gz"),
    )
    .unwrap();
    let err = diabetes(&dir).unwrap_err();
    assert!(
        matches!(&err, DataError::MissingFile { path, .. } if path.ends_with("diabetes_target.csv.gz")),
        "{err:?}"
    );
}

/// The full files, when `BILEVEL_TABULAR_DIR` names a folder holding them (skipped otherwise).
#[test]
fn real_files_if_available() {
    let Some(dir) = std::env::var_os("BILEVEL_TABULAR_DIR") else {
        eprintln!("BILEVEL_TABULAR_DIR not set; skipping");
        return;
    };
    let dir = PathBuf::from(dir);
    if dir.join("winequality-red.csv.gz").is_file() {
        let w = wine_quality(&dir).unwrap();
        assert_eq!((w.len, w.dim), (WINE_QUALITY_LEN, 11));
        let mean_quality = w.targets.iter().sum::<f64>() / w.len as f64;
        eprintln!("wine: mean quality {mean_quality}");
        assert_close(mean_quality, 5.636, 1e-3);
    }
    if dir.join("diabetes_data.csv.gz").is_file() {
        let d = diabetes(&dir).unwrap();
        assert_eq!((d.len, d.dim), (DIABETES_LEN, 10));
        let mean_target = d.targets.iter().sum::<f64>() / d.len as f64;
        eprintln!("diabetes: mean target {mean_target}");
        assert_close(mean_target, 152.133, 1e-3);
    }
    if dir.join("digits.csv.gz").is_file() {
        let g = digits(&dir).unwrap();
        assert_eq!(g.len, DIGITS_LEN);
        eprintln!("digits: label counts {:?}", g.label_counts());
    }
}
