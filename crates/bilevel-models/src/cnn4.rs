//! CNN4 / Conv-4, the few-shot backbone of MAML and Prototypical Networks.
//!
//! Four blocks of `conv 3×3 (padding 1) → batch norm → ReLU → 2×2 pooling (stride 2)`, each with
//! `filters` output channels, then flattening: `features(images) → [n, output_dim]`. A linear
//! head is not part of the backbone; a bilevel problem combines the backbone (e.g. `x`) with a
//! head on the features (e.g. `y`).
//!
//! - Batch norm is [`crate::norm::BatchNorm2d`]: transductive batch statistics, learnable `γ`,
//!   `β` (part of the flat vector), the same function on every backend level.
//! - The convolutions have no bias: a per-channel bias is exactly cancelled by the batch-norm
//!   mean that follows, so it would only add directions of zero curvature to the Hessian.
//! - Pooling is [`pool2x2`] with [`Pool::Max`] (default) or [`Pool::Avg`] (the crate's one
//!   [`Pool`] switch, shared with LeNet), floor mode.
//!
//! # Second order through the whole network
//! burn 0.21's fused `max_pool2d` (and `avg_pool2d`) kernels are differentiable once but not
//! twice: their backward on an autodiff inner backend is `panic!("Can't differentiate max pool2d
//! with indices backward.")` (`burn-autodiff` `ops/module.rs`). A Hessian-vector product whose
//! lower-level variable `y` lies *upstream* of a pooling layer (MAML / ITD through the whole
//! network) evaluates that backward on `Autodiff<B>` and panics (`tests/cnn4.rs` shows both
//! panics; with `y` = the head only, the kernel is differentiated once and works). [`pool2x2`]
//! is twice differentiable: max pooling takes the window argmax from burn's kernel on the
//! detached input and *gathers* the maxima from the tracked input (`gather`'s backward is a
//! `scatter_add`, itself differentiable); average pooling is a reshape and two `sum_dim`s. Both
//! give exact HVP/JVP through every parameter, checked against finite differences
//! (`tests/cnn4.rs`). At ties inside a window the gradient goes to the maximal entry burn's
//! kernel picks. Cost (ndarray f32, `[80, 64, 84, 84]`, forward + backward, shared machine):
//! max ≈ 1.6× burn's kernel (a reshape + `max_dim` max pool, also twice differentiable, ≈ 5×),
//! average ≈ 1×. Under `Autodiff<Autodiff<B>>` the argmax call also records one unused pooling
//! node on the inner graph per block (never back-propagated).
//!
//! # Shapes
//! - `images`: `[n, in_channels, s, s]` with `s = image_size`.
//! - After block `k` the side is `⌊s / 2ᵏ⌋`: 28×28 → 14 → 7 → 3 → **1×1** (Omniglot/MNIST,
//!   `output_dim = filters`); 84×84 → 42 → 21 → 10 → **5×5** (miniImageNet,
//!   `output_dim = 25 · filters`, 1600 for 64 filters); 32×32 → **2×2**.
//! - `features`: `[n, filters · ⌊s/16⌋²]`, flattened channel-major (`c`, then `h`, then `w`).

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::module::max_pool2d_with_indices;
use burn::tensor::Tensor;

use crate::error::ModelError;
use crate::lenet::Pool;
use crate::norm::{BatchNorm2d, BatchNorm2dConfig};

/// Number of conv blocks (and 2×2 poolings) of CNN4.
pub const CNN4_BLOCKS: usize = 4;

