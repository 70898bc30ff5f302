//! IDX reading: plain and gzip fixtures, and every kind of malformed file.

mod common;

use bilevel_data::idx::{self, IdxImages};
use bilevel_data::DataError;
use common::{fixtures, gzip, scratch, write, TINY_LABELS, TINY_PIXELS};

fn tiny_images_bytes() -> Vec<u8> {
    std::fs::read(fixtures().join("tiny-images-idx3-ubyte")).unwrap()
}

fn tiny_labels_bytes() -> Vec<u8> {
    std::fs::read(fixtures().join("tiny-labels-idx1-ubyte")).unwrap()
}

fn assert_tiny(images: &IdxImages) {
    assert_eq!((images.len, images.rows, images.cols), (3, 2, 3));
    assert_eq!(images.pixels, TINY_PIXELS);
    assert_eq!(images.image(1).unwrap(), &[10, 20, 30, 40, 50, 60]);
    assert_eq!(images.image(3), None);
}

#[test]
fn reads_plain_fixture() {
    let images = idx::read_images(&fixtures().join("tiny-images-idx3-ubyte")).unwrap();
    assert_tiny(&images);
    let labels = idx::read_labels(&fixtures().join("tiny-labels-idx1-ubyte")).unwrap();
    assert_eq!(labels, TINY_LABELS);
}

