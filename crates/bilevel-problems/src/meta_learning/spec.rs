//! The `[problem]` table of `kind = "meta-learning"` ([`MetaLearningSpec`]) and its data:
//! the meta-train and meta-test image sets.

use std::path::{Path, PathBuf};

use bilevel_data::miniimagenet::FewShotSplit;
use bilevel_data::omniglot::{BACKGROUND, EVALUATION};
use bilevel_data::synthetic::{self, SyntheticGlyphsSpec};
use bilevel_data::{
    fc100_split, Cifar100, DataError, ImageSet, MiniImageNet, Omniglot, OmniglotOptions,
};
use burn::tensor::backend::Backend;

use super::MetaLearning;
use crate::common::{check_count, check_positive};
use crate::error::{ProblemError, Result};
use crate::hyper_cleaning_cnn::PoolSpec;

/// Where the episodes come from (`dataset = "synthetic-glyphs" | "digits" | "omniglot" |
/// "miniimagenet" | "fc100"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FewShotDataset {
    /// Procedurally generated glyphs (labelled substitute for Omniglot / miniImageNet).
    #[default]
    #[serde(rename = "synthetic-glyphs")]
    SyntheticGlyphs,
    /// Real handwritten digits: scikit-learn's `digits` (UCI optical recognition, 1 797 images
    /// of 8×8, 10 classes; `cargo xtask data fetch digits`), upsampled bilinearly to
    /// `image_size` (default 16). Classes 0–4 are the meta-train classes, 5–9 the meta-test
    /// classes, so `n_way ≤ 5`.
    #[serde(rename = "digits")]
    Digits,
    /// Omniglot folder layout (not obtainable offline).
    #[serde(rename = "omniglot")]
    Omniglot,
    /// miniImageNet, Ravi & Larochelle layout (not obtainable offline).
    #[serde(rename = "miniimagenet")]
    MiniImageNet,
    /// FC100 from CIFAR-100 binary (not obtainable offline).
    #[serde(rename = "fc100")]
    Fc100,
}

impl FewShotDataset {
    /// The `dataset` key's value.
    pub fn name(self) -> &'static str {
        match self {
            Self::SyntheticGlyphs => "synthetic-glyphs",
            Self::Digits => "digits",
            Self::Omniglot => "omniglot",
            Self::MiniImageNet => "miniimagenet",
            Self::Fc100 => "fc100",
        }
    }

    /// Image channels (1 for glyphs / Omniglot, 3 otherwise).
    pub fn channels(self) -> usize {
        match self {
            Self::SyntheticGlyphs | Self::Digits | Self::Omniglot => 1,
            Self::MiniImageNet | Self::Fc100 => 3,
        }
    }

    /// Default image side: 28 (glyphs, Omniglot), 16 (digits, upsampled from 8), 84
    /// (miniImageNet), 32 (FC100).
    pub fn default_size(self) -> usize {
        match self {
            Self::SyntheticGlyphs | Self::Omniglot => 28,
            Self::Digits => 16,
            Self::MiniImageNet => 84,
            Self::Fc100 => 32,
        }
    }

    /// Folder name under the data folder.
    fn folder(self) -> &'static str {
        match self {
            Self::SyntheticGlyphs => synthetic::NAME,
            Self::Digits => bilevel_data::tabular::DIGITS,
            Self::Omniglot => "omniglot",
            Self::MiniImageNet => "miniimagenet",
            Self::Fc100 => "cifar-100-binary",
        }
    }
}

/// The backbone `x` (`backbone = "cnn4" | "resnet12"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackboneKind {
    /// CNN4 / Conv-4 with `filters` channels per block.
    #[default]
    Cnn4,
    /// ResNet-12 with `channels` per residual block (DropBlock omitted).
    Resnet12,
}

/// Which parameters the upper and lower levels hold (`adapt = "heads" | "anil" | "maml"`; see
/// the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Adapt {
    /// `x = φ`, `y` = one head per task (from zero heads): the bilevel papers' formulation.
    #[default]
    Heads,
    /// `x = (φ, w₀)`, `y` = one head per task, adapted from `w₀` (ANIL).
    Anil,
    /// `x = θ = (φ, w₀)`, `y` = one copy of `θ` per task, adapted from `θ` (MAML).
    Maml,
}

impl Adapt {
    /// The `adapt` key's value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Heads => "heads",
            Self::Anil => "anil",
            Self::Maml => "maml",
        }
    }
}

