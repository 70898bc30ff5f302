//! Reader for the IDX format of MNIST-style data sets, plain or gzip-compressed.
//!
//! An IDX file is a big-endian header followed by the raw array:
//!
//! | bytes | content |
//! |---|---|
//! | 0–1 | zero |
//! | 2 | element type (`0x08` = unsigned byte, the only one used by MNIST / Fashion-MNIST) |
//! | 3 | number of dimensions `d` |
//! | 4 .. 4+4d | each dimension as a big-endian `u32` |
//! | rest | the elements, row-major |
//!
//! Images are magic `0x00000803` (`[n, rows, cols]`), labels `0x00000801` (`[n]`). Compression
//! is detected from the gzip magic bytes `1f 8b`, never from the file name, so a renamed file
//! still reads. The whole header is checked against the actual byte length before anything is
//! trusted: a cut-short download is reported as such, not as a panic or as silently fewer samples.

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::{DataError, Result};

/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The two bytes every gzip stream starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// IDX element type code for unsigned bytes.
const TYPE_U8: u8 = 0x08;
/// Upper bound on the buffer pre-allocated from a gzip trailer, which is only a hint.
const MAX_SIZE_HINT: usize = 256 << 20;

/// `UNIT_SCALE[p] = p / 255` for every byte value.
const UNIT_SCALE: [f32; 256] = {
    let mut table = [0f32; 256];
    let mut p = 0;
    while p < 256 {
        table[p] = p as f32 / 255.0;
        p += 1;
    }
    table
};

/// A stack of greyscale images read from an IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub len: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `len * rows * cols` pixel values, image by image, each image row-major.
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// Pixels of image `index` (`rows * cols` values), or `None` past the end.
    pub fn image(&self, index: usize) -> Option<&[u8]> {
        let size = self.rows * self.cols;
        (index < self.len).then(|| &self.pixels[index * size..(index + 1) * size])
    }

    /// All pixels scaled from `0..=255` to `[0, 1]` (`p / 255`, correctly rounded).
    pub fn to_unit_f32(&self) -> Vec<f32> {
        // A table lookup and a plain push loop: this runs over 47M pixels, often in
        // unoptimised test builds, where it is ~30% faster than a map/collect chain.
        let mut out = Vec::with_capacity(self.pixels.len());
        for &p in &self.pixels {
            out.push(UNIT_SCALE[usize::from(p)]);
        }
        out
    }
}

/// True when `bytes` starts with the gzip magic `1f 8b`.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Decompresses `bytes` if they are a gzip stream, otherwise returns them unchanged.
///
/// `path` only labels errors.
pub fn maybe_decompress(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    if !is_gzip(&bytes) {
        return Ok(bytes);
    }
    // The trailer's ISIZE is the uncompressed size mod 2^32: a good capacity hint, no more.
    let hint = bytes
        .len()
        .checked_sub(4)
        .map(|at| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]))
        .map_or(0, |n| (n as usize).min(MAX_SIZE_HINT));
    let mut out = Vec::with_capacity(hint);
    MultiGzDecoder::new(bytes.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| DataError::Decompress {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    Ok(out)
}

/// Reads a file into memory, decompressing it if it is gzip.
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    maybe_decompress(bytes, path)
}

/// Reads an IDX images file (`0x00000803`, `[n, rows, cols]`), plain or gzip.
pub fn read_images(path: &Path) -> Result<IdxImages> {
    parse_images(&read_maybe_gzip(path)?, path)
}

/// Reads an IDX labels file (`0x00000801`, `[n]`), plain or gzip.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    parse_labels(&read_maybe_gzip(path)?, path)
}

/// Reads an images file and its labels file and checks that they hold as many samples.
pub fn read_pair(images_path: &Path, labels_path: &Path) -> Result<(IdxImages, Vec<u8>)> {
    let images = read_images(images_path)?;
    let labels = read_labels(labels_path)?;
    check_pair(&images, &labels, images_path, labels_path)?;
    Ok((images, labels))
}