#[test]
fn reads_gzip_fixture() {
    let gz = std::fs::read(fixtures().join("tiny-images-idx3-ubyte.gz")).unwrap();
    assert!(idx::is_gzip(&gz));
    let images = idx::read_images(&fixtures().join("tiny-images-idx3-ubyte.gz")).unwrap();
    assert_tiny(&images);
    let labels = idx::read_labels(&fixtures().join("tiny-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(labels, TINY_LABELS);
}

#[test]
fn gzip_is_detected_by_content_not_name() {
    let dir = scratch("idx-renamed");
    // A gzip stream under a plain name, and a plain file under a .gz name.
    let gz_as_plain = write(&dir, "images-no-extension", &gzip(&tiny_images_bytes(), 1));
    assert_tiny(&idx::read_images(&gz_as_plain).unwrap());
    let plain_as_gz = write(&dir, "labels.gz", &tiny_labels_bytes());
    assert_eq!(idx::read_labels(&plain_as_gz).unwrap(), TINY_LABELS);
}

#[test]
fn unit_scaling_maps_0_and_255_to_0_and_1() {
    let images = idx::read_images(&fixtures().join("tiny-images-idx3-ubyte")).unwrap();
    let scaled = images.to_unit_f32();
    assert_eq!(scaled.len(), 18);
    assert_eq!(scaled[0], 0.0);
    assert_eq!(scaled[12], 1.0);
    assert!((scaled[14] - 128.0 / 255.0).abs() < 1e-7);
}

#[test]
fn wrong_magic_is_rejected_with_both_numbers() {
    let dir = scratch("idx-magic");
    let mut bytes = tiny_images_bytes();
    bytes[0..4].copy_from_slice(&[0x12, 0x34, 0x56, 0x78]);
    let path = write(&dir, "bad-magic", &bytes);
    let err = idx::read_images(&path).unwrap_err();
    assert_eq!(
        err,
        DataError::BadMagic {
            path: path.display().to_string(),
            what: "images".into(),
            expected: 0x0803,
            got: 0x1234_5678,
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("0x12345678") && msg.contains("0x00000803"),
        "{msg}"
    );
    assert!(msg.contains("bad-magic"), "{msg}");

    // Nonzero leading bytes with a valid-looking tail are rejected too.
    let mut lead = tiny_images_bytes();
    lead[0] = 0x01;
    let path = write(&dir, "nonzero-lead", &lead);
    assert!(matches!(
        idx::read_images(&path),
        Err(DataError::BadMagic {
            got: 0x0100_0803,
            ..
        })
    ));

    // Element type other than unsigned byte (0x0D = f32) is a bad magic too.
    let mut float_type = tiny_images_bytes();
    float_type[2] = 0x0d;
    let path = write(&dir, "float-type", &float_type);
    assert!(matches!(
        idx::read_images(&path),
        Err(DataError::BadMagic { got: 0x0d03, .. })
    ));
}

#[test]
fn labels_file_read_as_images_reports_dimension_count() {
    let err = idx::read_images(&fixtures().join("tiny-labels-idx1-ubyte")).unwrap_err();
    match &err {
        DataError::DimensionCount {
            expected,
            got,
            what,
            ..
        } => {
            assert_eq!((*expected, *got, what.as_str()), (3, 1, "images"));
        }
        other => panic!("expected DimensionCount, got {other:?}"),
    }
    let err = idx::read_labels(&fixtures().join("tiny-images-idx3-ubyte")).unwrap_err();
    assert!(matches!(
        err,
        DataError::DimensionCount {
            expected: 1,
            got: 3,
            ..
        }
    ));
}

#[test]
fn truncated_data_names_file_and_byte_counts() {
    let dir = scratch("idx-truncated");
    let bytes = tiny_images_bytes();
    let path = write(&dir, "cut-images", &bytes[..bytes.len() - 5]);
    let err = idx::read_images(&path).unwrap_err();
    assert_eq!(
        err,
        DataError::Truncated {
            path: path.display().to_string(),
            dims: vec![3, 2, 3],
            expected: 34,
            got: 29,
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("cut-images") && msg.contains("34") && msg.contains("29"),
        "{msg}"
    );

    // The same cut inside a gzip stream is found after decompression.
    let gz = write(&dir, "cut-images.gz", &gzip(&bytes[..bytes.len() - 5], 9));
    assert!(matches!(
        idx::read_images(&gz),
        Err(DataError::Truncated {
            expected: 34,
            got: 29,
            ..
        })
    ));
}

#[test]
fn truncated_header_is_reported() {
    let dir = scratch("idx-short-header");
    let bytes = tiny_images_bytes();
    let path = write(&dir, "header-only", &bytes[..10]);
    assert_eq!(
        idx::read_images(&path).unwrap_err(),
        DataError::Truncated {
            path: path.display().to_string(),
            dims: vec![],
            expected: 16,
            got: 10,
        }
    );
    let path = write(&dir, "two-bytes", &bytes[..2]);
    assert!(matches!(
        idx::read_labels(&path),
        Err(DataError::Truncated {
            expected: 4,
            got: 2,
            ..
        })
    ));
}

#[test]
fn header_declaring_fewer_bytes_than_present_is_a_length_mismatch() {
    let dir = scratch("idx-trailing");
    // Header says 2 labels, file holds 3.
    let mut bytes = tiny_labels_bytes();
    bytes[4..8].copy_from_slice(&2u32.to_be_bytes());
    let path = write(&dir, "labels-extra", &bytes);
    let err = idx::read_labels(&path).unwrap_err();
    assert_eq!(
        err,
        DataError::TrailingData {
            path: path.display().to_string(),
            dims: vec![2],
            expected: 10,
            got: 11,
        }
    );
    // Header claiming a huge image stack is truncation, computed without overflow.
    let mut huge = tiny_images_bytes();
    huge[4..16].copy_from_slice(&[0xff; 12]);
    let path = write(&dir, "images-huge", &huge);
    let expected = 16 + (u32::MAX as u128).pow(3);
    assert_eq!(
        idx::read_images(&path).unwrap_err(),
        DataError::Truncated {
            path: path.display().to_string(),
            dims: vec![u32::MAX; 3],
            expected: u64::try_from(expected).unwrap_or(u64::MAX),
            got: 34,
        }
    );
}

#[test]
fn images_and_labels_count_mismatch_is_reported() {
    let dir = scratch("idx-count");
    let labels = idx::encode_u8(&[4], &[1, 2, 3, 4]).unwrap();
    let labels_path = write(&dir, "four-labels", &labels);
    let images_path = fixtures().join("tiny-images-idx3-ubyte");
    let err = idx::read_pair(&images_path, &labels_path).unwrap_err();
    assert_eq!(
        err,
        DataError::CountMismatch {
            images_path: images_path.display().to_string(),
            labels_path: labels_path.display().to_string(),
            images: 3,
            labels: 4,
        }
    );
    assert!(err.to_string().contains("3 images") && err.to_string().contains("4 labels"));
    // And the matching pair reads.
    let (images, labels) =
        idx::read_pair(&images_path, &fixtures().join("tiny-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!((images.len, labels.len()), (3, 3));
}

#[test]
fn corrupt_gzip_and_missing_file_are_errors() {
    let dir = scratch("idx-corrupt-gz");
    let gz = std::fs::read(fixtures().join("tiny-images-idx3-ubyte.gz")).unwrap();
    let path = write(&dir, "cut.gz", &gz[..gz.len() / 2]);
    match idx::read_images(&path).unwrap_err() {
        DataError::Decompress { path: p, .. } => assert!(p.ends_with("cut.gz")),
        other => panic!("expected Decompress, got {other:?}"),
    }
    let missing = dir.join("does-not-exist");
    match idx::read_labels(&missing).unwrap_err() {
        DataError::Io { path, .. } => assert!(path.ends_with("does-not-exist")),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn encode_round_trips_and_checks_length() {
    let bytes = idx::encode_u8(&[3, 2, 3], &TINY_PIXELS).unwrap();
    assert_eq!(bytes, tiny_images_bytes());
    assert!(matches!(
        idx::encode_u8(&[2, 2], &[1, 2, 3]),
        Err(DataError::ShapeMismatch {
            expected: 4,
            got: 3,
            ..
        })
    ));
}
