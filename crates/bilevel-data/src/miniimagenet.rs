//! miniImageNet (Vinyals et al. 2016) in the layout of Ravi & Larochelle (2017).
//!
//! ```text
//! <root>/train.csv   64 classes × 600 images
//! <root>/val.csv     16 classes × 600 images
//! <root>/test.csv    20 classes × 600 images
//! <root>/images/<filename>          e.g. images/n0153282900000005.jpg
//! ```
//!
//! Each CSV has the header `filename,label` and one row per image, e.g.
//! `n0153282900000005.jpg,n01532829` (the label is the ImageNet WordNet id). Images are decoded
//! by content, so a PNG stored under a `.jpg` name loads too, converted to RGB and resampled
//! to the requested size (84×84 is the standard) with [`crate::image::resize_bilinear`].
//!
//! miniImageNet is derived from ImageNet and is not redistributable here; nothing in this
//! workspace fetches it. Point [`MiniImageNet::load_split`] at a copy prepared with the Ravi &
//! Larochelle split files, or use the labelled substitute of [`crate::synthetic`].
//!
//! Memory: the full training split at 84×84 is 38 400 × 3 × 84 × 84 `f32` values (≈ 3.3 GB).

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::image::{decode_image, resize_bilinear, to_channels};
use crate::imageset::ImageSet;

/// The class-disjoint parts of a few-shot benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FewShotSplit {
    /// Meta-training classes (`train.csv`).
    Train,
    /// Meta-validation classes (`val.csv`).
    Val,
    /// Meta-test classes (`test.csv`).
    Test,
}

impl FewShotSplit {
    /// All three, in the order train, val, test.
    pub const ALL: [FewShotSplit; 3] = [Self::Train, Self::Val, Self::Test];

    /// The short name (`"train"`, `"val"`, `"test"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Val => "val",
            Self::Test => "test",
        }
    }

    /// The split file's name (`"train.csv"`, ...).
    pub fn csv_name(self) -> String {
        format!("{}.csv", self.name())
    }
}

/// One row of a split CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitRow {
    /// Image file name, relative to `<root>/images`.
    pub filename: String,
    /// Class label (a WordNet id).
    pub label: String,
}

/// The images of one split, as listed by [`MiniImageNet::list_split`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitListing {
    /// Each image file (under `<root>/images`) with its class index, in CSV order.
    pub files: Vec<(PathBuf, u32)>,
    /// WordNet ids in order of first appearance; class index = position.
    pub class_names: Vec<String>,
}

/// Loader of the miniImageNet CSV-split layout (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MiniImageNet;

const CSV_FORMAT: &str = "miniImageNet split CSV";

fn missing_hint() -> String {
    "miniImageNet is not bundled or fetched by this workspace (it is derived from ImageNet); \
     prepare <root>/{train,val,test}.csv (header `filename,label`) and <root>/images/ with the \
     Ravi & Larochelle split, or use `bilevel_data::synthetic` for an offline substitute"
        .to_string()
}

impl MiniImageNet {
    /// Reads and validates a split CSV (header `filename,label`, two fields per row, blank
    /// lines ignored, CRLF and a UTF-8 byte-order mark accepted).
    ///
    /// Errors: [`DataError::MissingFile`] if the file is absent, [`DataError::Parse`] with the
    /// 1-based line for a wrong header, a row without exactly two non-empty fields or a
    /// file name that is a path, [`DataError::Format`] for a CSV with no rows.
    pub fn read_split_csv(path: &Path) -> Result<Vec<SplitRow>> {
        if !path.is_file() {
            return Err(DataError::MissingFile {
                path: path.display().to_string(),
                hint: missing_hint(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
        match lines.next() {
            Some((_, "filename,label")) => {}
            Some((n, other)) => {
                return Err(DataError::parse(
                    path,
                    n,
                    format!("expected the header `filename,label`, found `{other}`"),
                ))
            }
            None => {
                return Err(DataError::parse(
                    path,
                    1,
                    "empty file; expected the header `filename,label`",
                ))
            }
        }
        let mut rows = Vec::new();
        for (n, line) in lines {
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [filename, label] = fields[..] else {
                return Err(DataError::parse(
                    path,
                    n,
                    format!(
                        "expected 2 fields `filename,label`, found {} in `{line}`",
                        fields.len()
                    ),
                ));
            };
            if filename.is_empty() || label.is_empty() {
                return Err(DataError::parse(
                    path,
                    n,
                    format!("empty file name or label in `{line}`"),
                ));
            }
            if filename.contains(['/', '\\']) || filename == "." || filename == ".." {
                return Err(DataError::parse(
                    path,
                    n,
                    format!("file name `{filename}` must be a plain name inside images/"),
                ));
            }
            rows.push(SplitRow {
                filename: filename.to_string(),
                label: label.to_string(),
            });
        }
        if rows.is_empty() {
            return Err(DataError::format(path, CSV_FORMAT, "no image rows"));
        }
        Ok(rows)
    }

    /// The image files of `split` with their class indices and the class names (WordNet ids in
    /// order of first appearance), checking that every image exists, without decoding.
    pub fn list_split(root: &Path, split: FewShotSplit) -> Result<SplitListing> {
        let rows = Self::read_split_csv(&root.join(split.csv_name()))?;
        let images = root.join("images");
        let mut class_names: Vec<String> = Vec::new();
        let mut files = Vec::with_capacity(rows.len());
        for row in rows {
            let label = match class_names.iter().position(|c| *c == row.label) {
                Some(i) => i,
                None => {
                    class_names.push(row.label);
                    class_names.len() - 1
                }
            };
            let path = images.join(&row.filename);
            if !path.is_file() {
                return Err(DataError::MissingFile {
                    path: path.display().to_string(),
                    hint: format!(
                        "listed in {}; {}",
                        root.join(split.csv_name()).display(),
                        missing_hint()
                    ),
                });
            }
            files.push((path, label as u32));
        }
        Ok(SplitListing { files, class_names })
    }

    /// Loads `split` as a 3-channel [`ImageSet`] of `size = (height, width)` images, in CSV
    /// order, with `class_names` = WordNet ids in order of first appearance.
    ///
    /// Errors: those of [`MiniImageNet::read_split_csv`]; [`DataError::MissingFile`] naming an
    /// image listed but absent; [`DataError::Image`] naming an undecodable image;
    /// [`DataError::InvalidParameter`] for a zero size.
    pub fn load_split(root: &Path, split: FewShotSplit, size: (usize, usize)) -> Result<ImageSet> {
        let (height, width) = size;
        if height == 0 || width == 0 {
            return Err(DataError::invalid(
                "size",
                format!("height and width must be positive, got {height}x{width}"),
            ));
        }
        let SplitListing { files, class_names } = Self::list_split(root, split)?;
        let mut pixels = Vec::with_capacity(files.len() * 3 * height * width);
        let mut labels = Vec::with_capacity(files.len());
        for (path, label) in files {
            let img = to_channels(&decode_image(&path)?, 3)?;
            let img = resize_bilinear(&img, height, width)?;
            pixels.extend_from_slice(&img.pixels);
            labels.push(label);
        }
        ImageSet::new(pixels, labels, class_names, 3, height, width)
    }
}
