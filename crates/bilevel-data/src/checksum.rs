//! SHA-256 of files and buffers, and verification against recorded hashes.
//!
//! Hashes are lowercase hex strings (64 characters), as printed by `sha256sum`.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};

/// Read buffer for streaming a file through the hasher.
const CHUNK: usize = 1 << 16;

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// Lowercase hex SHA-256 of the file at `path`, read in chunks (constant memory).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DataError::io(path, e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(to_hex(&hasher.finalize()))
}

/// Checks that the file at `path` has SHA-256 `expected_hex` (case-insensitive).
///
/// Errors with [`DataError::ChecksumMismatch`] naming both hashes, or
/// [`DataError::InvalidParameter`] if `expected_hex` is not 64 hex digits (a typo in a recorded
/// hash should not read as a corrupt file).
pub fn verify(path: &Path, expected_hex: &str) -> Result<()> {
    let expected = normalise_hex(expected_hex)?;
    let got = sha256_file(path)?;
    check(path, &expected, got)
}

/// Checks that `bytes` (the content of `path`, already in memory) have SHA-256 `expected_hex`.
///
/// Same errors as [`verify`]; `path` only labels them.
pub fn verify_bytes(bytes: &[u8], path: &Path, expected_hex: &str) -> Result<()> {
    let expected = normalise_hex(expected_hex)?;
    check(path, &expected, sha256_bytes(bytes))
}

fn check(path: &Path, expected: &str, got: String) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(DataError::ChecksumMismatch {
            path: path.display().to_string(),
            expected: expected.to_string(),
            got,
        })
    }
}

fn normalise_hex(hex: &str) -> Result<String> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DataError::invalid(
            "expected_hex",
            format!("a SHA-256 is 64 hex digits, got {hex:?}"),
        ));
    }
    Ok(hex.to_ascii_lowercase())
}

fn to_hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
