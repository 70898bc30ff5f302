//! `hr-deep`: deep hyper-representation with LeNet-5 on MNIST (paper 000 §4.2;
//! `docs/REPRODUCTION.md` `hr-deep`).
//!
//! The whole LeNet-5 is learned in two phases: `x = λ` is the backbone
//! ([`bilevel_models::LeNetFeatures`]: conv5×5(6) – ReLU – pool – conv5×5(16) – ReLU – pool –
//! fc120 – ReLU – fc84 – ReLU, 60 856 parameters, flat in the model's visiting order), `y = (W, b)`
//! the linear classifier on the 84-d representation (`W` `[84, 10]` row-major, then `b`; 850
//! parameters):
//!
//! `g(λ, W, b; S) = (1/|S|) Σ_{i∈S} CE(φ_λ(a_i)ᵀW + b, t_i) + (γ/2) ‖W‖²` over the inner
//! (training) images, `f(λ, W, b; S) = (1/|S|) Σ_{i∈S} CE(φ_λ(a_i)ᵀW + b, t_i)` over the outer
//! (validation) images. The bias is not regularised. Paper 000 describes the formulation in its
//! Appendix E.3, which is missing from the extraction; the split sizes below are therefore a
//! documented choice (all 60 000 training images used: 50 000 inner, 10 000 outer).
//!
//! Exact second-order products only differentiate twice with respect to `y` (the head is linear
//! in `y`); the backbone is differentiated once at the second level (`J v`). The LeNet pooling
//! of [`bilevel_models::lenet::pool2d`] is twice differentiable anyway.

use std::path::PathBuf;

use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{check_len, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, Lift};
use bilevel_data::{Dataset, Mnist};
use bilevel_models::lenet::FEATURES;
use bilevel_models::{unflatten, LeNetConfig, Pool};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor};

use crate::application::{Application, Metric};
use crate::common::{
    check_mnist_sizes, check_positive, cross_entropy_per_sample, label_tensor, load_mnist,
    matrix_f32, mean, mnist_source, one_hot, split_mnist, LinearShape, MNIST_CLASSES,
};
use crate::error::Result;
use crate::hr_shallow::seeded_uniform_init;

/// MNIST image side.
const SIDE: usize = 28;
/// Images per forward pass in [`Application::evaluate`].
const EVAL_CHUNK: usize = 1_000;

/// Pooling after each LeNet convolution (kernel = stride = 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Max pooling (default).
    Max,
    /// Average pooling.
    Avg,
}

/// The `[problem]` table of `kind = "hr-deep"`. Every field is optional.
///
/// Defaults: 50 000 inner / 10 000 outer images (disjoint seeded draws from MNIST's 60 000
/// training images), the 10 000 test images, `γ = 10⁻³`, max pooling, pixels in `[0, 1]`.
/// [`HrDeepSpec::quick`] is a small size for smoke runs.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HrDeepSpec {
    /// Inner (training) images, the data of `g` (default 50 000). `train + val ≤ 60 000`.
    pub train: usize,
    /// Outer (validation) images, the data of `f` (default 10 000).
    pub val: usize,
    /// Test images (default 10 000, at most 10 000).
    pub test: usize,
    /// `γ ≥ 0` of the head's ridge term `(γ/2)‖W‖²` (default 10⁻³).
    pub reg: f64,
    /// `"max"` or `"avg"` pooling in the backbone (default max).
    pub pool: Pooling,
    /// Standardise pixels with training statistics instead of keeping them in `[0, 1]`
    /// (default false).
    pub standardize: bool,
    /// Folder with the four MNIST IDX files (plain or `.gz`); default: the bundled copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mnist_dir: Option<PathBuf>,
}

impl Default for HrDeepSpec {
    fn default() -> Self {
        Self {
            train: 50_000,
            val: 10_000,
            test: 10_000,
            reg: 1e-3,
            pool: Pooling::Max,
            standardize: false,
            mnist_dir: None,
        }
    }
}

impl HrDeepSpec {
    /// A small instance for `--quick` runs: 2 000 / 1 000 / 1 000 images, other fields default.
    pub fn quick() -> Self {
        Self {
            train: 2_000,
            val: 1_000,
            test: 1_000,
            ..Self::default()
        }
    }

