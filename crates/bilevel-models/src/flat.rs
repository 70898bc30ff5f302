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
///
/// # Panics
/// If `module` has no float parameter (there is no device to put an empty vector on).
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
/// The slices are cut by balanced binary splitting of `flat` (halves, then quarters, …), not by
/// one `slice` per parameter: the backward of a `slice` materialises a zero vector as long as
/// its input, so `k` direct slices would cost `O(k·P)` in every backward pass, the tree costs
/// `O(P log k)`.
///
/// # Errors
/// [`ModelError::ParamCount`] when `flat` does not have exactly [`num_params`] entries.
pub fn unflatten<B: Backend, M: Module<B>>(template: M, flat: Tensor<B, 1>) -> Result<M> {
    struct Shapes(Vec<usize>);
    impl<B: Backend> ModuleVisitor<B> for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.lazy_shape().num_elements());
        }
    }
    let mut sizes = Shapes(Vec::new());
    template.visit(&mut sizes);
    let sizes = sizes.0;
    let expected: usize = sizes.iter().sum();
    let got = flat.dims()[0];
    if expected != got {
        return Err(ModelError::ParamCount { expected, got });
    }
    let mut pieces = Vec::with_capacity(sizes.len());
    split_balanced(flat, &sizes, &mut pieces);

    struct Assign<B: Backend> {
        pieces: std::vec::IntoIter<Tensor<B, 1>>,
    }
    impl<B: Backend> ModuleMapper<B> for Assign<B> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let shape = param.lazy_shape();
            let piece = self
                .pieces
                .next()
                .expect("one piece per float parameter, in visiting order");
            let value = if shape.num_elements() == 0 {
                // (burn cannot reshape an empty vector to e.g. [3, 0]; nothing to track anyway.)
                Tensor::zeros(shape, &piece.device())
            } else {
                piece.reshape::<D, _>(shape)
            };
            // `initialized` keeps the tensor as is (no `require_grad`, which would cut the graph).
            Param::initialized(param.id, value)
        }
    }
    let mut assign = Assign {
        pieces: pieces.into_iter(),
    };
    Ok(template.map(&mut assign))
}

/// Cuts `flat` (of length `sizes.iter().sum()`) into consecutive pieces of the given sizes,
/// halving the list of sizes at each level so that the graph is a balanced binary tree.
fn split_balanced<B: Backend>(flat: Tensor<B, 1>, sizes: &[usize], out: &mut Vec<Tensor<B, 1>>) {
    match sizes.len() {
        0 => {}
        1 => out.push(flat),
        k => {
            let mid = k / 2;
            let left: usize = sizes[..mid].iter().sum();
            let total = flat.dims()[0];
            let (l, r) = if left == 0 {
                // Only empty parameters on the left: an empty piece for them, `flat` for the rest.
                (flat.clone().slice(0..0), flat)
            } else if left == total {
                (flat.clone(), flat.slice(total..total))
            } else {
                (flat.clone().slice(0..left), flat.slice(left..total))
            };
            split_balanced(l, &sizes[..mid], out);
            split_balanced(r, &sizes[mid..], out);
        }
    }
}
