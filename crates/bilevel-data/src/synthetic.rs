//! `synthetic-glyphs`: an offline, procedurally generated few-shot image set in the Omniglot
//! folder layout.
//!
//! Omniglot and miniImageNet cannot be obtained here (`README.md`, "Data"), so the meta-learning
//! experiments run on this **labelled substitute**. It is not Omniglot: no glyph comes from a
//! real alphabet, and results on it are not comparable with published Omniglot or
//! miniImageNet numbers; it exercises the same code paths (folder loader, episode sampler,
//! few-shot training) on a task with the same structure — many classes, few examples each,
//! classes at test time unseen in training.
//!
//! # How it is built
//! - **Classes.** `alphabets × characters_per_alphabet` "characters" (default 10 × 20 = 200
//!   classes). Character `k` (global index, alphabet-major) draws from a `ChaCha8Rng` seeded
//!   with `seed` and set to stream `k`: 2–4 strokes, each a cubic Bézier curve whose 4 control
//!   points are uniform in `[0.2, 0.8]²` of the unit square; the glyph is then centred and
//!   scaled so that its longer side spans 60 % of the frame. The strokes are fixed per class.
//! - **Instances.** `instances_per_character` drawings per class (default 20, like Omniglot's
//!   20 drawers; 4 000 images by default), drawn in order from the same stream. Each applies,
//!   about the centre, a random affine distortion — rotation uniform in ±12°, scale uniform in
//!   `[0.85, 1.15]`, horizontal shear uniform in ±0.15, translation uniform in ±10 % of the
//!   size on each axis — after adding independent Gaussian jitter (σ = 0.03 of the size) to
//!   every control point.
//! - **Rendering.** Each curve is flattened into 24 segments and drawn with a round pen of
//!   width 2.5 px at 28 px (scaled with `size`), anti-aliased by coverage
//!   `clamp(r + ½ − d, 0, 1)` of each pixel centre at distance `d` from the stroke; strokes
//!   combine by maximum. Images are `size × size`, one channel.
//!
//! [`generate`] returns the images in memory with strokes = 1.0 on a 0.0 background (what
//! [`crate::omniglot::Omniglot::load`] returns with `invert: true`), classes named
//! `"synthetic-alphabet-NN/character-MM"`. [`write_omniglot_layout`] writes the same images as
//! 8-bit greyscale PNGs, dark strokes on white like Omniglot:
//!
//! ```text
//! <root>/synthetic-alphabet-NN/character-MM/MMMM_II.png     (NN, MM, II from 01; MMMM = global
//! <root>/SYNTHETIC-GLYPHS.txt                                  character number from 0001)
//! ```
//!
//! so that `Omniglot::load(root, OmniglotOptions { size: (s, s), invert: true })` reads back
//! the same pixels up to the 8-bit quantisation (≤ 1/510).
//!
//! Same spec, same images: all randomness comes from the seed (the only platform dependence is
//! the last bit of `sin`/`cos`/`ln`, which may move an anti-aliased value by an ulp).

use std::f64::consts::PI;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{DataError, Result};
use crate::image::encode_png_grey;
use crate::imageset::ImageSet;

/// Name of the data set, used in file names and provenance.
pub const NAME: &str = "synthetic-glyphs";

/// Name of the description file [`write_omniglot_layout`] puts in the root folder.
pub const README_NAME: &str = "SYNTHETIC-GLYPHS.txt";

/// Maximum rotation of an instance, degrees.
pub const MAX_ROTATION_DEG: f64 = 12.0;
/// Scale range of an instance.
pub const SCALE_RANGE: (f64, f64) = (0.85, 1.15);
/// Maximum absolute horizontal shear of an instance.
pub const MAX_SHEAR: f64 = 0.15;
/// Maximum translation of an instance on each axis, as a fraction of the size.
pub const MAX_TRANSLATION: f64 = 0.10;
/// Standard deviation of the per-control-point jitter, as a fraction of the size.
pub const JITTER_SIGMA: f64 = 0.03;
/// Pen width in pixels at a 28-pixel image (scaled linearly with the size).
pub const PEN_WIDTH_AT_28: f64 = 2.5;
/// Longer side of a class's undistorted glyph, as a fraction of the image side.
pub const GLYPH_EXTENT: f64 = 0.6;
/// Line segments per Bézier curve when rendering.
pub const SEGMENTS_PER_CURVE: usize = 24;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyntheticGlyphsSpec {
    /// Groups of characters (folders `synthetic-alphabet-NN`).
    pub alphabets: usize,
    /// Characters (classes) per alphabet.
    pub characters_per_alphabet: usize,
    /// Drawings per character.
    pub instances_per_character: usize,
    /// Side of the square images, pixels (8 to 1024).
    pub size: usize,
    /// Seed of everything.
    pub seed: u64,
}