    /// Checks every field's range (no data is read).
    pub fn validate(&self) -> Result<()> {
        check_mnist_sizes(
            ("train", self.train, 50_000),
            ("val", self.val, 10_000),
            ("test", self.test, 10_000),
        )?;
        check_positive("reg", self.reg, true, 1e-3)?;
        Ok(())
    }

    /// Loads MNIST (the bundled copy or `mnist_dir`) and builds the problem.
    pub fn build<B: Backend>(&self, seed: u64, device: &B::Device) -> Result<HrDeep<B>> {
        self.validate()?;
        let mnist = load_mnist(self.mnist_dir.as_deref())?;
        HrDeep::from_mnist(self, &mnist, seed, device)
    }

    fn lenet(&self) -> LeNetConfig {
        let pool = match self.pool {
            Pooling::Max => Pool::Max,
            Pooling::Avg => Pool::Avg,
        };
        LeNetConfig::new().with_pool(pool)
    }
}

/// Images `[n, 1, 28, 28]` with one-hot targets and labels.
#[derive(Clone, Debug)]
struct ImageSet<B: Backend> {
    images: Tensor<B, 4>,
    targets: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
    len: usize,
}

impl<B: Backend> ImageSet<B> {
    fn new(data: &Dataset, device: &B::Device) -> Self {
        let n = data.len;
        Self {
            images: matrix_f32::<B>(&data.images, n, data.features(), device)
                .reshape([n, 1, data.rows, data.cols]),
            targets: one_hot(&data.labels, MNIST_CLASSES, device),
            labels: label_tensor(&data.labels, device),
            len: n,
        }
    }
}

/// The deep hyper-representation problem (see the module documentation).
#[derive(Clone, Debug)]
pub struct HrDeep<B: Backend> {
    train: ImageSet<B>,
    val: ImageSet<B>,
    test: ImageSet<B>,
    config: LeNetConfig,
    head: LinearShape,
    spec: HrDeepSpec,
    seed: u64,
    device: B::Device,
}

impl<B: Backend> HrDeep<B> {
    /// Builds the problem from loaded MNIST, split with `seed`.
    pub fn from_mnist(
        spec: &HrDeepSpec,
        mnist: &Mnist,
        seed: u64,
        device: &B::Device,
    ) -> Result<Self> {
        spec.validate()?;
        let parts = split_mnist(
            mnist,
            spec.train,
            spec.val,
            spec.test,
            spec.standardize,
            seed,
        )?;
        for part in [&parts.train, &parts.val, &parts.test] {
            if part.rows != SIDE || part.cols != SIDE {
                return Err(crate::error::ProblemError::config(
                    "mnist_dir",
                    format!("expected 28×28 images, got {}×{}", part.rows, part.cols),
                ));
            }
        }
        Ok(Self {
            train: ImageSet::new(&parts.train, device),
            val: ImageSet::new(&parts.val, device),
            test: ImageSet::new(&parts.test, device),
            config: spec.lenet(),
            head: LinearShape {
                features: FEATURES,
                classes: MNIST_CLASSES,
                bias: true,
            },
            spec: spec.clone(),
            seed,
            device: device.clone(),
        })
    }

    /// Layout of `y` (the head).
    pub fn head_shape(&self) -> LinearShape {
        self.head
    }

    /// The 84-d representation `φ_λ(a)` of `images` (`[n, 84]`), on any backend level.
    pub fn representation<C: Backend>(
        &self,
        x: Tensor<C, 1>,
        images: Tensor<C, 4>,
    ) -> Tensor<C, 2> {
        let device = x.device();
        match unflatten(self.config.init_features::<C>(&device), x) {
            Ok(backbone) => backbone.forward(images),
            Err(e) => panic!("hr-deep: x does not fit the LeNet backbone: {e}"),
        }
    }

    fn mean_ce<C: Lift<B>>(
        &self,
        set: &ImageSet<B>,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        let images = batch.rows(C::lift(set.images.clone()));
        let targets = batch.rows(C::lift(set.targets.clone()));
        let logits = self.head.logits(self.representation(x, images), y);
        mean(cross_entropy_per_sample(logits, targets))
    }

