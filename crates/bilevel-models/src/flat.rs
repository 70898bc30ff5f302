//! Flat parameter vectors for any burn [`Module`].
//!
//! Bilevel problems see the upper variable `x` and the lower variable `y` as flat vectors. A model
//! built from a config is only a *template* here: [`unflatten`] replaces each of its float
//! parameters, in the module's visiting order (struct field order, recursively), by a reshaped
//! slice of the flat vector. The slices stay on the autodiff graph of that vector, so gradients,
//! HVPs and JVPs taken with respect to the vector flow through the model — on any backend level,
//! `B`, `Autodiff<B>` or `Autodiff<Autodiff<B>>`.
//!
//! The template's parameters are never initialised: their shapes are read lazily
//! ([`Param::lazy_shape`]), so `unflatten(Config::init(&device), flat)` costs no random draws.
//! Non-float state (e.g. batch-norm running statistics) is not part of the vector.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::error::{ModelError, Result};

/// Number of scalar float parameters of `module` (without initialising lazy parameters).
pub fn num_params<B: Backend, M: Module<B>>(module: &M) -> usize {
    struct Count(usize);
    impl<B: Backend> ModuleVisitor<B> for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0 += param.lazy_shape().num_elements();
        }
    }
    let mut count = Count(0);
    module.visit(&mut count);
    count.0
}

/// The float parameters of `module`, concatenated in visiting order (initialises lazy ones).
pub fn flatten<B: Backend, M: Module<B>>(module: &M) -> Tensor<B, 1> {
    struct Collect<B: Backend>(Vec<Tensor<B, 1>>);
    impl<B: Backend> ModuleVisitor<B> for Collect<B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let value = param.val();
            let n = value.shape().num_elements();
            self.0.push(value.reshape([n]));
        }
    }
    let mut collect = Collect(Vec::new());
    module.visit(&mut collect);
    Tensor::cat(collect.0, 0)
}

/// `template` with every float parameter replaced by the matching slice of `flat`.
///
/// # Errors
/// [`ModelError::ParamCount`] when `flat` does not have exactly [`num_params`] entries.
pub fn unflatten<B: Backend, M: Module<B>>(template: M, flat: Tensor<B, 1>) -> Result<M> {
    let expected = num_params::<B, M>(&template);
    let got = flat.dims()[0];
    if expected != got {
        return Err(ModelError::ParamCount { expected, got });
    }
    struct Assign<B: Backend> {
        flat: Tensor<B, 1>,
        offset: usize,
    }
    impl<B: Backend> ModuleMapper<B> for Assign<B> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let shape = param.lazy_shape();
            let n = shape.num_elements();
            let start = self.offset;
            self.offset += n;
            let value = self
                .flat
                .clone()
                .slice([start..start + n])
                .reshape::<D, _>(shape);
            // `initialized` keeps the tensor as is (no `require_grad`, which would cut the graph).
            Param::initialized(param.id, value)
        }
    }
    let mut assign = Assign { flat, offset: 0 };
    Ok(template.map(&mut assign))
}
