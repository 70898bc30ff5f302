//! `poisoning`: a data-poisoning attack on a linear MNIST classifier (paper 002, §7.3;
//! `docs/REPRODUCTION.md` `poisoning`).
//!
//! An attacker adds noise `δ_i` to a random subset `I_p` of the training images, inside the
//! L∞ ball `‖δ‖_∞ ≤ ε`, to *raise* the validation loss of the classifier trained on the
//! poisoned set. The formulas are missing from the paper's text extraction; this follows the
//! authors' code (`bioptexps/source/poisoning.py`, MNIST settings):
//!
//! `g(δ, W; S) = (1/|S|) Σ_{i∈S} CE(x̃_iᵀW, y_i) + r · mean(W²)` with `x̃_i = x_i + δ_i` for
//! `i ∈ I_p` and `x̃_i = x_i` otherwise (`mean(W²) = ‖W‖²/(784·10)`, so `r` is the code's
//! `reg_param`); `f(δ, W; S) = −(1/|S|) Σ_{i∈S} CE(x_iᵀW, y_i)` over the validation set
//! (the attacker minimises the negative loss). `x = vec(δ)` (`|I_p| × 784`, row-major),
//! `y = vec(W)` (`784 × 10`, row-major, no bias by default as in the code). The lower level is
//! strongly convex (ridge), so `Ψ = W − γ∇_W g` is a contraction. [`BilevelProblem::upper_constraint`]
//! is the L∞ ball, which projected methods (BSGM) project onto.
//!
//! The oracle's default path computes these derivatives by hand ([`crate::linear_ce`] with
//! noisy rows and a negated outer loss); nested autodiff of the losses below stays the control
//! (`run.autodiff_only`) and the test oracle.
//!
//! Inner samples are ordered clean first, then poisoned: indices `0..n − |I_p|` are clean,
//! `n − |I_p|..n` poisoned (sample `n − |I_p| + j` carries `δ_j`).

use std::path::PathBuf;

use bilevel_core::tensor::{check_len, vector};
use bilevel_core::{Batch, BilevelProblem, ClosedForm, Constraint, Lift, Oracle};
use bilevel_data::Mnist;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};

use crate::application::{Application, Metric};
use crate::common::{
    check_count, check_mnist_sizes, check_positive, cross_entropy_per_sample, evaluate_linear,
    load_mnist, mean, mnist_source, split_batch, split_mnist, ClassSet, LinearShape, MNIST_CLASSES,
    MNIST_FEATURES,
};
use crate::error::{ProblemError, Result};
use crate::linear_ce::{LinearCe, LinearModel, Output, Ridge, SampleWeights};

/// The `[problem]` table of `kind = "poisoning"`. Every field is optional; defaults are the
/// authors' MNIST settings (45 000 training images of which 20% = 9 000 poisoned, 15 000
/// validation images, `ε = 0.2`, `r = 0.1`).
///
/// Train and validation images are disjoint seeded draws from MNIST's 60 000 training images
/// (the code splits 75% / 25%), test images from its 10 000 test images; the poisoned subset is
/// a seeded random part of the training images.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoisoningSpec {
    /// Training images, clean and poisoned together (default 45 000). `train + val ≤ 60 000`.
    pub train: usize,
    /// Validation images (default 15 000).
    pub val: usize,
    /// Test images (default 10 000, at most 10 000).
    pub test: usize,
    /// Poisoned training images `|I_p|` (default 9 000; between 1 and `train`).
    pub poisoned: usize,
    /// Radius `ε` of the L∞ ball the noise lives in (default 0.2; pixels are in `[0, 1]`).
    pub radius: f64,
    /// `r` of the ridge term `r · mean(W²)` (default 0.1; must be > 0 for a strongly convex
    /// lower level).
    pub reg: f64,
    /// Whether the classifier has a bias (default false, as in the authors' code).
    pub bias: bool,
    /// Steps of the fresh classifier trained on the poisoned set when a run ends (the
    /// `retrained_*` metrics, [`Poisoning::retrain`]; default 500, 0 turns them off).
    pub retrain_steps: usize,
    /// Folder with the four MNIST IDX files (plain or `.gz`); default: the bundled copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mnist_dir: Option<PathBuf>,
}

impl Default for PoisoningSpec {
    fn default() -> Self {
        Self {
            train: 45_000,
            val: 15_000,
            test: 10_000,
            poisoned: 9_000,
            radius: 0.2,
            reg: 0.1,
            bias: false,
            retrain_steps: 500,
            mnist_dir: None,
        }
    }
}

