//! CNN4: shapes, pooling, and exact HVP/JVP (nested autodiff) against f64 finite differences in
//! the two meta-learning configurations — backbone = x with a linear head = y, and the whole
//! backbone as y (MAML/ITD through the network) — plus burn 0.21's own pooling kernels, which are
//! not twice differentiable.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{norm, rel_err_host, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, Lift, Oracle, SecondOrder};
use bilevel_models::cnn4::{output_dim, pool2x2, Cnn4Config};
use bilevel_models::flat::{num_params, unflatten};
use bilevel_models::ModelError;
use bilevel_models::Pool;
use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{activation, Tensor};

type Plain = NdArray<f64>;
type Tb = Autodiff<Plain>;

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    to_vec(t).unwrap()
}

fn t(v: &[f64]) -> Tensor<Tb, 1> {
    vector(v, &Default::default())
}

fn scaled(rng: &mut Rng, n: usize, s: f64) -> Vec<f64> {
    rng.normal_vec(n).into_iter().map(|v| s * v).collect()
}

#[test]
fn shapes_and_parameter_counts() {
    // 28×28 → 1×1 after four floor poolings; 84×84 → 5×5; 32×32 → 2×2.
    let omniglot = Cnn4Config::new().with_in_channels(1).with_image_size(28);
    assert_eq!(omniglot.feature_map_size(), 1);
    assert_eq!(output_dim(&omniglot), 64);
    let mini = Cnn4Config::new();
    assert_eq!(mini.feature_map_size(), 5);
    assert_eq!(output_dim(&mini), 1600);
    assert_eq!(output_dim(&mini.clone().with_filters(32)), 800);
    assert_eq!(output_dim(&mini.clone().with_image_size(32)), 256);
    // 64·3·9 + 2·64 + 3·(64·64·9 + 2·64), counted without allocating.
    let template = mini.init::<Plain>(&Default::default());
    assert_eq!(num_params::<Plain, _>(&template), 112_832);
    assert_eq!(template.output_dim(), 1600);

    let device = Default::default();
    let cfg = Cnn4Config::new()
        .with_in_channels(3)
        .with_filters(5)
        .with_image_size(36);
    let model = cfg.init::<Plain>(&device);
    let images = Tensor::<Plain, 4>::ones([2, 3, 36, 36], &device);
    // 36 → 18 → 9 → 4 → 2.
    assert_eq!(model.features(images).dims(), [2, 20]);
    assert_eq!(cfg.output_dim(), 20);
    assert!(matches!(
        model.check_input([2, 1, 36, 36]),
        Err(ModelError::InputShape { .. })
    ));
    assert!(matches!(
        cfg.clone().with_image_size(15).validate(),
        Err(ModelError::InvalidConfig { .. })
    ));
    assert!(cfg.with_filters(0).validate().is_err());
}

