//! `meta-learning`: few-shot meta-learning with a shared embedding and per-task linear heads
//! (paper 004 §5.1, eq. (11); paper 000 §4.3; paper 002 §7.2; Franceschi et al. 2018's
//! hyper-representation; `docs/REPRODUCTION.md` `meta-learning`).
//!
//! A fixed pool of `m = tasks` N-way K-shot training episodes `T_i = (S_i, D_i)` (support `S_i`,
//! query `D_i`) is drawn once from the meta-training classes. The upper variable is the
//! backbone `x = φ` (CNN4 or ResNet-12, [`bilevel_models::cnn4`], [`bilevel_models::resnet12`]),
//! the lower variable the concatenation `y = (w_1, …, w_m)` of one linear head
//! `w_i = (W_i, b_i)`, `W_i ∈ ℝ^{d×N}` row-major then `b_i ∈ ℝ^N`, per task:
//!
//! `g(φ, w; B) = (1/|B|) Σ_{i∈B} [ CE_{S_i}(φ, w_i) + (λ/2) ‖w_i‖² ]`,
//! `f(φ, w; B) = (1/|B|) Σ_{i∈B} CE_{D_i}(φ, w_i)`,
//!
//! `CE_S(φ, w) = (1/|S|) Σ_{(a, c)∈S} CE(φ(a)ᵀ W + b, c)` with the episode labels `c ∈ 0..N`.
//! A [`Batch::Indices`] selects *tasks* (`inner_len = outer_len = tasks`); the lower level is
//! separable, so `∇_y g` of a task batch is zero — exactly — outside the batch's heads, and
//! `g` is `λ`-strongly convex in each head (paper 004's assumption). `Batch::Full` is the mean
//! over all `m` tasks (paper 004's deterministic form).
//!
//! # Layouts: `adapt = "heads" | "anil" | "maml"`
//!
//! - `"heads"` (default, the formulation above): `x = φ`, `y = (w_1, …, w_m)`; the methods of
//!   the bilevel papers (ITD-BiO, AID-BiO, stocBiO, PZOBO, BSGM) run on it, heads from `0`.
//! - `"anil"` (Raghu et al. 2020): `x = (φ, w₀)`, the backbone and a learned head
//!   initialisation; `y = (w_1, …, w_m)` as above, `g` and `f` as above with `φ` from `x`. The
//!   problem reports the meta layout ([`BilevelProblem::meta_layout`]: the `m` task blocks adapt
//!   `x[|φ|..|φ| + |w|] = w₀`), so the inner loop of [`bilevel_algorithms::anil`] starts every
//!   head at `w₀`.
//! - `"maml"` (Finn et al. 2017): `x = θ = (φ, w₀)`; `y = (θ_1, …, θ_m)`, one adapted copy of the
//!   whole network per task; task `i`'s losses use its own backbone `φ_i` and head `w_i`:
//!   `g = (1/|B|) Σ_{i∈B} [CE_{S_i}(φ_i, w_i) + (λ/2)‖w_i‖²]`, `f` likewise on `D_i`. The meta
//!   layout adapts all of `x`, for [`bilevel_algorithms::maml`].
//!
//! In every layout `λ` regularises the heads only (set `reg` small for the papers' unregularised
//! MAML / ANIL; `reg > 0` is required). `test_accuracy` is the same representation probe in
//! every layout (a head refitted on the meta-test support features of the learned backbone `φ`,
//! below), so layouts compare on equal terms; it is not MAML's own protocol of fine-tuning all
//! of `θ` from the learned initialisation at test time.
//!
//! # Backbone and batch norm
//! The backbone's batch norm is transductive ([`bilevel_models::norm`]): the support set and the
//! query set of a task are each run through the backbone as one batch and normalised with their
//! own statistics, as in MAML-style few-shot training and testing. Pooling is the models crate's
//! twice-differentiable [`bilevel_models::cnn4::pool2x2`] (max by default), so exact HVP/JVP flow
//! through the whole backbone.
//!
//! # Data
//! - `"synthetic-glyphs"` (default): [`bilevel_data::synthetic`] generated in memory from the
//!   run's seed — *synthetic glyphs, a labelled substitute for Omniglot / miniImageNet*, which
//!   cannot be obtained offline here (`README.md`, "Data"). Meta-train / meta-test classes are
//!   disjoint by alphabet: the last `glyph_test_alphabets` alphabets are the meta-test classes.
//! - `"omniglot"`: `<root>/images_background` (meta-train) and `<root>/images_evaluation`
//!   (meta-test), the official background / evaluation alphabets, resampled to `image_size`.
//! - `"miniimagenet"`: the Ravi & Larochelle layout (`train.csv` meta-train, `test.csv`
//!   meta-test, `images/`).
//! - `"fc100"`: CIFAR-100 binary (`train.bin`, `test.bin`) split by superclass
//!   ([`bilevel_data::fc100_split`]; train / test class sets), 32×32.
//!
//! `root` is `dataset_dir`, or `<data_dir>/omniglot`, `<data_dir>/miniimagenet`,
//! `<data_dir>/cifar-100-binary`; none of the three can be fetched offline, and a missing one is
//! a [`bilevel_data::DataError::MissingFile`] that says so.
//!
//! # Evaluation
//! `test_accuracy` is the mean query accuracy over `eval_episodes` meta-test episodes (drawn
//! once, from a seed derived from the run's seed, so every evaluation sees the same episodes).
//! For each, the features of the support set under the learned backbone are computed once and
//! the head is fitted to the *same* lower-level objective (`CE_S + (λ/2)‖w‖²`, from `w = 0`) by
//! `head_steps` steps of Nesterov-accelerated gradient descent with step `1/L`,
//! `L = σ_max([F, 1])² / (2|S|) + λ` (a bound on the Hessian, `σ_max` by power iteration) and
//! momentum `(√κ − 1)/(√κ + 1)`, `κ = L/λ`, on the host in `f64`. `train_query_loss` /
//! `train_query_accuracy` are `f(φ, w; Full)` and the matching accuracy on the training pool.

