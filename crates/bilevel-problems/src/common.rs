//! Pieces shared by the MNIST applications (hyper-cleaning, ho-l2-mnist, poisoning) and the
//! regression ones: loading and splitting data, host data → tensors, the flat linear classifier,
//! its losses and metrics, and spec range checks.
//!
//! Every loss here is written with `exp`, `log`, `matmul`, `mul`, `sum` and `mul_scalar(1/n)`
//! only, so it is exact in `f64` through nested autodiff (`docs/ARCHITECTURE.md`, "Numerics on
//! burn 0.21").

use std::path::{Path, PathBuf};

use bilevel_core::tensor::to_vec;
use bilevel_core::Batch;
use bilevel_data::split::{split_indices, SplitSizes, Standardizer};
use bilevel_data::{Dataset, Mnist};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{ProblemError, Result};

/// MNIST pixels per image.
pub const MNIST_FEATURES: usize = 784;
/// MNIST classes.
pub const MNIST_CLASSES: usize = 10;

/// Loads MNIST from `dir` if given (plain or gzip IDX files, SHA-256 checked), else the copy
/// bundled with the workspace. Missing or corrupt files are [`ProblemError::Data`].
pub fn load_mnist(dir: Option<&Path>) -> Result<Mnist> {
    Ok(match dir {
        Some(dir) => Mnist::load(dir)?,
        None => Mnist::load_bundled()?,
    })
}

/// Where MNIST was read from, for `describe()`.
pub fn mnist_source(dir: Option<&PathBuf>) -> String {
    match dir {
        Some(d) => format!("MNIST from {}", d.display()),
        None => "MNIST (bundled copy in assets/mnist, CC BY-SA 3.0)".to_string(),
    }
}

/// MNIST cut into train/validation/test parts: train and validation are disjoint seeded random
/// draws from the 60 000 training images, test a seeded random draw from the 10 000 test
/// images (all of them, in file order, when `test = 10 000`).
#[derive(Clone, Debug)]
pub struct MnistParts {
    /// Training part.
    pub train: Dataset,
    /// Validation part.
    pub val: Dataset,
    /// Test part.
    pub test: Dataset,
}

/// Cuts `mnist` into [`MnistParts`] of the given sizes with `seed`; standardises the pixels with
/// training statistics when `standardize` (otherwise they stay in `[0, 1]`).
pub fn split_mnist(
    mnist: &Mnist,
    train: usize,
    val: usize,
    test: usize,
    standardize: bool,
    seed: u64,
) -> Result<MnistParts> {
    let idx = split_indices(mnist.train.len, SplitSizes::new(train, val, 0), seed)?;
    let test_idx: Vec<usize> = if test == mnist.test.len {
        (0..test).collect()
    } else {
        split_indices(
            mnist.test.len,
            SplitSizes::new(test, 0, 0),
            seed ^ 0x7e57_7e57,
        )?
        .train
    };
    let mut parts = MnistParts {
        train: mnist.train.subset(&idx.train)?,
        val: mnist.train.subset(&idx.val)?,
        test: mnist.test.subset(&test_idx)?,
    };
    if standardize {
        let s = Standardizer::fit_dataset(&parts.train)?;
        s.apply_dataset(&mut parts.train)?;
        s.apply_dataset(&mut parts.val)?;
        s.apply_dataset(&mut parts.test)?;
    }
    Ok(parts)
}

/// A row-major `f32` matrix as an `[rows, cols]` float tensor in the device's float precision
/// (no rounding beyond the data's own).
pub fn matrix_f32<B: Backend>(
    values: &[f32],
    rows: usize,
    cols: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    // `from_data` converts to the device's float dtype (exact from f32 to f64).
    Tensor::from_data(TensorData::new(values.to_vec(), [rows, cols]), device)
}

/// One-hot targets `[n, classes]` of integer labels.
pub fn one_hot<B: Backend>(labels: &[u8], classes: usize, device: &B::Device) -> Tensor<B, 2> {
    let mut data = vec![0.0f64; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        data[i * classes + usize::from(l)] = 1.0;
    }
    Tensor::from_data(TensorData::new(data, [labels.len(), classes]), device)
}

