//! ResNet-12, the few-shot backbone of TADAM and MetaOptNet.
//!
//! Four residual blocks with `channels = [c₁, c₂, c₃, c₄]` (default `[64, 160, 320, 640]`).
//! Block `k` (input `c_{k−1}` channels, `c₀ = in_channels`):
//!
//! ```text
//! h = LReLU(BN(conv3×3(x)))          c_{k−1} → c_k
//! h = LReLU(BN(conv3×3(h)))          c_k → c_k
//! h = BN(conv3×3(h))                 c_k → c_k
//! out = pool2×2(LReLU(h + BN(conv1×1(x))))
//! ```
//!
//! with LeakyReLU slope 0.1, bias-free convolutions ("same" padding) and the transductive
//! [`crate::norm::BatchNorm2d`] (`γ`, `β` in the flat vector). `features` is the global average
//! of the last block's map: `[n, c₄]`.
//!
//! **DropBlock is omitted** (MetaOptNet regularises with it during pre-training; it is a random
//! mask, which a deterministic bilevel loss cannot contain).
//!
//! # Second order
//! Pooling is [`crate::cnn4::pool2x2`] (max by default, or average), written with elementary ops
//! so that HVP/JVP through every parameter are exact on nested autodiff — burn 0.21's own
//! `max_pool2d` is not twice differentiable (see [`crate::cnn4`]). Global average pooling is
//! `sum_dim` + `mul_scalar`.
//!
//! # Shapes
//! - `images`: `[n, in_channels, h, w]`, `h, w ≥ 16`; after block `k` the side is `⌊h / 2ᵏ⌋`:
//!   84×84 → 42 → 21 → 10 → 5×5 (miniImageNet), 32×32 → 2×2 (FC100/CIFAR-FS).
//! - `features`: `[n, c₄]` (640 with the defaults).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::cnn4::{conv_same, pool2x2};
use crate::error::ModelError;
use crate::lenet::Pool;
use crate::norm::{BatchNorm2d, BatchNorm2dConfig};

/// Smallest input side: four 2×2 poolings must leave at least 1×1.
pub const RESNET12_MIN_SIZE: usize = 16;

/// Configuration of a [`ResNet12`] backbone.
#[derive(Config, Debug)]
pub struct ResNet12Config {
    /// Input channels (3 for miniImageNet/CIFAR, 1 for Omniglot/MNIST).
    #[config(default = 3)]
    pub in_channels: usize,
    /// Output channels of the four residual blocks.
    #[config(default = "[64, 160, 320, 640]")]
    pub channels: [usize; 4],
    /// Slope of the LeakyReLU for negative inputs.
    #[config(default = 0.1)]
    pub negative_slope: f64,
    /// Pooling at the end of every block.
    #[config(default = "Pool::Max")]
    pub pool: Pool,
}

impl ResNet12Config {
    /// Checks that every channel count is ≥ 1 and the slope is finite.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] naming the offending field.
    pub fn validate(&self) -> crate::Result<()> {
        if self.in_channels == 0 {
            return Err(ModelError::invalid("in_channels", "must be at least 1"));
        }
        if self.channels.contains(&0) {
            return Err(ModelError::invalid(
                "channels",
                format!(
                    "every block needs at least 1 channel, got {:?}",
                    self.channels
                ),
            ));
        }
        if !self.negative_slope.is_finite() {
            return Err(ModelError::invalid("negative_slope", "must be finite"));
        }
        Ok(())
    }

    /// Length of a feature vector, `channels[3]`.
    pub fn output_dim(&self) -> usize {
        self.channels[3]
    }

    /// The backbone (parameters lazily initialised: conv weights He-normal, `γ = 1`, `β = 0`).
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ResNet12<B> {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let mut in_ch = self.in_channels;
        let blocks = self
            .channels
            .iter()
            .map(|&out| {
                let bn = || BatchNorm2dConfig::new(out).init(device);
                let block = ResidualBlock {
                    conv1: conv_same(in_ch, out, 3).init(device),
                    bn1: bn(),
                    conv2: conv_same(out, out, 3).init(device),
                    bn2: bn(),
                    conv3: conv_same(out, out, 3).init(device),
                    bn3: bn(),
                    shortcut_conv: conv_same(in_ch, out, 1).init(device),
                    shortcut_bn: bn(),
                    negative_slope: self.negative_slope,
                    pool: self.pool,
                };
                in_ch = out;
                block
            })
            .collect();
        ResNet12 {
            blocks,
            in_channels: self.in_channels,
        }
    }
}