use std::path::{Path, PathBuf};

use bilevel_core::tensor::{check_len, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, Lift, MetaLayout};
use bilevel_data::episodes::{Episode, EpisodeSampler, EpisodeSpec};
use bilevel_data::miniimagenet::FewShotSplit;
use bilevel_data::omniglot::{BACKGROUND, EVALUATION};
use bilevel_data::synthetic::{self, SyntheticGlyphsSpec};
use bilevel_data::{
    fc100_split, Cifar100, DataError, ImageSet, MiniImageNet, Omniglot, OmniglotOptions,
};
use bilevel_models::cnn4::{Cnn4, Cnn4Config};
use bilevel_models::flat;
use bilevel_models::resnet12::{ResNet12, ResNet12Config};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor};

use crate::application::{Application, Metric};
use crate::common::{
    check_count, check_positive, cross_entropy_per_sample, label_tensor, matrix_f32, one_hot,
    LinearShape,
};
use crate::error::{ProblemError, Result};
use crate::hyper_cleaning_cnn::{seeded_backbone_init, PoolSpec};

/// Where the episodes come from (`dataset = "synthetic-glyphs" | "omniglot" | "miniimagenet" |
/// "fc100"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FewShotDataset {
    /// Procedurally generated glyphs (labelled substitute for Omniglot / miniImageNet).
    #[default]
    #[serde(rename = "synthetic-glyphs")]
    SyntheticGlyphs,
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
            Self::Omniglot => "omniglot",
            Self::MiniImageNet => "miniimagenet",
            Self::Fc100 => "fc100",
        }
    }

    /// Image channels (1 for glyphs / Omniglot, 3 otherwise).
    pub fn channels(self) -> usize {
        match self {
            Self::SyntheticGlyphs | Self::Omniglot => 1,
            Self::MiniImageNet | Self::Fc100 => 3,
        }
    }

    /// Default image side: 28 (glyphs, Omniglot), 84 (miniImageNet), 32 (FC100).
    pub fn default_size(self) -> usize {
        match self {
            Self::SyntheticGlyphs | Self::Omniglot => 28,
            Self::MiniImageNet => 84,
            Self::Fc100 => 32,
        }
    }

    /// Folder name under the data folder.
    fn folder(self) -> &'static str {
        match self {
            Self::SyntheticGlyphs => synthetic::NAME,
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
            FewShotDataset::SyntheticGlyphs => unreachable!("handled above"),
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

/// The backbone with parameters `x`, on any backend level.
#[derive(Debug)]
pub enum Backbone<B: Backend> {
    /// CNN4.
    Cnn4(Cnn4<B>),
    /// ResNet-12.
    ResNet12(ResNet12<B>),
}

impl<B: Backend> Backbone<B> {
    /// Features `[n, d]` of images `[n, c, s, s]` (batch-norm statistics of these images).
    pub fn features(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        match self {
            Backbone::Cnn4(m) => m.features(images),
            Backbone::ResNet12(m) => m.features(images),
        }
    }
}

#[derive(Clone, Debug)]
enum BackboneConfig {
    Cnn4(Cnn4Config),
    ResNet12(ResNet12Config),
}

/// One training task on the device.
#[derive(Clone, Debug)]
struct Task<B: Backend> {
    support: Tensor<B, 4>,
    support_targets: Tensor<B, 2>,
    query: Tensor<B, 4>,
    query_targets: Tensor<B, 2>,
    query_labels: Tensor<B, 1, Int>,
}

/// One meta-test episode on the host.
#[derive(Clone, Debug)]
struct HostEpisode {
    support: Vec<f32>,
    support_labels: Vec<u8>,
    query: Vec<f32>,
    query_labels: Vec<u8>,
}

/// Pixels and labels of `indices` of `set`.
fn gather(set: &ImageSet, indices: &[usize], labels: &[u32]) -> (Vec<f32>, Vec<u8>) {
    let mut pixels = Vec::with_capacity(indices.len() * set.image_len());
    for &i in indices {
        pixels.extend_from_slice(set.image(i).expect("episode indices come from the set"));
    }
    (pixels, labels.iter().map(|&l| l as u8).collect())
}

/// The few-shot meta-learning problem (see the module documentation).
#[derive(Clone, Debug)]
pub struct MetaLearning<B: Backend> {
    tasks: Vec<Task<B>>,
    eval: Vec<HostEpisode>,
    backbone: BackboneConfig,
    head: LinearShape,
    x_len: usize,
    spec: MetaLearningSpec,
    source: String,
    seed: u64,
    device: B::Device,
}

impl<B: Backend> MetaLearning<B> {
    /// Builds the problem from meta-train and meta-test image sets with disjoint classes:
    /// `tasks` training episodes drawn with `seed`, `eval_episodes` meta-test episodes with a
    /// seed derived from it.
    pub fn from_sets(
        spec: &MetaLearningSpec,
        train: &ImageSet,
        test: &ImageSet,
        source: String,
        seed: u64,
        device: &B::Device,
    ) -> Result<Self> {
        spec.validate()?;
        let side = spec.side();
        for (name, set) in [("meta-train", train), ("meta-test", test)] {
            if set.height != side || set.width != side || set.channels != spec.dataset.channels() {
                return Err(ProblemError::config(
                    "image_size",
                    format!(
                        "the {name} images are {}×{}×{}, the spec expects {}×{side}×{side}",
                        set.channels,
                        set.height,
                        set.width,
                        spec.dataset.channels()
                    ),
                ));
            }
        }
        let shape = EpisodeSpec::new(spec.n_way, spec.k_shot, spec.n_query);
        let mut train_sampler = EpisodeSampler::new(train.indices_by_class(), shape, seed)?;
        let mut test_sampler =
            EpisodeSampler::new(test.indices_by_class(), shape, seed ^ 0x7e57_e915_0de5)?;
        let c = spec.dataset.channels();
        let images = |pixels: &[f32], n: usize| -> Tensor<B, 4> {
            matrix_f32::<B>(pixels, n, c * side * side, device).reshape([n, c, side, side])
        };
        let ns = spec.n_way * spec.k_shot;
        let nq = spec.n_way * spec.n_query;
        let tasks = train_sampler
            .sample_batch(spec.tasks)
            .into_iter()
            .map(|e: Episode| {
                let (sp, sl) = gather(train, &e.support, &e.support_labels);
                let (qp, ql) = gather(train, &e.query, &e.query_labels);
                Task {
                    support: images(&sp, ns),
                    support_targets: one_hot(&sl, spec.n_way, device),
                    query: images(&qp, nq),
                    query_targets: one_hot(&ql, spec.n_way, device),
                    query_labels: label_tensor(&ql, device),
                }
            })
            .collect();
        let eval = test_sampler
            .sample_batch(spec.eval_episodes)
            .into_iter()
            .map(|e| {
                let (support, support_labels) = gather(test, &e.support, &e.support_labels);
                let (query, query_labels) = gather(test, &e.query, &e.query_labels);
                HostEpisode {
                    support,
                    support_labels,
                    query,
                    query_labels,
                }
            })
            .collect();
        let (backbone, x_len, d) = match spec.backbone {
            BackboneKind::Cnn4 => {
                let cfg = Cnn4Config::new()
                    .with_in_channels(c)
                    .with_filters(spec.filters)
                    .with_image_size(side)
                    .with_pool(spec.pool.pool());
                let n = flat::num_params(&cfg.init::<B>(device));
                let d = cfg.output_dim();
                (BackboneConfig::Cnn4(cfg), n, d)
            }
            BackboneKind::Resnet12 => {
                let cfg = ResNet12Config::new()
                    .with_in_channels(c)
                    .with_channels(spec.channels)
                    .with_pool(spec.pool.pool());
                let n = flat::num_params(&cfg.init::<B>(device));
                let d = cfg.output_dim();
                (BackboneConfig::ResNet12(cfg), n, d)
            }
        };
        Ok(Self {
            tasks,
            eval,
            backbone,
            head: LinearShape {
                features: d,
                classes: spec.n_way,
                bias: true,
            },
            x_len,
            spec: spec.clone(),
            source,
            seed,
            device: device.clone(),
        })
    }

    /// Parameters of one head, `(d + 1) · N` (`W` row-major, then `b`).
    pub fn head_len(&self) -> usize {
        self.head.len()
    }

    /// Feature dimension `d` of the backbone.
    pub fn feature_dim(&self) -> usize {
        self.head.features
    }

    /// Number of training tasks `m`.
    pub fn num_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// The backbone with parameters `x`, on any backend level.
    pub fn backbone<C: Backend>(&self, x: Tensor<C, 1>) -> Backbone<C> {
        let device = x.device();
        match &self.backbone {
            BackboneConfig::Cnn4(cfg) => Backbone::Cnn4(
                flat::unflatten(cfg.init::<C>(&device), x).expect("x has x_dim() entries"),
            ),
            BackboneConfig::ResNet12(cfg) => Backbone::ResNet12(
                flat::unflatten(cfg.init::<C>(&device), x).expect("x has x_dim() entries"),
            ),
        }
    }

    /// The tasks a batch selects (with repetitions), all tasks for [`Batch::Full`].
    fn task_indices(&self, batch: &Batch) -> Vec<usize> {
        match batch {
            Batch::Full => (0..self.tasks.len()).collect(),
            Batch::Indices(idx) => idx.clone(),
        }
    }

    /// The layout of `x` and `y` ([`MetaLearningSpec::adapt`]).
    pub fn adapt(&self) -> Adapt {
        self.spec.adapt
    }

    /// Length of one task's block of `y`: a head, or (MAML) a backbone and a head.
    fn block_len(&self) -> usize {
        match self.spec.adapt {
            Adapt::Heads | Adapt::Anil => self.head.len(),
            Adapt::Maml => self.x_len + self.head.len(),
        }
    }

    /// The shared backbone parameters `φ` of `x` (the first `|φ|` entries).
    fn shared_backbone<C: Backend>(&self, x: &Tensor<C, 1>) -> Tensor<C, 1> {
        x.clone().narrow(0, 0, self.x_len)
    }

    /// Task `i`'s block of `y`.
    fn block_of<C: Backend>(&self, y: &Tensor<C, 1>, i: usize) -> Tensor<C, 1> {
        let b = self.block_len();
        y.clone().narrow(0, i * b, b)
    }

    /// Head `i` of `y` (the last `|w|` entries of task `i`'s block).
    fn head_of<C: Backend>(&self, y: &Tensor<C, 1>, i: usize) -> Tensor<C, 1> {
        let h = self.head.len();
        let b = self.block_len();
        y.clone().narrow(0, i * b + b - h, h)
    }

    /// Task `i`'s own backbone parameters `φ_i` in the MAML layout (`None` otherwise: the
    /// backbone is shared).
    fn own_backbone<C: Backend>(&self, y: &Tensor<C, 1>, i: usize) -> Option<Tensor<C, 1>> {
        (self.spec.adapt == Adapt::Maml).then(|| self.block_of(y, i).narrow(0, 0, self.x_len))
    }

    /// `(1/|B|) Σ_{i∈B} loss_i` with `loss_i = CE(set_i) (+ (λ/2)‖w_i‖² on the support)`.
    fn batch_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
        support: bool,
    ) -> Tensor<C, 1> {
        let shared = match self.spec.adapt {
            Adapt::Maml => None,
            Adapt::Heads | Adapt::Anil => Some(self.backbone(self.shared_backbone(&x))),
        };
        let idx = self.task_indices(batch);
        let mut total: Option<Tensor<C, 1>> = None;
        for &i in &idx {
            let task = &self.tasks[i];
            let (images, targets) = if support {
                (&task.support, &task.support_targets)
            } else {
                (&task.query, &task.query_targets)
            };
            let head = self.head_of(&y, i);
            let images = C::lift(images.clone());
            let feats = match (&shared, self.own_backbone(&y, i)) {
                (Some(net), _) => net.features(images),
                (None, Some(phi_i)) => self.backbone(phi_i).features(images),
                (None, None) => unreachable!("the MAML layout has a backbone per task"),
            };
            let ce = cross_entropy_per_sample(
                self.head.logits(feats, head.clone()),
                C::lift(targets.clone()),
            );
            let n = ce.dims()[0];
            let mut loss = ce.sum().mul_scalar(1.0 / n as f64);
            if support {
                loss = loss.add(head.powi_scalar(2).sum().mul_scalar(0.5 * self.spec.reg));
            }
            total = Some(match total {
                None => loss,
                Some(t) => t.add(loss),
            });
        }
        total
            .expect("a batch selects at least one task")
            .mul_scalar(1.0 / idx.len() as f64)
    }
}