/// The `[problem]` table of `kind = "meta-learning"`. Every field is optional; defaults: 5-way
/// 5-shot, 15 queries per class, 100 training tasks, CNN4 (64 filters, max pooling) on
/// synthetic glyphs at 28×28.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaLearningSpec {
    /// Data set (default `"synthetic-glyphs"`).
    pub dataset: FewShotDataset,
    /// Root of the real data set; default `<data_dir>/{omniglot, miniimagenet,
    /// cifar-100-binary}`. Unused for synthetic glyphs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_dir: Option<PathBuf>,
    /// Classes per episode `N` (default 5, at least 2).
    pub n_way: usize,
    /// Support images per class `K` (default 5).
    pub k_shot: usize,
    /// Query images per class (default 15).
    pub n_query: usize,
    /// Training episodes in the fixed pool `m` (default 100): `y` holds `m` heads.
    pub tasks: usize,
    /// Backbone (default `"cnn4"`).
    pub backbone: BackboneKind,
    /// CNN4 channels per block (default 64).
    pub filters: usize,
    /// ResNet-12 channels of the four residual blocks (default `[64, 160, 320, 640]`).
    pub channels: [usize; 4],
    /// Pooling of the backbone blocks (default `"max"`).
    pub pool: PoolSpec,
    /// Image side (at least 16); default 28 (glyphs, Omniglot), 84 (miniImageNet), 32 (FC100,
    /// which only allows 32).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size: Option<usize>,
    /// `λ > 0` of the head regulariser `(λ/2)‖w_i‖²` (default 0.1).
    pub reg: f64,
    /// Layout of the upper and lower variables (default `"heads"`; `"anil"` and `"maml"` for
    /// the methods of those names).
    pub adapt: Adapt,
    /// Meta-test episodes of `test_accuracy` (default 100).
    pub eval_episodes: usize,
    /// Accelerated gradient steps of the test-time head fit (default 200).
    pub head_steps: usize,
    /// Synthetic glyphs: alphabets (default 10).
    pub glyph_alphabets: usize,
    /// Synthetic glyphs: characters (classes) per alphabet (default 20).
    pub glyph_characters: usize,
    /// Synthetic glyphs: drawings per character (default 20).
    pub glyph_instances: usize,
    /// Synthetic glyphs: how many of the alphabets (the last ones) are meta-test classes
    /// (default 3).
    pub glyph_test_alphabets: usize,
}

impl Default for MetaLearningSpec {
    fn default() -> Self {
        Self {
            dataset: FewShotDataset::SyntheticGlyphs,
            dataset_dir: None,
            n_way: 5,
            k_shot: 5,
            n_query: 15,
            tasks: 100,
            backbone: BackboneKind::Cnn4,
            filters: 64,
            channels: [64, 160, 320, 640],
            pool: PoolSpec::Max,
            image_size: None,
            reg: 0.1,
            adapt: Adapt::Heads,
            eval_episodes: 100,
            head_steps: 200,
            glyph_alphabets: 10,
            glyph_characters: 20,
            glyph_instances: 20,
            glyph_test_alphabets: 3,
        }
    }
}

impl MetaLearningSpec {
    /// The image side used: `image_size` or the data set's default.
    pub fn side(&self) -> usize {
        self.image_size
            .unwrap_or_else(|| self.dataset.default_size())
    }

