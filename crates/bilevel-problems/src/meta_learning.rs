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
//!   `x[|φ|..|φ| + |w|] = w₀`), so the inner loop of ANIL (`bilevel_algorithms::anil`) starts every
//!   head at `w₀`.
//! - `"maml"` (Finn et al. 2017): `x = θ = (φ, w₀)`; `y = (θ_1, …, θ_m)`, one adapted copy of the
//!   whole network per task; task `i`'s losses use its own backbone `φ_i` and head `w_i`:
//!   `g = (1/|B|) Σ_{i∈B} [CE_{S_i}(φ_i, w_i) + (λ/2)‖w_i‖²]`, `f` likewise on `D_i`. The meta
//!   layout adapts all of `x`, for MAML (`bilevel_algorithms::maml`).
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

use bilevel_data::episodes::{Episode, EpisodeSampler, EpisodeSpec};
use bilevel_data::ImageSet;
use bilevel_models::cnn4::{Cnn4, Cnn4Config};
use bilevel_models::flat;
use bilevel_models::resnet12::{ResNet12, ResNet12Config};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::common::{label_tensor, matrix_f32, one_hot, LinearShape};
use crate::error::{ProblemError, Result};
#[cfg(doc)]
use bilevel_core::{Batch, BilevelProblem};

mod application;
mod problem;
mod spec;

pub use spec::{Adapt, BackboneKind, FewShotDataset, MetaLearningSpec};

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

    /// The layout of `x` and `y` ([`MetaLearningSpec::adapt`]).
    pub fn adapt(&self) -> Adapt {
        self.spec.adapt
    }
}