/// Fits `w = (W, b)` (`(d + 1) × k` row-major, bias row last) to
/// `(1/n) Σ CE([f_i, 1] w, c_i) + (λ/2)‖w‖²` from `w = 0` by `steps` of Nesterov's accelerated
/// gradient for strongly convex functions (step `1/L`, see the module docs).
fn fit_head(
    feats: &[f64],
    n: usize,
    d: usize,
    labels: &[u8],
    k: usize,
    reg: f64,
    steps: usize,
) -> Vec<f64> {
    let p = d + 1;
    let a = |i: usize, j: usize| if j < d { feats[i * d + j] } else { 1.0 };
    // σ_max(A)² by power iteration on AᵀA.
    let mut v = vec![1.0; p];
    let mut sigma2 = 0.0;
    for _ in 0..50 {
        let av: Vec<f64> = (0..n)
            .map(|i| (0..p).map(|j| a(i, j) * v[j]).sum())
            .collect();
        let mut atav = vec![0.0; p];
        for (i, &s) in av.iter().enumerate() {
            for (j, t) in atav.iter_mut().enumerate() {
                *t += a(i, j) * s;
            }
        }
        let norm = atav.iter().map(|t| t * t).sum::<f64>().sqrt();
        if norm == 0.0 {
            break;
        }
        sigma2 = norm / v.iter().map(|t| t * t).sum::<f64>().sqrt();
        v = atav.iter().map(|t| t / norm).collect();
    }
    let lip = 1.1 * sigma2 / (2.0 * n as f64) + reg;
    let kappa = lip / reg;
    let momentum = (kappa.sqrt() - 1.0) / (kappa.sqrt() + 1.0);
    let grad = |w: &[f64]| -> Vec<f64> {
        let mut g: Vec<f64> = w.iter().map(|v| reg * v).collect();
        for (i, &label) in labels.iter().enumerate().take(n) {
            let logits: Vec<f64> = (0..k)
                .map(|c| (0..p).map(|j| a(i, j) * w[j * k + c]).sum())
                .collect();
            let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for c in 0..k {
                let r = (e[c] / z - if usize::from(label) == c { 1.0 } else { 0.0 }) / n as f64;
                for j in 0..p {
                    g[j * k + c] += a(i, j) * r;
                }
            }
        }
        g
    };
    let mut w = vec![0.0; p * k];
    let mut look = w.clone();
    for _ in 0..steps {
        let g = grad(&look);
        let next: Vec<f64> = look.iter().zip(&g).map(|(l, g)| l - g / lip).collect();
        look = next
            .iter()
            .zip(&w)
            .map(|(nx, w)| nx + momentum * (nx - w))
            .collect();
        w = next;
    }
    w
}

