//! `lenet`: shapes and parameter counts, the twice-differentiable pooling against burn's own
//! pooling, burn's pooling failing under a double backward, and exact second-order products in
//! both bilevel roles (x = backbone / y = head, and y = all parameters) for max and average
//! pooling.

mod common;

use bilevel_core::sampling::Rng;
use bilevel_core::tensor::rel_err_host;
use bilevel_core::Lift;
use bilevel_models::lenet::{pool2d, LeNet, LeNetConfig, LeNetFeatures, Pool, FEATURES};
use bilevel_models::linear::{sigmoid, Linear};
use bilevel_models::{flatten, num_params, unflatten, ModelError};
use burn::tensor::backend::Backend;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::Tensor;
use common::{
    assert_errors, check_problem, host, norm_host, normal, onehot, seeded_flat, tensor, CeProblem,
    FlatNet, Inner, Nested, TestBackend,
};

const N: usize = 3;
const K: usize = 10;
const SIDE: usize = 28;
/// Image side of the second-order tests: the architecture is LeNet-5's, on 16×16 inputs
/// (16 → 16 → 8 → 4 → 2, flattened 64) to keep the debug-profile test fast.
const SMALL: usize = 16;

fn burn_pool<B: Backend>(x: Tensor<B, 4>, pool: Pool) -> Tensor<B, 4> {
    match pool {
        Pool::Max => max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], false),
        Pool::Avg => avg_pool2d(x, [2, 2], [2, 2], [0, 0], true, false),
    }
}

#[test]
fn lenet_shapes_and_parameter_counts() {
    let cfg = LeNetConfig::new();
    cfg.validate().unwrap();
    assert_eq!(cfg.flat_width(), 400);
    assert_eq!(cfg.num_feature_params(), 60_856);
    assert_eq!(cfg.num_params(), 61_706);
    let dev = Default::default();
    let model: LeNet<Inner> = cfg.init(&dev);
    assert_eq!(num_params::<Inner, _>(&model), 61_706);
    assert_eq!(num_params::<Inner, _>(&model.features), 60_856);
    assert_eq!(num_params::<Inner, _>(&model.head), 850);
    // flatten(lenet) = [flatten(features), flatten(head)].
    let all = host(&flatten::<Inner, _>(&model));
    let mut parts = host(&flatten::<Inner, _>(&model.features));
    parts.extend(host(&flatten::<Inner, _>(&model.head)));
    assert_eq!(all, parts);

    let mut rng = Rng::seed(0);
    let images = tensor::<Inner, 4>(normal(&mut rng, N * SIDE * SIDE, 1.0), [N, 1, SIDE, SIDE]);
    let feats = model.features(images.clone());
    assert_eq!(feats.dims(), [N, FEATURES]);
    assert!(host(&feats).iter().all(|v| *v >= 0.0)); // ReLU output
    let logits = model.forward(images.clone());
    assert_eq!(logits.dims(), [N, K]);
    assert_eq!(host(&model.head(feats)), host(&logits));
    assert!(model.features.try_forward(images).is_ok());
    let wrong = tensor::<Inner, 4>(vec![0.0; N * 3 * 32 * 32], [N, 3, 32, 32]);
    assert!(matches!(
        model.features.try_forward(wrong),
        Err(ModelError::InputShape { .. })
    ));

    // Other inputs: 3×32×32 → 32 → 16 → 12 → 6, 16·6·6 = 576; a small 12×12 → 16·1·1.
    let c32 = LeNetConfig::new().with_in_channels(3).with_side(32);
    assert_eq!(c32.flat_width(), 576);
    let m32: LeNet<Inner> = c32.init(&dev);
    let x32 = tensor::<Inner, 4>(vec![0.1; 2 * 3 * 32 * 32], [2, 3, 32, 32]);
    assert_eq!(m32.forward(x32).dims(), [2, K]);
    assert_eq!(LeNetConfig::new().with_side(12).flat_width(), 16);
    assert!(LeNetConfig::new().with_side(11).validate().is_err());
    assert!(LeNetConfig::new().with_classes(0).validate().is_err());
}

