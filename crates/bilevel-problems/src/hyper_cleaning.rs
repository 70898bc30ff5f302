//! `hyper-cleaning`: data hyper-cleaning on MNIST (paper 004, App. A; Franceschi et al. 2017,
//! Shaban et al. 2019; `docs/REPRODUCTION.md` `hyper-cleaning`).
//!
//! Each training label is replaced, with probability `p`, by a uniformly drawn *other* class
//! ([`bilevel_data::corrupt_labels`]). The upper variable is one weight per training sample,
//! `x = λ ∈ ℝ^{n_tr}`; the lower variable is a linear classifier `y = vec(W)`, `W ∈ ℝ^{784×10}`
//! (row-major; the paper's model `L(W x_i, y_i)` has no bias, an optional one follows `W`):
//!
//! `g(λ, W; S) = (1/|S|) Σ_{i∈S} σ(λ_i) CE(x_iᵀW, ỹ_i) + C_r ‖W‖²`,
//! `f(λ, W; S) = (1/|S|) Σ_{i∈S} CE(x_iᵀW, y_i)` over the (clean) validation set,
//!
//! `σ(t) = 1/(1 + e^{−t})`, `C_r = 10⁻³`. Both levels are stochastic over their samples; a
//! batch of the inner level selects rows of the training set *and* the matching `λ_i`.
//! Pixels are in `[0, 1]` (optionally standardised with training statistics).

use std::path::PathBuf;

use bilevel_core::tensor::{check_len, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, ClosedForm, Lift};
use bilevel_data::{corrupt_labels, Mnist};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

use crate::application::{Application, Metric};
use crate::common::{
    check_mnist_sizes, check_positive, check_range, cross_entropy_per_sample, evaluate_linear,
    f1_score, load_mnist, mean, mnist_source, sigmoid, split_mnist, ClassSet, LinearShape,
    MNIST_CLASSES, MNIST_FEATURES,
};
use crate::error::Result;
use crate::linear_ce::{LinearCe, LinearModel, Output, Ridge, SampleWeights};

/// The `[problem]` table of `kind = "hyper-cleaning"`. Every field is optional; defaults are
/// paper 004's setting (20 000 / 5 000 / 10 000 images, `p = 0.1`, `C_r = 10⁻³`).
///
/// Train and validation images are disjoint seeded draws from MNIST's 60 000 training images,
/// test images a seeded draw from its 10 000 test images (all of them by default); the split
/// uses the run's seed, the label corruption a seed derived from it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HyperCleaningSpec {
    /// Training images `n_tr` (= length of `x`; default 20 000). `train + val ≤ 60 000`.
    pub train: usize,
    /// Validation images (default 5 000).
    pub val: usize,
    /// Test images (default 10 000, at most 10 000).
    pub test: usize,
    /// Probability `p ∈ [0, 1]` that a training label is replaced by another class
    /// (default 0.1; the paper also runs 0.2).
    pub corruption: f64,
    /// `C_r` of the ridge term `C_r ‖W‖²` (default 10⁻³, as in Shaban et al.).
    pub reg: f64,
    /// Whether the classifier has a bias (default false: the paper's model is `W x_i`).
    pub bias: bool,
    /// Standardise pixels with training statistics instead of keeping them in `[0, 1]`
    /// (default false).
    pub standardize: bool,
    /// Folder with the four MNIST IDX files (plain or `.gz`); default: the bundled copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mnist_dir: Option<PathBuf>,
}

impl Default for HyperCleaningSpec {
    fn default() -> Self {
        Self {
            train: 20_000,
            val: 5_000,
            test: 10_000,
            corruption: 0.1,
            reg: 1e-3,
            bias: false,
            standardize: false,
            mnist_dir: None,
        }
    }
}

impl HyperCleaningSpec {
    /// Checks every field's range (no data is read).
    pub fn validate(&self) -> Result<()> {
        check_mnist_sizes(
            ("train", self.train, 20_000),
            ("val", self.val, 5_000),
            ("test", self.test, 10_000),
        )?;
        check_range("corruption", self.corruption, 0.0, 1.0, 0.1)?;
        check_positive("reg", self.reg, true, 1e-3)?;
        Ok(())
    }

    /// Loads MNIST (the bundled copy or `mnist_dir`) and builds the problem.
    pub fn build<B: Backend>(&self, seed: u64, device: &B::Device) -> Result<HyperCleaning<B>> {
        self.validate()?;
        let mnist = load_mnist(self.mnist_dir.as_deref())?;
        HyperCleaning::from_mnist(self, &mnist, seed, device)
    }
}

/// The data hyper-cleaning problem (see the module documentation).
#[derive(Clone, Debug)]
pub struct HyperCleaning<B: Backend> {
    train: ClassSet<B>,
    val: ClassSet<B>,
    test: ClassSet<B>,
    shape: LinearShape,
    closed: LinearCe<B>,
    reg: f64,
    flipped: Vec<usize>,
    spec: HyperCleaningSpec,
    seed: u64,
    device: B::Device,
}