    /// Checks every field's range (no data is read).
    pub fn validate(&self) -> Result<()> {
        if !(2..=1000).contains(&self.n_way) {
            return Err(ProblemError::config(
                "n_way",
                format!(
                    "must be between 2 and 1000, got {}; the default is 5",
                    self.n_way
                ),
            ));
        }
        check_count("k_shot", self.k_shot, 10_000, 5)?;
        check_count("n_query", self.n_query, 10_000, 15)?;
        check_count("tasks", self.tasks, 10_000_000, 100)?;
        check_count("filters", self.filters, 4096, 64)?;
        if let Some(&c) = self.channels.iter().find(|&&c| c == 0 || c > 4096) {
            return Err(ProblemError::config(
                "channels",
                format!(
                    "every block needs between 1 and 4096 channels, got {c} in {:?}; the \
                     default is [64, 160, 320, 640]",
                    self.channels
                ),
            ));
        }
        let side = self.side();
        if !(16..=1024).contains(&side) {
            return Err(ProblemError::config(
                "image_size",
                format!(
                    "must be between 16 and 1024 (four 2×2 poolings), got {side}; the default \
                     is {}",
                    self.dataset.default_size()
                ),
            ));
        }
        if self.dataset == FewShotDataset::Digits && self.n_way > DIGITS_SPLIT {
            return Err(ProblemError::config(
                "n_way",
                format!(
                    "digits has {DIGITS_SPLIT} meta-test classes (5–9), so at most \
                     {DIGITS_SPLIT}-way episodes, got n_way = {}",
                    self.n_way
                ),
            ));
        }
        if self.dataset == FewShotDataset::Fc100 && side != 32 {
            return Err(ProblemError::config(
                "image_size",
                format!("FC100 images are 32×32, got image_size = {side}"),
            ));
        }
        check_positive("reg", self.reg, false, 0.1)?;
        check_count("eval_episodes", self.eval_episodes, 1_000_000, 100)?;
        check_count("head_steps", self.head_steps, 1_000_000, 200)?;
        check_count("glyph_alphabets", self.glyph_alphabets, 10_000, 10)?;
        check_count("glyph_characters", self.glyph_characters, 10_000, 20)?;
        check_count("glyph_instances", self.glyph_instances, 10_000, 20)?;
        if self.glyph_alphabets >= 2 {
            check_count(
                "glyph_test_alphabets",
                self.glyph_test_alphabets,
                self.glyph_alphabets - 1,
                3,
            )?;
        } else {
            return Err(ProblemError::config(
                "glyph_alphabets",
                "needs at least 2 alphabets: meta-train and meta-test classes come from \
                 different alphabets; the default is 10",
            ));
        }
        Ok(())
    }

    /// The root folder of a real data set: `dataset_dir`, else `<data_dir>/<folder>` with
    /// `data_dir` defaulting to [`bilevel_data::registry::data_dir`].
    pub fn resolve_dataset_dir(&self, data_dir: Option<&Path>) -> PathBuf {
        self.dataset_dir.clone().unwrap_or_else(|| {
            data_dir
                .map(Path::to_path_buf)
                .unwrap_or_else(bilevel_data::registry::data_dir)
                .join(self.dataset.folder())
        })
    }

    /// Meta-train and meta-test image sets (disjoint classes), and a description of the source.
    pub fn load_sets(
        &self,
        seed: u64,
        data_dir: Option<&Path>,
    ) -> Result<(ImageSet, ImageSet, String)> {
        self.validate()?;
        let side = self.side();
        if self.dataset == FewShotDataset::SyntheticGlyphs {
            let glyphs = SyntheticGlyphsSpec {
                alphabets: self.glyph_alphabets,
                characters_per_alphabet: self.glyph_characters,
                instances_per_character: self.glyph_instances,
                size: side,
                seed,
            };
            let set = synthetic::generate(&glyphs)?;
            // Classes are alphabet-major: the last alphabets are the meta-test classes.
            let first_test =
                (self.glyph_alphabets - self.glyph_test_alphabets) * self.glyph_characters;
            let (train, test) = split_classes(&set, first_test)?;
            let source = format!(
                "synthetic glyphs (substitute for Omniglot / miniImageNet; bilevel_data::synthetic, \
                 seed {seed}): {} alphabets × {} characters × {} drawings, {side}×{side}; \
                 meta-train = first {} alphabets ({} classes), meta-test = last {} ({} classes)",
                self.glyph_alphabets,
                self.glyph_characters,
                self.glyph_instances,
                self.glyph_alphabets - self.glyph_test_alphabets,
                train.num_classes(),
                self.glyph_test_alphabets,
                test.num_classes()
            );
            return Ok((train, test, source));
        }
        let root = self.resolve_dataset_dir(data_dir);
        if self.dataset == FewShotDataset::Digits {
            let set = digits_images(&root, side)?;
            let (train, test) = split_classes(&set, DIGITS_SPLIT)?;
            let source = format!(
                "digits (real handwritten digits, scikit-learn's load_digits / UCI optical \
                 recognition, {} images of 8×8 upsampled bilinearly to {side}×{side}, from {}): \
                 meta-train = digits 0–4 ({} images), meta-test = digits 5–9 ({} images)",
                set.len,
                root.display(),
                train.len,
                test.len
            );
            return Ok((train, test, source));
        }
        let missing = |path: PathBuf, what: &str| -> ProblemError {
            ProblemError::Data(DataError::MissingFile {
                path: path.display().to_string(),
                hint: format!(
                    "{} is not bundled and cannot be obtained offline in this environment \
                     (see README.md, \"Data\"; no package registry carries it): {what}, set \
                     `dataset_dir`, or use dataset = \"synthetic-glyphs\" (the default, \
                     generated in memory)",
                    self.dataset.name()
                ),
            })
        };
        let (train, test) = match self.dataset {
            FewShotDataset::SyntheticGlyphs | FewShotDataset::Digits => {
                unreachable!("handled above")
            }
            FewShotDataset::Omniglot => {
                let options = OmniglotOptions {
                    size: (side, side),
                    invert: true,
                };
                let (bg, ev) = (root.join(BACKGROUND), root.join(EVALUATION));
                for dir in [&bg, &ev] {
                    if !dir.is_dir() {
                        return Err(missing(
                            dir.clone(),
                            &format!(
                                "place the official {BACKGROUND}/ and {EVALUATION}/ folders \
                                 (brendenlake/omniglot) under {}",
                                root.display()
                            ),
                        ));
                    }
                }
                (Omniglot::load(&bg, options)?, Omniglot::load(&ev, options)?)
            }
            FewShotDataset::MiniImageNet => {
                for split in [FewShotSplit::Train, FewShotSplit::Test] {
                    let csv = root.join(split.csv_name());
                    if !csv.is_file() {
                        return Err(missing(
                            csv,
                            &format!(
                                "prepare {}/{{train,val,test}}.csv and images/ with the Ravi & \
                                 Larochelle split",
                                root.display()
                            ),
                        ));
                    }
                }
                (
                    MiniImageNet::load_split(&root, FewShotSplit::Train, (side, side))?,
                    MiniImageNet::load_split(&root, FewShotSplit::Test, (side, side))?,
                )
            }
            FewShotDataset::Fc100 => {
                if !root.is_dir() {
                    return Err(missing(
                        root.clone(),
                        &format!(
                            "download cifar-100-binary.tar.gz from \
                             https://www.cs.toronto.edu/~kriz/cifar.html and extract its \
                             cifar-100-binary/ folder to {}",
                            root.display()
                        ),
                    ));
                }
                let split = fc100_split(&Cifar100::load_merged(&root)?)?;
                (split.train, split.test)
            }
        };
        let source = format!(
            "{} from {} ({} meta-train classes, {} meta-test classes, {side}×{side})",
            self.dataset.name(),
            root.display(),
            train.num_classes(),
            test.num_classes()
        );
        Ok((train, test, source))
    }