impl Default for SyntheticGlyphsSpec {
    /// 10 alphabets × 20 characters × 20 instances of 28×28, seed 0.
    fn default() -> Self {
        Self {
            alphabets: 10,
            characters_per_alphabet: 20,
            instances_per_character: 20,
            size: 28,
            seed: 0,
        }
    }
}

impl SyntheticGlyphsSpec {
    /// Number of classes (`alphabets * characters_per_alphabet`).
    pub fn num_classes(&self) -> usize {
        self.alphabets.saturating_mul(self.characters_per_alphabet)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.num_classes()
            .saturating_mul(self.instances_per_character)
    }

    /// Whether the spec describes no image (it is then also invalid).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks every field; errors name the offending one.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("alphabets", self.alphabets),
            ("characters_per_alphabet", self.characters_per_alphabet),
            ("instances_per_character", self.instances_per_character),
        ] {
            if value == 0 {
                return Err(DataError::invalid(name, "at least 1"));
            }
        }
        if !(8..=1024).contains(&self.size) {
            return Err(DataError::invalid(
                "size",
                format!("between 8 and 1024 pixels, got {}", self.size),
            ));
        }
        let pixels = self
            .alphabets
            .checked_mul(self.characters_per_alphabet)
            .and_then(|n| n.checked_mul(self.instances_per_character))
            .and_then(|n| n.checked_mul(self.size * self.size));
        if self.num_classes() > u32::MAX as usize || pixels.is_none() {
            return Err(DataError::invalid(
                "alphabets",
                "the spec describes more images than can be addressed",
            ));
        }
        Ok(())
    }

    /// Folder name of alphabet `a` (from 0): `synthetic-alphabet-NN`, numbered from 01.
    pub fn alphabet_dir(&self, a: usize) -> String {
        format!(
            "synthetic-alphabet-{:0w$}",
            a + 1,
            w = digits(self.alphabets).max(2)
        )
    }

    /// Folder name of character `c` (from 0) within its alphabet: `character-MM`, from 01.
    pub fn character_dir(&self, c: usize) -> String {
        format!(
            "character-{:0w$}",
            c + 1,
            w = digits(self.characters_per_alphabet).max(2)
        )
    }

    /// Class name of character `c` of alphabet `a`: `"<alphabet_dir>/<character_dir>"`, the
    /// name [`crate::omniglot::Omniglot::load`] gives it.
    pub fn class_name(&self, a: usize, c: usize) -> String {
        format!("{}/{}", self.alphabet_dir(a), self.character_dir(c))
    }

    /// File name of instance `i` (from 0) of the class with global index `k` (from 0):
    /// `MMMM_II.png` with `MMMM = k + 1`, `II = i + 1`.
    pub fn file_name(&self, k: usize, i: usize) -> String {
        format!(
            "{:0kw$}_{:0iw$}.png",
            k + 1,
            i + 1,
            kw = digits(self.num_classes()).max(4),
            iw = digits(self.instances_per_character).max(2)
        )
    }
}

fn digits(n: usize) -> usize {
    n.max(1).ilog10() as usize + 1
}

type Point = (f64, f64);

/// A cubic Bézier curve, control points in unit-square coordinates (x right, y down).
type Curve = [Point; 4];

/// Uniform in `[lo, hi)`.
fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// Standard normal by Box–Muller (one draw, the cosine branch).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

