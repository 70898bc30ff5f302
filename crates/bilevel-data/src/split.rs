//! Seeded train/validation/test splits, label corruption and per-feature standardisation.
//!
//! Every random draw comes from a `ChaCha8Rng` seeded with the `seed` argument, so the same
//! seed gives the same split or corruption on every platform (ChaCha's stream is specified;
//! only a change of the `rand` major version could move it).

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::dataset::Dataset;
use crate::error::{DataError, Result};

/// Sample counts of a three-way split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitSizes {
    /// Training samples.
    pub train: usize,
    /// Validation samples.
    pub val: usize,
    /// Test samples.
    pub test: usize,
}

impl SplitSizes {
    /// Sizes `train`, `val`, `test`.
    pub fn new(train: usize, val: usize, test: usize) -> Self {
        Self { train, val, test }
    }
}

/// Disjoint index sets into one data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitIndices {
    /// Indices of the training samples.
    pub train: Vec<usize>,
    /// Indices of the validation samples.
    pub val: Vec<usize>,
    /// Indices of the test samples.
    pub test: Vec<usize>,
}

/// A data set cut into training, validation and test parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Training part.
    pub train: Dataset,
    /// Validation part.
    pub val: Dataset,
    /// Test part.
    pub test: Dataset,
    /// Where each part came from in the source data set.
    pub indices: SplitIndices,
}

/// Draws disjoint train/val/test index sets of the given sizes from `0..len`, uniformly at
/// random (a seeded permutation, cut in three). Samples not needed are left out.
///
/// Errors with [`DataError::SplitTooLarge`] if the sizes add up to more than `len`.
pub fn split_indices(len: usize, sizes: SplitSizes, seed: u64) -> Result<SplitIndices> {
    let too_large = || DataError::SplitTooLarge {
        train: sizes.train,
        val: sizes.val,
        test: sizes.test,
        len,
    };
    let total = sizes
        .train
        .checked_add(sizes.val)
        .and_then(|n| n.checked_add(sizes.test))
        .ok_or_else(too_large)?;
    if total > len {
        return Err(too_large());
    }
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let val_end = sizes.train + sizes.val;
    Ok(SplitIndices {
        train: order[..sizes.train].to_vec(),
        val: order[sizes.train..val_end].to_vec(),
        test: order[val_end..total].to_vec(),
    })
}

/// Splits `data` into train/val/test parts of the given sizes with [`split_indices`].
pub fn train_val_test_split(data: &Dataset, sizes: SplitSizes, seed: u64) -> Result<Split> {
    let indices = split_indices(data.len, sizes, seed)?;
    Ok(Split {
        train: data.subset(&indices.train)?,
        val: data.subset(&indices.val)?,
        test: data.subset(&indices.test)?,
        indices,
    })
}

impl Split {
    /// Standardises all three parts with statistics of the training part only (so nothing of
    /// the validation or test data leaks into the features) and returns those statistics.
    pub fn standardize(&mut self) -> Result<Standardizer> {
        let standardizer = Standardizer::fit_dataset(&self.train)?;
        standardizer.apply_dataset(&mut self.train)?;
        standardizer.apply_dataset(&mut self.val)?;
        standardizer.apply_dataset(&mut self.test)?;
        Ok(standardizer)
    }
}

/// Labels after corruption, with a record of what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptedLabels {
    /// The new labels.
    pub labels: Vec<u8>,
    /// Indices whose label was replaced, ascending. Each replacement differs from the original.
    pub flipped: Vec<usize>,
}

impl CorruptedLabels {
    /// Fraction of labels that were flipped (0 for no labels).
    pub fn rate(&self) -> f64 {
        if self.labels.is_empty() {
            0.0
        } else {
            self.flipped.len() as f64 / self.labels.len() as f64
        }
    }
}

