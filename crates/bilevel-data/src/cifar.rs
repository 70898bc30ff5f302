//! CIFAR-100 in its binary version (Krizhevsky 2009) and the FC100 few-shot split.
//!
//! `cifar-100-binary/{train.bin,test.bin}` (50 000 and 10 000 images) are sequences of
//! [`RECORD_LEN`]-byte records:
//!
//! | bytes | content |
//! |---|---|
//! | 0 | coarse label (superclass), `0..20` |
//! | 1 | fine label (class), `0..100` |
//! | 2 .. 1026 | red channel, 32×32 row-major |
//! | 1026 .. 2050 | green channel |
//! | 2050 .. 3074 | blue channel |
//!
//! so each image is already a channel-major `[3, 32, 32]` array. The folder also holds
//! `fine_label_names.txt` and `coarse_label_names.txt` (one name per line, in label order),
//! which [`read_cifar100`] uses when present.
//!
//! CIFAR-100 is not obtainable from the package registries this workspace fetches from; it must
//! be downloaded by hand from <https://www.cs.toronto.edu/~kriz/cifar.html>
//! (`cifar-100-binary.tar.gz`).
//!
//! # FC100
//! Fewshot-CIFAR100 (Oreshkin, Rodríguez López, Lacoste, *TADAM: Task dependent adaptive metric
//! for improved few-shot learning*, NeurIPS 2018) splits the 100 classes by superclass so that
//! training, validation and test classes share no superclass: superclasses
//! [`FC100_TRAIN_SUPERCLASSES`] (60 classes), [`FC100_VAL_SUPERCLASSES`] (20) and
//! [`FC100_TEST_SUPERCLASSES`] (20). The indices here are taken from the description of the split
//! and agree with the superclass name lists of torchmeta's FC100 assets (test: aquatic mammals,
//! insects, medium mammals, people; validation: large carnivores, large omnivores and
//! herbivores, non-insect invertebrates, small mammals); if exactness matters, check them
//! against the TADAM authors' own code (Element AI) before comparing with published numbers.
//! FC100 uses all 600 images of each class, i.e. CIFAR-100's training and test files merged
//! ([`Cifar100::load_merged`]).

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::idx::read_maybe_gzip;
use crate::imageset::ImageSet;

/// Bytes per record: two label bytes and 3×32×32 pixels.
pub const RECORD_LEN: usize = 2 + PIXELS_PER_IMAGE;
/// Pixel bytes per image.
pub const PIXELS_PER_IMAGE: usize = CHANNELS * SIDE * SIDE;
/// Colour channels (R, G, B).
pub const CHANNELS: usize = 3;
/// Image side length.
pub const SIDE: usize = 32;
/// Number of superclasses (coarse labels).
pub const COARSE_CLASSES: usize = 20;
/// Number of classes (fine labels).
pub const FINE_CLASSES: usize = 100;
/// Name of the format in [`DataError::Format`] errors.
const FORMAT: &str = "CIFAR-100 binary";

/// FC100 training superclasses (fish, flowers, food containers, fruit and vegetables,
/// household electrical devices, household furniture, large man-made outdoor things, large
/// natural outdoor scenes, reptiles, trees, vehicles 1, vehicles 2).
pub const FC100_TRAIN_SUPERCLASSES: [u8; 12] = [1, 2, 3, 4, 5, 6, 9, 10, 15, 17, 18, 19];
/// FC100 validation superclasses (large carnivores, large omnivores and herbivores,
/// non-insect invertebrates, small mammals).
pub const FC100_VAL_SUPERCLASSES: [u8; 4] = [8, 11, 13, 16];
/// FC100 test superclasses (aquatic mammals, insects, medium mammals, people).
pub const FC100_TEST_SUPERCLASSES: [u8; 4] = [0, 7, 12, 14];

/// `UNIT_SCALE[p] = p / 255` for every byte value.
const UNIT_SCALE: [f32; 256] = {
    let mut table = [0f32; 256];
    let mut p = 0;
    while p < 256 {
        table[p] = p as f32 / 255.0;
        p += 1;
    }
    table
};

/// A CIFAR-100 file: images with fine labels, and the coarse label of each image.
#[derive(Debug, Clone, PartialEq)]
pub struct Cifar100 {
    /// `[len, 3, 32, 32]` pixels in `[0, 1]`; labels are the fine labels (`0..100`) and
    /// `class_names` the 100 fine label names (`"fine-<n>"` when the names file is absent).
    pub images: ImageSet,
    /// The coarse label (superclass, `0..20`) of each image.
    pub coarse: Vec<u8>,
    /// The 20 superclass names (`"coarse-<n>"` when `coarse_label_names.txt` is absent).
    pub coarse_names: Vec<String>,
}

