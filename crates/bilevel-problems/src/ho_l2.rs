//! `ho-l2-mnist`: tuning a log-scale ℓ2 regularisation weight of multinomial logistic
//! regression on MNIST with noisy training labels (paper 003, §7.2; `docs/REPRODUCTION.md`
//! `ho-l2-mnist`).
//!
//! `x ∈ ℝ` is the log-regularisation coefficient, `y = vec(W)`, `W ∈ ℝ^{784×10}` (row-major; the
//! paper's model `⟨a_i, y⟩` has no bias):
//!
//! `g(x, W; S) = (1/|S|) Σ_{i∈S} CE(a_iᵀW, ỹ_i) + exp(x) ‖W‖²` over the corrupted training set,
//! `f(x, W; S) = (1/|S|) Σ_{i∈S} CE(a_iᵀW, b_i)` over the clean validation set,
//!
//! exactly paper 003's `g = (1/|D_tr|) Σ ℓ(⟨a_i, y⟩, b_i) + exp(x)‖y‖²` (no ½). Training labels
//! are "assigned random labels with probability p": each is replaced, with probability `p`, by
//! a class drawn uniformly from all 10 (so it keeps its value with probability 1/10); this is
//! drawn as [`bilevel_data::corrupt_labels`] (always another class) with probability
//! `p · 9/10`, which is the same distribution. Pixels are in `[0, 1]`.

use std::path::PathBuf;

use bilevel_core::tensor::{check_len, vector};
use bilevel_core::{Batch, BilevelProblem, ClosedForm, Lift};
use bilevel_data::{corrupt_labels, Mnist};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

use crate::application::{Application, Metric};
use crate::common::{
    check_mnist_sizes, check_range, cross_entropy_per_sample, evaluate_linear, load_mnist, mean,
    mnist_source, split_mnist, ClassSet, LinearShape, MNIST_CLASSES, MNIST_FEATURES,
};
use crate::error::Result;
use crate::linear_ce::{LinearCe, LinearModel, Output, Ridge, SampleWeights};

/// The `[problem]` table of `kind = "ho-l2-mnist"`. Every field is optional; defaults are paper
/// 003 §7.2's sizes (40 000 / 20 000 / 10 000 images; the paper runs `p = 0.5, 0.3, 0.1`).
///
/// Train and validation images are disjoint seeded draws from MNIST's 60 000 training images,
/// test images from its 10 000 test images; the split uses the run's seed, the label noise a
/// seed derived from it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HoL2MnistSpec {
    /// Training images (default 40 000). `train + val ≤ 60 000`.
    pub train: usize,
    /// Validation images (default 20 000).
    pub val: usize,
    /// Test images (default 10 000, at most 10 000).
    pub test: usize,
    /// Probability `p ∈ [0, 1]` that a training label is replaced by a uniformly random label
    /// (default 0.1).
    pub corruption: f64,
    /// Starting log-regularisation `x⁰` (default 0, i.e. `exp(x⁰) = 1`; the paper gives none).
    /// Must lie in `[−50, 20]`.
    pub x0: f64,
    /// Folder with the four MNIST IDX files (plain or `.gz`); default: the bundled copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mnist_dir: Option<PathBuf>,
}

impl Default for HoL2MnistSpec {
    fn default() -> Self {
        Self {
            train: 40_000,
            val: 20_000,
            test: 10_000,
            corruption: 0.1,
            x0: 0.0,
            mnist_dir: None,
        }
    }
}

impl HoL2MnistSpec {
    /// Checks every field's range (no data is read).
    pub fn validate(&self) -> Result<()> {
        check_mnist_sizes(
            ("train", self.train, 40_000),
            ("val", self.val, 20_000),
            ("test", self.test, 10_000),
        )?;
        check_range("corruption", self.corruption, 0.0, 1.0, 0.1)?;
        check_range("x0", self.x0, -50.0, 20.0, 0.0)?;
        Ok(())
    }

    /// Loads MNIST (the bundled copy or `mnist_dir`) and builds the problem.
    pub fn build<B: Backend>(&self, seed: u64, device: &B::Device) -> Result<HoL2Mnist<B>> {
        self.validate()?;
        let mnist = load_mnist(self.mnist_dir.as_deref())?;
        HoL2Mnist::from_mnist(self, &mnist, seed, device)
    }
}

/// The ℓ2 hyperparameter-tuning problem (see the module documentation).
#[derive(Clone, Debug)]
pub struct HoL2Mnist<B: Backend> {
    train: ClassSet<B>,
    val: ClassSet<B>,
    test: ClassSet<B>,
    shape: LinearShape,
    closed: LinearCe<B>,
    changed: usize,
    spec: HoL2MnistSpec,
    seed: u64,
    device: B::Device,
}

