//! LeNet-5 for `1×28×28` images, split into a backbone ([`LeNetFeatures`], the representation
//! `x` of PZOBO's hr-deep experiment) and a linear head ([`crate::linear::Linear`], `y`).
//!
//! ```text
//! conv5×5(6, padding 2) – ReLU – pool2 → conv5×5(16) – ReLU – pool2 → flatten 400
//!   → fc120 – ReLU → fc84 – ReLU   (features, [n, 84])
//!   → fc(classes)                   (head, logits)
//! ```
//!
//! # Second order through pooling
//! burn 0.21's pooling ops cannot be differentiated twice: `Autodiff<B>` implements
//! `max_pool2d_with_indices_backward` and `avg_pool2d_backward` as `panic!` ("Can't
//! differentiate max pool2d with indices backward"), so an exact Hessian-vector product through
//! `burn::nn::pool::MaxPool2d` or `AvgPool2d` on `Autodiff<Autodiff<B>>` panics (the test
//! `native_pooling_cannot_be_differentiated_twice` in `tests/lenet.rs` pins this). The
//! fully-connected layers have the same problem with `burn::nn::Linear` (fused `linear` op).
//!
//! This module therefore pools with [`pool2d`], written with `reshape` and `max_dim` /
//! `sum_dim` (whose backward passes are themselves differentiable: `max_dim`'s backward is a
//! `scatter_add` of the incoming gradient at the arg-max indices). It computes the same values
//! and first derivatives as burn's `max_pool2d` / `avg_pool2d` with kernel = stride = 2 and no
//! padding, and its second derivatives are exact: max-pooling is piecewise linear, so its
//! second derivative is zero away from ties and the double backward routes `Hv` through the
//! selected inputs. With that, `Pool::Max` and `Pool::Avg` both support exact HVP/JVP with
//! respect to *all* parameters (convolutions included). Convolutions use `burn::nn::conv::Conv2d`,
//! whose backward (`conv2d_x_backward`, `conv2d_weight_backward`) is differentiable.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::error::ModelError;
use crate::linear::{Linear, LinearConfig};
use crate::Result as ModelResult;

/// Pooling used after each convolution (kernel 2, stride 2, no padding).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Max pooling (LeNet as usually trained today).
    Max,
    /// Average pooling (closer to the original LeNet-5 subsampling).
    Avg,
}

/// Non-overlapping `k×k` pooling with stride `k` and no padding, differentiable twice.
///
/// Trailing rows / columns that do not fill a window are dropped, as burn's pooling does
/// (`floor` output size).
///
/// # Shapes
/// - `x`: `[n, c, h, w]`
/// - output: `[n, c, h / k, w / k]`
///
/// # Panics
/// If `k == 0` or `h < k` or `w < k`.
pub fn pool2d<B: Backend>(x: Tensor<B, 4>, pool: Pool, k: usize) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    assert!(
        k > 0 && h >= k && w >= k,
        "pool2d: window {k} on a {h}×{w} map"
    );
    let (ho, wo) = (h / k, w / k);
    let x = if ho * k != h || wo * k != w {
        x.slice([0..n, 0..c, 0..ho * k, 0..wo * k])
    } else {
        x
    };
    let windows = x.reshape([n, c, ho, k, wo, k]);
    let pooled = match pool {
        Pool::Max => windows.max_dim(5).max_dim(3),
        Pool::Avg => windows
            .sum_dim(5)
            .sum_dim(3)
            .mul_scalar(1.0 / (k * k) as f64),
    };
    pooled.reshape([n, c, ho, wo])
}

/// Configuration of [`LeNet`].
#[derive(Config, Debug)]
pub struct LeNetConfig {
    /// Number of classes of the head.
    #[config(default = 10)]
    pub classes: usize,
    /// Pooling after each convolution.
    #[config(default = "Pool::Max")]
    pub pool: Pool,
    /// Input channels (1 for MNIST).
    #[config(default = 1)]
    pub in_channels: usize,
    /// Side of the square input images (28 for MNIST; the flattened map is
    /// `16 · ((side/2 − 4)/2)²`, 400 for 28).
    #[config(default = 28)]
    pub side: usize,
}

/// The LeNet-5 backbone: two conv–ReLU–pool stages and two ReLU fully-connected layers.
///
/// Flat parameter order: `conv1` (weight `[6, c, 5, 5]`, bias), `conv2` (`[16, 6, 5, 5]`,
/// bias), `fc1` (`[400, 120]`, bias), `fc2` (`[120, 84]`, bias).
#[derive(Module, Debug)]
pub struct LeNetFeatures<B: Backend> {
    /// `5×5` convolution, `in_channels → 6`, padding 2.
    pub conv1: Conv2d<B>,
    /// `5×5` convolution, `6 → 16`, no padding.
    pub conv2: Conv2d<B>,
    /// `400 → 120`.
    pub fc1: Linear<B>,
    /// `120 → 84`.
    pub fc2: Linear<B>,
    /// Pooling after each convolution.
    pub pool: Pool,
    /// Expected input `[channels, side]`.
    pub input: [usize; 2],
}

