//! `hyper-cleaning-cnn`: data hyper-cleaning of a CNN4 on MNIST or Fashion-MNIST (paper 001,
//! FSLA, §"Hyper Data-cleaning"; `docs/REPRODUCTION.md` `hyper-cleaning-cnn`).
//!
//! Paper 001 draws 5 000 training images `D_i` and another 5 000 validation images `D_o` from
//! the training set, "randomly perturbs the label of γ percentage" of the training images
//! (`γ = 0.8`), keeps the validation labels clean and trains "a 4-layer convolutional neural
//! network". Here a perturbed label is replaced by a uniformly drawn *other* class
//! ([`bilevel_data::corrupt_labels`]), so with `corruption = 0.8` 80 % of the training labels are
//! wrong (the paper does not say whether a perturbed label may coincide with the true one). The
//! upper variable is one weight per training image, `x = λ ∈ ℝ^{n_tr}`; the lower variable `y`
//! is **every** parameter of the network — the four CNN4 blocks
//! ([`bilevel_models::cnn4`]: conv 3×3 → batch norm → ReLU → 2×2 pooling, 28×28 → 1×1) and a
//! linear head `filters → 10` — as one flat vector, so the convolutions, batch norms and
//! poolings all sit inside the second-order products `∇²_yy g · v`, `∇_x∇_y g · v`:
//!
//! `g(λ, ω; S) = (1/|S|) Σ_{i∈S} σ(λ_i) CE(net_ω(a_i), ỹ_i) + C_r ‖ω‖²`,
//! `f(λ, ω; S) = (1/|S|) Σ_{i∈S} CE(net_ω(a_i), y_i)` over the clean validation images,
//!
//! `σ(t) = 1/(1 + e^{−t})` (written out: `docs/ARCHITECTURE.md`, "Numerics on burn 0.21").
//! The paper's inner objective has no regulariser; the small ridge `C_r ‖ω‖²` (default `10⁻³`,
//! over all of `ω` including batch-norm `γ`, `β` and the head bias) is an addition of this
//! implementation.
//!
//! # Pooling and second order
//! burn 0.21's fused `max_pool2d` cannot be differentiated twice; the models crate's
//! [`bilevel_models::cnn4::pool2x2`] gathers the window maxima through differentiable ops and
//! gives exact HVP/JVP through max pooling (checked against finite differences in
//! `bilevel-models/tests/cnn4.rs` and in this crate's `tests/hyper_cleaning_cnn.rs`), so max
//! pooling — the usual CNN4 — is the default; `pool = "avg"` switches to average pooling.
//!
//! # Batch norm
//! The batch norm is transductive ([`bilevel_models::norm`]): it normalises with the statistics
//! of the images evaluated together, so a loss on a mini-batch uses that mini-batch's
//! statistics (as in training mode), and the evaluation metrics run the network on consecutive
//! chunks of `eval_batch` images.

use std::path::{Path, PathBuf};

use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{check_len, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, Lift};
use bilevel_data::{corrupt_labels, Dataset, FashionMnist, Mnist};
use bilevel_models::cnn4::{Cnn4, Cnn4Config};
use bilevel_models::flat::{he_normal_init, VectorInit};
use bilevel_models::linear::{Linear, LinearConfig};
use bilevel_models::{flat, Pool};
use burn::module::Module;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

use crate::application::{Application, Metric};
use crate::common::{
    check_count, check_mnist_sizes, check_positive, check_range, cross_entropy_per_sample,
    f1_score, label_tensor, load_mnist, matrix_f32, mean, mnist_source, one_hot, sigmoid,
    split_mnist, MNIST_CLASSES,
};
use crate::error::Result;

/// Side of an MNIST / Fashion-MNIST image.
const SIDE: usize = 28;

/// Which 28×28 greyscale data set (`dataset = "mnist" | "fashion-mnist"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageDataset {
    /// MNIST digits (the bundled copy unless `image_dir` is set).
    #[default]
    Mnist,
    /// Fashion-MNIST, fetched with `cargo xtask data fetch fashion-mnist` into
    /// `<data_dir>/fashion-mnist`.
    FashionMnist,
}

