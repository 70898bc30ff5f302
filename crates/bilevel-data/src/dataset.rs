//! An in-memory labelled image data set, independent of any tensor backend.

use crate::error::{DataError, Result};

/// Labelled greyscale images as flat buffers, ready to be turned into tensors.
///
/// # Shapes
/// - `images`: `len * rows * cols` values, sample by sample, each image row-major
///   (i.e. a `[len, rows * cols]` or `[len, 1, rows, cols]` tensor). Loaders scale pixels to
///   `[0, 1]`; [`crate::split::Standardizer`] may later centre them.
/// - `labels`: `len` class indices.
///
/// The fields are public for cheap hand-off to tensor constructors; [`Dataset::new`] checks that
/// they agree, and every function of this crate keeps them consistent.
///
/// # Not burn's `Dataset`
/// This is a struct holding the data; burn's `Dataset` is a trait
/// ([`burn_dataset::Dataset`], also `burn::data::dataset::Dataset`)
/// for anything that hands out items by index. This struct implements that trait with
/// [`ImageItem`](crate::ImageItem) items (so it can be fed to burn's `DataLoader`), and
/// [`Dataset::from_burn`] builds one from any implementor; see [`crate::burn_items`].
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Pixel values, `len * rows * cols`, row-major per image.
    pub images: Vec<f32>,
    /// One class index per sample.
    pub labels: Vec<u8>,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// Number of samples.
    pub len: usize,
}

impl Dataset {
    /// Builds a data set, checking that there are `rows * cols` values per label.
    pub fn new(images: Vec<f32>, labels: Vec<u8>, rows: usize, cols: usize) -> Result<Self> {
        let len = labels.len();
        let expected = len
            .checked_mul(rows)
            .and_then(|n| n.checked_mul(cols))
            .unwrap_or(usize::MAX);
        if images.len() != expected {
            return Err(DataError::ShapeMismatch {
                what: format!("images of {len} samples of {rows}x{cols}"),
                expected,
                got: images.len(),
            });
        }
        Ok(Self {
            images,
            labels,
            rows,
            cols,
            len,
        })
    }

    /// Values per sample (`rows * cols`).
    pub fn features(&self) -> usize {
        self.rows * self.cols
    }

    /// True when the data set holds no samples.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pixels of sample `index`, or `None` past the end.
    pub fn image(&self, index: usize) -> Option<&[f32]> {
        let f = self.features();
        (index < self.len).then(|| &self.images[index * f..(index + 1) * f])
    }

    /// A new data set holding the samples at `indices`, in that order (repeats allowed).
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        let f = self.features();
        let mut images = Vec::with_capacity(indices.len() * f);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= self.len {
                return Err(DataError::invalid(
                    "indices",
                    format!(
                        "index {i} out of range for a data set of {} samples",
                        self.len
                    ),
                ));
            }
            images.extend_from_slice(&self.images[i * f..(i + 1) * f]);
            labels.push(self.labels[i]);
        }
        Ok(Self {
            images,
            labels,
            rows: self.rows,
            cols: self.cols,
            len: indices.len(),
        })
    }

    /// Number of samples per class, indexed by label; as long as the largest label plus one.
    pub fn label_counts(&self) -> Vec<usize> {
        let classes = self.labels.iter().max().map_or(0, |&m| usize::from(m) + 1);
        let mut counts = vec![0; classes];
        for &l in &self.labels {
            counts[usize::from(l)] += 1;
        }
        counts
    }
}
