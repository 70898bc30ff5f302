//! `flat::{num_params, flatten, unflatten}`: counts, round trips, the `ParamCount` error, and
//! gradients with respect to the flat vector equal to the module's parameter gradients, on
//! `B`, `Autodiff<B>` and `Autodiff<Autodiff<B>>`.

mod common;

use bilevel_core::sampling::Rng;
use bilevel_core::tensor::rel_err_host;
use bilevel_models::linear::{cross_entropy, Linear, LinearConfig};
use bilevel_models::{flatten, num_params, unflatten, ModelError};
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{activation, Tensor};
use common::{host, normal, onehot, tensor, Inner, Nested, TestBackend};

const N: usize = 3; // images
const S: usize = 5; // side
const K: usize = 3; // classes

/// A module mixing a burn conv, nested structs, a `Vec`, an optional bias that is absent, and
/// a bare `Param`: every visiting-order case `unflatten` must follow.
#[derive(Module, Debug)]
struct Toy<B: Backend> {
    conv: Conv2d<B>,
    blocks: Vec<Linear<B>>,
    head: Linear<B>,
    scale: Param<Tensor<B, 1>>,
}

#[derive(Debug, Clone, Copy)]
struct ToyConfig;

impl ToyConfig {
    fn init<B: Backend>(&self, device: &B::Device) -> Toy<B> {
        Toy {
            conv: Conv2dConfig::new([1, 2], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            blocks: vec![
                LinearConfig::new(2 * S * S, 4).init(device),
                LinearConfig::new(4, 4).with_bias(false).init(device),
            ],
            head: LinearConfig::new(4, K).init(device),
            scale: burn::module::Initializer::Ones.init_with([K], None, None, device),
        }
    }
    fn num_params(&self) -> usize {
        (2 * 9 + 2) + (2 * S * S * 4 + 4) + 16 + (4 * K + K) + K
    }
}

impl<B: Backend> Toy<B> {
    fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let h = activation::relu(self.conv.forward(images)).reshape([N, 2 * S * S]);
        let h = self.blocks[0].forward(h).tanh();
        let h = self.blocks[1].forward(h).tanh();
        let k = self.scale.dims()[0];
        self.head.forward(h).mul(self.scale.val().reshape([1, k]))
    }
}

fn data<B: Backend>() -> (Tensor<B, 4>, Tensor<B, 2>) {
    let mut rng = Rng::seed(7);
    let images = tensor(normal(&mut rng, N * S * S, 1.0), [N, 1, S, S]);
    (images, onehot(&[0, 2, 1], K))
}

fn loss<B: Backend>(model: &Toy<B>) -> Tensor<B, 1> {
    let (images, targets) = data::<B>();
    cross_entropy(model.forward(images), targets)
}

/// Gradients of every float parameter of `model`, flattened in visiting order.
fn param_grads<B: AutodiffBackend, M: Module<B>>(model: &M, grads: &B::Gradients) -> Vec<f64> {
    struct Collect<'a, B: AutodiffBackend>(&'a B::Gradients, Vec<f64>);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let g = param
                .val()
                .grad(self.0)
                .expect("every parameter has a gradient");
            self.1.extend(host(&g));
        }
    }
    let mut c = Collect::<B>(grads, Vec::new());
    model.visit(&mut c);
    c.1
}

#[test]
fn num_params_counts_without_initialising() {
    let template = ToyConfig.init::<Inner>(&Default::default());
    assert_eq!(num_params::<Inner, _>(&template), ToyConfig.num_params());
    // Counting reads lazy shapes only.
    assert!(!template.head.weight.is_initialized());
    assert!(!template.conv.weight.is_initialized());
    assert_eq!(
        flatten::<Inner, _>(&template).dims()[0],
        ToyConfig.num_params()
    );
}

#[test]
fn flatten_unflatten_round_trip_and_order() {
    let p = ToyConfig.num_params();
    let ramp: Vec<f64> = (0..p).map(|i| i as f64).collect();
    let model = unflatten(
        ToyConfig.init::<Inner>(&Default::default()),
        tensor(ramp.clone(), [p]),
    )
    .unwrap();
    assert_eq!(host(&flatten::<Inner, _>(&model)), ramp);
    // Visiting order: conv.weight [2,1,3,3], conv.bias [2], blocks[0].weight [50,4], bias [4],
    // blocks[1].weight [4,4] (no bias), head.weight [4,3], head.bias [3], scale [3].
    assert_eq!(model.conv.weight.dims(), [2, 1, 3, 3]);
    assert_eq!(host(&model.conv.weight.val())[..3], [0.0, 1.0, 2.0]);
    assert_eq!(host(&model.conv.bias.as_ref().unwrap().val()), [18.0, 19.0]);
    assert_eq!(host(&model.blocks[0].weight.val())[0], 20.0);
    assert_eq!(host(&model.blocks[0].weight.val())[4], 24.0); // row-major [50, 4]
    assert!(model.blocks[1].bias.is_none());
    assert_eq!(
        host(&model.scale.val()),
        [(p - 3) as f64, (p - 2) as f64, (p - 1) as f64]
    );

    // Random module → flat → module: same parameters and the same forward.
    let original = ToyConfig.init::<Inner>(&Default::default());
    let flat = flatten::<Inner, _>(&original);
    let copy = unflatten(ToyConfig.init::<Inner>(&Default::default()), flat.clone()).unwrap();
    assert_eq!(host(&flatten::<Inner, _>(&copy)), host(&flat));
    let (a, b) = (host(&loss(&original)), host(&loss(&copy)));
    assert_eq!(a, b);
}