/// Pooling of the convolutional blocks (`pool = "max" | "avg"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolSpec {
    /// 2×2 max pooling (twice differentiable through [`bilevel_models::cnn4::pool2x2`]).
    #[default]
    Max,
    /// 2×2 average pooling.
    Avg,
}

impl PoolSpec {
    /// The models crate's pooling switch.
    pub fn pool(self) -> Pool {
        match self {
            PoolSpec::Max => Pool::Max,
            PoolSpec::Avg => Pool::Avg,
        }
    }

    /// `"max"` or `"avg"`.
    pub fn name(self) -> &'static str {
        match self {
            PoolSpec::Max => "max",
            PoolSpec::Avg => "avg",
        }
    }
}

/// The `[problem]` table of `kind = "hyper-cleaning-cnn"`. Every field is optional; defaults are
/// paper 001's setting (5 000 / 5 000 images, `γ = 0.8`, MNIST) with CNN4 of 32 filters.
///
/// Train and validation images are disjoint seeded draws from the 60 000 training images, test
/// images a seeded draw from the 10 000 test images (all of them by default); the split uses the
/// run's seed, the label corruption a seed derived from it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HyperCleaningCnnSpec {
    /// `"mnist"` (default) or `"fashion-mnist"`.
    pub dataset: ImageDataset,
    /// Training images `n_tr` (= length of `x`; default 5 000). `train + val ≤ 60 000`.
    pub train: usize,
    /// Validation images (default 5 000).
    pub val: usize,
    /// Test images (default 10 000, at most 10 000).
    pub test: usize,
    /// Fraction `γ ∈ [0, 1]` of training labels replaced by another class (default 0.8).
    pub corruption: f64,
    /// Channels of every CNN4 block (default 32).
    pub filters: usize,
    /// Pooling of the blocks (default `"max"`).
    pub pool: PoolSpec,
    /// `C_r` of the ridge `C_r ‖ω‖²` over all network parameters (default 10⁻³).
    pub reg: f64,
    /// Images per forward pass when evaluating metrics (batch-norm statistics are those of each
    /// chunk; default 1 000).
    pub eval_batch: usize,
    /// Folder with the four IDX files (plain or `.gz`); default: the bundled MNIST, or
    /// `<data_dir>/fashion-mnist`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_dir: Option<PathBuf>,
}

impl Default for HyperCleaningCnnSpec {
    fn default() -> Self {
        Self {
            dataset: ImageDataset::Mnist,
            train: 5_000,
            val: 5_000,
            test: 10_000,
            corruption: 0.8,
            filters: 32,
            pool: PoolSpec::Max,
            reg: 1e-3,
            eval_batch: 1_000,
            image_dir: None,
        }
    }
}

impl HyperCleaningCnnSpec {
    /// Checks every field's range (no data is read).
    pub fn validate(&self) -> Result<()> {
        check_mnist_sizes(
            ("train", self.train, 5_000),
            ("val", self.val, 5_000),
            ("test", self.test, 10_000),
        )?;
        check_range("corruption", self.corruption, 0.0, 1.0, 0.8)?;
        check_count("filters", self.filters, 4096, 32)?;
        check_positive("reg", self.reg, true, 1e-3)?;
        check_count("eval_batch", self.eval_batch, usize::MAX, 1_000)?;
        Ok(())
    }

    /// The folder the images are read from: `image_dir` if set; else, for Fashion-MNIST,
    /// `<data_dir>/fashion-mnist` (`data_dir` defaulting to
    /// [`bilevel_data::registry::data_dir`]); `None` for the bundled MNIST.
    pub fn resolve_image_dir(&self, data_dir: Option<&Path>) -> Option<PathBuf> {
        if let Some(dir) = &self.image_dir {
            return Some(dir.clone());
        }
        match self.dataset {
            ImageDataset::Mnist => None,
            ImageDataset::FashionMnist => Some(
                data_dir
                    .map(Path::to_path_buf)
                    .unwrap_or_else(bilevel_data::registry::data_dir)
                    .join(bilevel_data::fashion_mnist::NAME),
            ),
        }
    }