/// Replaces each label, independently with probability `p`, by a class drawn uniformly from
/// the `num_classes - 1` *other* classes (the data hyper-cleaning setting of Franceschi et al.
/// 2017 and Ji et al. 2021, where a corrupted label is always wrong).
///
/// Errors if `p` is outside `[0, 1]`, if `num_classes < 2` or `> 256`, or if a label is not
/// below `num_classes`.
pub fn corrupt_labels(
    labels: &[u8],
    num_classes: usize,
    p: f64,
    seed: u64,
) -> Result<CorruptedLabels> {
    if !(0.0..=1.0).contains(&p) {
        return Err(DataError::invalid(
            "p",
            format!("a probability in [0, 1], got {p}"),
        ));
    }
    if !(2..=256).contains(&num_classes) {
        return Err(DataError::invalid(
            "num_classes",
            format!(
                "between 2 and 256 (u8 labels, and a different class to flip to), \
                 got {num_classes}"
            ),
        ));
    }
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| usize::from(l) >= num_classes)
    {
        return Err(DataError::LabelOutOfRange {
            index,
            label,
            num_classes,
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = labels.to_vec();
    let mut flipped = Vec::new();
    for (i, label) in out.iter_mut().enumerate() {
        if rng.random_bool(p) {
            // Uniform over the other classes: draw from num_classes - 1 values and skip over
            // the true label.
            let draw = rng.random_range(0..num_classes - 1);
            let new = if draw >= usize::from(*label) {
                draw + 1
            } else {
                draw
            };
            *label = new as u8;
            flipped.push(i);
        }
    }
    Ok(CorruptedLabels {
        labels: out,
        flipped,
    })
}

/// Per-feature mean and standard deviation, fitted on one data set (the training split) and
/// applied to others: `x_j ← (x_j − mean_j) / std_j`.
///
/// Features whose standard deviation is below `min_std` (e.g. MNIST's always-black border
/// pixels) are only centred (their `std` is stored as 1), so that a feature nearly constant on
/// the training split does not blow up on the others.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer {
    /// Mean of each feature.
    pub mean: Vec<f32>,
    /// Divisor of each feature: the population standard deviation, or 1 where that is below
    /// the threshold.
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Threshold below which a feature counts as constant in [`Standardizer::fit`].
    pub const DEFAULT_MIN_STD: f64 = 1e-6;

    /// Fits mean and population standard deviation of each of `features` columns of the
    /// row-major `data` (`rows * features` values), with [`Standardizer::DEFAULT_MIN_STD`].
    pub fn fit(data: &[f32], features: usize) -> Result<Self> {
        Self::fit_with_min_std(data, features, Self::DEFAULT_MIN_STD)
    }

    /// [`Standardizer::fit`] with an explicit threshold for constant features.
    pub fn fit_with_min_std(data: &[f32], features: usize, min_std: f64) -> Result<Self> {
        if features == 0 || data.is_empty() || data.len() % features != 0 {
            return Err(DataError::invalid(
                "data",
                format!(
                    "a non-empty row-major matrix with {features} columns, got {} values",
                    data.len()
                ),
            ));
        }
        if min_std.is_nan() || min_std < 0.0 {
            return Err(DataError::invalid(
                "min_std",
                format!("a non-negative threshold, got {min_std}"),
            ));
        }
        let rows = (data.len() / features) as f64;
        // Two passes in f64: one-pass sum-of-squares cancels badly in f32 for large means.
        let mut mean = vec![0f64; features];
        for row in data.chunks_exact(features) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += f64::from(x);
            }
        }
        mean.iter_mut().for_each(|m| *m /= rows);
        let mut var = vec![0f64; features];
        for row in data.chunks_exact(features) {
            for ((v, &m), &x) in var.iter_mut().zip(&mean).zip(row) {
                let d = f64::from(x) - m;
                *v += d * d;
            }
        }
        let std = var
            .iter()
            .map(|&v| {
                let s = (v / rows).sqrt();
                if s < min_std {
                    1.0
                } else {
                    s as f32
                }
            })
            .collect();
        Ok(Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        })
    }

    /// Fits on the images of `data`.
    pub fn fit_dataset(data: &Dataset) -> Result<Self> {
        Self::fit(&data.images, data.features())
    }

    /// Number of features.
    pub fn features(&self) -> usize {
        self.mean.len()
    }

    /// Standardises the row-major `data` in place; errors if its length is not a multiple of
    /// the number of features.
    pub fn apply(&self, data: &mut [f32]) -> Result<()> {
        let features = self.features();
        if features == 0 || data.len() % features != 0 {
            return Err(DataError::ShapeMismatch {
                what: format!("rows of {features} features to standardise"),
                expected: data.len().div_ceil(features.max(1)) * features,
                got: data.len(),
            });
        }
        for row in data.chunks_exact_mut(features) {
            for ((x, &m), &s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *x = (*x - m) / s;
            }
        }
        Ok(())
    }

    /// Standardises the images of `data` in place.
    pub fn apply_dataset(&self, data: &mut Dataset) -> Result<()> {
        if data.features() != self.features() {
            return Err(DataError::ShapeMismatch {
                what: "features per sample to standardise".to_string(),
                expected: self.features(),
                got: data.features(),
            });
        }
        self.apply(&mut data.images)
    }
}