impl PoisoningSpec {
    /// Checks every field's range (no data is read).
    pub fn validate(&self) -> Result<()> {
        check_mnist_sizes(
            ("train", self.train, 45_000),
            ("val", self.val, 15_000),
            ("test", self.test, 10_000),
        )?;
        check_count("poisoned", self.poisoned, self.train, 9_000)?;
        check_positive("radius", self.radius, false, 0.2)?;
        check_positive("reg", self.reg, false, 0.1)?;
        if self.retrain_steps > 100_000 {
            return Err(ProblemError::config(
                "retrain_steps",
                format!(
                    "at most 100000 (each step is a pass over the training set), got {}; the \
                     default is 500",
                    self.retrain_steps
                ),
            ));
        }
        if self.radius > 1.0 {
            return Err(ProblemError::config(
                "radius",
                format!(
                    "an L∞ radius above 1 exceeds the whole pixel range [0, 1], got {}; the \
                     default is 0.2",
                    self.radius
                ),
            ));
        }
        Ok(())
    }

    /// Loads MNIST (the bundled copy or `mnist_dir`) and builds the problem.
    pub fn build<B: Backend>(&self, seed: u64, device: &B::Device) -> Result<Poisoning<B>> {
        self.validate()?;
        let mnist = load_mnist(self.mnist_dir.as_deref())?;
        Poisoning::from_mnist(self, &mnist, seed, device)
    }
}

/// The data-poisoning problem (see the module documentation).
#[derive(Clone, Debug)]
pub struct Poisoning<B: Backend> {
    clean: ClassSet<B>,
    poison: ClassSet<B>,
    val: ClassSet<B>,
    test: ClassSet<B>,
    shape: LinearShape,
    closed: LinearCe<B>,
    spec: PoisoningSpec,
    seed: u64,
    device: B::Device,
}

fn index_tensor<C: Backend>(idx: &[usize], device: &C::Device) -> Tensor<C, 1, Int> {
    let values: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    Tensor::from_data(
        TensorData::new(values, [idx.len()]).convert::<C::IntElem>(),
        device,
    )
}

impl<B: Backend> Poisoning<B> {
    /// Builds the problem from loaded MNIST: split with `seed` (the training part is a random
    /// draw, so its first `poisoned` images are a random poisoned subset).
    pub fn from_mnist(
        spec: &PoisoningSpec,
        mnist: &Mnist,
        seed: u64,
        device: &B::Device,
    ) -> Result<Self> {
        spec.validate()?;
        let parts = split_mnist(mnist, spec.train, spec.val, spec.test, false, seed)?;
        let poison_idx: Vec<usize> = (0..spec.poisoned).collect();
        let clean_idx: Vec<usize> = (spec.poisoned..spec.train).collect();
        let poison = parts.train.subset(&poison_idx)?;
        let clean = parts.train.subset(&clean_idx)?;
        let clean = ClassSet::new(&clean, &clean.labels, MNIST_CLASSES, device);
        let poison = ClassSet::new(&poison, &poison.labels, MNIST_CLASSES, device);
        let val = ClassSet::new(&parts.val, &parts.val.labels, MNIST_CLASSES, device);
        let shape = LinearShape {
            features: MNIST_FEATURES,
            classes: MNIST_CLASSES,
            bias: spec.bias,
        };
        // The same losses by hand: ridge r·mean(W²) = (r/(dc))‖W‖², noise on the poisoned
        // rows, f = −(validation cross-entropy).
        let model = LinearModel {
            shape,
            output: Output::Softmax,
            weights: SampleWeights::One,
            ridge: Ridge::Const(spec.reg / (MNIST_FEATURES * MNIST_CLASSES) as f64),
        };
        let closed = LinearCe::new(clean.pair(), val.pair(), model)?
            .with_noisy_rows(poison.pair())?
            .negated_outer();
        Ok(Self {
            clean,
            poison,
            val,
            test: ClassSet::new(&parts.test, &parts.test.labels, MNIST_CLASSES, device),
            shape,
            closed,
            spec: spec.clone(),
            seed,
            device: device.clone(),
        })
    }

    /// Number of clean training images (inner samples `0..clean_len()`).
    pub fn clean_len(&self) -> usize {
        self.clean.len
    }

    /// Number of poisoned training images (inner samples `clean_len()..`).
    pub fn poisoned_len(&self) -> usize {
        self.poison.len
    }

    /// Layout of `y`.
    pub fn shape(&self) -> LinearShape {
        self.shape
    }