    /// Loads the images (a missing Fashion-MNIST is [`crate::ProblemError::Data`] with
    /// [`bilevel_data::DataError::MissingFile`], whose message names
    /// `cargo xtask data fetch fashion-mnist`) and builds the problem.
    pub fn build<B: Backend>(
        &self,
        seed: u64,
        data_dir: Option<&Path>,
        device: &B::Device,
    ) -> Result<HyperCleaningCnn<B>> {
        self.validate()?;
        let dir = self.resolve_image_dir(data_dir);
        let data = match self.dataset {
            ImageDataset::Mnist => load_mnist(dir.as_deref())?,
            ImageDataset::FashionMnist => {
                let f = FashionMnist::load(dir.as_deref().expect("Fashion-MNIST has a folder"))?;
                Mnist {
                    train: f.train,
                    test: f.test,
                }
            }
        };
        HyperCleaningCnn::from_data(self, &data, dir, seed, device)
    }
}

/// CNN4 backbone + linear head: the network whose flat parameters are `y`.
#[derive(Module, Debug)]
pub struct CnnClassifier<B: Backend> {
    /// Feature extractor.
    pub backbone: Cnn4<B>,
    /// `filters → classes` head.
    pub head: Linear<B>,
}

impl<B: Backend> CnnClassifier<B> {
    /// Logits `[n, classes]` of images `[n, 1, 28, 28]`.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.head.forward(self.backbone.features(images))
    }
}

/// Images on the device as `[n, 1, 28, 28]`, with one-hot targets and labels.
#[derive(Clone, Debug)]
struct ImageSetTensors<B: Backend> {
    images: Tensor<B, 4>,
    targets: Tensor<B, 2>,
    labels: Tensor<B, 1, burn::tensor::Int>,
    len: usize,
}

impl<B: Backend> ImageSetTensors<B> {
    fn new(data: &Dataset, labels: &[u8], device: &B::Device) -> Self {
        let images = matrix_f32::<B>(&data.images, data.len, data.features(), device)
            .reshape([data.len, 1, data.rows, data.cols]);
        Self {
            images,
            targets: one_hot(labels, MNIST_CLASSES, device),
            labels: label_tensor(labels, device),
            len: data.len,
        }
    }
}

/// Seeded initial values of a convolutional backbone's flat parameters, in visiting order:
/// He-normal convolution weights and batch-norm `(γ, β) = (1, 0)` — the layout of CNN4 and
/// ResNet-12, whose convolutions have no bias (see [`he_normal_init`]).
pub fn seeded_backbone_init<B: Backend, M: Module<B>>(template: &M, seed: u64) -> Vec<f64> {
    let mut rng = Rng::seed(seed);
    he_normal_init(template, VectorInit::BatchNormPairs, |n| rng.normal_vec(n))
}

/// The CNN hyper-cleaning problem (see the module documentation).
#[derive(Clone, Debug)]
pub struct HyperCleaningCnn<B: Backend> {
    train: ImageSetTensors<B>,
    val: ImageSetTensors<B>,
    test: ImageSetTensors<B>,
    cnn: Cnn4Config,
    head: LinearConfig,
    backbone_len: usize,
    y_len: usize,
    flipped: Vec<usize>,
    spec: HyperCleaningCnnSpec,
    source: String,
    seed: u64,
    device: B::Device,
}

