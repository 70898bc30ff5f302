//! CIFAR-100 binary reader and FC100 split on the generated records in `tests/fixtures/cifar`
//! (see its README for the generator).

mod common;

use std::path::PathBuf;

use bilevel_data::cifar::{
    fc100_split, read_cifar100, Cifar100, FC100_TEST_SUPERCLASSES, FC100_TRAIN_SUPERCLASSES,
    FC100_VAL_SUPERCLASSES, RECORD_LEN,
};
use bilevel_data::DataError;
use common::{fixtures, gzip, scratch, write};

fn fixture(name: &str) -> PathBuf {
    fixtures().join("cifar").join(name)
}

fn binary_dir() -> PathBuf {
    fixture("cifar-100-binary")
}

/// Pixel `k` of generated record `r`, scaled to [0, 1].
fn pixel(r: usize, k: usize) -> f32 {
    ((r * 37 + k * 7) % 256) as f32 / 255.0
}

fn format_reason(err: &DataError, file: &str) -> String {
    let DataError::Format {
        path,
        format,
        reason,
    } = err
    else {
        panic!("expected Format, got {err:?}");
    };
    assert!(path.ends_with(file), "{path}");
    assert_eq!(format, "CIFAR-100 binary");
    reason.clone()
}

#[test]
fn reads_labels_pixels_and_names() {
    let c = read_cifar100(&binary_dir().join("train.bin")).unwrap();
    let im = &c.images;
    assert_eq!((im.len, im.channels, im.height, im.width), (6, 3, 32, 32));
    assert_eq!(c.len(), 6);
    assert!(!c.is_empty());
    assert_eq!(im.labels, [4, 1, 3, 32, 30, 1]);
    assert_eq!(c.coarse, [0, 1, 8, 1, 0, 1]);
    assert_eq!(im.num_classes(), 100);
    assert_eq!(im.class_names[4], "beaver");
    assert_eq!(im.class_names[99], "worm");
    assert_eq!(c.coarse_names[0], "aquatic_mammals");
    assert_eq!(c.coarse_names[19], "vehicles_2");
    // Channel-major [3, 32, 32]: R plane, then G, then B, each row-major.
    for r in [0, 3, 5] {
        let img = im.image(r).unwrap();
        for k in [0, 1, 31, 32, 1023, 1024, 2047, 2048, 3071] {
            assert_eq!(img[k], pixel(r, k), "record {r} byte {k}");
        }
    }
    assert!(im.pixels.iter().all(|&p| (0.0..=1.0).contains(&p)));
    assert_eq!(im.pixels.iter().fold(0f32, |m, &p| m.max(p)), 1.0);
}

#[test]
fn names_default_when_the_files_are_absent_and_gzip_is_read() {
    let dir = scratch("cifar-no-names");
    let bytes = std::fs::read(binary_dir().join("train.bin")).unwrap();
    let path = write(&dir, "train.bin.gz", &gzip(&bytes, 6));
    let c = read_cifar100(&path).unwrap();
    assert_eq!(c.images.class_names[0], "fine-0");
    assert_eq!(c.images.class_names[99], "fine-99");
    assert_eq!(c.coarse_names[19], "coarse-19");
    let named = read_cifar100(&binary_dir().join("train.bin")).unwrap();
    assert_eq!(c.images.pixels, named.images.pixels);
    assert_eq!(c.coarse, named.coarse);

    // A names file with the wrong number of names is rejected.
    write(&dir, "fine_label_names.txt", b"apple\npear\n");
    let err = read_cifar100(&path).unwrap_err();
    let DataError::Format { path, reason, .. } = &err else {
        panic!("expected Format, got {err:?}");
    };
    assert!(path.ends_with("fine_label_names.txt"), "{path}");
    assert!(
        reason.contains("expected 100 names") && reason.contains("found 2"),
        "{reason}"
    );
}

#[test]
fn size_not_a_multiple_of_the_record_says_what_is_left_over() {
    let err = read_cifar100(&fixture("truncated.bin")).unwrap_err();
    let reason = format_reason(&err, "truncated.bin");
    assert_eq!(2 * RECORD_LEN - 5, 6143);
    assert!(
        reason.contains("3069 bytes left over after 1 records"),
        "{reason}"
    );
}