/// Reads one CIFAR-100 binary file (`train.bin` or `test.bin`, optionally gzip), taking class
/// names from `fine_label_names.txt` / `coarse_label_names.txt` next to it when they exist.
///
/// # Errors
/// [`DataError::Io`] / [`DataError::Decompress`] when the file cannot be read;
/// [`DataError::Format`] when it is empty, its size is not a multiple of [`RECORD_LEN`] (the
/// message says how many bytes are left over), a label is out of range (the message gives the
/// 0-based record number), or a names file does not hold exactly 100 (20) names.
pub fn read_cifar100(path: &Path) -> Result<Cifar100> {
    let bytes = read_maybe_gzip(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let fine_names = read_names(&dir.join("fine_label_names.txt"), FINE_CLASSES, "fine")?;
    let coarse_names = read_names(
        &dir.join("coarse_label_names.txt"),
        COARSE_CLASSES,
        "coarse",
    )?;
    parse_cifar100(&bytes, path, fine_names, coarse_names)
}

/// Parses the decompressed bytes of a CIFAR-100 binary file with the given class names;
/// `path` only labels errors. See [`read_cifar100`].
pub fn parse_cifar100(
    bytes: &[u8],
    path: &Path,
    fine_names: Vec<String>,
    coarse_names: Vec<String>,
) -> Result<Cifar100> {
    if fine_names.len() != FINE_CLASSES || coarse_names.len() != COARSE_CLASSES {
        return Err(DataError::invalid(
            "class names",
            format!(
                "{FINE_CLASSES} fine and {COARSE_CLASSES} coarse names, got {} and {}",
                fine_names.len(),
                coarse_names.len()
            ),
        ));
    }
    if bytes.is_empty() {
        return Err(DataError::format(path, FORMAT, "the file is empty"));
    }
    let left_over = bytes.len() % RECORD_LEN;
    if left_over != 0 {
        return Err(DataError::format(
            path,
            FORMAT,
            format!(
                "{} bytes are not a whole number of {RECORD_LEN}-byte records: {left_over} bytes \
                 left over after {} records (truncated or not CIFAR-100)",
                bytes.len(),
                bytes.len() / RECORD_LEN
            ),
        ));
    }
    let len = bytes.len() / RECORD_LEN;
    let mut pixels = Vec::with_capacity(len * PIXELS_PER_IMAGE);
    let mut labels = Vec::with_capacity(len);
    let mut coarse = Vec::with_capacity(len);
    for (r, record) in bytes.chunks_exact(RECORD_LEN).enumerate() {
        let (c, f) = (record[0], record[1]);
        if usize::from(c) >= COARSE_CLASSES || usize::from(f) >= FINE_CLASSES {
            return Err(DataError::format(
                path,
                FORMAT,
                format!(
                    "record {r} (0-based) has coarse label {c} and fine label {f}; expected \
                     0..{COARSE_CLASSES} and 0..{FINE_CLASSES}"
                ),
            ));
        }
        coarse.push(c);
        labels.push(u32::from(f));
        pixels.extend(record[2..].iter().map(|&p| UNIT_SCALE[usize::from(p)]));
    }
    let images = ImageSet::new(pixels, labels, fine_names, CHANNELS, SIDE, SIDE)?;
    Ok(Cifar100 {
        images,
        coarse,
        coarse_names,
    })
}

/// The names in `path` (one per non-blank line, trimmed), or `<prefix>-<n>` if the file does
/// not exist; an error if it exists but does not hold `count` names.
fn read_names(path: &Path, count: usize, prefix: &str) -> Result<Vec<String>> {
    if !path.is_file() {
        return Ok((0..count).map(|n| format!("{prefix}-{n}")).collect());
    }
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let names: Vec<String> = String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if names.len() != count {
        return Err(DataError::format(
            path,
            "CIFAR-100 label names",
            format!(
                "expected {count} names, one per line, found {}",
                names.len()
            ),
        ));
    }
    Ok(names)
}

impl Cifar100 {
    /// Reads `dir/train.bin` and `dir/test.bin` (or their `.gz`) and concatenates them,
    /// training images first: all 60 000 images, 600 per class, as FC100 uses them.
    ///
    /// # Errors
    /// [`DataError::MissingFile`] if a file is absent, plus those of [`read_cifar100`].
    pub fn load_merged(dir: &Path) -> Result<Self> {
        let train = read_cifar100(&locate(dir, "train.bin")?)?;
        let test = read_cifar100(&locate(dir, "test.bin")?)?;
        train.concat(&test)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The images of `self` followed by those of `other`; both must have the same class names.
    pub fn concat(&self, other: &Self) -> Result<Self> {
        if self.images.class_names != other.images.class_names
            || self.coarse_names != other.coarse_names
        {
            return Err(DataError::invalid(
                "other",
                "both files must have the same class names",
            ));
        }
        let mut pixels = self.images.pixels.clone();
        pixels.extend_from_slice(&other.images.pixels);
        let mut labels = self.images.labels.clone();
        labels.extend_from_slice(&other.images.labels);
        let mut coarse = self.coarse.clone();
        coarse.extend_from_slice(&other.coarse);
        Ok(Self {
            images: ImageSet::new(
                pixels,
                labels,
                self.images.class_names.clone(),
                CHANNELS,
                SIDE,
                SIDE,
            )?,
            coarse,
            coarse_names: self.coarse_names.clone(),
        })
    }
}

/// `dir/name` or `dir/name.gz`, else a [`DataError::MissingFile`] saying where to get it.
fn locate(dir: &Path, name: &str) -> Result<PathBuf> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if plain.is_file() {
        return Ok(plain);
    }
    if gz.is_file() {
        return Ok(gz);
    }
    Err(DataError::MissingFile {
        path: format!("{} (or {})", plain.display(), gz.display()),
        hint: format!(
            "CIFAR-100 is not in the package registries `cargo xtask data fetch` uses; download \
             cifar-100-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and \
             extract its cifar-100-binary/ folder into {}",
            dir.display()
        ),
    })
}

/// The three FC100 splits; each keeps only its classes, relabelled `0..n` in ascending order of
/// the fine label, with their names.
#[derive(Debug, Clone, PartialEq)]
pub struct Fc100 {
    /// 60 classes of [`FC100_TRAIN_SUPERCLASSES`].
    pub train: ImageSet,
    /// 20 classes of [`FC100_VAL_SUPERCLASSES`].
    pub val: ImageSet,
    /// 20 classes of [`FC100_TEST_SUPERCLASSES`].
    pub test: ImageSet,
}

/// Splits CIFAR-100 into the FC100 training, validation and test class sets by superclass
/// (see the [module documentation](self)). Images keep their order within each split.
///
/// Only classes that occur in `data` are kept, so a subset of CIFAR-100 gives smaller splits.
///
/// # Errors
/// [`DataError::InvalidParameter`] if a fine label occurs under two superclasses (the file is
/// inconsistent), [`DataError::ShapeMismatch`] if `coarse` does not have one entry per image.
pub fn fc100_split(data: &Cifar100) -> Result<Fc100> {
    let images = &data.images;
    if data.coarse.len() != images.len {
        return Err(DataError::ShapeMismatch {
            what: "coarse labels, one per image".to_string(),
            expected: images.len,
            got: data.coarse.len(),
        });
    }
    // Superclass of each fine class present.
    let mut superclass: Vec<Option<u8>> = vec![None; images.num_classes()];
    for (i, (&fine, &c)) in images.labels.iter().zip(&data.coarse).enumerate() {
        match superclass[fine as usize] {
            None => superclass[fine as usize] = Some(c),
            Some(prev) if prev != c => {
                return Err(DataError::invalid(
                    "data",
                    format!(
                        "fine label {fine} occurs under superclasses {prev} and {c} (image {i}); \
                         the coarse labels are inconsistent"
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    let split = |supers: &[u8]| -> Result<ImageSet> {
        // New label of each fine class in this split, in ascending fine-label order.
        let mut relabel: Vec<Option<u32>> = vec![None; superclass.len()];
        let mut names = Vec::new();
        for (fine, c) in superclass.iter().enumerate() {
            if c.is_some_and(|c| supers.contains(&c)) {
                relabel[fine] = Some(names.len() as u32);
                names.push(images.class_names[fine].clone());
            }
        }
        let n = images.image_len();
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for (i, &fine) in images.labels.iter().enumerate() {
            if let Some(new) = relabel[fine as usize] {
                pixels.extend_from_slice(&images.pixels[i * n..(i + 1) * n]);
                labels.push(new);
            }
        }
        ImageSet::new(
            pixels,
            labels,
            names,
            images.channels,
            images.height,
            images.width,
        )
    };
    Ok(Fc100 {
        train: split(&FC100_TRAIN_SUPERCLASSES)?,
        val: split(&FC100_VAL_SUPERCLASSES)?,
        test: split(&FC100_TEST_SUPERCLASSES)?,
    })
}