/// The strokes of one class: 2–4 random cubic Béziers, then moved and scaled (Bézier curves
/// are affine-invariant, so the control points are) so that the drawn glyph is centred with
/// its longer side [`GLYPH_EXTENT`] of the frame, as a character drawn in a box.
fn class_strokes(rng: &mut ChaCha8Rng) -> Vec<Curve> {
    let n = rng.random_range(2..=4);
    let mut strokes: Vec<Curve> = (0..n)
        .map(|_| {
            let mut curve = [(0.0, 0.0); 4];
            for p in &mut curve {
                *p = (uniform(rng, 0.2, 0.8), uniform(rng, 0.2, 0.8));
            }
            curve
        })
        .collect();
    let (mut lo, mut hi) = ((f64::MAX, f64::MAX), (f64::MIN, f64::MIN));
    for curve in &strokes {
        for i in 0..=SEGMENTS_PER_CURVE {
            let (x, y) = bezier(curve, i as f64 / SEGMENTS_PER_CURVE as f64);
            lo = (lo.0.min(x), lo.1.min(y));
            hi = (hi.0.max(x), hi.1.max(y));
        }
    }
    let extent = (hi.0 - lo.0).max(hi.1 - lo.1);
    let k = if extent > 1e-9 {
        GLYPH_EXTENT / extent
    } else {
        1.0
    };
    let centre = ((lo.0 + hi.0) / 2.0, (lo.1 + hi.1) / 2.0);
    for curve in &mut strokes {
        for p in curve {
            *p = (0.5 + k * (p.0 - centre.0), 0.5 + k * (p.1 - centre.1));
        }
    }
    strokes
}

/// The class's strokes under one random distortion, in unit coordinates.
fn distort(strokes: &[Curve], rng: &mut ChaCha8Rng) -> Vec<Curve> {
    let theta = uniform(rng, -MAX_ROTATION_DEG, MAX_ROTATION_DEG).to_radians();
    let scale = uniform(rng, SCALE_RANGE.0, SCALE_RANGE.1);
    let shear = uniform(rng, -MAX_SHEAR, MAX_SHEAR);
    let tx = uniform(rng, -MAX_TRANSLATION, MAX_TRANSLATION);
    let ty = uniform(rng, -MAX_TRANSLATION, MAX_TRANSLATION);
    let (sin, cos) = theta.sin_cos();
    strokes
        .iter()
        .map(|curve| {
            let mut out = *curve;
            for p in &mut out {
                let jx = p.0 + JITTER_SIGMA * normal(rng) - 0.5;
                let jy = p.1 + JITTER_SIGMA * normal(rng) - 0.5;
                // Shear, then scale, then rotate, about the centre; then translate.
                let (sx, sy) = ((jx + shear * jy) * scale, jy * scale);
                *p = (
                    0.5 + tx + cos * sx - sin * sy,
                    0.5 + ty + sin * sx + cos * sy,
                );
            }
            out
        })
        .collect()
}

fn bezier(c: &Curve, t: f64) -> Point {
    let u = 1.0 - t;
    let (a, b, cc, d) = (u * u * u, 3.0 * u * u * t, 3.0 * u * t * t, t * t * t);
    (
        a * c[0].0 + b * c[1].0 + cc * c[2].0 + d * c[3].0,
        a * c[0].1 + b * c[1].1 + cc * c[2].1 + d * c[3].1,
    )
}

/// Distance from `p` to the segment `a`–`b`.
fn segment_distance(p: Point, a: Point, b: Point) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (cx, cy) = (a.0 + t * dx - p.0, a.1 + t * dy - p.1);
    (cx * cx + cy * cy).sqrt()
}

/// Renders curves (unit coordinates) into a `size × size` ink image (stroke = 1).
fn render(curves: &[Curve], size: usize, out: &mut [f32]) {
    out.iter_mut().for_each(|v| *v = 0.0);
    let s = size as f64;
    let radius = 0.5 * PEN_WIDTH_AT_28 * s / 28.0;
    let reach = radius + 0.5;
    for curve in curves {
        let points: Vec<Point> = (0..=SEGMENTS_PER_CURVE)
            .map(|i| {
                let (x, y) = bezier(curve, i as f64 / SEGMENTS_PER_CURVE as f64);
                (x * s, y * s)
            })
            .collect();
        for seg in points.windows(2) {
            let (a, b) = (seg[0], seg[1]);
            // Pixel centres (x + 0.5, y + 0.5) within `reach` of the segment's bounding box.
            let x0 = (a.0.min(b.0) - reach - 0.5).floor().max(0.0) as usize;
            let x1 = ((a.0.max(b.0) + reach - 0.5).ceil().max(-1.0) + 1.0).min(s) as usize;
            let y0 = (a.1.min(b.1) - reach - 0.5).floor().max(0.0) as usize;
            let y1 = ((a.1.max(b.1) + reach - 0.5).ceil().max(-1.0) + 1.0).min(s) as usize;
            for y in y0..y1 {
                for x in x0..x1 {
                    let d = segment_distance((x as f64 + 0.5, y as f64 + 0.5), a, b);
                    let ink = (reach - d).clamp(0.0, 1.0) as f32;
                    let px = &mut out[y * size + x];
                    if ink > *px {
                        *px = ink;
                    }
                }
            }
        }
    }
}