#[test]
fn out_of_range_label_names_the_record() {
    let err = read_cifar100(&fixture("bad-label.bin")).unwrap_err();
    let reason = format_reason(&err, "bad-label.bin");
    assert!(reason.contains("record 1"), "{reason}");
    assert!(reason.contains("fine label 100"), "{reason}");

    let dir = scratch("cifar-bad-coarse");
    let mut bytes = std::fs::read(binary_dir().join("test.bin")).unwrap();
    bytes[0] = 20;
    let path = write(&dir, "test.bin", &bytes);
    let reason = format_reason(&read_cifar100(&path).unwrap_err(), "test.bin");
    assert!(
        reason.contains("record 0") && reason.contains("coarse label 20"),
        "{reason}"
    );

    let path = write(&dir, "empty.bin", b"");
    let reason = format_reason(&read_cifar100(&path).unwrap_err(), "empty.bin");
    assert!(reason.contains("empty"), "{reason}");
}

#[test]
fn merged_load_concatenates_train_then_test() {
    let c = Cifar100::load_merged(&binary_dir()).unwrap();
    assert_eq!(c.len(), 8);
    assert_eq!(c.images.labels, [4, 1, 3, 32, 30, 1, 3, 4]);
    assert_eq!(c.coarse, [0, 1, 8, 1, 0, 1, 8, 0]);
    assert_eq!(c.images.image(7).unwrap()[5], pixel(101, 5));

    let err = Cifar100::load_merged(&scratch("cifar-missing")).unwrap_err();
    let DataError::MissingFile { path, hint } = &err else {
        panic!("expected MissingFile, got {err:?}");
    };
    assert!(path.contains("train.bin"), "{path}");
    assert!(hint.contains("cifar-100-binary.tar.gz"), "{hint}");
}

#[test]
fn fc100_split_by_superclass() {
    // The three superclass sets partition the 20 superclasses.
    let mut all: Vec<u8> = FC100_TRAIN_SUPERCLASSES
        .iter()
        .chain(&FC100_VAL_SUPERCLASSES)
        .chain(&FC100_TEST_SUPERCLASSES)
        .copied()
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..20).collect::<Vec<u8>>());

    let c = Cifar100::load_merged(&binary_dir()).unwrap();
    let fc = fc100_split(&c).unwrap();
    // Train: superclass 1 → fine 1 (aquarium_fish), 32 (flatfish), relabelled 0, 1.
    assert_eq!(fc.train.class_names, ["aquarium_fish", "flatfish"]);
    assert_eq!(fc.train.labels, [0, 1, 0]);
    assert_eq!(fc.train.image(1).unwrap()[10], pixel(3, 10));
    // Val: superclass 8 → bear (records 2 and 6).
    assert_eq!(fc.val.class_names, ["bear"]);
    assert_eq!(fc.val.labels, [0, 0]);
    assert_eq!(fc.val.image(1).unwrap()[2000], pixel(100, 2000));
    // Test: superclass 0 → beaver (4), dolphin (30).
    assert_eq!(fc.test.class_names, ["beaver", "dolphin"]);
    assert_eq!(fc.test.labels, [0, 1, 0]);
    assert_eq!(fc.test.image(2).unwrap()[3071], pixel(101, 3071));
    assert_eq!(fc.train.len + fc.val.len + fc.test.len, c.len());
    assert_eq!(fc.test.channels, 3);
}

#[test]
fn fc100_rejects_inconsistent_superclasses() {
    let mut c = read_cifar100(&binary_dir().join("train.bin")).unwrap();
    c.coarse[5] = 2; // aquarium_fish is superclass 1 in record 1
    let err = fc100_split(&c).unwrap_err();
    let DataError::InvalidParameter { reason, .. } = &err else {
        panic!("expected InvalidParameter, got {err:?}");
    };
    assert!(
        reason.contains("fine label 1 occurs under superclasses 1 and 2"),
        "{reason}"
    );
    c.coarse.pop();
    assert!(matches!(
        fc100_split(&c).unwrap_err(),
        DataError::ShapeMismatch {
            expected: 6,
            got: 5,
            ..
        }
    ));
}
