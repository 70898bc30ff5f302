//! Omniglot (Lake, Salakhutdinov, Tenenbaum 2015) in its distributed folder layout.
//!
//! ```text
//! <root>/<alphabet>/<character>/<image>.png      e.g. images_background/Latin/character01/0001_01.png
//! ```
//!
//! `root` is one of the two official parts (`images_background`: 30 alphabets, 964 characters;
//! `images_evaluation`: 20 alphabets, 659 characters; 20 drawings of 105×105 1-bit pixels per
//! character), or a folder that contains `images_background` and/or `images_evaluation`, in
//! which case both are read, background first. Omniglot is not redistributable here; the same
//! layout is produced offline by [`crate::synthetic::write_omniglot_layout`].
//!
//! [`Omniglot::load`] returns a one-channel [`ImageSet`] with one class per character, named
//! `"<alphabet>/<character>"`. Alphabets, characters and images are taken in byte order of
//! their names, so the class indices and the image order are the same on every machine.
//! Hidden entries (names starting with `.`) are skipped, as are plain files next to alphabet
//! or character folders and files in a character folder whose extension is not `png`, `jpg` or
//! `jpeg` (any case); the images themselves are decoded by content ([`crate::image`]).
//!
//! [`rotate_classes`] adds rotated copies of every class as new classes, the usual Omniglot
//! augmentation (Santoro et al. 2016, Finn et al. 2017).

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::image::{decode_image, resize_bilinear, to_channels};
use crate::imageset::ImageSet;

/// Name of the official training part.
pub const BACKGROUND: &str = "images_background";
/// Name of the official evaluation part.
pub const EVALUATION: &str = "images_evaluation";

const FORMAT: &str = "Omniglot folder";

/// How [`Omniglot::load`] turns drawings into pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OmniglotOptions {
    /// Output `(height, width)`; images are resampled with
    /// [`crate::image::resize_bilinear`] (105×105 → 28×28 is the usual choice).
    pub size: (usize, usize),
    /// Omniglot stores black strokes on white. With `invert`, strokes become 1.0 and the
    /// background 0.0 (the usual input to few-shot networks); without it, values are as stored.
    pub invert: bool,
}

impl Default for OmniglotOptions {
    /// 28×28, strokes = 1.0.
    fn default() -> Self {
        Self {
            size: (28, 28),
            invert: true,
        }
    }
}

/// Loader of the Omniglot folder layout (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Omniglot;

/// One character folder found while scanning.
struct CharacterDir {
    class: String,
    images: Vec<PathBuf>,
}

impl Omniglot {
    /// Loads every character under `root` as one class (see the module docs for the layout).
    ///
    /// Errors: [`DataError::MissingFile`] if `root` is not a directory;
    /// [`DataError::Format`] naming the directory if `root` holds no alphabet, an alphabet holds
    /// no character folder, a character folder holds no image, or two parts hold the same
    /// alphabet; [`DataError::Image`] naming the file if an image cannot be decoded;
    /// [`DataError::InvalidParameter`] for a zero output size.
    pub fn load(root: &Path, options: OmniglotOptions) -> Result<ImageSet> {
        let (height, width) = options.size;
        if height == 0 || width == 0 {
            return Err(DataError::invalid(
                "size",
                format!("height and width must be positive, got {height}x{width}"),
            ));
        }
        let characters = Self::scan(root)?;
        let total: usize = characters.iter().map(|c| c.images.len()).sum();
        let per_image = height * width;
        let mut pixels = Vec::with_capacity(total * per_image);
        let mut labels = Vec::with_capacity(total);
        let mut class_names = Vec::with_capacity(characters.len());
        for (label, character) in characters.into_iter().enumerate() {
            for path in &character.images {
                let img = to_channels(&decode_image(path)?, 1)?;
                let img = resize_bilinear(&img, height, width)?;
                if options.invert {
                    pixels.extend(img.pixels.iter().map(|&v| 1.0 - v));
                } else {
                    pixels.extend_from_slice(&img.pixels);
                }
                labels.push(label as u32);
            }
            class_names.push(character.class);
        }
        ImageSet::new(pixels, labels, class_names, 1, height, width)
    }

    /// Class names (`"<alphabet>/<character>"`) and their image files, in load order, without
    /// decoding anything. Same errors as [`Omniglot::load`] except the image ones.
    pub fn list(root: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
        Ok(Self::scan(root)?
            .into_iter()
            .map(|c| (c.class, c.images))
            .collect())
    }

    fn scan(root: &Path) -> Result<Vec<CharacterDir>> {
        if !root.is_dir() {
            return Err(DataError::MissingFile {
                path: root.display().to_string(),
                hint: format!(
                    "expected an Omniglot folder (<root>/<alphabet>/<character>/*.png, e.g. \
                     {BACKGROUND} from images_background.zip of brendenlake/omniglot) or a \
                     folder containing {BACKGROUND} and {EVALUATION}; Omniglot is not bundled \
                     here, `bilevel_data::synthetic::write_omniglot_layout` writes a labelled \
                     synthetic substitute in the same layout"
                ),
            });
        }
        let parts: Vec<PathBuf> = [BACKGROUND, EVALUATION]
            .iter()
            .map(|p| root.join(p))
            .filter(|p| p.is_dir())
            .collect();
        if parts.is_empty() {
            return Self::scan_part(root);
        }
        let mut all: Vec<CharacterDir> = Vec::new();
        for part in &parts {
            let characters = Self::scan_part(part)?;
            if let Some(dup) = characters
                .iter()
                .find(|c| all.iter().any(|a| a.class == c.class))
            {
                return Err(DataError::format(
                    part,
                    FORMAT,
                    format!(
                        "class {} also appears in an earlier part; the background and \
                         evaluation alphabets must differ",
                        dup.class
                    ),
                ));
            }
            all.extend(characters);
        }
        Ok(all)
    }