/// `[n, c, h, w]` → `[n, c, ⌊h/2⌋, ⌊w/2⌋]`, 2×2 windows, stride 2.
///
/// Twice differentiable on nested autodiff backends (see the module docs); values and gradients
/// equal burn's `max_pool2d` / `avg_pool2d` with kernel 2, stride 2, no padding.
///
/// - [`Pool::Max`]: the window argmax comes from burn's fused `max_pool2d_with_indices` applied
///   to the *detached* input (integer indices, nothing to differentiate); the maxima are then
///   gathered from the tracked input, and `gather`'s backward (`scatter_add`) is itself
///   differentiable.
/// - [`Pool::Avg`]: a reshape to `[n, c, h/2, 2, w/2, 2]`, `sum_dim` over the two window axes,
///   `mul_scalar(0.25)`.
///
/// # Panics
/// If `h < 2` or `w < 2`.
pub fn pool2x2<B: Backend>(x: Tensor<B, 4>, pool: Pool) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    assert!(
        h >= 2 && w >= 2,
        "pool2x2: spatial size {h}×{w} is below 2×2"
    );
    let (ho, wo) = (h / 2, w / 2);
    match pool {
        Pool::Max => {
            // Flat indices into each h×w plane (floor mode drops an odd last row/column).
            let (_, argmax) =
                max_pool2d_with_indices(x.clone().detach(), [2, 2], [2, 2], [0, 0], [1, 1], false);
            let planes: Tensor<B, 3> = x.reshape([n, c, h * w]);
            planes
                .gather(2, argmax.reshape([n, c, ho * wo]))
                .reshape([n, c, ho, wo])
        }
        Pool::Avg => {
            let x = if h % 2 == 1 || w % 2 == 1 {
                x.slice([0..n, 0..c, 0..2 * ho, 0..2 * wo])
            } else {
                x
            };
            // (i, a, j, b) ↔ row 2i + a, column 2j + b (row-major reshape).
            let windows: Tensor<B, 6> = x.reshape([n, c, ho, 2, wo, 2]);
            windows
                .sum_dim(5)
                .sum_dim(3)
                .mul_scalar(0.25)
                .reshape([n, c, ho, wo])
        }
    }
}

/// He-normal initialisation for convolutions followed by (leaky) ReLU.
pub(crate) fn he_normal() -> Initializer {
    Initializer::KaimingNormal {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: false,
    }
}

/// A bias-free `k×k` convolution with stride 1 and "same" padding `(k − 1) / 2`.
pub(crate) fn conv_same(in_ch: usize, out_ch: usize, k: usize) -> Conv2dConfig {
    let p = (k - 1) / 2;
    Conv2dConfig::new([in_ch, out_ch], [k, k])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        .with_initializer(he_normal())
}

/// Configuration of a [`Cnn4`] backbone.
#[derive(Config, Debug)]
pub struct Cnn4Config {
    /// Input channels (1 for Omniglot/MNIST, 3 for miniImageNet/CIFAR).
    #[config(default = 3)]
    pub in_channels: usize,
    /// Channels of every block (32 or 64 in the literature; any value ≥ 1).
    #[config(default = 64)]
    pub filters: usize,
    /// Side `s` of the square input images (≥ 16, so that four poolings leave ≥ 1×1).
    #[config(default = 84)]
    pub image_size: usize,
    /// Pooling of every block.
    #[config(default = "Pool::Max")]
    pub pool: Pool,
}

impl Cnn4Config {
    /// Checks `in_channels ≥ 1`, `filters ≥ 1` and `image_size ≥ 16`.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] naming the first offending field.
    pub fn validate(&self) -> crate::Result<()> {
        if self.in_channels == 0 {
            return Err(ModelError::invalid("in_channels", "must be at least 1"));
        }
        if self.filters == 0 {
            return Err(ModelError::invalid("filters", "must be at least 1"));
        }
        if self.image_size < 1 << CNN4_BLOCKS {
            return Err(ModelError::invalid(
                "image_size",
                format!(
                    "{} is below 16: four 2×2 poolings would leave nothing",
                    self.image_size
                ),
            ));
        }
        Ok(())
    }

    /// Side of the last feature map, `⌊s / 16⌋`.
    pub fn feature_map_size(&self) -> usize {
        (0..CNN4_BLOCKS).fold(self.image_size, |s, _| s / 2)
    }

