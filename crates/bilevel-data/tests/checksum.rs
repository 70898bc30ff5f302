//! SHA-256: known vectors, streaming over files, verification errors.

mod common;

use bilevel_data::checksum::{sha256_bytes, sha256_file, verify, verify_bytes};
use bilevel_data::DataError;
use common::{fixtures, scratch, write};

const TINY_IMAGES_SHA256: &str = "f2df6a48aac219c55875cafe005e1562b610b03d122ee9ef5f4358b58555c4b9";

#[test]
fn known_vectors() {
    assert_eq!(
        sha256_bytes(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256_bytes(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn file_hash_streams_across_chunks() {
    // 200 000 bytes span several 64 KiB reads; compare with hashing in one go.
    let dir = scratch("checksum-stream");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let path = write(&dir, "big", &data);
    assert_eq!(sha256_file(&path).unwrap(), sha256_bytes(&data));
    assert_eq!(
        sha256_file(&fixtures().join("tiny-images-idx3-ubyte")).unwrap(),
        TINY_IMAGES_SHA256
    );
}

#[test]
fn verify_accepts_the_right_hash_in_either_case() {
    let path = fixtures().join("tiny-images-idx3-ubyte");
    verify(&path, TINY_IMAGES_SHA256).unwrap();
    verify(&path, &TINY_IMAGES_SHA256.to_uppercase()).unwrap();
    verify_bytes(
        b"abc",
        &path,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    )
    .unwrap();
}

#[test]
fn checksum_mismatch_names_both_hashes() {
    let path = fixtures().join("tiny-labels-idx1-ubyte");
    let wrong = TINY_IMAGES_SHA256;
    let err = verify(&path, wrong).unwrap_err();
    let actual = "f56856a625e570f4360ac2c5fa7df922347bd0f5294464e12ccb68d82c63b1f5";
    assert_eq!(
        err,
        DataError::ChecksumMismatch {
            path: path.display().to_string(),
            expected: wrong.to_string(),
            got: actual.to_string(),
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains(wrong) && msg.contains(actual) && msg.contains("tiny-labels"),
        "{msg}"
    );
}

#[test]
fn malformed_expected_hash_and_missing_file_are_errors() {
    let path = fixtures().join("tiny-labels-idx1-ubyte");
    assert!(matches!(
        verify(&path, "abc123"),
        Err(DataError::InvalidParameter { .. })
    ));
    assert!(matches!(
        verify(&path, &"g".repeat(64)),
        Err(DataError::InvalidParameter { .. })
    ));
    assert!(matches!(
        verify(&fixtures().join("nope"), TINY_IMAGES_SHA256),
        Err(DataError::Io { .. })
    ));
}