/// Mean cross-entropy and accuracy of logits `[f, 1] w` against `labels` (host).
fn head_metrics(
    feats: &[f64],
    n: usize,
    d: usize,
    labels: &[u8],
    k: usize,
    w: &[f64],
) -> (f64, f64) {
    let (mut loss, mut correct) = (0.0, 0usize);
    for i in 0..n {
        let logits: Vec<f64> = (0..k)
            .map(|c| (0..d).map(|j| feats[i * d + j] * w[j * k + c]).sum::<f64>() + w[d * k + c])
            .collect();
        let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
        let label = usize::from(labels[i]);
        loss += lse - logits[label];
        // First maximal class, as `argmax`.
        let best = (0..k).fold(0, |b, c| if logits[c] > logits[b] { c } else { b });
        correct += usize::from(best == label);
    }
    (loss / n as f64, correct as f64 / n as f64)
}

impl<B: Backend> BilevelProblem<B> for MetaLearning<B> {
    fn x_dim(&self) -> usize {
        match self.spec.adapt {
            Adapt::Heads => self.x_len,
            Adapt::Anil | Adapt::Maml => self.x_len + self.head.len(),
        }
    }

    fn y_dim(&self) -> usize {
        self.tasks.len() * self.block_len()
    }

    fn device(&self) -> B::Device {
        self.device.clone()
    }