#[test]
fn pooling_equals_burn_kernels_in_value_and_gradient() {
    let device = Default::default();
    let mut rng = Rng::seed(5);
    for (h, w) in [(6, 8), (7, 5)] {
        let len = 2 * 3 * h * w;
        let x = vector::<Tb>(&rng.normal_vec(len), &device).reshape([2, 3, h, w]);
        let weights = vector::<Tb>(&rng.normal_vec(2 * 3 * (h / 2) * (w / 2)), &device).reshape([
            2,
            3,
            h / 2,
            w / 2,
        ]);
        for pool in [Pool::Max, Pool::Avg] {
            let leaf = x.clone().require_grad();
            let ours = pool2x2(leaf.clone(), pool);
            let kernel = match pool {
                Pool::Max => max_pool2d(leaf.clone(), [2, 2], [2, 2], [0, 0], [1, 1], false),
                Pool::Avg => avg_pool2d(leaf.clone(), [2, 2], [2, 2], [0, 0], true, false),
            };
            let (v_ours, v_kernel) = (host(ours.clone().inner()), host(kernel.clone().inner()));
            let g_ours = leaf
                .grad(&ours.mul(weights.clone()).sum().backward())
                .unwrap();
            let g_kernel = leaf
                .grad(&kernel.mul(weights.clone()).sum().backward())
                .unwrap();
            let (g_ours, g_kernel) = (host(g_ours), host(g_kernel));
            if pool == Pool::Max {
                // Same maxima, same argmax routing: bit-identical.
                assert_eq!(v_ours, v_kernel, "{h}×{w}");
                assert_eq!(g_ours, g_kernel, "{h}×{w}");
            } else {
                // `sum · 0.25` vs the kernel's mean: equal up to rounding.
                let (ev, eg) = (
                    rel_err_host(&v_ours, &v_kernel),
                    rel_err_host(&g_ours, &g_kernel),
                );
                assert!(
                    ev < 1e-15 && eg < 1e-15,
                    "{h}×{w}: value {ev}, gradient {eg}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CNN4 + linear head, cross-entropy + (λ/2)‖y‖².

const N: usize = 4; // images
const CH: usize = 3; // input channels
const S: usize = 16; // side: 16 → 8 → 4 → 2 → 1
const FILTERS: usize = 4;
const K: usize = 3; // classes
const LAMBDA: f64 = 0.1;

/// Which flat vector holds the backbone.
#[derive(Clone, Copy, Debug)]
enum Split {
    /// Hyper-representation / meta-learning: x = backbone, y = head (level 2 tracks the head).
    BackboneIsX,
    /// MAML/ITD through the whole network: y = backbone, x = head.
    BackboneIsY,
}

struct Cnn4Problem<B: Backend> {
    images: Tensor<B, 4>,
    onehot: Tensor<B, 2>,
    config: Cnn4Config,
    split: Split,
}

fn cross_entropy<C: Backend>(logits: Tensor<C, 2>, onehot: Tensor<C, 2>) -> Tensor<C, 1> {
    let n = logits.dims()[0];
    activation::log_softmax(logits, 1)
        .mul(onehot)
        .sum()
        .mul_scalar(-1.0 / n as f64)
}

fn head_dim(features: usize) -> usize {
    features * K + K
}

fn linear_head<C: Backend>(features: Tensor<C, 2>, head: Tensor<C, 1>) -> Tensor<C, 2> {
    let d = features.dims()[1];
    let w = head.clone().slice(0..d * K).reshape([d, K]);
    let b = head.slice(d * K..d * K + K).reshape([1, K]);
    features.matmul(w).add(b)
}

impl<B: Backend> Cnn4Problem<B> {
    fn loss<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>) -> Tensor<C, 1> {
        let (backbone, head) = match self.split {
            Split::BackboneIsX => (x, y.clone()),
            Split::BackboneIsY => (y.clone(), x),
        };
        let model = unflatten(self.config.init::<C>(&backbone.device()), backbone).unwrap();
        let features = model.features(C::lift(self.images.clone()));
        let logits = linear_head(features, head);
        cross_entropy(logits, C::lift(self.onehot.clone()))
            .add(y.powi_scalar(2).sum().mul_scalar(LAMBDA / 2.0))
    }

    fn dims(&self) -> (usize, usize) {
        let backbone = num_params::<B, _>(&self.config.init::<B>(&self.images.device()));
        let head = head_dim(self.config.output_dim());
        match self.split {
            Split::BackboneIsX => (backbone, head),
            Split::BackboneIsY => (head, backbone),
        }
    }
}

impl<B: Backend> BilevelProblem<B> for Cnn4Problem<B> {
    fn x_dim(&self) -> usize {
        self.dims().0
    }
    fn y_dim(&self) -> usize {
        self.dims().1
    }
    fn device(&self) -> B::Device {
        self.images.device()
    }
    fn inner_loss<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>, _: &Batch) -> Tensor<C, 1> {
        self.loss(x, y)
    }
    fn outer_loss<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>, _: &Batch) -> Tensor<C, 1> {
        self.loss(x, y)
    }
}

fn episode<B: Backend>(rng: &mut Rng) -> (Tensor<B, 4>, Tensor<B, 2>) {
    let device = Default::default();
    let images = vector::<B>(&rng.normal_vec(N * CH * S * S), &device).reshape([N, CH, S, S]);
    let mut onehot = vec![0.0; N * K];
    for i in 0..N {
        onehot[i * K + i % K] = 1.0;
    }
    (images, vector::<B>(&onehot, &device).reshape([N, K]))
}

/// Random backbone weights at the He scale of each layer (γ around 1, β around 0).
fn backbone_params(rng: &mut Rng, config: &Cnn4Config) -> Vec<f64> {
    let mut flat = Vec::new();
    for k in 0..4 {
        let in_ch = if k == 0 {
            config.in_channels
        } else {
            config.filters
        };
        let fan_in = (in_ch * 9) as f64;
        flat.extend(scaled(
            rng,
            config.filters * in_ch * 9,
            (2.0 / fan_in).sqrt(),
        ));
        flat.extend(rng.normal_vec(config.filters).iter().map(|v| 1.0 + 0.2 * v));
        flat.extend(scaled(rng, config.filters, 0.2));
    }
    flat
}

/// `(‖Hv − Hv_fd‖/‖Hv_fd‖, ‖Jv − Jv_fd‖/‖Jv_fd‖)` with FD step 1e-6, plus `(‖Hv‖, ‖Jv‖)`.
fn compare<B: AutodiffBackend, P: BilevelProblem<B>>(
    problem: &P,
    x: &[f64],
    y: &[f64],
    v: &[f64],
) -> (f64, f64, f64, f64) {
    let device = problem.device();
    let t = |v: &[f64]| vector::<B>(v, &device);
    let mut exact = Oracle::new(problem);
    let (hv, jv) = exact.hvp_jvp(&t(x), &t(y), &t(v), &Batch::Full).unwrap();
    let mut fd = Oracle::with_mode(problem, SecondOrder::FiniteDifference { eps: 1e-6 });
    let (hv_fd, jv_fd) = fd.hvp_jvp(&t(x), &t(y), &t(v), &Batch::Full).unwrap();
    (
        rel_err_host(&host(hv.clone()), &host(hv_fd)),
        rel_err_host(&host(jv.clone()), &host(jv_fd)),
        norm(&hv),
        norm(&jv),
    )
}

fn run_cnn4(split: Split, pool: Pool, seed: u64) -> (f64, f64, f64, f64) {
    run_cnn4_on::<Tb>(split, pool, seed)
}

fn run_cnn4_on<B: AutodiffBackend>(split: Split, pool: Pool, seed: u64) -> (f64, f64, f64, f64) {
    let mut rng = Rng::seed(seed);
    let (images, onehot) = episode::<B>(&mut rng);
    let config = Cnn4Config::new()
        .with_in_channels(CH)
        .with_filters(FILTERS)
        .with_image_size(S)
        .with_pool(pool);
    let problem = Cnn4Problem {
        images,
        onehot,
        config: config.clone(),
        split,
    };
    let backbone = backbone_params(&mut rng, &config);
    let head = scaled(&mut rng, head_dim(config.output_dim()), 0.5);
    let (x, y) = match split {
        Split::BackboneIsX => (backbone, head),
        Split::BackboneIsY => (head, backbone),
    };
    assert_eq!((x.len(), y.len()), problem.dims());
    let v = rng.normal_vec(y.len());
    compare(&problem, &x, &y, &v)
}

#[test]
fn backbone_as_x_head_as_y_products_match_finite_differences() {
    let (eh, ej, nh, nj) = run_cnn4(Split::BackboneIsX, Pool::Max, 21);
    println!("cnn4 max, x = backbone, y = head: hvp rel_err={eh:.2e} jvp rel_err={ej:.2e}");
    assert!(eh < 1e-7, "hvp rel err {eh}");
    assert!(ej < 1e-7, "jvp rel err {ej}");
    assert!(nh > 1e-3 && nj > 1e-3, "‖Hv‖={nh} ‖Jv‖={nj}");
}

/// The whole network (convolutions, batch-statistics BN with its `[n, c, 1, 1]` broadcasts,
/// pooling) as `y` on Flex in f64, against finite differences. (Fails if Flex computed in f32:
/// the FD products with ε = 1e-6 are then meaningless; the MLP test is off by 0.24 so.)
#[test]
fn whole_network_as_y_products_match_finite_differences_on_flex() {
    bilevel_core::backend::flex_device(bilevel_core::backend::Precision::F64).unwrap();
    for pool in [Pool::Max, Pool::Avg] {
        let (eh, ej, nh, nj) =
            run_cnn4_on::<bilevel_core::backend::FlexAutodiff>(Split::BackboneIsY, pool, 22);
        println!("cnn4 {pool:?} on flex: hvp rel_err={eh:.2e} jvp rel_err={ej:.2e}");
        assert!(eh < 1e-6, "{pool:?}: hvp rel err {eh}");
        assert!(ej < 1e-6, "{pool:?}: jvp rel err {ej}");
        assert!(nh > 1e-3 && nj > 1e-3, "{pool:?}: ‖Hv‖={nh} ‖Jv‖={nj}");
    }
}

#[test]
fn whole_network_as_y_products_match_finite_differences_with_max_and_avg_pooling() {
    for pool in [Pool::Max, Pool::Avg] {
        let (eh, ej, nh, nj) = run_cnn4(Split::BackboneIsY, pool, 22);
        println!(
            "cnn4 {pool:?}, y = backbone, x = head: hvp rel_err={eh:.2e} jvp rel_err={ej:.2e}"
        );
        assert!(eh < 1e-6, "{pool:?}: hvp rel err {eh}");
        assert!(ej < 1e-6, "{pool:?}: jvp rel err {ej}");
        assert!(nh > 1e-3 && nj > 1e-3, "{pool:?}: ‖Hv‖={nh} ‖Jv‖={nj}");
    }
}

// ---------------------------------------------------------------------------------------------
// burn 0.21's fused pooling kernels under nested autodiff.

const KS: usize = 8; // side of the kernel-test images
const KF: usize = 2; // conv filters

#[derive(Clone, Copy, Debug)]
enum Pooling {
    BurnMax,
    BurnAvg,
    Ours(Pool),
}

/// `CE(head(pool(relu(conv3×3(images; w))))) + (λ/2)‖y‖²` with `w` in x or in y.
struct KernelProblem<B: Backend> {
    images: Tensor<B, 4>,
    onehot: Tensor<B, 2>,
    pooling: Pooling,
    split: Split,
}

const CONV_DIM: usize = KF * 9;
const KFEAT: usize = KF * (KS / 2) * (KS / 2);

impl<B: Backend> KernelProblem<B> {
    fn loss<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>) -> Tensor<C, 1> {
        let (conv, head) = match self.split {
            Split::BackboneIsX => (x, y.clone()),
            Split::BackboneIsY => (y.clone(), x),
        };
        let h = activation::relu(conv2d(
            C::lift(self.images.clone()),
            conv.reshape([KF, 1, 3, 3]),
            None,
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        ));
        let pooled = match self.pooling {
            Pooling::BurnMax => max_pool2d(h, [2, 2], [2, 2], [0, 0], [1, 1], false),
            Pooling::BurnAvg => avg_pool2d(h, [2, 2], [2, 2], [0, 0], true, false),
            Pooling::Ours(pool) => pool2x2(h, pool),
        };
        let n = pooled.dims()[0];
        let logits = linear_head(pooled.reshape([n, KFEAT]), head);
        cross_entropy(logits, C::lift(self.onehot.clone()))
            .add(y.powi_scalar(2).sum().mul_scalar(LAMBDA / 2.0))
    }
}

impl<B: Backend> BilevelProblem<B> for KernelProblem<B> {
    fn x_dim(&self) -> usize {
        match self.split {
            Split::BackboneIsX => CONV_DIM,
            Split::BackboneIsY => head_dim(KFEAT),
        }
    }
    fn y_dim(&self) -> usize {
        match self.split {
            Split::BackboneIsX => head_dim(KFEAT),
            Split::BackboneIsY => CONV_DIM,
        }
    }
    fn device(&self) -> B::Device {
        self.images.device()
    }
    fn inner_loss<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>, _: &Batch) -> Tensor<C, 1> {
        self.loss(x, y)
    }
    fn outer_loss<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>, _: &Batch) -> Tensor<C, 1> {
        self.loss(x, y)
    }
}

