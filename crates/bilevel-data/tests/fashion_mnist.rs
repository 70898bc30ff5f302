//! Fashion-MNIST: the loader's failure modes on small stand-ins, always; the fetched copy in the
//! data folder when `cargo xtask data fetch fashion-mnist` has been run.

mod common;

use std::time::Instant;

use bilevel_data::checksum::sha256_bytes;
use bilevel_data::fashion_mnist::{
    self, CLASS_NAMES, FILES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
};
use bilevel_data::{registry, DataError, FashionMnist};
use common::{fixtures, gzip, scratch, write};

#[test]
fn class_names_follow_the_label_order() {
    assert_eq!(
        CLASS_NAMES,
        [
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot"
        ]
    );
    assert_eq!(FashionMnist::class_name(0), Some("T-shirt/top"));
    assert_eq!(FashionMnist::class_name(9), Some("Ankle boot"));
    assert_eq!(FashionMnist::class_name(10), None);
}

#[test]
fn recorded_hashes_match_the_registry() {
    let info = registry::find(fashion_mnist::NAME).unwrap();
    assert_eq!(info.dir, fashion_mnist::NAME);
    for f in FILES {
        let gz = format!("{}.gz", f.name);
        let (_, sha) = info
            .files
            .iter()
            .find(|(p, _)| *p == gz)
            .unwrap_or_else(|| panic!("{gz} not in the registry"));
        assert_eq!(*sha, f.sha256_gz, "{gz}");
        assert_ne!(f.sha256, f.sha256_gz);
    }
    assert!(FashionMnist::default_dir().ends_with("fashion-mnist"));
}

#[test]
fn missing_folder_names_the_fetch_command() {
    let dir = scratch("fashion-missing").join("nothing-here");
    match FashionMnist::load(&dir).unwrap_err() {
        DataError::MissingFile { path, hint } => {
            let plain = dir.join("train-images-idx3-ubyte");
            assert_eq!(
                path,
                format!("{} (or {}.gz)", plain.display(), plain.display())
            );
            assert!(
                hint.contains("cargo xtask data fetch fashion-mnist"),
                "{hint}"
            );
        }
        other => panic!("expected MissingFile, got {other:?}"),
    }
}

#[test]
fn a_missing_labels_file_is_reported_by_name() {
    // Only the training images present: files are located before any is read, and the training
    // split's error comes first, so the training labels are what is reported missing.
    let dir = scratch("fashion-missing-labels");
    let tiny = std::fs::read(fixtures().join("tiny-images-idx3-ubyte")).unwrap();
    write(&dir, TRAIN_IMAGES.name, &tiny);
    match FashionMnist::load(&dir).unwrap_err() {
        DataError::MissingFile { path, hint } => {
            assert!(path.contains(TRAIN_LABELS.name), "{path}");
            assert!(!path.contains(TEST_LABELS.name), "{path}");
            assert!(hint.contains("cargo xtask data fetch fashion-mnist"));
        }
        other => panic!("expected MissingFile, got {other:?}"),
    }
}

#[test]
fn wrong_files_fail_their_checksum() {
    let tiny_images = std::fs::read(fixtures().join("tiny-images-idx3-ubyte")).unwrap();
    let tiny_labels = std::fs::read(fixtures().join("tiny-labels-idx1-ubyte")).unwrap();

    // Plain files: the raw hash is checked.
    let dir = scratch("fashion-wrong-plain");
    for f in FILES {
        let bytes = if f.name.contains("images") {
            &tiny_images
        } else {
            &tiny_labels
        };
        write(&dir, f.name, bytes);
    }
    assert_eq!(
        FashionMnist::load(&dir).unwrap_err(),
        DataError::ChecksumMismatch {
            path: dir.join(TRAIN_IMAGES.name).display().to_string(),
            expected: TRAIN_IMAGES.sha256.to_string(),
            got: sha256_bytes(&tiny_images),
        }
    );

    // A foreign gzip: the decompressed content is checked.
    let dir = scratch("fashion-wrong-gz");
    for f in FILES {
        let bytes = if f.name.contains("images") {
            &tiny_images
        } else {
            &tiny_labels
        };
        write(&dir, &format!("{}.gz", f.name), &gzip(bytes, 6));
    }
    assert_eq!(
        FashionMnist::load(&dir).unwrap_err(),
        DataError::ChecksumMismatch {
            path: format!(
                "{} (decompressed content)",
                dir.join(format!("{}.gz", TRAIN_IMAGES.name)).display()
            ),
            expected: TRAIN_IMAGES.sha256.to_string(),
            got: sha256_bytes(&tiny_images),
        }
    );
}

/// Extra: the real data, when fetched.
#[test]
fn fetched_fashion_mnist_loads_with_known_statistics() {
    let dir = FashionMnist::default_dir();
    if !dir.exists() {
        eprintln!(
            "skipping: {} not present (run `cargo xtask data fetch fashion-mnist`)",
            dir.display()
        );
        return;
    }
    let start = Instant::now();
    let data = FashionMnist::load(&dir).unwrap();
    eprintln!("Fashion-MNIST loaded in {:.2?}", start.elapsed());
    let (train, test) = (&data.train, &data.test);
    assert_eq!((train.len, train.rows, train.cols), (60_000, 28, 28));
    assert_eq!((test.len, test.rows, test.cols), (10_000, 28, 28));
    assert_eq!(train.images.len(), 60_000 * 784);
    assert_eq!(train.labels[..10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert_eq!(test.labels[..10], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    assert_eq!(train.label_counts(), [6000; 10]);
    assert_eq!(test.label_counts(), [1000; 10]);
    // First training image (an ankle boot): pixel sum 76247 / 255.
    let first: f64 = train.image(0).unwrap().iter().map(|&p| f64::from(p)).sum();
    assert!((first - 76_247.0 / 255.0).abs() < 1e-3, "{first}");
}
