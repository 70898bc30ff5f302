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
pub mod checksum;
pub mod dataset;
pub mod error;
pub mod idx;
pub mod mnist;
pub mod split;

pub use dataset::Dataset;
pub use error::{DataError, Result};
pub use mnist::Mnist;
pub use split::{
    corrupt_labels, split_indices, train_val_test_split, CorruptedLabels, Split, SplitIndices,
    SplitSizes, Standardizer,
};
