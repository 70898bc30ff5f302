//! # bilevel-data
//!
//! Backend-free data loading for bilevel-rs: everything here returns plain `Vec<f32>` /
//! `Vec<u8>` buffers, which `bilevel-problems` turns into tensors on whatever backend it runs.
//!
//! - [`idx`]: the IDX format of MNIST-style data sets, plain or gzip, fully validated.
//! - [`checksum`]: streaming SHA-256 and verification against recorded hashes.
//! - [`mnist`]: [`Mnist::load`] / [`Mnist::load_bundled`] (the copy in `assets/mnist`),
//!   verified file by file.
//! - [`split`]: seeded train/val/test splits, label corruption, per-feature standardisation.
//! - [`assets`]: where the bundled data lives (`BILEVEL_ASSETS` overrides it).
//!
//! Errors are one enum, [`DataError`]; nothing here panics on bad input files.

pub mod assets;
pub mod batches;
pub mod checksum;
pub mod cifar;
pub mod csv;
pub mod dataset;
pub mod episodes;
pub mod error;
pub mod fashion_mnist;
pub mod idx;
pub mod image;
pub mod imageset;
pub mod libsvm;
pub mod miniimagenet;
pub mod mnist;
pub mod omniglot;
pub mod registry;
pub mod spam;
pub mod split;
pub mod synthetic;
pub mod tabular;
pub mod text;

pub use dataset::Dataset;
pub use error::{DataError, Result};
pub use imageset::ImageSet;
pub use mnist::Mnist;
pub use split::{
    corrupt_labels, split_indices, train_val_test_split, CorruptedLabels, Split, SplitIndices,
    SplitSizes, Standardizer,
};
