//! Fashion-MNIST (Xiao, Rasul, Vollgraf, 2017; Zalando Research, MIT licence): 60 000 training
//! and 10 000 test greyscale 28×28 images of clothing in 10 balanced classes, in MNIST's IDX
//! format.
//!
//! Not bundled: `cargo xtask data fetch fashion-mnist` takes the four `.gz` files from the Debian
//! package `dataset-fashion-mnist` (see [`crate::registry`]) into
//! [`crate::registry::data_dir`]`/fashion-mnist`. [`FashionMnist::load`] then reads them like
//! [`crate::Mnist::load`] does MNIST: plain or gzip per file, each verified by SHA-256 (of the
//! Debian `.gz` or of the raw content) before it is parsed.

use std::path::{Path, PathBuf};

use crate::dataset::Dataset;
use crate::error::Result;
use crate::mnist::{load_train_test, load_verified_pair, IdxFile};

/// Number of classes.
pub const NUM_CLASSES: usize = 10;
/// Image side length.
pub const SIDE: usize = 28;
/// Training samples.
pub const TRAIN_LEN: usize = 60_000;
/// Test samples.
pub const TEST_LEN: usize = 10_000;
/// Name of the data set in [`crate::registry`] and of its folder in the data folder.
pub const NAME: &str = "fashion-mnist";

/// Class names, indexed by label.
pub const CLASS_NAMES: [&str; NUM_CLASSES] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Training images, `[60000, 28, 28]`.
pub const TRAIN_IMAGES: IdxFile = IdxFile {
    name: "train-images-idx3-ubyte",
    sha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    sha256_gz: "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
};
/// Training labels, `[60000]`.
pub const TRAIN_LABELS: IdxFile = IdxFile {
    name: "train-labels-idx1-ubyte",
    sha256: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    sha256_gz: "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
};
/// Test images, `[10000, 28, 28]`.
pub const TEST_IMAGES: IdxFile = IdxFile {
    name: "t10k-images-idx3-ubyte",
    sha256: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    sha256_gz: "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
};
/// Test labels, `[10000]`.
pub const TEST_LABELS: IdxFile = IdxFile {
    name: "t10k-labels-idx1-ubyte",
    sha256: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    sha256_gz: "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
};
/// The four Fashion-MNIST files.
pub const FILES: [IdxFile; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

/// The Fashion-MNIST training and test sets, pixels scaled to `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FashionMnist {
    /// 60 000 training samples.
    pub train: Dataset,
    /// 10 000 test samples.
    pub test: Dataset,
}

impl FashionMnist {
    /// Loads and verifies the four Fashion-MNIST files from `dir` (plain or `.gz` each).
    ///
    /// A missing file gives [`crate::DataError::MissingFile`] whose hint says to run
    /// `cargo xtask data fetch fashion-mnist`; a file with another hash
    /// [`crate::DataError::ChecksumMismatch`].
    pub fn load(dir: &Path) -> Result<Self> {
        let (train, test) = load_train_test(
            || load_split(dir, &TRAIN_IMAGES, &TRAIN_LABELS),
            || load_split(dir, &TEST_IMAGES, &TEST_LABELS),
        )?;
        Ok(Self { train, test })
    }

    /// Loads the copy fetched into the data folder, [`FashionMnist::default_dir`].
    pub fn load_default() -> Result<Self> {
        Self::load(&Self::default_dir())
    }

    /// `fashion-mnist/` inside [`crate::registry::data_dir`] (`$BILEVEL_DATA/fashion-mnist` if
    /// set).
    pub fn default_dir() -> PathBuf {
        crate::registry::data_dir().join(NAME)
    }

    /// Name of class `label` ("T-shirt/top", "Trouser", ...), `None` past the last class.
    pub fn class_name(label: u8) -> Option<&'static str> {
        CLASS_NAMES.get(usize::from(label)).copied()
    }
}

/// How to obtain the files, for [`crate::DataError::MissingFile`].
fn fetch_hint(dir: &Path) -> String {
    format!(
        "Fashion-MNIST is not bundled: run `cargo xtask data fetch {NAME}` (Debian package \
         dataset-fashion-mnist; it fills {}/{NAME}, or ${} if set) or copy the four IDX files \
         into {}",
        crate::registry::workspace_data_dir().display(),
        crate::registry::DATA_ENV,
        dir.display()
    )
}

/// Locates, verifies and pairs one images file with its labels file in `dir`.
fn load_split(dir: &Path, images: &IdxFile, labels: &IdxFile) -> Result<Dataset> {
    let images_path = images.locate_or(dir, || fetch_hint(dir))?;
    let labels_path = labels.locate_or(dir, || fetch_hint(dir))?;
    load_verified_pair(images, &images_path, labels, &labels_path)
}
