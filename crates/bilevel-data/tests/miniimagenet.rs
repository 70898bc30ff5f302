//! miniImageNet CSV-split layout loader.

mod common;

use std::path::{Path, PathBuf};

use bilevel_data::miniimagenet::{FewShotSplit, MiniImageNet};
use bilevel_data::DataError;

fn root() -> PathBuf {
    common::fixtures().join("miniimagenet")
}

/// Asserts that every pixel of each channel of `img` is within `tol` (in 8-bit levels) of `rgb`.
fn assert_solid(img: &[f32], rgb: [f32; 3], tol: f32) {
    let plane = img.len() / 3;
    for (c, &want) in rgb.iter().enumerate() {
        for &v in &img[c * plane..(c + 1) * plane] {
            assert!(
                (v * 255.0 - want).abs() <= tol,
                "channel {c}: {} vs {want}",
                v * 255.0
            );
        }
    }
}

#[test]
fn loads_train_split_in_csv_order() {
    let set = MiniImageNet::load_split(&root(), FewShotSplit::Train, (4, 4)).unwrap();
    assert_eq!(set.class_names, ["n01532829", "n01558993"]);
    assert_eq!(set.labels, [0, 1, 0, 1]);
    assert_eq!((set.len, set.channels, set.height, set.width), (4, 3, 4, 4));
    // Real JPEGs (quality 100, no subsampling) of solid colours, downscaled.
    assert_solid(set.image(0).unwrap(), [200.0, 30.0, 60.0], 3.0);
    assert_solid(set.image(1).unwrap(), [10.0, 220.0, 90.0], 3.0);
    assert_solid(set.image(3).unwrap(), [250.0, 250.0, 250.0], 3.0);
    // A PNG stored as .jpg, exactly (0, 128, 255) and already 4x4.
    let png = set.image(2).unwrap();
    assert_eq!(&png[..16], &[0.0; 16]);
    assert_eq!(&png[16..32], &[128.0 / 255.0; 16]);
    assert_eq!(&png[32..], &[1.0; 16]);
    assert_eq!(set.indices_by_class(), vec![vec![0, 2], vec![1, 3]]);
}

#[test]
fn val_with_crlf_and_test_splits() {
    let val = MiniImageNet::load_split(&root(), FewShotSplit::Val, (84, 84)).unwrap();
    assert_eq!(val.class_names, ["n02000000"]);
    assert_eq!((val.len, val.height, val.width), (1, 84, 84));
    assert_solid(val.image(0).unwrap(), [128.0; 3], 2.0);
    let test = MiniImageNet::load_split(&root(), FewShotSplit::Test, (2, 3)).unwrap();
    assert_eq!(test.class_names, ["n03000000"]);
    assert_solid(test.image(0).unwrap(), [0.0; 3], 2.0);
    assert_eq!(
        FewShotSplit::ALL.map(FewShotSplit::csv_name),
        ["train.csv", "val.csv", "test.csv"]
    );
}

/// A scratch root with `images/` holding one copy of a fixture image as `a.jpg`, and `csv`
/// written as `train.csv`.
fn scratch_root(name: &str, csv: &str) -> PathBuf {
    let dir = common::scratch(name);
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::copy(
        root().join("images").join("n0153282900000005.jpg"),
        dir.join("images").join("a.jpg"),
    )
    .unwrap();
    common::write(&dir, "train.csv", csv.as_bytes());
    dir
}

fn expect_parse(dir: &Path, line: usize, needle: &str) {
    match MiniImageNet::load_split(dir, FewShotSplit::Train, (4, 4)) {
        Err(e @ DataError::Parse { .. }) => {
            let DataError::Parse {
                path,
                line: l,
                reason,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(path, &dir.join("train.csv").display().to_string());
            assert_eq!(*l, line, "{e}");
            assert!(reason.contains(needle), "{reason}");
            assert!(e.to_string().contains(&format!("train.csv:{line}:")), "{e}");
        }
        other => panic!("expected a Parse error at line {line}, got {other:?}"),
    }
}

#[test]
fn csv_errors_carry_the_line() {
    let dir = scratch_root("mini-header", "file,label\na.jpg,x\n");
    expect_parse(&dir, 1, "header");
    let dir = scratch_root("mini-fields", "filename,label\na.jpg,x\n\na.jpg,x,extra\n");
    expect_parse(&dir, 4, "found 3");
    let dir = scratch_root("mini-one-field", "filename,label\na.jpg\n");
    expect_parse(&dir, 2, "found 1");
    let dir = scratch_root("mini-empty-label", "filename,label\na.jpg,\n");
    expect_parse(&dir, 2, "empty");
    let dir = scratch_root("mini-path", "filename,label\n../a.jpg,x\n");
    expect_parse(&dir, 2, "plain name");
    let dir = scratch_root("mini-empty", "");
    expect_parse(&dir, 1, "empty file");
    let dir = scratch_root("mini-no-rows", "\u{feff}filename,label\n\n");
    match MiniImageNet::load_split(&dir, FewShotSplit::Train, (4, 4)) {
        Err(DataError::Format { path, .. }) => assert!(path.ends_with("train.csv")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_files_are_named() {
    let dir = scratch_root("mini-missing", "filename,label\na.jpg,x\nb.jpg,y\n");
    match MiniImageNet::load_split(&dir, FewShotSplit::Train, (4, 4)) {
        Err(DataError::MissingFile { path, hint }) => {
            assert_eq!(path, dir.join("images").join("b.jpg").display().to_string());
            assert!(hint.contains("train.csv"), "{hint}");
        }
        other => panic!("{other:?}"),
    }
    match MiniImageNet::load_split(&dir, FewShotSplit::Val, (4, 4)) {
        Err(DataError::MissingFile { path, .. }) => {
            assert_eq!(path, dir.join("val.csv").display().to_string());
        }
        other => panic!("{other:?}"),
    }
    let listing = MiniImageNet::list_split(&root(), FewShotSplit::Train).unwrap();
    assert_eq!(listing.files.len(), 4);
    assert_eq!(listing.class_names, ["n01532829", "n01558993"]);
    assert_eq!(listing.files[2].1, 0);
    assert!(listing.files[2].0.ends_with("images/n0153282900000007.jpg"));
}

#[test]
fn bad_image_and_size() {
    let dir = scratch_root("mini-bad-image", "filename,label\na.jpg,x\nbad.jpg,x\n");
    let bad = common::write(&dir.join("images"), "bad.jpg", b"\xff\xd8\xffgarbage");
    match MiniImageNet::load_split(&dir, FewShotSplit::Train, (4, 4)) {
        Err(DataError::Image { path, .. }) => assert_eq!(path, bad.display().to_string()),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        MiniImageNet::load_split(&root(), FewShotSplit::Train, (4, 0)),
        Err(DataError::InvalidParameter { .. })
    ));
}