fn kernel_problem(
    pooling: Pooling,
    split: Split,
) -> (KernelProblem<Tb>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let device = Default::default();
    let mut rng = Rng::seed(31);
    let images = vector::<Tb>(&rng.normal_vec(N * KS * KS), &device).reshape([N, 1, KS, KS]);
    let mut onehot = vec![0.0; N * K];
    for i in 0..N {
        onehot[i * K + i % K] = 1.0;
    }
    let onehot = vector::<Tb>(&onehot, &device).reshape([N, K]);
    let conv = scaled(&mut rng, CONV_DIM, 0.5);
    let head = scaled(&mut rng, head_dim(KFEAT), 0.3);
    let (x, y) = match split {
        Split::BackboneIsX => (conv, head),
        Split::BackboneIsY => (head, conv),
    };
    let v = rng.normal_vec(y.len());
    let problem = KernelProblem {
        images,
        onehot,
        pooling,
        split,
    };
    (problem, x, y, v)
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[test]
fn burn_max_pool_kernel_is_fine_when_only_the_head_is_differentiated_twice() {
    let (problem, x, y, v) = kernel_problem(Pooling::BurnMax, Split::BackboneIsX);
    let (eh, ej, nh, nj) = compare(&problem, &x, &y, &v);
    println!("burn max_pool2d, y = head: hvp rel_err={eh:.2e} jvp rel_err={ej:.2e}");
    assert!(eh < 1e-7 && ej < 1e-7, "hvp {eh}, jvp {ej}");
    assert!(nh > 1e-3 && nj > 1e-3);
}

#[test]
fn burn_pool_kernels_cannot_be_differentiated_twice_but_pool2x2_can() {
    for (pooling, message) in [
        (
            Pooling::BurnMax,
            "Can't differentiate max pool2d with indices backward.",
        ),
        (
            Pooling::BurnAvg,
            "Can't differentiate avg pool 2d backward.",
        ),
    ] {
        let (problem, x, y, v) = kernel_problem(pooling, Split::BackboneIsY);
        // First order through the kernel is fine …
        let grad = Oracle::new(&problem)
            .grad_g(&t(&x), &t(&y), &Batch::Full)
            .unwrap();
        assert!(norm(&grad.y) > 1e-3);
        // … the exact HVP evaluates the kernel's backward on `Autodiff<B>` and panics.
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            Oracle::new(&problem)
                .hvp(&t(&x), &t(&y), &t(&v), &Batch::Full)
                .unwrap()
        }));
        let payload = outcome.expect_err("burn's pooling kernel was differentiated twice");
        assert_eq!(panic_message(payload), message, "{pooling:?}");
    }
    for pool in [Pool::Max, Pool::Avg] {
        let (problem, x, y, v) = kernel_problem(Pooling::Ours(pool), Split::BackboneIsY);
        let (eh, ej, nh, nj) = compare(&problem, &x, &y, &v);
        println!("pool2x2 {pool:?}, y = conv: hvp rel_err={eh:.2e} jvp rel_err={ej:.2e}");
        assert!(eh < 1e-7 && ej < 1e-7, "{pool:?}: hvp {eh}, jvp {ej}");
        assert!(nh > 1e-3 && nj > 1e-3);
    }
}
