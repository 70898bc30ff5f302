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
//! - [`burn_items`]: our sets as burn `burn_dataset::Dataset`s (for burn's `DataLoader`), and
//!   [`Dataset::from_burn`] / [`RegressionSet::from_burn`] for data a user holds in one.
//!   [`burn_dataset`] is re-exported so that users implement the very trait version we use.
//!   Note the names: [`Dataset`] here is our struct, `burn_dataset::Dataset` burn's trait.
//!
//! Errors are one enum, [`DataError`]; nothing here panics on bad input files.

pub mod assets;
pub mod batches;
pub mod burn_items;
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

/// burn's data set crate (`burn-dataset`, the version burn 0.21 uses; the same as
/// `burn::data::dataset` with burn's `dataset` feature): its `Dataset` **trait** is what our sets
/// implement (see [`burn_items`]); not to be confused with our [`Dataset`] struct.
pub use burn_dataset;

pub use batches::{sample_with_replacement, BatchSampler, ReplacementSampler};
pub use burn_items::{EpisodeRange, ImageItem, ImageSetItem, RegressionItem, SparseItem};
pub use cifar::{fc100_split, read_cifar100, Cifar100, Fc100};
pub use csv::{read_csv, CsvOptions, CsvTable};
pub use dataset::Dataset;
pub use episodes::{Episode, EpisodeSampler, EpisodeSpec};
pub use error::{DataError, Result};
pub use fashion_mnist::FashionMnist;
pub use image::{decode_image, DecodedImage};
pub use imageset::ImageSet;
pub use libsvm::{read_libsvm, SparseDataset};
pub use miniimagenet::{FewShotSplit, MiniImageNet};
pub use mnist::Mnist;
pub use omniglot::{rotate_classes, Omniglot, OmniglotOptions};
pub use registry::{DatasetInfo, VerifyReport};
pub use spam::{SpamCorpus, SpamDocument};
pub use split::{
    corrupt_labels, split_indices, train_val_test_split, CorruptedLabels, Split, SplitIndices,
    SplitSizes, Standardizer,
};
pub use synthetic::SyntheticGlyphsSpec;
pub use tabular::{diabetes, digits, wine_quality, FeatureScaling, RegressionSet};
pub use text::{bag_of_words, SparseMatrix, TfIdf, Tokenizer, VocabOptions, Vocabulary};
