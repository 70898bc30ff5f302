//! The crate's error type.

use std::path::Path;

/// Everything that can go wrong in `bilevel-data`.
///
/// Every variant that concerns a file names it, and every size check reports what was expected
/// next to what was found, so a message alone is enough to tell a truncated download from a
/// wrong file.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DataError {
    /// Opening or reading a file failed.
    #[error("I/O error on {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What the operating system reported.
        message: String,
    },
    /// A file starting with the gzip magic bytes could not be decompressed (corrupt or cut short).
    #[error("gzip decompression of {path} failed: {message}")]
    Decompress {
        /// The file.
        path: String,
        /// What the decoder reported.
        message: String,
    },
    /// A required data file is not there.
    #[error("data file {path} not found; {hint}")]
    MissingFile {
        /// The path (or paths) looked for.
        path: String,
        /// How to obtain the file.
        hint: String,
    },
    /// The first four bytes are not the IDX magic number of an unsigned-byte array.
    #[error("{path}: bad IDX magic number 0x{got:08x}, expected 0x{expected:08x} ({what})")]
    BadMagic {
        /// The file.
        path: String,
        /// What the file was read as ("images" or "labels").
        what: String,
        /// The magic number expected.
        expected: u32,
        /// The magic number found.
        got: u32,
    },
    /// The IDX header declares another number of dimensions than the reader expects.
    #[error("{path}: IDX header declares {got} dimensions, expected {expected} ({what})")]
    DimensionCount {
        /// The file.
        path: String,
        /// What the file was read as ("images" or "labels").
        what: String,
        /// Dimensions expected.
        expected: u8,
        /// Dimensions declared in the header.
        got: u8,
    },
    /// The file (after decompression) is shorter than its header says.
    #[error(
        "{path}: truncated: header declares dimensions {dims:?}, i.e. {expected} bytes in total, \
         but the file has {got} bytes"
    )]
    Truncated {
        /// The file.
        path: String,
        /// Dimensions read from the header (empty if the header itself is cut short).
        dims: Vec<u32>,
        /// Total byte length (header + data) the header implies.
        expected: u64,
        /// Actual byte length (after decompression).
        got: u64,
    },
    /// The file (after decompression) is longer than its header says.
    #[error(
        "{path}: length mismatch: header declares dimensions {dims:?}, i.e. {expected} bytes in \
         total, but the file has {got} bytes"
    )]
    TrailingData {
        /// The file.
        path: String,
        /// Dimensions read from the header.
        dims: Vec<u32>,
        /// Total byte length (header + data) the header implies.
        expected: u64,
        /// Actual byte length (after decompression).
        got: u64,
    },
    /// An images file and its labels file hold different numbers of samples.
    #[error(
        "sample count mismatch: {images_path} holds {images} images but {labels_path} holds \
         {labels} labels"
    )]
    CountMismatch {
        /// The images file.
        images_path: String,
        /// The labels file.
        labels_path: String,
        /// Number of images.
        images: usize,
        /// Number of labels.
        labels: usize,
    },
    /// A file's SHA-256 differs from the recorded one.
    #[error("SHA-256 mismatch for {path}: expected {expected}, got {got}")]
    ChecksumMismatch {
        /// The file.
        path: String,
        /// The recorded hash (lowercase hex).
        expected: String,
        /// The hash computed from the file (lowercase hex).
        got: String,
    },
    /// Requested split sizes add up to more samples than the data set holds.
    #[error(
        "split sizes train {train} + val {val} + test {test} = {} exceed the {len} samples \
         available",
        *train as u128 + *val as u128 + *test as u128
    )]
    SplitTooLarge {
        /// Requested training samples.
        train: usize,
        /// Requested validation samples.
        val: usize,
        /// Requested test samples.
        test: usize,
        /// Samples available.
        len: usize,
    },
    /// A label is not below the number of classes.
    #[error("label {label} at index {index} is out of range for {num_classes} classes")]
    LabelOutOfRange {
        /// Position of the label.
        index: usize,
        /// The label.
        label: u8,
        /// Number of classes.
        num_classes: usize,
    },
    /// Buffers whose lengths must agree do not.
    #[error("shape mismatch for {what}: expected {expected} values, got {got}")]
    ShapeMismatch {
        /// Which buffer.
        what: String,
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// A parameter is out of its valid range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter's name as it appears in the public API.
        name: String,
        /// Why it is invalid, and what would be valid.
        reason: String,
    },
    /// A text record (CSV row, LIBSVM line, JSON document) cannot be parsed.
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line (or record) number.
        line: usize,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// A file or directory does not have the structure of its format (wrong layout, record
    /// size, missing split file, inconsistent header).
    #[error("{path}: not a valid {format} file: {reason}")]
    Format {
        /// The file or directory.
        path: String,
        /// The format expected (e.g. "CIFAR-100 binary").
        format: String,
        /// What is wrong.
        reason: String,
    },
    /// An image cannot be decoded.
    #[error("cannot decode image {path}: {reason}")]
    Image {
        /// The image file.
        path: String,
        /// Decoder message.
        reason: String,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, err: impl std::fmt::Display) -> Self {
        Self::Io {
            path: path.display().to_string(),
            message: err.to_string(),
        }
    }

    /// Shorthand for [`DataError::Parse`].
    pub fn parse(path: &Path, line: usize, reason: impl Into<String>) -> Self {
        Self::Parse {
            path: path.display().to_string(),
            line,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`DataError::Format`].
    pub fn format(path: &Path, format: &str, reason: impl Into<String>) -> Self {
        Self::Format {
            path: path.display().to_string(),
            format: format.to_string(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`DataError::InvalidParameter`].
    pub fn invalid(name: &str, reason: impl Into<String>) -> Self {
        Self::InvalidParameter {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}
