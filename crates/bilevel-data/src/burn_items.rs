//! Interoperation with burn's data pipeline (`burn_dataset`, re-exported as
//! [`crate::burn_dataset`]).
//!
//! # Two things called `Dataset`
//! - [`crate::Dataset`] (this crate's, `bilevel_data::Dataset`) is a **struct**: labelled
//!   greyscale images held as one flat `Vec<f32>` plus a `Vec<u8>` of labels. It is what
//!   `bilevel-problems` turns into tensors.
//! - [`burn_dataset::Dataset<I>`] (burn's, also reachable as `burn::data::dataset::Dataset`) is a
//!   **trait**: any `Send + Sync` collection that hands out owned items `I` by index
//!   (`get(index) -> Option<I>`, `len()`). burn's `DataLoader` reads data through it.
//!
//! To avoid the clash, this crate always names burn's trait by its path,
//! `burn_dataset::Dataset`; do the same (or `use bilevel_data::burn_dataset::Dataset as
//! BurnDataset;`) when both are in scope.
//!
//! # Our sets seen through burn's trait
//! burn's trait returns owned items, so each `get` copies one sample out of the flat buffers
//! into a small item type defined here:
//!
//! | our set | item | `get(i)` is |
//! |---|---|---|
//! | [`crate::Dataset`] | [`ImageItem`] | [`Dataset::image`](crate::Dataset::image)`(i)` and `labels[i]` |
//! | [`ImageSet`] | [`ImageSetItem`] | [`ImageSet::image`]`(i)` and `labels[i]` |
//! | [`RegressionSet`] | [`RegressionItem`] | [`RegressionSet::row`]`(i)` and `targets[i]` |
//! | [`SparseDataset`] | [`SparseItem`] | [`SparseDataset::row`]`(i)` and `labels[i]` |
//! | [`EpisodeRange`] | [`Episode`] | [`EpisodeSampler::episode`]`(start + i)` |
//!
//! Every `get` returns `None` from `len()` on, as burn's loaders expect. Episodes: an
//! [`EpisodeSampler`] is an endless (seeded, random-access) stream, not a collection, so it does
//! not implement the trait itself; an [`EpisodeRange`] is a finite window of that stream (e.g.
//! one epoch of meta-training tasks) and does. Its items are index-level [`Episode`]s; a burn
//! `Batcher` turns them into pixels with [`Episode::gather`].
//!
//! # The other direction
//! [`Dataset::from_burn`](crate::Dataset::from_burn) and [`RegressionSet::from_burn`] read any
//! `impl burn_dataset::Dataset` of [`ImageItem`] / [`RegressionItem`] into our flat sets,
//! checking every item and returning a [`DataError`] (never panicking) on an empty source, an
//! item of the wrong size, or a source whose `get` fails inside `0..len()`. That is how the
//! problems of `bilevel-problems`, which take a `bilevel_data::Dataset` (or an
//! [`crate::Mnist`] of two of them), accept data a user holds in a burn dataset.

use crate::dataset::Dataset;
use crate::episodes::{Episode, EpisodeSampler};
use crate::error::{DataError, Result};
use crate::imageset::ImageSet;
use crate::libsvm::SparseDataset;
use crate::tabular::RegressionSet;

/// One labelled greyscale image: the item of [`crate::Dataset`] seen as a
/// `burn_dataset::Dataset<ImageItem>`, and what [`Dataset::from_burn`] reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageItem {
    /// `rows * cols` pixel values, row-major (loaders scale them to `[0, 1]`).
    pub image: Vec<f32>,
    /// Class index.
    pub label: u8,
}

/// One labelled multi-channel image: the item of [`ImageSet`] seen as a
/// `burn_dataset::Dataset<ImageSetItem>`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSetItem {
    /// `channels * height * width` pixel values, channel-major then row-major.
    pub pixels: Vec<f32>,
    /// Class index into the set's `class_names`.
    pub label: u32,
}