#[test]
fn wrong_length_is_a_param_count_error() {
    let p = ToyConfig.num_params();
    for got in [0, 1, p - 1, p + 1] {
        let err = unflatten(
            ToyConfig.init::<Inner>(&Default::default()),
            tensor(vec![0.5; got], [got]),
        );
        assert_eq!(
            err.unwrap_err(),
            ModelError::ParamCount { expected: p, got }
        );
    }
}

#[test]
fn gradient_wrt_flat_equals_parameter_gradients() {
    // Module with its own tracked parameters on Autodiff<B>.
    let model = ToyConfig.init::<TestBackend>(&Default::default());
    let l = loss(&model);
    let grads = l.backward();
    let reference = param_grads::<TestBackend, _>(&model, &grads);
    assert_eq!(reference.len(), ToyConfig.num_params());

    // The same values as a flat leaf, through unflatten.
    let flat = flatten::<TestBackend, _>(&model).detach().require_grad();
    let rebuilt = unflatten(
        ToyConfig.init::<TestBackend>(&Default::default()),
        flat.clone(),
    )
    .unwrap();
    let l2 = loss(&rebuilt);
    assert_eq!(host(&l), host(&l2));
    let g = host(
        &flat
            .grad(&l2.backward())
            .expect("flat vector has a gradient"),
    );
    let err = rel_err_host(&g, &reference);
    println!("flat: autodiff grad rel err {err:.2e}");
    assert!(err < 1e-14, "{err}");
    assert!(common::norm_host(&g) > 1e-3);
}

#[test]
fn gradient_wrt_flat_on_nested_level_matches_and_differentiates_again() {
    let model = ToyConfig.init::<TestBackend>(&Default::default());
    let reference = param_grads::<TestBackend, _>(&model, &loss(&model).backward());

    // Level 1 leaf, lifted to level 2 and tracked there.
    let flat1 = flatten::<TestBackend, _>(&model).detach().require_grad();
    let flat2 = Tensor::<Nested, 1>::from_inner(flat1.clone()).require_grad();
    let rebuilt = unflatten(ToyConfig.init::<Nested>(&Default::default()), flat2.clone()).unwrap();
    let l = loss(&rebuilt);
    let g2 = flat2.grad(&l.backward()).expect("level-2 gradient");
    let err = rel_err_host(&host(&g2), &reference);
    println!("flat: nested grad rel err {err:.2e}");
    assert!(err < 1e-14, "{err}");

    // The level-2 gradient is still tracked on level 1: ⟨∇g, 1⟩ has a gradient (H·1).
    let s = g2.sum();
    let hv = flat1.grad(&s.backward()).expect("gradient of the gradient");
    assert_eq!(hv.dims()[0], ToyConfig.num_params());
    assert!(common::norm_host(&host(&hv)) > 1e-6);

    // Plain backend: same loss value.
    let flat0 = flatten::<TestBackend, _>(&model).inner();
    let plain = unflatten(ToyConfig.init::<Inner>(&Default::default()), flat0).unwrap();
    assert_eq!(host(&loss(&plain)), host(&l));
}

/// The pre-tree `unflatten`: one `slice` of the whole vector per parameter.
fn unflatten_direct<B: Backend, M: Module<B>>(template: M, flat: Tensor<B, 1>) -> M {
    struct Assign<B: Backend> {
        flat: Tensor<B, 1>,
        offset: usize,
    }
    impl<B: Backend> burn::module::ModuleMapper<B> for Assign<B> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let shape = param.lazy_shape();
            let n = shape.num_elements();
            let start = self.offset;
            self.offset += n;
            let value = self
                .flat
                .clone()
                .slice(start..start + n)
                .reshape::<D, _>(shape);
            Param::initialized(param.id, value)
        }
    }
    template.map(&mut Assign { flat, offset: 0 })
}