impl<B: Backend> HyperCleaningCnn<B> {
    /// Builds the problem from loaded MNIST-format data (`image_dir` only names the source in
    /// [`Application::describe`]): split with `seed`, corrupt the training labels with a seed
    /// derived from it.
    pub fn from_data(
        spec: &HyperCleaningCnnSpec,
        data: &Mnist,
        image_dir: Option<PathBuf>,
        seed: u64,
        device: &B::Device,
    ) -> Result<Self> {
        spec.validate()?;
        let parts = split_mnist(data, spec.train, spec.val, spec.test, false, seed)?;
        let corrupted = corrupt_labels(
            &parts.train.labels,
            MNIST_CLASSES,
            spec.corruption,
            seed.wrapping_add(0x0c1e_a2ed),
        )?;
        let cnn = Cnn4Config::new()
            .with_in_channels(1)
            .with_filters(spec.filters)
            .with_image_size(SIDE)
            .with_pool(spec.pool.pool());
        let head = LinearConfig::new(cnn.output_dim(), MNIST_CLASSES);
        let backbone_len = flat::num_params(&cnn.init::<B>(device));
        let y_len = backbone_len + head.num_params();
        let source = match (spec.dataset, image_dir) {
            (ImageDataset::Mnist, dir) => mnist_source(dir.as_ref()),
            (ImageDataset::FashionMnist, Some(dir)) => {
                format!("Fashion-MNIST (MIT) from {}", dir.display())
            }
            (ImageDataset::FashionMnist, None) => "Fashion-MNIST (MIT)".to_string(),
        };
        Ok(Self {
            train: ImageSetTensors::new(&parts.train, &corrupted.labels, device),
            val: ImageSetTensors::new(&parts.val, &parts.val.labels, device),
            test: ImageSetTensors::new(&parts.test, &parts.test.labels, device),
            cnn,
            head,
            backbone_len,
            y_len,
            flipped: corrupted.flipped,
            spec: spec.clone(),
            source,
            seed,
            device: device.clone(),
        })
    }

    /// Indices of the training samples whose label was corrupted (ascending).
    pub fn corrupted(&self) -> &[usize] {
        &self.flipped
    }

    /// Number of CNN4 parameters at the front of `y` (the head's `filters · 10 + 10` follow).
    pub fn backbone_len(&self) -> usize {
        self.backbone_len
    }

    /// The network with parameters `y`, on any backend level.
    pub fn network<C: Backend>(&self, y: Tensor<C, 1>) -> CnnClassifier<C> {
        let device = y.device();
        let template = CnnClassifier {
            backbone: self.cnn.init::<C>(&device),
            head: self.head.init::<C>(&device),
        };
        flat::unflatten(template, y).expect("y has y_dim() entries")
    }

    /// Training samples flagged as corrupted by `λ`: those with `σ(λ_i) < 1/2`, i.e. `λ_i < 0`.
    pub fn flagged(lambda: &[f64]) -> Vec<usize> {
        lambda
            .iter()
            .enumerate()
            .filter(|(_, &l)| l < 0.0)
            .map(|(i, _)| i)
            .collect()
    }

    /// Mean cross-entropy and accuracy of the network `y` on `set`, in chunks of `eval_batch`.
    fn evaluate_set(&self, set: &ImageSetTensors<B>, y: Tensor<B, 1>) -> Result<(f64, f64)> {
        let net = self.network(y);
        let (mut loss, mut correct) = (0.0, 0.0);
        let mut start = 0;
        while start < set.len {
            let len = self.spec.eval_batch.min(set.len - start);
            let logits = net.forward(set.images.clone().narrow(0, start, len));
            let ce =
                cross_entropy_per_sample(logits.clone(), set.targets.clone().narrow(0, start, len));
            loss += to_vec(ce.sum())?[0];
            correct +=
                bilevel_models::linear::accuracy(logits, set.labels.clone().narrow(0, start, len))
                    * len as f64;
            start += len;
        }
        let n = set.len as f64;
        Ok((loss / n, correct / n))
    }
}

impl<B: Backend> BilevelProblem<B> for HyperCleaningCnn<B> {
    fn x_dim(&self) -> usize {
        self.train.len
    }

    fn y_dim(&self) -> usize {
        self.y_len
    }

    fn device(&self) -> B::Device {
        self.device.clone()
    }