/// Errors with [`DataError::CountMismatch`] unless there is one label per image.
pub fn check_pair(
    images: &IdxImages,
    labels: &[u8],
    images_path: &Path,
    labels_path: &Path,
) -> Result<()> {
    if images.len != labels.len() {
        return Err(DataError::CountMismatch {
            images_path: images_path.display().to_string(),
            labels_path: labels_path.display().to_string(),
            images: images.len,
            labels: labels.len(),
        });
    }
    Ok(())
}

/// Parses decompressed IDX images bytes; `path` only labels errors.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<IdxImages> {
    let (dims, data) = parse_u8_array(bytes, 3, "images", path)?;
    let [len, rows, cols] = [dims[0], dims[1], dims[2]].map(|d| d as usize);
    Ok(IdxImages {
        len,
        rows,
        cols,
        pixels: data.to_vec(),
    })
}

/// Parses decompressed IDX labels bytes; `path` only labels errors.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    let (_, data) = parse_u8_array(bytes, 1, "labels", path)?;
    Ok(data.to_vec())
}

/// Validates the header of an unsigned-byte IDX array with `ndims` dimensions and returns the
/// dimensions and the data bytes.
fn parse_u8_array<'a>(
    bytes: &'a [u8],
    ndims: u8,
    what: &str,
    path: &Path,
) -> Result<(Vec<u32>, &'a [u8])> {
    let name = || path.display().to_string();
    let expected_magic = u32::from(TYPE_U8) << 8 | u32::from(ndims);
    if bytes.len() < 4 {
        return Err(DataError::Truncated {
            path: name(),
            dims: Vec::new(),
            expected: 4,
            got: bytes.len() as u64,
        });
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    // A wrong type code or nonzero leading bytes means "not this kind of file"; only a wrong
    // dimension count on an otherwise valid u8 IDX header gets the more specific error.
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != TYPE_U8 {
        return Err(DataError::BadMagic {
            path: name(),
            what: what.to_string(),
            expected: expected_magic,
            got: magic,
        });
    }
    if bytes[3] != ndims {
        return Err(DataError::DimensionCount {
            path: name(),
            what: what.to_string(),
            expected: ndims,
            got: bytes[3],
        });
    }
    let header_len = 4 + 4 * usize::from(ndims);
    if bytes.len() < header_len {
        return Err(DataError::Truncated {
            path: name(),
            dims: Vec::new(),
            expected: header_len as u64,
            got: bytes.len() as u64,
        });
    }
    let dims: Vec<u32> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    // Three u32 factors fit in u128 without overflow, whatever the header claims.
    let expected = header_len as u128 + dims.iter().map(|&d| u128::from(d)).product::<u128>();
    let got = bytes.len() as u128;
    let saturate = |n: u128| u64::try_from(n).unwrap_or(u64::MAX);
    if got < expected {
        return Err(DataError::Truncated {
            path: name(),
            dims,
            expected: saturate(expected),
            got: saturate(got),
        });
    }
    if got > expected {
        return Err(DataError::TrailingData {
            path: name(),
            dims,
            expected: saturate(expected),
            got: saturate(got),
        });
    }
    Ok((dims, &bytes[header_len..]))
}

/// Serialises an unsigned-byte IDX array (header + data); the inverse of the readers.
///
/// Useful to write small fixtures and converted data sets. Errors if `data.len()` is not the
/// product of `dims` or if there are more than 255 dimensions.
pub fn encode_u8(dims: &[u32], data: &[u8]) -> Result<Vec<u8>> {
    let ndims = u8::try_from(dims.len())
        .map_err(|_| DataError::invalid("dims", "an IDX file has at most 255 dimensions"))?;
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
        .unwrap_or(usize::MAX);
    if expected != data.len() {
        return Err(DataError::ShapeMismatch {
            what: format!("IDX data for dimensions {dims:?}"),
            expected,
            got: data.len(),
        });
    }
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&[0, 0, TYPE_U8, ndims]);
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    Ok(out)
}
