//! # bilevel-models
//!
//! burn Modules for the bilevel applications, generic over `B: Backend` so that a problem can
//! evaluate them on `B`, `Autodiff<B>` and `Autodiff<Autodiff<B>>` (exact HVP/JVP by nesting).
//! [`flat`] maps any of them to and from the flat parameter vectors `x` / `y` of a bilevel
//! problem.

pub mod cnn4;
pub mod equilibrium;
pub mod error;
pub mod flat;
pub mod lenet;
pub mod linear;
pub mod mlp;
pub mod norm;
pub mod resnet12;

pub use cnn4::{Cnn4, Cnn4Config};
pub use equilibrium::{Equilibrium, EquilibriumConfig};
pub use error::{ModelError, Result};
pub use flat::{flatten, he_normal_init, num_params, unflatten, VectorInit};
pub use lenet::{LeNet, LeNetConfig, LeNetFeatures, Pool};
pub use linear::{Linear, LinearConfig};
pub use mlp::{Activation, Mlp, MlpConfig};
pub use norm::{BatchNorm2d, BatchNorm2dConfig};
pub use resnet12::{ResNet12, ResNet12Config};