#[test]
fn pool2d_matches_burn_pooling_values_and_gradients() {
    let mut rng = Rng::seed(1);
    // Odd sizes: the trailing row / column is dropped, as burn does.
    let shape = [2, 3, 7, 6];
    let n: usize = shape.iter().product();
    let xs = normal(&mut rng, n, 1.0);
    let r = normal(&mut rng, 2 * 3 * 3 * 3, 1.0);
    for pool in [Pool::Max, Pool::Avg] {
        let ours = host(&pool2d(tensor::<Inner, 4>(xs.clone(), shape), pool, 2));
        let theirs = host(&burn_pool(tensor::<Inner, 4>(xs.clone(), shape), pool));
        assert_eq!(ours.len(), 2 * 3 * 3 * 3);
        assert!(rel_err_host(&ours, &theirs) < 1e-15, "{pool:?}");

        let grad = |f: &dyn Fn(Tensor<TestBackend, 4>) -> Tensor<TestBackend, 4>| {
            let x = tensor::<TestBackend, 4>(xs.clone(), shape).require_grad();
            let s = f(x.clone()).mul(tensor(r.clone(), [2, 3, 3, 3])).sum();
            host(&x.grad(&s.backward()).unwrap())
        };
        let g_ours = grad(&|x| pool2d(x, pool, 2));
        let g_theirs = grad(&|x| burn_pool(x, pool));
        assert!(
            rel_err_host(&g_ours, &g_theirs) < 1e-15,
            "{pool:?} gradient"
        );
    }
    // A 3×3 window on a 7×7 map (as used by other backbones): 2×2 output of window maxima.
    let x: Vec<f64> = (0..49).map(|i| i as f64).collect();
    let out = host(&pool2d(tensor::<Inner, 4>(x, [1, 1, 7, 7]), Pool::Max, 3));
    assert_eq!(out, [16.0, 19.0, 37.0, 40.0]);
}

/// Panic message of `f`, or `None` if it returned.
fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> Option<String> {
    let err = std::panic::catch_unwind(f).err()?;
    Some(
        err.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| err.downcast_ref::<String>().cloned())
            .unwrap_or_default(),
    )
}

/// Exact `H v` of `s(x) = Σ r ⊙ tanh(pool(x))²` by a double backward through `pool`, and the
/// central difference of its gradient.
fn pool_hvp(
    pool: impl Fn(Tensor<Nested, 4>) -> Tensor<Nested, 4>,
    pool1: impl Fn(Tensor<TestBackend, 4>) -> Tensor<TestBackend, 4>,
    xs: &[f64],
    v: &[f64],
    r: &[f64],
    shape: [usize; 4],
    out: [usize; 4],
) -> (Vec<f64>, Vec<f64>) {
    let x1 = tensor::<TestBackend, 4>(xs.to_vec(), shape).require_grad();
    let x2 = Tensor::<Nested, 4>::from_inner(x1.clone()).require_grad();
    let s = pool(x2.clone())
        .tanh()
        .powi_scalar(2)
        .mul(tensor(r.to_vec(), out))
        .sum();
    let g = x2.grad(&s.backward()).unwrap();
    let hv = x1
        .grad(&g.mul(tensor(v.to_vec(), shape)).sum().backward())
        .unwrap();

    let eps = 1e-6;
    let grad_at = |sign: f64| {
        let shifted: Vec<f64> = xs.iter().zip(v).map(|(a, b)| a + sign * eps * b).collect();
        let x = tensor::<TestBackend, 4>(shifted, shape).require_grad();
        let s = pool1(x.clone())
            .tanh()
            .powi_scalar(2)
            .mul(tensor(r.to_vec(), out))
            .sum();
        host(&x.grad(&s.backward()).unwrap())
    };
    let (p, m) = (grad_at(1.0), grad_at(-1.0));
    let fd = p
        .iter()
        .zip(&m)
        .map(|(a, b)| (a - b) / (2.0 * eps))
        .collect();
    (host(&hv), fd)
}

/// The limitation this crate works around: burn 0.21's `max_pool2d` and `avg_pool2d` panic in
/// a double backward (`Autodiff<B>` refuses to differentiate their backward ops), while
/// `pool2d` gives second derivatives that match finite differences.
#[test]
fn native_pooling_cannot_be_differentiated_twice() {
    let mut rng = Rng::seed(2);
    let shape = [1, 2, 4, 4];
    let out = [1, 2, 2, 2];
    let xs = normal(&mut rng, 32, 1.0);
    let v = normal(&mut rng, 32, 1.0);
    let r = normal(&mut rng, 8, 1.0);
    for pool in [Pool::Max, Pool::Avg] {
        // (The panic message printed here is expected.)
        let (xs2, v2, r2) = (xs.clone(), v.clone(), r.clone());
        let msg = panic_message(move || {
            pool_hvp(
                |x| burn_pool(x, pool),
                |x| burn_pool(x, pool),
                &xs2,
                &v2,
                &r2,
                shape,
                out,
            );
        })
        .unwrap_or_else(|| panic!("burn 0.21 {pool:?} pooling now supports double backward"));
        let expected = match pool {
            Pool::Max => "Can't differentiate max pool2d with indices backward",
            Pool::Avg => "Can't differentiate avg pool 2d backward",
        };
        assert!(msg.contains(expected), "{pool:?}: {msg}");

        let (hv, fd) = pool_hvp(
            |x| pool2d(x, pool, 2),
            |x| pool2d(x, pool, 2),
            &xs,
            &v,
            &r,
            shape,
            out,
        );
        let err = rel_err_host(&hv, &fd);
        println!(
            "pool2d {pool:?}: Hv rel err vs FD {err:.2e}, |Hv| {:.3e}",
            norm_host(&hv)
        );
        assert!(err < 1e-7, "{pool:?}: {err}");
        assert!(norm_host(&hv) > 1e-3);
    }
}