    fn inner_len(&self) -> Option<usize> {
        Some(self.train.len)
    }

    fn outer_len(&self) -> Option<usize> {
        Some(self.val.len)
    }

    fn inner_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        let images = batch.rows(C::lift(self.train.images.clone()));
        let targets = batch.rows(C::lift(self.train.targets.clone()));
        let weights = sigmoid(batch.rows(x));
        let ridge = y.clone().powi_scalar(2).sum().mul_scalar(self.spec.reg);
        let ce = cross_entropy_per_sample(self.network(y).forward(images), targets);
        mean(ce.mul(weights)).add(ridge)
    }

    fn outer_loss<C: Lift<B>>(
        &self,
        _x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        let images = batch.rows(C::lift(self.val.images.clone()));
        let targets = batch.rows(C::lift(self.val.targets.clone()));
        mean(cross_entropy_per_sample(
            self.network(y).forward(images),
            targets,
        ))
    }
}

impl<B: AutodiffBackend> Application<B> for HyperCleaningCnn<B> {
    fn id(&self) -> &'static str {
        "hyper-cleaning-cnn"
    }

    fn describe(&self) -> String {
        format!(
            "hyper-cleaning-cnn (paper 001, FSLA): {}; {} train / {} validation images from \
             the 60000 training images, {} test images, split seed {}; {} of {} training labels \
             ({:.1}%, γ = {}) replaced by a random other class; x = per-sample weights λ \
             (σ(λ) = 1/(1+exp(−λ)) weights the training loss), y = all {} parameters of CNN4 \
             ({} filters, conv3×3-BN-ReLU-{}pool ×4, transductive batch norm) + linear head \
             {}→10; C_r = {} on ‖y‖² (an addition: the paper's inner loss has no regulariser); \
             pixels in [0, 1]; metrics on chunks of {} images",
            self.source,
            self.spec.train,
            self.spec.val,
            self.spec.test,
            self.seed,
            self.flipped.len(),
            self.train.len,
            100.0 * self.flipped.len() as f64 / self.train.len as f64,
            self.spec.corruption,
            self.y_len,
            self.spec.filters,
            self.spec.pool.name(),
            self.cnn.output_dim(),
            self.spec.reg,
            self.spec.eval_batch,
        )
    }

    /// `λ⁰ = 0` (every sample weighted `σ(0) = 1/2`); CNN4 weights He-normal from `seed`,
    /// batch-norm `γ = 1`, `β = 0`, head `0`.
    fn initial_point(&self, seed: u64) -> Result<(Tensor<B, 1>, Tensor<B, 1>)> {
        let mut y = seeded_backbone_init(&self.cnn.init::<B>(&self.device), seed);
        y.resize(self.y_len, 0.0);
        Ok((
            vector(&vec![0.0; self.x_dim()], &self.device),
            vector(&y, &self.device),
        ))
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec!["test_accuracy", "test_loss", "val_loss", "flagged_f1"]
    }

    /// Test accuracy and mean cross-entropy of the network on the test images, mean validation
    /// cross-entropy, and the F1 score of the samples flagged by `σ(λ_i) < 1/2` against the
    /// truly corrupted ones.
    fn evaluate(&self, x: &Tensor<B, 1>, y: &Tensor<B, 1>) -> Result<Vec<Metric>> {
        check_len("x", x, self.x_dim())?;
        check_len("y", y, self.y_dim())?;
        let y = y.clone().detach();
        let (test_loss, test_acc) = self.evaluate_set(&self.test, y.clone())?;
        let (val_loss, _) = self.evaluate_set(&self.val, y)?;
        let f1 = f1_score(
            &Self::flagged(&to_vec(x.clone())?),
            &self.flipped,
            self.train.len,
        );
        Ok(vec![
            Metric::new("test_accuracy", test_acc),
            Metric::new("test_loss", test_loss),
            Metric::new("val_loss", val_loss),
            Metric::new("flagged_f1", f1),
        ])
    }
}