impl<B: Backend> HyperCleaning<B> {
    /// Builds the problem from loaded MNIST: split with `seed`, corrupt the training labels
    /// with a seed derived from it.
    pub fn from_mnist(
        spec: &HyperCleaningSpec,
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
        let corrupted = corrupt_labels(
            &parts.train.labels,
            MNIST_CLASSES,
            spec.corruption,
            seed.wrapping_add(0x0c1e_a2ed),
        )?;
        let train = ClassSet::new(&parts.train, &corrupted.labels, MNIST_CLASSES, device);
        let val = ClassSet::new(&parts.val, &parts.val.labels, MNIST_CLASSES, device);
        let shape = LinearShape {
            features: MNIST_FEATURES,
            classes: MNIST_CLASSES,
            bias: spec.bias,
        };
        let model = LinearModel {
            shape,
            output: Output::Softmax,
            weights: SampleWeights::Sigmoid,
            ridge: Ridge::Const(spec.reg),
        };
        Ok(Self {
            closed: LinearCe::new(train.pair(), val.pair(), model)?,
            train,
            val,
            test: ClassSet::new(&parts.test, &parts.test.labels, MNIST_CLASSES, device),
            shape,
            reg: spec.reg,
            flipped: corrupted.flipped,
            spec: spec.clone(),
            seed,
            device: device.clone(),
        })
    }

    /// Indices of the training samples whose label was corrupted (ascending).
    pub fn corrupted(&self) -> &[usize] {
        &self.flipped
    }

    /// Layout of `y`.
    pub fn shape(&self) -> LinearShape {
        self.shape
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

    /// F1 score of [`HyperCleaning::flagged`] against the truly corrupted samples.
    pub fn flagged_f1(&self, lambda: &[f64]) -> f64 {
        f1_score(&Self::flagged(lambda), &self.flipped, self.train.len)
    }
}

impl<B: Backend> BilevelProblem<B> for HyperCleaning<B> {
    fn x_dim(&self) -> usize {
        self.train.len
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
        let weights = sigmoid(batch.rows(x));
        let ce = cross_entropy_per_sample(self.shape.logits(features, y.clone()), targets);
        mean(ce.mul(weights)).add(self.shape.weight_sq_norm(y).mul_scalar(self.reg))
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

impl<B: AutodiffBackend> Application<B> for HyperCleaning<B> {
    fn id(&self) -> &'static str {
        "hyper-cleaning"
    }

    fn describe(&self) -> String {
        format!(
            "hyper-cleaning (paper 004 App. A): {}; {} train / {} validation images from the \
             60000 training images, {} test images, split seed {}; {} of {} training labels \
             ({:.1}%, p = {}) replaced by a random other class; x = per-sample weights λ \
             (σ(λ) weights the training loss), y = linear classifier 784×10{}, C_r = {}; \
             pixels {}",
            mnist_source(self.spec.mnist_dir.as_ref()),
            self.spec.train,
            self.spec.val,
            self.spec.test,
            self.seed,
            self.flipped.len(),
            self.train.len,
            100.0 * self.flipped.len() as f64 / self.train.len as f64,
            self.spec.corruption,
            if self.spec.bias { " + bias" } else { "" },
            self.reg,
            if self.spec.standardize {
                "standardised with training statistics"
            } else {
                "in [0, 1]"
            }
        )
    }

    /// `λ⁰ = 0` (every sample weighted `σ(0) = 1/2`) and `W⁰ = 0`; deterministic.
    fn initial_point(&self, _seed: u64) -> Result<(Tensor<B, 1>, Tensor<B, 1>)> {
        Ok((
            vector(&vec![0.0; self.x_dim()], &self.device),
            vector(&vec![0.0; self.y_dim()], &self.device),
        ))
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec!["test_accuracy", "test_loss", "val_loss", "flagged_f1"]
    }

    /// Test accuracy and mean cross-entropy of `W` on the test images, mean validation
    /// cross-entropy, and the F1 score of the samples flagged by `σ(λ_i) < 1/2` against the
    /// truly corrupted ones.
    fn evaluate(&self, x: &Tensor<B, 1>, y: &Tensor<B, 1>) -> Result<Vec<Metric>> {
        check_len("x", x, self.x_dim())?;
        check_len("y", y, self.y_dim())?;
        let (test_loss, test_acc) = evaluate_linear(&self.shape, &self.test, y.clone())?;
        let (val_loss, _) = evaluate_linear(&self.shape, &self.val, y.clone())?;
        let f1 = self.flagged_f1(&to_vec(x.clone())?);
        Ok(vec![
            Metric::new("test_accuracy", test_acc),
            Metric::new("test_loss", test_loss),
            Metric::new("val_loss", val_loss),
            Metric::new("flagged_f1", f1),
        ])
    }
}