/// Renders every instance of class `k` (global index), calling `emit(i, pixels)` for each.
fn for_each_instance(
    spec: &SyntheticGlyphsSpec,
    k: usize,
    mut emit: impl FnMut(usize, &[f32]) -> Result<()>,
) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    rng.set_stream(k as u64);
    let strokes = class_strokes(&mut rng);
    let mut pixels = vec![0f32; spec.size * spec.size];
    for i in 0..spec.instances_per_character {
        let curves = distort(&strokes, &mut rng);
        render(&curves, spec.size, &mut pixels);
        emit(i, &pixels)?;
    }
    Ok(())
}

/// Generates the set in memory: `spec.len()` one-channel `size × size` images, strokes 1.0 on
/// 0.0, ordered class by class (alphabet-major), labels = global character index, class names
/// as [`SyntheticGlyphsSpec::class_name`]. Errors if the spec is invalid.
pub fn generate(spec: &SyntheticGlyphsSpec) -> Result<ImageSet> {
    spec.validate()?;
    let per_image = spec.size * spec.size;
    let mut pixels = Vec::with_capacity(spec.len() * per_image);
    let mut labels = Vec::with_capacity(spec.len());
    let mut class_names = Vec::with_capacity(spec.num_classes());
    for a in 0..spec.alphabets {
        for c in 0..spec.characters_per_alphabet {
            let k = a * spec.characters_per_alphabet + c;
            class_names.push(spec.class_name(a, c));
            for_each_instance(spec, k, |_, img| {
                pixels.extend_from_slice(img);
                labels.push(k as u32);
                Ok(())
            })?;
        }
    }
    ImageSet::new(pixels, labels, class_names, 1, spec.size, spec.size)
}

/// Writes the set under `root` in the Omniglot folder layout (see the module docs): 8-bit
/// greyscale PNGs, dark strokes on a white background, plus a description file
/// [`README_NAME`]. Folders are created as needed; existing files of the same names are
/// overwritten, other files are left alone. Errors: invalid spec, or [`DataError::Io`] naming
/// the path that could not be written.
pub fn write_omniglot_layout(spec: &SyntheticGlyphsSpec, root: &Path) -> Result<()> {
    spec.validate()?;
    std::fs::create_dir_all(root).map_err(|e| DataError::io(root, e))?;
    let readme = root.join(README_NAME);
    let text = format!(
        "{NAME}: a procedurally generated, labelled substitute for Omniglot (NOT Omniglot).\n\
         Generated by bilevel-data (crate bilevel_data::synthetic) with\n\
         alphabets = {}\ncharacters_per_alphabet = {}\ninstances_per_character = {}\n\
         size = {}\nseed = {}\n\
         Layout: <alphabet>/<character>/<character number>_<instance>.png, 8-bit grey, dark \
         strokes on white.\n",
        spec.alphabets,
        spec.characters_per_alphabet,
        spec.instances_per_character,
        spec.size,
        spec.seed
    );
    std::fs::write(&readme, text).map_err(|e| DataError::io(&readme, e))?;
    let mut paper = vec![0f32; spec.size * spec.size];
    for a in 0..spec.alphabets {
        let alphabet_dir = root.join(spec.alphabet_dir(a));
        for c in 0..spec.characters_per_alphabet {
            let dir = alphabet_dir.join(spec.character_dir(c));
            std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
            let k = a * spec.characters_per_alphabet + c;
            for_each_instance(spec, k, |i, img| {
                for (p, &ink) in paper.iter_mut().zip(img) {
                    *p = 1.0 - ink;
                }
                encode_png_grey(
                    &dir.join(spec.file_name(k, i)),
                    &paper,
                    spec.size,
                    spec.size,
                )
            })?;
        }
    }
    Ok(())
}