/// LeNet-5: [`LeNetFeatures`] followed by a linear head `84 → classes`.
///
/// Flat parameter order: the features' parameters, then the head's (`[84, classes]`, bias);
/// so `flatten(lenet) = [flatten(features), flatten(head)]`.
#[derive(Module, Debug)]
pub struct LeNet<B: Backend> {
    /// The backbone.
    pub features: LeNetFeatures<B>,
    /// The classifier head.
    pub head: Linear<B>,
}

/// Width of the representation produced by [`LeNetFeatures`].
pub const FEATURES: usize = 84;

impl LeNetConfig {
    /// Checks the input size leaves a non-empty map after both stages.
    pub fn validate(&self) -> ModelResult<()> {
        if self.classes == 0 {
            return Err(ModelError::invalid("classes", "needs at least one class"));
        }
        if self.in_channels == 0 {
            return Err(ModelError::invalid(
                "in_channels",
                "needs at least one channel",
            ));
        }
        if self.side < 12 {
            return Err(ModelError::invalid(
                "side",
                format!("LeNet needs images of side ≥ 12, got {}", self.side),
            ));
        }
        Ok(())
    }

    /// Side of the map after the second pooling (5 for 28×28 inputs).
    pub fn final_side(&self) -> usize {
        (self.side / 2).saturating_sub(4) / 2
    }

    /// Width of the flattened map fed to `fc1` (400 for 28×28 inputs).
    pub fn flat_width(&self) -> usize {
        16 * self.final_side() * self.final_side()
    }

    /// The backbone, lazily initialised (burn's default initialisers).
    pub fn init_features<B: Backend>(&self, device: &B::Device) -> LeNetFeatures<B> {
        LeNetFeatures {
            conv1: Conv2dConfig::new([self.in_channels, 6], [5, 5])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
                .init(device),
            conv2: Conv2dConfig::new([6, 16], [5, 5]).init(device),
            fc1: LinearConfig::new(self.flat_width(), 120).init(device),
            fc2: LinearConfig::new(120, FEATURES).init(device),
            pool: self.pool,
            input: [self.in_channels, self.side],
        }
    }

    /// The head `84 → classes`, lazily initialised.
    pub fn init_head<B: Backend>(&self, device: &B::Device) -> Linear<B> {
        self.head_config().init(device)
    }

    /// The head's configuration.
    pub fn head_config(&self) -> LinearConfig {
        LinearConfig::new(FEATURES, self.classes)
    }

    /// The whole network, lazily initialised.
    pub fn init<B: Backend>(&self, device: &B::Device) -> LeNet<B> {
        LeNet {
            features: self.init_features(device),
            head: self.init_head(device),
        }
    }

    /// Number of backbone parameters (60 856 for 1×28×28 inputs).
    pub fn num_feature_params(&self) -> usize {
        let c = self.in_channels;
        (6 * c * 25 + 6) + (16 * 6 * 25 + 16) + (self.flat_width() * 120 + 120) + (120 * 84 + 84)
    }

    /// Number of parameters of the whole network (61 706 for 1×28×28 and 10 classes).
    pub fn num_params(&self) -> usize {
        self.num_feature_params() + self.head_config().num_params()
    }
}

impl<B: Backend> LeNetFeatures<B> {
    /// The 84-dimensional representation of each image.
    ///
    /// # Shapes
    /// - `images`: `[n, in_channels, side, side]`
    /// - output: `[n, 84]`
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let n = images.dims()[0];
        let h = pool2d(activation::relu(self.conv1.forward(images)), self.pool, 2);
        let h = pool2d(activation::relu(self.conv2.forward(h)), self.pool, 2);
        let [_, c, s1, s2] = h.dims();
        let h = h.reshape([n, c * s1 * s2]);
        let h = activation::relu(self.fc1.forward(h));
        activation::relu(self.fc2.forward(h))
    }

    /// [`LeNetFeatures::forward`] after checking the input shape.
    ///
    /// # Errors
    /// [`ModelError::InputShape`] unless `images` is `[n, in_channels, side, side]`.
    pub fn try_forward(&self, images: Tensor<B, 4>) -> ModelResult<Tensor<B, 2>> {
        let dims = images.dims();
        let [c, s] = self.input;
        if dims[1] != c || dims[2] != s || dims[3] != s {
            return Err(ModelError::InputShape {
                expected: format!("[batch, {c}, {s}, {s}]"),
                got: dims.to_vec(),
            });
        }
        Ok(self.forward(images))
    }
}

impl<B: Backend> LeNet<B> {
    /// The representation `[n, 84]` (the backbone alone).
    ///
    /// # Shapes
    /// - `images`: `[n, in_channels, side, side]`
    /// - output: `[n, 84]`
    pub fn features(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.features.forward(images)
    }

    /// Logits from a representation (the head alone).
    ///
    /// # Shapes
    /// - `features`: `[n, 84]`
    /// - output: `[n, classes]`
    pub fn head(&self, features: Tensor<B, 2>) -> Tensor<B, 2> {
        self.head.forward(features)
    }

    /// Logits of each image.
    ///
    /// # Shapes
    /// - `images`: `[n, in_channels, side, side]`
    /// - output: `[n, classes]`
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.head(self.features(images))
    }
}