    /// Mean cross-entropy and accuracy on `set`, in chunks of [`EVAL_CHUNK`] images.
    fn loss_and_accuracy(
        &self,
        set: &ImageSet<B>,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
    ) -> Result<(f64, f64)> {
        let (mut loss, mut correct) = (0.0, 0.0);
        let mut start = 0;
        while start < set.len {
            let n = EVAL_CHUNK.min(set.len - start);
            let images = set.images.clone().narrow(0, start, n);
            let logits = self
                .head
                .logits(self.representation(x.clone(), images), y.clone());
            let targets = set.targets.clone().narrow(0, start, n);
            let ce = cross_entropy_per_sample(logits.clone(), targets).sum();
            loss += to_vec(ce)?[0];
            let labels = set.labels.clone().narrow(0, start, n);
            correct += bilevel_models::linear::accuracy(logits, labels) * n as f64;
            start += n;
        }
        let n = set.len.max(1) as f64;
        Ok((loss / n, correct / n))
    }
}

impl<B: Backend> BilevelProblem<B> for HrDeep<B> {
    fn x_dim(&self) -> usize {
        self.config.num_feature_params()
    }

    fn y_dim(&self) -> usize {
        self.head.len()
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
        let ridge = self
            .head
            .weight_sq_norm(y.clone())
            .mul_scalar(0.5 * self.spec.reg);
        self.mean_ce(&self.train, x, y, batch).add(ridge)
    }

    fn outer_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        self.mean_ce(&self.val, x, y, batch)
    }
}

impl<B: AutodiffBackend> Application<B> for HrDeep<B> {
    fn id(&self) -> &'static str {
        "hr-deep"
    }

    fn describe(&self) -> String {
        format!(
            "hr-deep (paper 000 §4.2): {}; {} inner / {} outer images from the 60000 training \
             images, {} test images, split seed {}; x = LeNet-5 backbone up to the 84-d \
             representation ({} parameters, {} pooling), y = linear classifier 84×10 + bias \
             with (γ/2)‖W‖², γ = {}; g = inner CE, f = outer CE; pixels {}",
            mnist_source(self.spec.mnist_dir.as_ref()),
            self.spec.train,
            self.spec.val,
            self.spec.test,
            self.seed,
            self.x_dim(),
            match self.spec.pool {
                Pooling::Max => "max",
                Pooling::Avg => "average",
            },
            self.spec.reg,
            if self.spec.standardize {
                "standardised with training statistics"
            } else {
                "in [0, 1]"
            }
        )
    }

    /// `λ⁰` drawn like burn's default layer initialisation (`U(±1/√fan_in)`) from `seed`,
    /// head `(W⁰, b⁰) = 0`.
    fn initial_point(&self, seed: u64) -> Result<(Tensor<B, 1>, Tensor<B, 1>)> {
        let mut rng = Rng::seed(seed ^ 0x1e4e_7000);
        let template = self.config.init_features::<B>(&self.device);
        let x0 = seeded_uniform_init(&template, &mut rng);
        Ok((
            vector(&x0, &self.device),
            vector(&vec![0.0; self.y_dim()], &self.device),
        ))
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec!["test_accuracy", "test_loss", "val_accuracy", "val_loss"]
    }

    /// Accuracy and mean cross-entropy of the whole network `(λ, W, b)` on the test and the
    /// outer (validation) images.
    fn evaluate(&self, x: &Tensor<B, 1>, y: &Tensor<B, 1>) -> Result<Vec<Metric>> {
        check_len("x", x, self.x_dim())?;
        check_len("y", y, self.y_dim())?;
        let (x, y) = (x.clone().detach(), y.clone().detach());
        let (test_loss, test_acc) = self.loss_and_accuracy(&self.test, &x, &y)?;
        let (val_loss, val_acc) = self.loss_and_accuracy(&self.val, &x, &y)?;
        Ok(vec![
            Metric::new("test_accuracy", test_acc),
            Metric::new("test_loss", test_loss),
            Metric::new("val_accuracy", val_acc),
            Metric::new("val_loss", val_loss),
        ])
    }
}