/// PZOBO hr-deep: `x` = the LeNet backbone, `y` = the linear head.
struct HeadOnBackbone<B: Backend> {
    images: Tensor<B, 4>,
    targets: Tensor<B, 2>,
    cfg: LeNetConfig,
}

impl<B: Backend> FlatNet<B> for HeadOnBackbone<B> {
    fn x_dim(&self) -> usize {
        self.cfg.num_feature_params()
    }
    fn y_dim(&self) -> usize {
        self.cfg.head_config().num_params()
    }
    fn targets(&self) -> Tensor<B, 2> {
        self.targets.clone()
    }
    fn logits<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>) -> Tensor<C, 2> {
        let dev = Default::default();
        let features: LeNetFeatures<C> = unflatten(self.cfg.init_features(&dev), x).unwrap();
        let head: Linear<C> = unflatten(self.cfg.init_head(&dev), y).unwrap();
        head.forward(features.forward(C::lift(self.images.clone())))
    }
}

/// `y` = every LeNet parameter (convolutions included), `x` = per-sample log-weights.
struct AllParams<B: Backend> {
    images: Tensor<B, 4>,
    targets: Tensor<B, 2>,
    cfg: LeNetConfig,
}

impl<B: Backend> FlatNet<B> for AllParams<B> {
    fn x_dim(&self) -> usize {
        N
    }
    fn y_dim(&self) -> usize {
        self.cfg.num_params()
    }
    fn targets(&self) -> Tensor<B, 2> {
        self.targets.clone()
    }
    fn logits<C: Lift<B>>(&self, _x: Tensor<C, 1>, y: Tensor<C, 1>) -> Tensor<C, 2> {
        let model: LeNet<C> = unflatten(self.cfg.init(&Default::default()), y).unwrap();
        model.forward(C::lift(self.images.clone()))
    }
    fn weights<C: Lift<B>>(&self, x: Tensor<C, 1>) -> Option<Tensor<C, 1>> {
        Some(sigmoid(x))
    }
}

fn data<B: Backend>(seed: u64) -> (Rng, Tensor<B, 4>, Tensor<B, 2>) {
    let mut rng = Rng::seed(seed);
    let images = tensor(
        normal(&mut rng, N * SMALL * SMALL, 1.0),
        [N, 1, SMALL, SMALL],
    );
    (rng, images, onehot(&[3, 7, 1], K))
}

#[test]
fn lenet_head_on_backbone_products_match_finite_differences() {
    for (pool, seed) in [(Pool::Max, 20), (Pool::Avg, 21)] {
        let (mut rng, images, targets) = data::<TestBackend>(seed);
        let cfg = LeNetConfig::new().with_pool(pool).with_side(SMALL);
        let dev = Default::default();
        let x = seeded_flat(&cfg.init_features::<TestBackend>(&dev), seed);
        let y = normal(&mut rng, cfg.head_config().num_params(), 0.3);
        let problem = CeProblem::new(
            HeadOnBackbone {
                images,
                targets,
                cfg,
            },
            1e-2,
        );
        let name = format!("lenet {pool:?} (x = backbone, y = head)");
        let e = check_problem(&name, &problem, &x, &y, seed, 2);
        assert_errors(&name, &e, 1e-6, 1e-7);
    }
}

#[test]
fn lenet_all_parameters_products_match_finite_differences() {
    lenet_all_parameters_on::<TestBackend>();
}

/// The same on Flex (f64): burn-flex's conv2d, pooling (our `pool2d`), tanh and linear
/// backward rules, nested. (Fails if Flex computed in f32: the FD
/// products with ε = 1e-6 are then meaningless; the MLP twin of this test is off by 0.24.)
#[test]
fn lenet_all_parameters_products_match_finite_differences_on_flex() {
    common::flex();
    lenet_all_parameters_on::<bilevel_core::backend::FlexAutodiff>();
}

fn lenet_all_parameters_on<B: burn::tensor::backend::AutodiffBackend>() {
    for (pool, seed) in [(Pool::Max, 30), (Pool::Avg, 31)] {
        let (mut rng, images, targets) = data::<B>(seed);
        let cfg = LeNetConfig::new().with_pool(pool).with_side(SMALL);
        let y = seeded_flat(&cfg.init::<B>(&Default::default()), seed);
        let x = normal(&mut rng, N, 1.0);
        let problem = CeProblem::new(
            AllParams {
                images,
                targets,
                cfg,
            },
            1e-2,
        );
        let name = format!("lenet {pool:?} (y = all parameters, x = sample log-weights)");
        let e = check_problem(&name, &problem, &x, &y, seed, 2);
        assert_errors(&name, &e, 1e-6, 1e-7);
    }
}