/// Integer labels as an `[n]` tensor.
pub fn label_tensor<B: Backend>(labels: &[u8], device: &B::Device) -> Tensor<B, 1, Int> {
    let data: Vec<i64> = labels.iter().map(|&l| i64::from(l)).collect();
    Tensor::from_data(
        TensorData::new(data, [labels.len()]).convert::<B::IntElem>(),
        device,
    )
}

/// A labelled classification set on the device: features, one-hot targets, labels.
#[derive(Clone, Debug)]
pub struct ClassSet<B: Backend> {
    /// `[n, d]` features.
    pub features: Tensor<B, 2>,
    /// `[n, c]` one-hot targets.
    pub targets: Tensor<B, 2>,
    /// `[n]` labels.
    pub labels: Tensor<B, 1, Int>,
    /// `n`.
    pub len: usize,
}

impl<B: Backend> ClassSet<B> {
    /// Tensors of a [`Dataset`] with `labels` (which may differ from `data.labels`, e.g.
    /// corrupted).
    pub fn new(data: &Dataset, labels: &[u8], classes: usize, device: &B::Device) -> Self {
        Self {
            features: matrix_f32(&data.images, data.len, data.features(), device),
            targets: one_hot(labels, classes, device),
            labels: label_tensor(labels, device),
            len: data.len,
        }
    }

    /// `(features, targets)`, as [`crate::linear_ce::LinearCe::new`] takes them.
    pub fn pair(&self) -> (&Tensor<B, 2>, &Tensor<B, 2>) {
        (&self.features, &self.targets)
    }
}

/// Shape of the flat linear classifier `y = vec(W) (, b)`: `W` is `[features, classes]`
/// row-major, then the bias `b` when present (the flat order of `bilevel_models::linear::Linear`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearShape {
    /// Input features `d`.
    pub features: usize,
    /// Classes `c`.
    pub classes: usize,
    /// Whether a bias follows the weights.
    pub bias: bool,
}

impl LinearShape {
    /// Length of the flat parameter vector.
    pub fn len(&self) -> usize {
        self.features * self.classes + if self.bias { self.classes } else { 0 }
    }

    /// Always false (a classifier has at least one weight).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `W` (`[d, c]`) of the flat `y`.
    pub fn weight<C: Backend>(&self, y: Tensor<C, 1>) -> Tensor<C, 2> {
        y.narrow(0, 0, self.features * self.classes)
            .reshape([self.features, self.classes])
    }

    /// `features · W (+ b)`, `[n, c]`.
    pub fn logits<C: Backend>(&self, features: Tensor<C, 2>, y: Tensor<C, 1>) -> Tensor<C, 2> {
        let w = self.weight(y.clone());
        let out = features.matmul(w);
        if self.bias {
            let b = y
                .narrow(0, self.features * self.classes, self.classes)
                .reshape([1, self.classes]);
            out.add(b)
        } else {
            out
        }
    }

    /// `‖W‖²` (the bias is not regularised).
    pub fn weight_sq_norm<C: Backend>(&self, y: Tensor<C, 1>) -> Tensor<C, 1> {
        y.narrow(0, 0, self.features * self.classes)
            .powi_scalar(2)
            .sum()
    }
}

/// Per-sample cross-entropy of `logits` against one-hot `targets`, `[n]`.
pub fn cross_entropy_per_sample<C: Backend>(
    logits: Tensor<C, 2>,
    targets: Tensor<C, 2>,
) -> Tensor<C, 1> {
    bilevel_models::linear::cross_entropy_per_sample(logits, targets)
}

/// `(1/n) Σ values` as a one-element tensor (`mul_scalar`, exact in `f64`).
pub fn mean<C: Backend>(values: Tensor<C, 1>) -> Tensor<C, 1> {
    let n = values.dims()[0].max(1);
    values.sum().mul_scalar(1.0 / n as f64)
}

/// `σ(t) = 1/(1 + e^{−t})`, elementwise (not burn's `sigmoid`, whose backward loses `f64`
/// precision; not a `softplus` form, whose `|t|` has a zero derivative at `t = 0`).
pub fn sigmoid<C: Backend>(t: Tensor<C, 1>) -> Tensor<C, 1> {
    t.neg().exp().add_scalar(1.0).recip()
}

