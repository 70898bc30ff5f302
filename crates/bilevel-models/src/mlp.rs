//! Two-layer MLP embedding `in → hidden → out` (PZOBO §4.1's 2-layer embedding).
//!
//! `h = act_out(W₂ relu(W₁ a + b₁) + b₂)`, built from [`crate::linear::Linear`] (matmul + add),
//! so it can be differentiated twice on `Autodiff<Autodiff<B>>`.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::linear::{sigmoid, Linear, LinearConfig};

/// Activation applied to the MLP's output.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Activation {
    /// None: the output layer is linear.
    Identity,
    /// `max(t, 0)`.
    Relu,
    /// `tanh(t)`.
    Tanh,
    /// `1/(1 + e^{−t})` (computed f64-safely by [`crate::linear::sigmoid`]).
    Sigmoid,
}

impl Activation {
    /// Applies the activation elementwise.
    pub fn apply<B: Backend, const D: usize>(&self, t: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Activation::Identity => t,
            Activation::Relu => activation::relu(t),
            Activation::Tanh => t.tanh(),
            Activation::Sigmoid => sigmoid(t),
        }
    }
}

/// Configuration of an [`Mlp`].
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Input width.
    pub input: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Output (embedding) width.
    pub output: usize,
    /// Activation of the output layer.
    #[config(default = "Activation::Identity")]
    pub output_activation: Activation,
    /// Whether both layers have biases.
    #[config(default = true)]
    pub bias: bool,
}

/// Two-layer perceptron with a ReLU hidden layer.
///
/// Flat parameter order (see [`crate::flat`]): `fc1.weight`, `fc1.bias`, `fc2.weight`,
/// `fc2.bias`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Input → hidden layer.
    pub fc1: Linear<B>,
    /// Hidden → output layer.
    pub fc2: Linear<B>,
    /// Activation of the output layer.
    pub output_activation: Activation,
}

impl MlpConfig {
    /// A network with lazily initialised parameters (burn's default linear initialisation).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Mlp<B> {
        Mlp {
            fc1: self.layer1().init(device),
            fc2: self.layer2().init(device),
            output_activation: self.output_activation,
        }
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.layer1().num_params() + self.layer2().num_params()
    }

    fn layer1(&self) -> LinearConfig {
        LinearConfig::new(self.input, self.hidden).with_bias(self.bias)
    }

    fn layer2(&self) -> LinearConfig {
        LinearConfig::new(self.hidden, self.output).with_bias(self.bias)
    }
}

impl<B: Backend> Mlp<B> {
    /// The embedding of each row.
    ///
    /// # Shapes
    /// - `input`: `[n, input]`
    /// - output: `[n, output]`
    pub fn forward(&self, input: Tensor<B, 2>) -> Tensor<B, 2> {
        let h = activation::relu(self.fc1.forward(input));
        self.output_activation.apply(self.fc2.forward(h))
    }
}
