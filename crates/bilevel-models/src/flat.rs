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

/// How [`he_normal_init`] fills the 1-D parameters of a module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorInit {
    /// Every 1-D parameter (a bias) is zero.
    Zeros,
    /// The 1-D parameters are consecutive batch-norm `(γ, β)` pairs: `γ = 1`, `β = 0` (CNN4,
    /// ResNet-12: their convolutions have no bias).
    BatchNormPairs,
}

/// Reproducible initial values of `template`'s flat parameters, in visiting order (the layout
/// of [`flatten`]): each weight of rank ≥ 2 is He-normal, `N(0, 2 / fan_in)`, with
/// `fan_in = d_in` for a `[d_in, d_out]` matrix (burn's and [`crate::Linear`]'s layout) and
/// `fan_in = in · k · k` for a `[out, in, k, k]` convolution; 1-D parameters follow `vectors`.
///
/// `normal(n)` must return `n` standard normal draws (e.g. a seeded
/// `bilevel_core::sampling::Rng::normal_vec`). Unlike `Config::init`, which draws from burn's
/// process-wide generator (shared by every thread of a test binary), the result depends only on
/// `normal`, so problems and tests get the same starting point on every run.
pub fn he_normal_init<B: Backend, M: Module<B>>(
    template: &M,
    vectors: VectorInit,
    normal: impl FnMut(usize) -> Vec<f64>,
) -> Vec<f64> {
    struct Init<F> {
        normal: F,
        vectors: VectorInit,
        out: Vec<f64>,
        after_gamma: bool,
    }
    impl<B: Backend, F: FnMut(usize) -> Vec<f64>> ModuleVisitor<B> for Init<F> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let dims = param.lazy_shape().as_slice().to_vec();
            let n: usize = dims.iter().product();
            if D == 1 {
                let value = match self.vectors {
                    VectorInit::Zeros => 0.0,
                    VectorInit::BatchNormPairs => {
                        let is_gamma = !self.after_gamma;
                        self.after_gamma = is_gamma;
                        if is_gamma {
                            1.0
                        } else {
                            0.0
                        }
                    }
                };
                self.out.extend(std::iter::repeat_n(value, n));
            } else {
                let fan_in: usize = if D == 2 {
                    dims[0]
                } else {
                    dims[1..].iter().product()
                };
                let std = (2.0 / fan_in.max(1) as f64).sqrt();
                let draws = (self.normal)(n);
                debug_assert_eq!(draws.len(), n, "normal(n) must return n draws");
                self.out.extend(draws.into_iter().take(n).map(|v| std * v));
            }
        }
    }
    let mut init = Init {
        normal,
        vectors,
        out: Vec::new(),
        after_gamma: false,
    };
    template.visit(&mut init);
    init.out
}