/// One regression sample: the item of [`RegressionSet`] seen as a
/// `burn_dataset::Dataset<RegressionItem>`, and what [`RegressionSet::from_burn`] reads.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressionItem {
    /// The sample's `dim` feature values, in the set's feature order.
    pub features: Vec<f64>,
    /// The target.
    pub target: f64,
}

/// One sparse labelled sample: the item of [`SparseDataset`] seen as a
/// `burn_dataset::Dataset<SparseItem>`.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseItem {
    /// 0-based feature indices, strictly increasing.
    pub indices: Vec<u32>,
    /// Values of those features.
    pub values: Vec<f32>,
    /// The label (class label such as `-1`/`+1`, or regression target).
    pub label: f64,
}

impl burn_dataset::Dataset<ImageItem> for Dataset {
    fn get(&self, index: usize) -> Option<ImageItem> {
        Some(ImageItem {
            image: self.image(index)?.to_vec(),
            label: *self.labels.get(index)?,
        })
    }

    fn len(&self) -> usize {
        self.len
    }
}

impl burn_dataset::Dataset<ImageSetItem> for ImageSet {
    fn get(&self, index: usize) -> Option<ImageSetItem> {
        Some(ImageSetItem {
            pixels: self.image(index)?.to_vec(),
            label: *self.labels.get(index)?,
        })
    }

    fn len(&self) -> usize {
        self.len
    }
}

impl burn_dataset::Dataset<RegressionItem> for RegressionSet {
    fn get(&self, index: usize) -> Option<RegressionItem> {
        Some(RegressionItem {
            features: self.row(index)?.to_vec(),
            target: *self.targets.get(index)?,
        })
    }

    fn len(&self) -> usize {
        self.len
    }
}

impl burn_dataset::Dataset<SparseItem> for SparseDataset {
    fn get(&self, index: usize) -> Option<SparseItem> {
        // `row` panics past the end; burn's trait wants `None` there.
        let label = *self.labels.get(index)?;
        let (indices, values) = self.row(index);
        Some(SparseItem {
            indices: indices.to_vec(),
            values: values.to_vec(),
            label,
        })
    }

    fn len(&self) -> usize {
        self.labels.len()
    }
}

/// A finite window of an [`EpisodeSampler`]'s stream: episodes `start, start + 1, …,
/// start + len - 1`, as a `burn_dataset::Dataset<Episode>`.
///
/// Episode `i` of the stream depends only on the sampler's classes, spec, seed and `i` (see
/// [`crate::episodes`]), so item `k` is exactly [`EpisodeSampler::episode`]`(start + k)`:
/// every `get` recomputes it, the range holds no episodes, and two ranges over equal samplers
/// agree item by item. Drawing `len` episodes with [`EpisodeSampler::sample`] from a sampler
/// at episode `start` gives the same episodes in the same order. (Stream indices wrap around
/// at `u64::MAX`, as [`EpisodeSampler::sample`] does.)
///
/// ```
/// use bilevel_data::burn_dataset::Dataset as BurnDataset;
/// use bilevel_data::{EpisodeRange, EpisodeSampler, EpisodeSpec};
///
/// // 4 classes of 3 images each; 2-way 1-shot tasks with 1 query image per class.
/// let classes = (0..4).map(|c| (3 * c..3 * c + 3).collect()).collect();
/// let sampler = EpisodeSampler::new(classes, EpisodeSpec::new(2, 1, 1), 7).unwrap();
/// let epoch = EpisodeRange::new(sampler.clone(), 100, 8);
/// assert_eq!(epoch.len(), 8);
/// assert_eq!(epoch.get(3), Some(sampler.episode(103)));
/// assert_eq!(epoch.get(8), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpisodeRange {
    sampler: EpisodeSampler,
    start: u64,
    len: usize,
}

impl EpisodeRange {
    /// Episodes `start..start + len` of `sampler`'s stream (its current position is ignored).
    pub fn new(sampler: EpisodeSampler, start: u64, len: usize) -> Self {
        Self {
            sampler,
            start,
            len,
        }
    }