    /// Scans one `<root>/<alphabet>/<character>/<image>` tree.
    fn scan_part(root: &Path) -> Result<Vec<CharacterDir>> {
        let alphabets = sorted_entries(root, EntryKind::Dir)?;
        if alphabets.is_empty() {
            return Err(DataError::format(
                root,
                FORMAT,
                "no alphabet folders (expected <root>/<alphabet>/<character>/<image>.png)",
            ));
        }
        let mut characters = Vec::new();
        for (alphabet, alphabet_path) in alphabets {
            let chars = sorted_entries(&alphabet_path, EntryKind::Dir)?;
            if chars.is_empty() {
                return Err(DataError::format(
                    &alphabet_path,
                    FORMAT,
                    "alphabet folder holds no character folders",
                ));
            }
            for (character, character_path) in chars {
                let images: Vec<PathBuf> = sorted_entries(&character_path, EntryKind::Image)?
                    .into_iter()
                    .map(|(_, p)| p)
                    .collect();
                if images.is_empty() {
                    return Err(DataError::format(
                        &character_path,
                        FORMAT,
                        "character folder holds no images (.png, .jpg or .jpeg)",
                    ));
                }
                characters.push(CharacterDir {
                    class: format!("{alphabet}/{character}"),
                    images,
                });
            }
        }
        Ok(characters)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    Dir,
    Image,
}

/// Non-hidden entries of `dir` of the given kind, sorted by name (byte order). Names that are
/// not valid UTF-8 are skipped.
fn sorted_entries(dir: &Path, kind: EntryKind) -> Result<Vec<(String, PathBuf)>> {
    let read = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let keep = match kind {
            EntryKind::Dir => path.is_dir(),
            EntryKind::Image => {
                path.is_file()
                    && path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        ["png", "jpg", "jpeg"]
                            .iter()
                            .any(|x| e.eq_ignore_ascii_case(x))
                    })
            }
        };
        if keep {
            out.push((name, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Returns `set` followed by rotated copies of all its images, each rotation of each class a
/// new class (named `"<class>/rot<angle>"`).
///
/// Angles are counter-clockwise degrees among 90, 180 and 270 (0 would duplicate the classes
/// and is rejected like any other angle, as are repeats). For an original class `c` of `n`
/// classes and the `r`-th angle, the new label is `(r + 1) * n + c`; images come in the order
/// original, then all classes at the first angle, and so on. 90 and 270 need square images.
pub fn rotate_classes(set: &ImageSet, angles: &[u32]) -> Result<ImageSet> {
    for (i, &a) in angles.iter().enumerate() {
        if !matches!(a, 90 | 180 | 270) {
            return Err(DataError::invalid(
                "angles",
                format!("each angle must be 90, 180 or 270 degrees, got {a}"),
            ));
        }
        if angles[..i].contains(&a) {
            return Err(DataError::invalid(
                "angles",
                format!("angle {a} is listed twice"),
            ));
        }
        if a != 180 && set.height != set.width {
            return Err(DataError::invalid(
                "angles",
                format!(
                    "a {a}° rotation needs square images, these are {}x{}",
                    set.height, set.width
                ),
            ));
        }
    }
    let n = set.num_classes();
    let copies = angles.len() + 1;
    let mut pixels = Vec::with_capacity(set.pixels.len() * copies);
    let mut labels = Vec::with_capacity(set.len * copies);
    let mut class_names = Vec::with_capacity(n * copies);
    pixels.extend_from_slice(&set.pixels);
    labels.extend_from_slice(&set.labels);
    class_names.extend(set.class_names.iter().cloned());
    let (h, w) = (set.height, set.width);
    let plane = h * w;
    for (r, &angle) in angles.iter().enumerate() {
        let offset = ((r + 1) * n) as u32;
        class_names.extend(set.class_names.iter().map(|c| format!("{c}/rot{angle}")));
        labels.extend(set.labels.iter().map(|&l| l + offset));
        for plane_px in set.pixels.chunks_exact(plane) {
            // Output (y, x) reads input at the inverse rotation (counter-clockwise rotation).
            for y in 0..h {
                for x in 0..w {
                    let (sy, sx) = match angle {
                        90 => (x, w - 1 - y),
                        180 => (h - 1 - y, w - 1 - x),
                        _ => (h - 1 - x, y),
                    };
                    pixels.push(plane_px[sy * w + sx]);
                }
            }
        }
    }
    ImageSet::new(pixels, labels, class_names, set.channels, h, w)
}