/// Backward cost of `unflatten` with many parameter tensors: the balanced split against one
/// slice per parameter (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn unflatten_backward_cost() {
    #[derive(Module, Debug)]
    struct Deep<B: Backend> {
        layers: Vec<Linear<B>>,
    }
    let (width, depth) = (100, 64);
    let template = || Deep::<TestBackend> {
        layers: (0..depth)
            .map(|_| LinearConfig::new(width, width).init(&Default::default()))
            .collect(),
    };
    let p = num_params::<TestBackend, _>(&template());
    let flat = tensor::<TestBackend, 1>(vec![1e-3; p], [p]).require_grad();
    let loss = |m: &Deep<TestBackend>| {
        m.layers
            .iter()
            .map(|l| {
                l.weight
                    .val()
                    .sum()
                    .add(l.bias.as_ref().unwrap().val().sum())
            })
            .reduce(|a, b| a.add(b))
            .unwrap()
    };
    for (name, tree) in [
        ("tree", true),
        ("direct", false),
        ("tree", true),
        ("direct", false),
    ] {
        let t0 = std::time::Instant::now();
        let m = if tree {
            unflatten(template(), flat.clone()).unwrap()
        } else {
            unflatten_direct(template(), flat.clone())
        };
        let g = host(&flat.grad(&loss(&m).backward()).unwrap());
        assert!(g.iter().all(|v| *v == 1.0));
        println!(
            "{name}: {p} params in {} tensors, unflatten+backward {:.3}s",
            2 * depth,
            t0.elapsed().as_secs_f64()
        );
    }
}

#[test]
fn empty_parameters_get_empty_slices() {
    #[derive(Module, Debug)]
    struct WithEmpty<B: Backend> {
        empty_first: Param<Tensor<B, 1>>,
        w: Param<Tensor<B, 2>>,
        empty_last: Param<Tensor<B, 2>>,
    }
    let init = |dev: &burn::tensor::Device<TestBackend>| WithEmpty::<TestBackend> {
        empty_first: burn::module::Initializer::Zeros.init_with([0], None, None, dev),
        w: burn::module::Initializer::Zeros.init_with([2, 3], None, None, dev),
        empty_last: burn::module::Initializer::Zeros.init_with([3, 0], None, None, dev),
    };
    let dev = Default::default();
    assert_eq!(num_params::<TestBackend, _>(&init(&dev)), 6);
    let flat = tensor::<TestBackend, 1>((0..6).map(|i| i as f64).collect(), [6]).require_grad();
    let m = unflatten(init(&dev), flat.clone()).unwrap();
    assert_eq!(m.empty_first.dims(), [0]);
    assert_eq!(m.empty_last.dims(), [3, 0]);
    assert_eq!(host(&m.w.val()), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let g = flat
        .grad(&m.w.val().powi_scalar(2).sum().backward())
        .unwrap();
    assert_eq!(host(&g), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
}

fn sample_std(v: &[f64]) -> f64 {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|a| (a - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
}

#[test]
fn he_normal_init_is_seeded_with_fan_in_scales_and_vector_rules() {
    use bilevel_models::flat::{he_normal_init, VectorInit};
    use bilevel_models::BatchNorm2dConfig;
    let draw = |seed: u64| {
        let mut rng = Rng::seed(seed);
        he_normal_init(
            &ToyConfig.init::<Inner>(&Default::default()),
            VectorInit::Zeros,
            |n| rng.normal_vec(n),
        )
    };
    let (a, b, c) = (draw(3), draw(3), draw(4));
    assert_eq!(
        a.len(),
        num_params::<Inner, _>(&ToyConfig.init(&Default::default()))
    );
    assert_eq!(a, b, "same seed, same values");
    assert_ne!(a, c);
    // Layout: conv weight [2,1,3,3] (18), conv bias (2), block 0 [50,4] (200) + bias (4), ...
    assert!(a[18..20].iter().all(|v| *v == 0.0));
    assert!(a[220..224].iter().all(|v| *v == 0.0));
    assert!(a[..18].iter().all(|v| *v != 0.0));

    // Scales: N(0, 2 / fan_in) with fan_in = d_in for a matrix, in·k·k for a convolution.
    let mut rng = Rng::seed(9);
    let lin = he_normal_init(
        &LinearConfig::new(400, 300).init::<Inner>(&Default::default()),
        VectorInit::Zeros,
        |n| rng.normal_vec(n),
    );
    let w = &lin[..400 * 300];
    let want = (2.0f64 / 400.0).sqrt();
    assert!(
        (sample_std(w) / want - 1.0).abs() < 0.01,
        "{}",
        sample_std(w)
    );
    let conv = he_normal_init(
        &Conv2dConfig::new([8, 64], [3, 3])
            .with_bias(false)
            .init::<Inner>(&Default::default()),
        VectorInit::Zeros,
        |n| rng.normal_vec(n),
    );
    let want = (2.0f64 / 72.0).sqrt();
    assert_eq!(conv.len(), 64 * 8 * 9);
    assert!(
        (sample_std(&conv) / want - 1.0).abs() < 0.05,
        "{}",
        sample_std(&conv)
    );

    // Batch-norm pairs: γ = 1, β = 0, for each layer in turn.
    let bn = BatchNorm2dConfig::new(5).init::<Inner>(&Default::default());
    let pairs = he_normal_init(&vec![bn.clone(), bn], VectorInit::BatchNormPairs, |n| {
        vec![0.0; n]
    });
    let (one, zero) = (vec![1.0; 5], vec![0.0; 5]);
    assert_eq!(pairs, [&one[..], &zero, &one, &zero].concat());
}