    /// Length of a feature vector, `filters · ⌊s/16⌋²`.
    pub fn output_dim(&self) -> usize {
        let side = self.feature_map_size();
        self.filters * side * side
    }

    /// The backbone (parameters lazily initialised: conv weights He-normal, `γ = 1`, `β = 0`).
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Cnn4<B> {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let blocks = (0..CNN4_BLOCKS)
            .map(|k| {
                let in_ch = if k == 0 {
                    self.in_channels
                } else {
                    self.filters
                };
                ConvBlock {
                    conv: conv_same(in_ch, self.filters, 3).init(device),
                    norm: BatchNorm2dConfig::new(self.filters).init(device),
                    pool: self.pool,
                }
            })
            .collect();
        Cnn4 {
            blocks,
            in_channels: self.in_channels,
            image_size: self.image_size,
        }
    }
}

/// Length of the feature vector of a [`Cnn4`] built from `config`.
pub fn output_dim(config: &Cnn4Config) -> usize {
    config.output_dim()
}

/// `conv 3×3 → batch norm → ReLU → 2×2 pooling`.
///
/// Flat-vector order: conv weight `[out, in, 3, 3]`, then `γ`, `β`.
#[derive(Module, Debug)]
pub struct ConvBlock<B: Backend> {
    /// Bias-free 3×3 convolution, padding 1.
    pub conv: Conv2d<B>,
    /// Transductive batch norm.
    pub norm: BatchNorm2d<B>,
    /// Pooling mode.
    #[module(skip)]
    pub pool: Pool,
}

impl<B: Backend> ConvBlock<B> {
    /// `[n, in, h, w]` → `[n, out, ⌊h/2⌋, ⌊w/2⌋]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let h = activation::relu(self.norm.forward(self.conv.forward(x)));
        pool2x2(h, self.pool)
    }
}

/// The CNN4 backbone (see the module docs).
///
/// Flat-vector order: the four [`ConvBlock`]s in order.
#[derive(Module, Debug)]
pub struct Cnn4<B: Backend> {
    /// The four blocks.
    pub blocks: Vec<ConvBlock<B>>,
    /// Expected input channels.
    #[module(skip)]
    pub in_channels: usize,
    /// Expected input side.
    #[module(skip)]
    pub image_size: usize,
}

impl<B: Backend> Cnn4<B> {
    /// Checks that `dims` is `[n ≥ 1, in_channels, image_size, image_size]`.
    ///
    /// # Errors
    /// [`ModelError::InputShape`].
    pub fn check_input(&self, dims: [usize; 4]) -> crate::Result<()> {
        let [n, c, h, w] = dims;
        if n == 0 || c != self.in_channels || h != self.image_size || w != self.image_size {
            return Err(ModelError::InputShape {
                expected: format!(
                    "[batch ≥ 1, {}, {}, {}]",
                    self.in_channels, self.image_size, self.image_size
                ),
                got: dims.to_vec(),
            });
        }
        Ok(())
    }

    /// Length of a feature vector.
    pub fn output_dim(&self) -> usize {
        let side = (0..CNN4_BLOCKS).fold(self.image_size, |s, _| s / 2);
        self.blocks.last().map_or(0, |b| b.norm.num_features()) * side * side
    }

    /// Flattened features of the last block.
    ///
    /// # Shapes
    /// `[n, in_channels, s, s]` → `[n, output_dim]` (see the module docs).
    ///
    /// # Panics
    /// If [`check_input`](Self::check_input) fails (call it once where the data is built).
    pub fn features(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let dims = images.dims();
        if let Err(e) = self.check_input(dims) {
            panic!("Cnn4::features: {e}");
        }
        let h = self.blocks.iter().fold(images, |h, block| block.forward(h));
        let d = self.output_dim();
        h.reshape([dims[0], d])
    }
}