/// Mean cross-entropy and accuracy of the linear classifier `y` on `set` (host scalars).
pub fn evaluate_linear<B: Backend>(
    shape: &LinearShape,
    set: &ClassSet<B>,
    y: Tensor<B, 1>,
) -> Result<(f64, f64)> {
    let logits = shape.logits(set.features.clone(), y);
    let loss = mean(cross_entropy_per_sample(
        logits.clone(),
        set.targets.clone(),
    ));
    let loss = to_vec(loss)?[0];
    let acc = bilevel_models::linear::accuracy(logits, set.labels.clone());
    Ok((loss, acc))
}

/// F1 score of a predicted index set against a true one (both as sorted or unsorted indices
/// into `0..len`). Both empty counts as perfect (1).
pub fn f1_score(predicted: &[usize], truth: &[usize], len: usize) -> f64 {
    let mut is_true = vec![false; len];
    for &i in truth {
        is_true[i] = true;
    }
    let tp = predicted.iter().filter(|&&i| is_true[i]).count() as f64;
    let fp = predicted.len() as f64 - tp;
    let fn_ = truth.len() as f64 - tp;
    if tp + fp + fn_ == 0.0 {
        1.0
    } else {
        2.0 * tp / (2.0 * tp + fp + fn_)
    }
}

/// Fails with [`ProblemError::Config`] unless `1 ≤ value ≤ max`.
pub fn check_count(name: &str, value: usize, max: usize, default: usize) -> Result<()> {
    if value == 0 || value > max {
        return Err(ProblemError::config(
            name,
            format!("must be between 1 and {max}, got {value}; the default is {default}"),
        ));
    }
    Ok(())
}

/// Fails with [`ProblemError::Config`] unless `lo ≤ value ≤ hi` (and finite).
pub fn check_range(name: &str, value: f64, lo: f64, hi: f64, default: f64) -> Result<()> {
    if !(value >= lo && value <= hi) {
        return Err(ProblemError::config(
            name,
            format!("must lie in [{lo}, {hi}], got {value}; the default is {default}"),
        ));
    }
    Ok(())
}

/// Fails unless `value` is finite and `> 0` (or `≥ 0` when `allow_zero`).
pub fn check_positive(name: &str, value: f64, allow_zero: bool, default: f64) -> Result<()> {
    let ok = value.is_finite() && (value > 0.0 || (allow_zero && value == 0.0));
    if !ok {
        let bound = if allow_zero { "≥ 0" } else { "> 0" };
        return Err(ProblemError::config(
            name,
            format!("must be finite and {bound}, got {value}; the default is {default}"),
        ));
    }
    Ok(())
}

/// Checks that the MNIST training set can hold `train + val` samples (60 000) and the test set
/// `test` (10 000), with every part non-empty.
pub fn check_mnist_sizes(
    train: (&str, usize, usize),
    val: (&str, usize, usize),
    test: (&str, usize, usize),
) -> Result<()> {
    use bilevel_data::mnist::{TEST_LEN, TRAIN_LEN};
    check_count(train.0, train.1, TRAIN_LEN, train.2)?;
    check_count(val.0, val.1, TRAIN_LEN, val.2)?;
    check_count(test.0, test.1, TEST_LEN, test.2)?;
    if train.1 + val.1 > TRAIN_LEN {
        return Err(ProblemError::config(
            train.0,
            format!(
                "{} + {} = {} exceeds the {TRAIN_LEN} MNIST training images they are both \
                 drawn from (the test part comes from the separate 10000 test images); lower one \
                 of them",
                train.0,
                val.0,
                train.1 + val.1
            ),
        ));
    }
    Ok(())
}

/// Selected rows of a 1-D per-sample tensor (`x = λ` in hyper-cleaning).
pub fn rows1<C: Backend>(batch: &Batch, t: Tensor<C, 1>) -> Tensor<C, 1> {
    batch.rows(t)
}

/// Splits a batch of indices into `0..n` where rows `< split` come from one source and rows
/// `≥ split` from another: returns the two index lists, the second shifted by `−split`.
pub fn split_batch(batch: &Batch, n: usize, split: usize) -> (Vec<usize>, Vec<usize>) {
    match batch {
        Batch::Full => ((0..split).collect(), (0..n - split).collect()),
        Batch::Indices(idx) => {
            let mut a = Vec::new();
            let mut b = Vec::new();
            for &i in idx {
                if i < split {
                    a.push(i);
                } else {
                    b.push(i - split);
                }
            }
            (a, b)
        }
    }
}