    fn inner_len(&self) -> Option<usize> {
        Some(self.tasks.len())
    }

    fn outer_len(&self) -> Option<usize> {
        Some(self.tasks.len())
    }

    fn inner_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        self.batch_loss(x, y, batch, true)
    }

    fn outer_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        self.batch_loss(x, y, batch, false)
    }

    /// `"anil"`: the task blocks adapt `w₀ = x[|φ|..]`; `"maml"`: all of `x`; `"heads"`: none.
    fn meta_layout(&self) -> Option<MetaLayout> {
        let adapted = match self.spec.adapt {
            Adapt::Heads => return None,
            Adapt::Anil => self.x_len..self.x_len + self.head.len(),
            Adapt::Maml => 0..self.x_len + self.head.len(),
        };
        Some(MetaLayout {
            tasks: self.tasks.len(),
            adapted,
        })
    }
}

impl<B: AutodiffBackend> Application<B> for MetaLearning<B> {
    fn id(&self) -> &'static str {
        "meta-learning"
    }

    fn describe(&self) -> String {
        let backbone = match self.spec.backbone {
            BackboneKind::Cnn4 => format!(
                "CNN4 ({} filters, conv3×3-BN-ReLU-{}pool ×4)",
                self.spec.filters,
                self.spec.pool.name()
            ),
            BackboneKind::Resnet12 => format!(
                "ResNet-12 (channels {:?}, {} pooling, no DropBlock)",
                self.spec.channels,
                self.spec.pool.name()
            ),
        };
        let layout = match self.spec.adapt {
            Adapt::Heads => "x = backbone φ, y = one linear head per task (from 0)".to_string(),
            Adapt::Anil => format!(
                "adapt = anil: x = (backbone φ, head initialisation w₀), y = one linear head \
                 per task adapted from w₀ ({} + {} parameters in x)",
                self.x_len,
                self.head.len()
            ),
            Adapt::Maml => format!(
                "adapt = maml: x = θ = (backbone φ, head initialisation w₀), y = one copy of θ \
                 per task adapted from θ ({} × {} parameters in y)",
                self.tasks.len(),
                self.block_len()
            ),
        };
        format!(
            "meta-learning (paper 004 §5 / 000 §4.3 / 002 §7.2): {}; {}-way {}-shot, {} queries \
             per class; {} pre-sampled training episodes (seed {}); {layout}; backbone {} with \
             transductive batch norm ({} parameters, {} features), linear heads of \
             {} tasks × {} parameters, g = support CE + (λ/2)‖w_i‖² with λ = {}, f = query CE, \
             both averaged over the task batch; test_accuracy over {} meta-test episodes with \
             the head refitted by {} accelerated GD steps on the same regularised support loss",
            self.source,
            self.spec.n_way,
            self.spec.k_shot,
            self.spec.n_query,
            self.tasks.len(),
            self.seed,
            backbone,
            self.x_len,
            self.head.features,
            self.tasks.len(),
            self.head.len(),
            self.spec.reg,
            self.eval.len(),
            self.spec.head_steps,
        )
    }

    /// Backbone: convolution weights He-normal from `seed`, batch-norm `γ = 1`, `β = 0`; every
    /// head `0` (and `w₀ = 0`). In the MAML layout every task's copy of `θ` starts at `θ`.
    fn initial_point(&self, seed: u64) -> Result<(Tensor<B, 1>, Tensor<B, 1>)> {
        let mut x = match &self.backbone {
            BackboneConfig::Cnn4(cfg) => seeded_backbone_init(&cfg.init::<B>(&self.device), seed),
            BackboneConfig::ResNet12(cfg) => {
                seeded_backbone_init(&cfg.init::<B>(&self.device), seed)
            }
        };
        if self.spec.adapt != Adapt::Heads {
            x.extend(std::iter::repeat_n(0.0, self.head.len()));
        }
        let y = match self.spec.adapt {
            Adapt::Maml => x.repeat(self.tasks.len()),
            Adapt::Heads | Adapt::Anil => vec![0.0; self.y_dim()],
        };
        Ok((vector(&x, &self.device), vector(&y, &self.device)))
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec![
            "test_accuracy",
            "test_query_loss",
            "train_query_loss",
            "train_query_accuracy",
        ]
    }

    /// Meta-test query accuracy and cross-entropy (heads refitted on each episode's support
    /// set, see the module docs), and the query loss `f(x, y; Full)` and accuracy of the
    /// training pool.
    fn evaluate(&self, x: &Tensor<B, 1>, y: &Tensor<B, 1>) -> Result<Vec<Metric>> {
        check_len("x", x, self.x_dim())?;
        check_len("y", y, self.y_dim())?;
        let (x, y) = (x.clone().detach(), y.clone().detach());
        let net = self.backbone(self.shared_backbone(&x));
        // Training pool: query loss and accuracy with the current heads (and, in the MAML
        // layout, each task's own adapted backbone).
        let (mut train_loss, mut train_acc) = (0.0, 0.0);
        for (i, task) in self.tasks.iter().enumerate() {
            let feats = match self.own_backbone(&y, i) {
                Some(phi_i) => self.backbone(phi_i).features(task.query.clone()),
                None => net.features(task.query.clone()),
            };
            let logits = self.head.logits(feats, self.head_of(&y, i));
            let ce = cross_entropy_per_sample(logits.clone(), task.query_targets.clone());
            let n = ce.dims()[0];
            train_loss += to_vec(ce.sum())?[0] / n as f64;
            train_acc += bilevel_models::linear::accuracy(logits, task.query_labels.clone());
        }
        let m = self.tasks.len() as f64;
        // Meta-test episodes: refit the head on the support features.
        let side = self.spec.side();
        let c = self.spec.dataset.channels();
        let (d, k) = (self.head.features, self.spec.n_way);
        let feats = |pixels: &[f32]| -> Result<(Vec<f64>, usize)> {
            let n = pixels.len() / (c * side * side);
            let images = matrix_f32::<B>(pixels, n, c * side * side, &self.device)
                .reshape([n, c, side, side]);
            Ok((to_vec(net.features(images))?, n))
        };
        let (mut test_loss, mut test_acc) = (0.0, 0.0);
        for e in &self.eval {
            let (fs, ns) = feats(&e.support)?;
            let w = fit_head(
                &fs,
                ns,
                d,
                &e.support_labels,
                k,
                self.spec.reg,
                self.spec.head_steps,
            );
            let (fq, nq) = feats(&e.query)?;
            let (l, a) = head_metrics(&fq, nq, d, &e.query_labels, k, &w);
            test_loss += l;
            test_acc += a;
        }
        let e = self.eval.len() as f64;
        Ok(vec![
            Metric::new("test_accuracy", test_acc / e),
            Metric::new("test_query_loss", test_loss / e),
            Metric::new("train_query_loss", train_loss / m),
            Metric::new("train_query_accuracy", train_acc / m),
        ])
    }
}