    /// Loads (or generates) the data and builds the problem.
    pub fn build<B: Backend>(
        &self,
        seed: u64,
        data_dir: Option<&Path>,
        device: &B::Device,
    ) -> Result<MetaLearning<B>> {
        let (train, test, source) = self.load_sets(seed, data_dir)?;
        MetaLearning::from_sets(self, &train, &test, source, seed, device)
    }
}

/// The first meta-test class of `digits` (classes 0–4 meta-train, 5–9 meta-test).
const DIGITS_SPLIT: usize = 5;

/// scikit-learn's digits as a one-channel image set of side `side` (bilinear upsampling).
fn digits_images(root: &Path, side: usize) -> Result<ImageSet> {
    let raw = bilevel_data::digits(root)?;
    let mut pixels = Vec::with_capacity(raw.len * side * side);
    for plane in raw.images.chunks_exact(raw.rows * raw.cols) {
        let image = bilevel_data::image::DecodedImage::new(plane.to_vec(), 1, raw.rows, raw.cols)?;
        let resized = bilevel_data::image::resize_bilinear(&image, side, side)?;
        pixels.extend_from_slice(&resized.pixels);
    }
    let labels = raw.labels.iter().map(|&l| u32::from(l)).collect();
    let names = (0..10).map(|d| format!("digit {d}")).collect();
    Ok(ImageSet::new(pixels, labels, names, 1, side, side)?)
}

/// Splits `set` into classes `< first_test` and the rest, each relabelled from 0.
fn split_classes(set: &ImageSet, first_test: usize) -> Result<(ImageSet, ImageSet)> {
    let part = |keep: &dyn Fn(usize) -> bool, offset: usize| -> Result<ImageSet> {
        let n = set.image_len();
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for (i, &l) in set.labels.iter().enumerate() {
            if keep(l as usize) {
                pixels.extend_from_slice(&set.pixels[i * n..(i + 1) * n]);
                labels.push(l - offset as u32);
            }
        }
        let names = set
            .class_names
            .iter()
            .enumerate()
            .filter(|(c, _)| keep(*c))
            .map(|(_, name)| name.clone())
            .collect();
        Ok(ImageSet::new(
            pixels,
            labels,
            names,
            set.channels,
            set.height,
            set.width,
        )?)
    };
    Ok((
        part(&|c| c < first_test, 0)?,
        part(&|c| c >= first_test, first_test)?,
    ))
}