    /// Features and targets of the inner samples `batch` selects, with the noise `x` added to
    /// the poisoned ones (clean rows first, then poisoned rows; the loss is a mean, so the
    /// order does not matter).
    fn poisoned_rows<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        batch: &Batch,
    ) -> (Tensor<C, 2>, Tensor<C, 2>) {
        let n = self.clean.len + self.poison.len;
        let (ci, pi) = split_batch(batch, n, self.clean.len);
        let noise = x.reshape([self.poison.len, MNIST_FEATURES]);
        let mut features = Vec::with_capacity(2);
        let mut targets = Vec::with_capacity(2);
        let full = matches!(batch, Batch::Full);
        if !ci.is_empty() {
            let (f, t) = (
                C::lift(self.clean.features.clone()),
                C::lift(self.clean.targets.clone()),
            );
            if full {
                features.push(f);
                targets.push(t);
            } else {
                let idx = index_tensor::<C>(&ci, &f.device());
                features.push(f.select(0, idx.clone()));
                targets.push(t.select(0, idx));
            }
        }
        if !pi.is_empty() {
            let (f, t) = (
                C::lift(self.poison.features.clone()),
                C::lift(self.poison.targets.clone()),
            );
            if full {
                features.push(f.add(noise));
                targets.push(t);
            } else {
                let idx = index_tensor::<C>(&pi, &f.device());
                features.push(f.select(0, idx.clone()).add(noise.select(0, idx.clone())));
                targets.push(t.select(0, idx));
            }
        }
        (Tensor::cat(features, 0), Tensor::cat(targets, 0))
    }
}

impl<B: Backend> BilevelProblem<B> for Poisoning<B> {
    fn x_dim(&self) -> usize {
        self.poison.len * MNIST_FEATURES
    }

    fn y_dim(&self) -> usize {
        self.shape.len()
    }

    fn device(&self) -> B::Device {
        self.device.clone()
    }

    fn inner_len(&self) -> Option<usize> {
        Some(self.clean.len + self.poison.len)
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
        let (features, targets) = self.poisoned_rows(x, batch);
        let ce = mean(cross_entropy_per_sample(
            self.shape.logits(features, y.clone()),
            targets,
        ));
        let weights = (self.shape.features * self.shape.classes) as f64;
        ce.add(
            self.shape
                .weight_sq_norm(y)
                .mul_scalar(self.spec.reg / weights),
        )
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
        .neg()
    }

    /// The hand-derived derivatives of [`crate::linear_ce`] with noisy rows (the default
    /// oracle path).
    fn closed_form(&self) -> Option<&dyn ClosedForm<B>> {
        Some(&self.closed)
    }

    fn upper_constraint(&self) -> Constraint {
        Constraint::LInfBall {
            radius: self.spec.radius,
        }
    }
}

impl<B: AutodiffBackend> Poisoning<B> {
    /// A classifier trained afresh on the training set poisoned with `x`, as paper 002 §7.3
    /// evaluates an attack (the test accuracy of a model trained on the poisoned data), and the
    /// norm of `∇_W g(x, W)` where its training stopped.
    ///
    /// It minimises the lower-level objective `g(x, ·)` (cross-entropy + `r · mean(W²)`, the
    /// same model the attack was computed against; its gradient is the oracle's, i.e. the
    /// problem's own derivatives) from `W = 0` with `retrain_steps` steps of Nesterov's
    /// accelerated gradient on the whole poisoned set (momentum `(k − 1)/(k + 2)`, without a
    /// bias capped at `(√κ − 1)/(√κ + 1)`, `κ = L/μ`, `μ = 2r/(dc)`), step `1/L` with Böhning's
    /// bound `L = ½ λ_max(ÃᵀÃ/n) + 2r/(dc)` (`Ã` the poisoned features, with a column of ones
    /// when there is a bias; `λ_max` by 50 power iterations, raised 1 % for their error). The
    /// paper's own training recipe for this evaluation is not in its text.
    pub fn retrain(&self, x: &Tensor<B, 1>) -> Result<(Tensor<B, 1>, f64)> {
        check_len("x", x, self.x_dim())?;
        let x = x.clone().detach();
        let (features, _) = self.poisoned_rows::<B>(x.clone(), &Batch::Full);
        let n = features.dims()[0] as f64;
        let d = MNIST_FEATURES;
        let mut v: Tensor<B, 1> = vector(&vec![1.0; d], &self.device);
        let mut lambda = 0.0;
        for _ in 0..50 {
            let av = features.clone().matmul(v.clone().reshape([d, 1]));
            let w = features
                .clone()
                .transpose()
                .matmul(av)
                .reshape([d])
                .div_scalar(n);
            lambda = bilevel_core::tensor::scalar(w.clone().powi_scalar(2).sum().sqrt());
            if !(lambda > 0.0 && lambda.is_finite()) {
                return Err(ProblemError::config(
                    "x",
                    "the poisoned training features have no usable spectrum (zero or not finite)",
                ));
            }
            v = w.div_scalar(lambda);
        }
        let ridge = 2.0 * self.spec.reg / (d * MNIST_CLASSES) as f64;
        let bias = if self.spec.bias { 1.0 } else { 0.0 };
        let step = 1.0 / (0.5 * (1.01 * lambda + bias) + ridge);
        let mut oracle = Oracle::new(self);
        let mut grad = |y: &Tensor<B, 1>| oracle.grad_g_y(&x, y, &Batch::Full);
        let zero: Tensor<B, 1> = vector(&vec![0.0; self.y_dim()], &self.device);
        let (mut y, mut previous) = (zero.clone(), zero);
        // Momentum (k − 1)/(k + 2), capped at (√κ − 1)/(√κ + 1) with κ = L/μ, μ = 2r/(dc)
        // the ridge's curvature (the strongly convex rate once the cap is reached); not capped
        // with a bias, which is not regularised (g is then not strongly convex).
        let root_kappa = (1.0 / (step * ridge)).sqrt();
        let cap = if self.spec.bias {
            1.0
        } else {
            (root_kappa - 1.0) / (root_kappa + 1.0)
        };
        for k in 0..self.spec.retrain_steps {
            let momentum = (k.saturating_sub(1) as f64 / (k + 2) as f64).min(cap);
            let z = y.clone().add(y.clone().sub(previous).mul_scalar(momentum));
            previous = y;
            y = z.clone().sub(grad(&z)?.mul_scalar(step));
        }
        let norm = bilevel_core::tensor::scalar(grad(&y)?.powi_scalar(2).sum().sqrt());
        Ok((y, norm))
    }
}