impl<B: Backend> HoL2Mnist<B> {
    /// Builds the problem from loaded MNIST: split with `seed`, label noise with a seed derived
    /// from it.
    pub fn from_mnist(
        spec: &HoL2MnistSpec,
        mnist: &Mnist,
        seed: u64,
        device: &B::Device,
    ) -> Result<Self> {
        spec.validate()?;
        let parts = split_mnist(mnist, spec.train, spec.val, spec.test, false, seed)?;
        let k = MNIST_CLASSES as f64;
        let noisy = corrupt_labels(
            &parts.train.labels,
            MNIST_CLASSES,
            spec.corruption * (k - 1.0) / k,
            seed.wrapping_add(0x1ab_e15),
        )?;
        let train = ClassSet::new(&parts.train, &noisy.labels, MNIST_CLASSES, device);
        let val = ClassSet::new(&parts.val, &parts.val.labels, MNIST_CLASSES, device);
        let shape = LinearShape {
            features: MNIST_FEATURES,
            classes: MNIST_CLASSES,
            bias: false,
        };
        let model = LinearModel {
            shape,
            output: Output::Softmax,
            weights: SampleWeights::One,
            ridge: Ridge::Exp,
        };
        Ok(Self {
            closed: LinearCe::new(train.pair(), val.pair(), model)?,
            train,
            val,
            test: ClassSet::new(&parts.test, &parts.test.labels, MNIST_CLASSES, device),
            shape,
            changed: noisy.flipped.len(),
            spec: spec.clone(),
            seed,
            device: device.clone(),
        })
    }

    /// Number of training labels that differ from the true ones.
    pub fn changed_labels(&self) -> usize {
        self.changed
    }
}

impl<B: Backend> BilevelProblem<B> for HoL2Mnist<B> {
    fn x_dim(&self) -> usize {
        1
    }

    fn y_dim(&self) -> usize {
        self.shape.len()
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
        let features = batch.rows(C::lift(self.train.features.clone()));
        let targets = batch.rows(C::lift(self.train.targets.clone()));
        let ce = mean(cross_entropy_per_sample(
            self.shape.logits(features, y.clone()),
            targets,
        ));
        ce.add(x.exp().mul(self.shape.weight_sq_norm(y)))
    }

    fn outer_loss<C: Lift<B>>(
        &self,
        _x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        let features = batch.rows(C::lift(self.val.features.clone()));
        let targets = batch.rows(C::lift(self.val.targets.clone()));
        mean(cross_entropy_per_sample(
            self.shape.logits(features, y),
            targets,
        ))
    }

    /// The hand-derived derivatives of [`crate::linear_ce`] (the default oracle path).
    fn closed_form(&self) -> Option<&dyn ClosedForm<B>> {
        Some(&self.closed)
    }
}

impl<B: AutodiffBackend> Application<B> for HoL2Mnist<B> {
    fn id(&self) -> &'static str {
        "ho-l2-mnist"
    }

    fn describe(&self) -> String {
        format!(
            "ho-l2-mnist (paper 003 §7.2): {}; {} train / {} validation images from the 60000 \
             training images, {} test images, split seed {}; training labels replaced by a \
             uniformly random label with probability p = {} ({} of {} changed); x = log ℓ2 \
             weight, y = multinomial logistic regression 784×10 (no bias), \
             g = CE_train + exp(x)‖W‖², f = CE_val; pixels in [0, 1]",
            mnist_source(self.spec.mnist_dir.as_ref()),
            self.spec.train,
            self.spec.val,
            self.spec.test,
            self.seed,
            self.spec.corruption,
            self.changed,
            self.train.len
        )
    }

    /// `x⁰` from the spec, `W⁰ = 0`; deterministic.
    fn initial_point(&self, _seed: u64) -> Result<(Tensor<B, 1>, Tensor<B, 1>)> {
        Ok((
            vector(&[self.spec.x0], &self.device),
            vector(&vec![0.0; self.y_dim()], &self.device),
        ))
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec!["test_accuracy", "test_loss", "val_loss"]
    }

    /// Accuracy and mean cross-entropy of `W` on the test images, and its mean validation
    /// cross-entropy (`f`).
    fn evaluate(&self, x: &Tensor<B, 1>, y: &Tensor<B, 1>) -> Result<Vec<Metric>> {
        check_len("x", x, 1)?;
        check_len("y", y, self.y_dim())?;
        let (test_loss, test_acc) = evaluate_linear(&self.shape, &self.test, y.clone())?;
        let (val_loss, _) = evaluate_linear(&self.shape, &self.val, y.clone())?;
        Ok(vec![
            Metric::new("test_accuracy", test_acc),
            Metric::new("test_loss", test_loss),
            Metric::new("val_loss", val_loss),
        ])
    }
}