    /// The sampler the episodes come from.
    pub fn sampler(&self) -> &EpisodeSampler {
        &self.sampler
    }

    /// Stream index of the first episode.
    pub fn start(&self) -> u64 {
        self.start
    }
}

impl burn_dataset::Dataset<Episode> for EpisodeRange {
    fn get(&self, index: usize) -> Option<Episode> {
        (index < self.len).then(|| self.sampler.episode(self.start.wrapping_add(index as u64)))
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// Reads items `0..source.len()` of `source` and hands each, with its index, to
/// `check_and_push` (which checks its size and appends it to the flat buffers); the shared walk
/// of the `from_burn` constructors. Errors on an empty source and on a missing item.
fn read_items<I, D>(
    source: &D,
    what: &str,
    mut check_and_push: impl FnMut(usize, I) -> Result<()>,
) -> Result<usize>
where
    D: burn_dataset::Dataset<I> + ?Sized,
{
    let len = source.len();
    if len == 0 {
        return Err(DataError::invalid(
            "source",
            format!("the burn dataset of {what} is empty (len() == 0); nothing to build from"),
        ));
    }
    for index in 0..len {
        let item = source.get(index).ok_or_else(|| {
            DataError::invalid(
                "source",
                format!(
                    "the burn dataset of {what} returned no item at index {index}, below its \
                     len() of {len}"
                ),
            )
        })?;
        check_and_push(index, item)?;
    }
    Ok(len)
}

/// Reserves `n` more elements or reports the size as a parameter error (a huge `len()` from a
/// broken source must not abort the process).
fn reserve<T>(buffer: &mut Vec<T>, n: Option<usize>, what: &str) -> Result<()> {
    n.and_then(|n| buffer.try_reserve_exact(n).ok())
        .ok_or_else(|| {
            DataError::invalid(
                "source",
                format!("the burn dataset of {what} is too large to hold in memory"),
            )
        })
}

impl Dataset {
    /// Copies a burn dataset of [`ImageItem`]s (anything implementing
    /// `burn_dataset::Dataset<ImageItem>`, e.g. burn's `InMemDataset`, a mapped or
    /// partial dataset, or a user's own loader) into a [`Dataset`] of `rows x cols` images, item
    /// `i` becoming sample `i`.
    ///
    /// Problems that take a `bilevel_data::Dataset` (e.g. `bilevel_problems::common::ClassSet::new`,
    /// or the MNIST-based problems through a [`crate::Mnist`] built from two of these) thereby
    /// accept data held in a burn dataset.
    ///
    /// # Errors
    /// - [`DataError::InvalidParameter`] if `rows` or `cols` is 0, if `source` is empty, or if
    ///   `source.get(i)` is `None` for some `i < source.len()`;
    /// - [`DataError::ShapeMismatch`] naming the first item whose image does not hold
    ///   `rows * cols` values.
    ///
    /// # Example
    /// ```
    /// use bilevel_data::burn_dataset::InMemDataset;
    /// use bilevel_data::{Dataset, ImageItem, Mnist};
    ///
    /// // A user's data in burn: two 2x2 images.
    /// let user = InMemDataset::new(vec![
    ///     ImageItem { image: vec![0.0, 0.1, 0.2, 0.3], label: 3 },
    ///     ImageItem { image: vec![1.0, 0.9, 0.8, 0.7], label: 5 },
    /// ]);
    /// let data = Dataset::from_burn(&user, 2, 2)?;
    /// assert_eq!(data.labels, [3, 5]);
    /// assert_eq!(data.image(1), Some(&[1.0, 0.9, 0.8, 0.7][..]));
    ///
    /// // What the MNIST-based problems of `bilevel-problems` take (e.g.
    /// // `bilevel_problems::common::split_mnist(&mnist, ...)`), here from burn datasets:
    /// let mnist = Mnist { train: data.clone(), test: data };
    /// assert_eq!(mnist.train.len, 2);
    ///
    /// // An item of the wrong size is an error naming it, not a panic.
    /// let bad = InMemDataset::new(vec![ImageItem { image: vec![0.0; 3], label: 0 }]);
    /// assert!(Dataset::from_burn(&bad, 2, 2).is_err());
    /// # Ok::<(), bilevel_data::DataError>(())
    /// ```
    pub fn from_burn<D>(source: &D, rows: usize, cols: usize) -> Result<Self>
    where
        D: burn_dataset::Dataset<ImageItem> + ?Sized,
    {
        if rows == 0 || cols == 0 {
            return Err(DataError::invalid(
                "rows, cols",
                format!("images must have at least one row and one column, got {rows}x{cols}"),
            ));
        }
        let features = rows.checked_mul(cols).ok_or_else(|| {
            DataError::invalid("rows, cols", format!("{rows}x{cols} images are too large"))
        })?;
        let what = format!("{rows}x{cols} images");
        let mut images = Vec::new();
        let mut labels = Vec::new();
        reserve(&mut images, source.len().checked_mul(features), &what)?;
        reserve(&mut labels, Some(source.len()), &what)?;
        read_items(source, &what, |index, item: ImageItem| {
            if item.image.len() != features {
                return Err(DataError::ShapeMismatch {
                    what: format!("image of item {index} of the burn dataset ({rows}x{cols})"),
                    expected: features,
                    got: item.image.len(),
                });
            }
            images.extend_from_slice(&item.image);
            labels.push(item.label);
            Ok(())
        })?;
        Self::new(images, labels, rows, cols)
    }
}

impl RegressionSet {
    /// Copies a burn dataset of [`RegressionItem`]s into a [`RegressionSet`] whose features are
    /// named `feature_names` (so each item must hold `feature_names.len()` features), item `i`
    /// becoming row `i`.
    ///
    /// # Errors
    /// - [`DataError::InvalidParameter`] if `feature_names` is empty, if `source` is empty, or
    ///   if `source.get(i)` is `None` for some `i < source.len()`;
    /// - [`DataError::ShapeMismatch`] naming the first item that does not hold
    ///   `feature_names.len()` features.
    ///
    /// ```
    /// use bilevel_data::burn_dataset::InMemDataset;
    /// use bilevel_data::{RegressionItem, RegressionSet};
    ///
    /// let user = InMemDataset::new(vec![
    ///     RegressionItem { features: vec![1.0, 2.0], target: 0.5 },
    ///     RegressionItem { features: vec![3.0, 4.0], target: -1.0 },
    /// ]);
    /// let set = RegressionSet::from_burn(&user, vec!["a".into(), "b".into()])?;
    /// assert_eq!((set.len, set.dim), (2, 2));
    /// assert_eq!(set.row(1), Some(&[3.0, 4.0][..]));
    /// assert_eq!(set.targets, [0.5, -1.0]);
    /// # Ok::<(), bilevel_data::DataError>(())
    /// ```
    pub fn from_burn<D>(source: &D, feature_names: Vec<String>) -> Result<Self>
    where
        D: burn_dataset::Dataset<RegressionItem> + ?Sized,
    {
        let dim = feature_names.len();
        if dim == 0 {
            return Err(DataError::invalid(
                "feature_names",
                "a regression set needs at least one feature (one name per feature)",
            ));
        }
        let what = format!("regression samples of {dim} features");
        let mut features = Vec::new();
        let mut targets = Vec::new();
        reserve(&mut features, source.len().checked_mul(dim), &what)?;
        reserve(&mut targets, Some(source.len()), &what)?;
        read_items(source, &what, |index, item: RegressionItem| {
            if item.features.len() != dim {
                return Err(DataError::ShapeMismatch {
                    what: format!("features of item {index} of the burn dataset"),
                    expected: dim,
                    got: item.features.len(),
                });
            }
            features.extend_from_slice(&item.features);
            targets.push(item.target);
            Ok(())
        })?;
        Self::new(features, targets, dim, feature_names)
    }
}