impl<B: AutodiffBackend> Application<B> for Poisoning<B> {
    fn id(&self) -> &'static str {
        "poisoning"
    }

    fn describe(&self) -> String {
        format!(
            "poisoning (paper 002 §7.3, formulation of the authors' code): {}; {} training \
             images ({} of them poisoned) and {} validation images from the 60000 training \
             images, {} test images, split seed {}; x = additive noise on the poisoned images \
             in the L∞ ball of radius {}, y = linear classifier 784×10{} with ridge \
             {}·mean(W²); f = −(validation cross-entropy); pixels in [0, 1] (poisoned pixels \
             are not clipped to [0, 1])",
            mnist_source(self.spec.mnist_dir.as_ref()),
            self.spec.train,
            self.spec.poisoned,
            self.spec.val,
            self.spec.test,
            self.seed,
            self.spec.radius,
            if self.spec.bias { " + bias" } else { "" },
            self.spec.reg
        )
    }

    /// `δ⁰ = 0` and `W⁰ = 0` (the authors' "zero" initialisation); deterministic.
    fn initial_point(&self, _seed: u64) -> Result<(Tensor<B, 1>, Tensor<B, 1>)> {
        Ok((
            vector(&vec![0.0; self.x_dim()], &self.device),
            vector(&vec![0.0; self.y_dim()], &self.device),
        ))
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec!["test_accuracy", "test_loss", "val_loss"]
    }

    /// With `retrain_steps > 0`: the test accuracy and loss of a classifier trained afresh on
    /// the poisoned set ([`Poisoning::retrain`]), and its final `‖∇_W g‖`.
    fn final_metric_names(&self) -> Vec<&'static str> {
        if self.spec.retrain_steps == 0 {
            return Vec::new();
        }
        vec![
            "retrained_test_accuracy",
            "retrained_test_loss",
            "retrained_grad_norm",
        ]
    }

    fn evaluate_final(&self, x: &Tensor<B, 1>, _y: &Tensor<B, 1>) -> Result<Vec<Metric>> {
        if self.spec.retrain_steps == 0 {
            return Ok(Vec::new());
        }
        let (w, grad_norm) = self.retrain(x)?;
        let (loss, acc) = evaluate_linear(&self.shape, &self.test, w)?;
        Ok(vec![
            Metric::new("retrained_test_accuracy", acc),
            Metric::new("retrained_test_loss", loss),
            Metric::new("retrained_grad_norm", grad_norm),
        ])
    }

    /// Accuracy and mean cross-entropy of `W` on the test images (the attack should lower the
    /// former), and the mean validation cross-entropy `−f` (the attack raises it).
    fn evaluate(&self, x: &Tensor<B, 1>, y: &Tensor<B, 1>) -> Result<Vec<Metric>> {
        check_len("x", x, self.x_dim())?;
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
