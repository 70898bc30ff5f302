//! A labelled multi-channel image set with many classes (few-shot data, CIFAR), independent of
//! any tensor backend.

use crate::error::{DataError, Result};

/// Labelled images as one flat buffer.
///
/// # Shapes
/// - `pixels`: `len * channels * height * width` values in `[0, 1]`, image by image, each
///   channel-major then row-major (a `[len, channels, height, width]` tensor).
/// - `labels`: `len` class indices into `class_names`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    /// Pixel values, `[len, channels, height, width]` row-major.
    pub pixels: Vec<f32>,
    /// One class index per image.
    pub labels: Vec<u32>,
    /// Name of each class (e.g. `"Latin/character01"`, a WordNet id, a CIFAR fine label).
    pub class_names: Vec<String>,
    /// Channels per image (1 greyscale, 3 RGB).
    pub channels: usize,
    /// Rows per image.
    pub height: usize,
    /// Columns per image.
    pub width: usize,
    /// Number of images.
    pub len: usize,
}

impl ImageSet {
    /// Builds a set, checking buffer lengths and that every label names a class.
    pub fn new(
        pixels: Vec<f32>,
        labels: Vec<u32>,
        class_names: Vec<String>,
        channels: usize,
        height: usize,
        width: usize,
    ) -> Result<Self> {
        let per_image = channels * height * width;
        if per_image == 0 {
            return Err(DataError::invalid(
                "image shape",
                "channels, height and width must be positive",
            ));
        }
        let len = labels.len();
        if pixels.len() != len * per_image {
            return Err(DataError::ShapeMismatch {
                what: format!("pixels of {len} images of {channels}x{height}x{width}"),
                expected: len * per_image,
                got: pixels.len(),
            });
        }
        if let Some((index, &bad)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= class_names.len())
        {
            return Err(DataError::invalid(
                "labels",
                format!(
                    "label {bad} at position {index} names no class (there are {})",
                    class_names.len()
                ),
            ));
        }
        Ok(Self {
            pixels,
            labels,
            class_names,
            channels,
            height,
            width,
            len,
        })
    }

    /// Values per image (`channels * height * width`).
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether the set has no images.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// The pixels of image `index`, if it exists.
    pub fn image(&self, index: usize) -> Option<&[f32]> {
        let n = self.image_len();
        (index < self.len).then(|| &self.pixels[index * n..(index + 1) * n])
    }

    /// Image indices of each class, in order of appearance.
    pub fn indices_by_class(&self) -> Vec<Vec<usize>> {
        let mut by_class = vec![Vec::new(); self.num_classes()];
        for (i, &l) in self.labels.iter().enumerate() {
            by_class[l as usize].push(i);
        }
        by_class
    }

    /// The images at `indices` (in that order), keeping all class names.
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        let n = self.image_len();
        let mut pixels = Vec::with_capacity(indices.len() * n);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let image = self.image(i).ok_or_else(|| {
                DataError::invalid("indices", format!("index {i} out of range 0..{}", self.len))
            })?;
            pixels.extend_from_slice(image);
            labels.push(self.labels[i]);
        }
        Self::new(
            pixels,
            labels,
            self.class_names.clone(),
            self.channels,
            self.height,
            self.width,
        )
    }
}
