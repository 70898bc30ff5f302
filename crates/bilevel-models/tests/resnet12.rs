//! ResNet-12: shapes, parameter counts, and exact HVP/JVP (nested autodiff) against f64 finite
//! differences with the backbone as x (linear head = y) and with the whole backbone as y.

use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{norm, rel_err_host, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, Lift, Oracle, SecondOrder};
use bilevel_models::flat::{num_params, unflatten};
use bilevel_models::resnet12::ResNet12Config;
use bilevel_models::ModelError;
use bilevel_models::Pool;
use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{activation, Tensor};

type Plain = NdArray<f64>;
type Tb = Autodiff<Plain>;

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    to_vec(t).unwrap()
}

fn t(v: &[f64]) -> Tensor<Tb, 1> {
    vector(v, &Default::default())
}

#[test]
fn shapes_and_parameter_counts() {
    let device = Default::default();
    // The MetaOptNet/TADAM network: 12.4M parameters (bias-free convs, BN γ/β), 640 features.
    let full = ResNet12Config::new();
    assert_eq!(full.output_dim(), 640);
    let template = full.init::<Plain>(&device);
    assert_eq!(num_params::<Plain, _>(&template), 12_424_320);
    assert_eq!(template.output_dim(), 640);

    let cfg = ResNet12Config::new().with_channels([2, 3, 4, 5]);
    let model = cfg.init::<Plain>(&device);
    // 20×24 → 10×12 → 5×6 → 2×3 → 1×1, then global average.
    let images = Tensor::<Plain, 4>::ones([2, 3, 20, 24], &device).add_scalar(0.5);
    let features = model.features(images);
    assert_eq!(features.dims(), [2, 5]);
    assert!(host(features).iter().all(|v| v.is_finite()));
    assert!(matches!(
        model.check_input([2, 3, 15, 16]),
        Err(ModelError::InputShape { .. })
    ));
    assert!(model.check_input([2, 1, 16, 16]).is_err());
    assert!(model.check_input([1, 3, 16, 16]).is_ok());
    assert!(matches!(
        cfg.clone().with_channels([2, 0, 4, 5]).validate(),
        Err(ModelError::InvalidConfig { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// ResNet-12 + linear head, cross-entropy + (λ/2)‖y‖².

const N: usize = 4; // images
const CH: usize = 3; // input channels
const S: usize = 16; // side: 16 → 8 → 4 → 2 → 1
const CHANNELS: [usize; 4] = [2, 3, 4, 4];
const K: usize = 3; // classes
const LAMBDA: f64 = 0.1;
const HEAD: usize = CHANNELS[3] * K + K;

#[derive(Clone, Copy, Debug)]
enum Split {
    /// x = backbone, y = head.
    BackboneIsX,
    /// y = backbone, x = head.
    BackboneIsY,
}

struct ResNetProblem<B: Backend> {
    images: Tensor<B, 4>,
    onehot: Tensor<B, 2>,
    config: ResNet12Config,
    split: Split,
}

impl<B: Backend> ResNetProblem<B> {
    fn backbone_dim(&self) -> usize {
        num_params::<B, _>(&self.config.init::<B>(&self.images.device()))
    }

    fn loss<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>) -> Tensor<C, 1> {
        let (backbone, head) = match self.split {
            Split::BackboneIsX => (x, y.clone()),
            Split::BackboneIsY => (y.clone(), x),
        };
        let model = unflatten(self.config.init::<C>(&backbone.device()), backbone).unwrap();
        let features = model.features(C::lift(self.images.clone()));
        let d = features.dims()[1];
        let w = head.clone().slice(0..d * K).reshape([d, K]);
        let b = head.slice(d * K..HEAD).reshape([1, K]);
        let logp = activation::log_softmax(features.matmul(w).add(b), 1);
        let ce = logp
            .mul(C::lift(self.onehot.clone()))
            .sum()
            .mul_scalar(-1.0 / N as f64);
        ce.add(y.powi_scalar(2).sum().mul_scalar(LAMBDA / 2.0))
    }
}

impl<B: Backend> BilevelProblem<B> for ResNetProblem<B> {
    fn x_dim(&self) -> usize {
        match self.split {
            Split::BackboneIsX => self.backbone_dim(),
            Split::BackboneIsY => HEAD,
        }
    }
    fn y_dim(&self) -> usize {
        match self.split {
            Split::BackboneIsX => HEAD,
            Split::BackboneIsY => self.backbone_dim(),
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

/// Random backbone parameters in visiting order: conv weights at the He scale of their fan-in,
/// batch-norm γ around 1 and β around 0 (told apart by rank: γ/β are the 1-D parameters, and
/// every batch norm visits γ before β).
fn backbone_params(rng: &mut Rng, config: &ResNet12Config) -> Vec<f64> {
    struct Draw<'r> {
        rng: &'r mut Rng,
        flat: Vec<f64>,
        gamma_next: bool,
    }
    impl<B: Backend> ModuleVisitor<B> for Draw<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let shape = param.lazy_shape();
            let n = shape.num_elements();
            let z = self.rng.normal_vec(n);
            if D == 4 {
                let fan_in = (n / shape.dims::<4>()[0]) as f64;
                let s = (2.0 / fan_in).sqrt();
                self.flat.extend(z.iter().map(|v| s * v));
            } else if self.gamma_next {
                self.flat.extend(z.iter().map(|v| 1.0 + 0.2 * v));
                self.gamma_next = false;
            } else {
                self.flat.extend(z.iter().map(|v| 0.2 * v));
                self.gamma_next = true;
            }
        }
    }
    let mut draw = Draw {
        rng,
        flat: Vec::new(),
        gamma_next: true,
    };
    config.init::<Plain>(&Default::default()).visit(&mut draw);
    draw.flat
}

fn run(split: Split, pool: Pool, seed: u64) -> (f64, f64, f64, f64) {
    let device = Default::default();
    let mut rng = Rng::seed(seed);
    let images = vector::<Tb>(&rng.normal_vec(N * CH * S * S), &device).reshape([N, CH, S, S]);
    let mut onehot = vec![0.0; N * K];
    for i in 0..N {
        onehot[i * K + i % K] = 1.0;
    }
    let onehot = vector::<Tb>(&onehot, &device).reshape([N, K]);
    let config = ResNet12Config::new()
        .with_in_channels(CH)
        .with_channels(CHANNELS)
        .with_pool(pool);
    let backbone = backbone_params(&mut rng, &config);
    let head: Vec<f64> = rng.normal_vec(HEAD).iter().map(|v| 0.5 * v).collect();
    let problem = ResNetProblem {
        images,
        onehot,
        config,
        split,
    };
    assert_eq!(backbone.len(), problem.backbone_dim());
    let (x, y) = match split {
        Split::BackboneIsX => (backbone, head),
        Split::BackboneIsY => (head, backbone),
    };
    let v = rng.normal_vec(y.len());

    let mut exact = Oracle::new(&problem);
    let (hv, jv) = exact.hvp_jvp(&t(&x), &t(&y), &t(&v), &Batch::Full).unwrap();
    let mut fd = Oracle::with_mode(&problem, SecondOrder::FiniteDifference { eps: 1e-6 });
    let (hv_fd, jv_fd) = fd.hvp_jvp(&t(&x), &t(&y), &t(&v), &Batch::Full).unwrap();
    (
        rel_err_host(&host(hv.clone()), &host(hv_fd)),
        rel_err_host(&host(jv.clone()), &host(jv_fd)),
        norm(&hv),
        norm(&jv),
    )
}

#[test]
fn backbone_as_x_head_as_y_products_match_finite_differences() {
    let (eh, ej, nh, nj) = run(Split::BackboneIsX, Pool::Max, 41);
    println!("resnet12 max, x = backbone, y = head: hvp rel_err={eh:.2e} jvp rel_err={ej:.2e}");
    assert!(eh < 1e-7, "hvp rel err {eh}");
    assert!(ej < 1e-7, "jvp rel err {ej}");
    assert!(nh > 1e-3 && nj > 1e-3, "‖Hv‖={nh} ‖Jv‖={nj}");
}

#[test]
fn whole_network_as_y_products_match_finite_differences() {
    for pool in [Pool::Max, Pool::Avg] {
        let (eh, ej, nh, nj) = run(Split::BackboneIsY, pool, 42);
        println!(
            "resnet12 {pool:?}, y = backbone, x = head: hvp rel_err={eh:.2e} jvp rel_err={ej:.2e}"
        );
        assert!(eh < 1e-6, "{pool:?}: hvp rel err {eh}");
        assert!(ej < 1e-6, "{pool:?}: jvp rel err {ej}");
        assert!(nh > 1e-3 && nj > 1e-3, "{pool:?}: ‖Hv‖={nh} ‖Jv‖={nj}");
    }
}