/// One residual block (see the module docs).
///
/// Flat-vector order: `conv1, bn1, conv2, bn2, conv3, bn3, shortcut_conv, shortcut_bn`.
#[derive(Module, Debug)]
pub struct ResidualBlock<B: Backend> {
    /// First 3×3 convolution (`c_{k−1} → c_k`).
    pub conv1: Conv2d<B>,
    /// Batch norm after `conv1`.
    pub bn1: BatchNorm2d<B>,
    /// Second 3×3 convolution.
    pub conv2: Conv2d<B>,
    /// Batch norm after `conv2`.
    pub bn2: BatchNorm2d<B>,
    /// Third 3×3 convolution.
    pub conv3: Conv2d<B>,
    /// Batch norm after `conv3`.
    pub bn3: BatchNorm2d<B>,
    /// 1×1 convolution of the shortcut.
    pub shortcut_conv: Conv2d<B>,
    /// Batch norm of the shortcut.
    pub shortcut_bn: BatchNorm2d<B>,
    /// LeakyReLU slope.
    #[module(skip)]
    pub negative_slope: f64,
    /// Pooling mode.
    #[module(skip)]
    pub pool: Pool,
}

impl<B: Backend> ResidualBlock<B> {
    /// `[n, c_{k−1}, h, w]` → `[n, c_k, ⌊h/2⌋, ⌊w/2⌋]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let act = |t: Tensor<B, 4>| activation::leaky_relu(t, self.negative_slope);
        let h = act(self.bn1.forward(self.conv1.forward(x.clone())));
        let h = act(self.bn2.forward(self.conv2.forward(h)));
        let h = self.bn3.forward(self.conv3.forward(h));
        let shortcut = self.shortcut_bn.forward(self.shortcut_conv.forward(x));
        pool2x2(act(h.add(shortcut)), self.pool)
    }
}

/// The ResNet-12 backbone (see the module docs).
///
/// Flat-vector order: the four [`ResidualBlock`]s in order.
#[derive(Module, Debug)]
pub struct ResNet12<B: Backend> {
    /// The four residual blocks.
    pub blocks: Vec<ResidualBlock<B>>,
    /// Expected input channels.
    #[module(skip)]
    pub in_channels: usize,
}

impl<B: Backend> ResNet12<B> {
    /// Length of a feature vector, `channels[3]`.
    pub fn output_dim(&self) -> usize {
        self.blocks.last().map_or(0, |b| b.bn3.num_features())
    }

    /// Checks that `dims` is `[n ≥ 1, in_channels, h ≥ 16, w ≥ 16]`.
    ///
    /// # Errors
    /// [`ModelError::InputShape`].
    pub fn check_input(&self, dims: [usize; 4]) -> crate::Result<()> {
        let [n, c, h, w] = dims;
        if n == 0 || c != self.in_channels || h < RESNET12_MIN_SIZE || w < RESNET12_MIN_SIZE {
            return Err(ModelError::InputShape {
                expected: format!("[batch ≥ 1, {}, h ≥ 16, w ≥ 16]", self.in_channels),
                got: dims.to_vec(),
            });
        }
        Ok(())
    }

    /// Global average of the last block's feature map.
    ///
    /// # Shapes
    /// `[n, in_channels, h, w]` → `[n, channels[3]]`.
    ///
    /// # Panics
    /// If [`check_input`](Self::check_input) fails (call it once where the data is built).
    pub fn features(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let dims = images.dims();
        if let Err(e) = self.check_input(dims) {
            panic!("ResNet12::features: {e}");
        }
        let h = self.blocks.iter().fold(images, |h, block| block.forward(h));
        let [n, c, hh, ww] = h.dims();
        h.sum_dim(2)
            .sum_dim(3)
            .mul_scalar(1.0 / (hh * ww) as f64)
            .reshape([n, c])
    }
}
