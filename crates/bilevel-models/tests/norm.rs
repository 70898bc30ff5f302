//! Transductive batch norm: batch statistics, identical on every backend level, and exact
//! gradients / HVP / JVP (nested autodiff) against f64 finite differences.

use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{norm, rel_err_host, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, Lift, Oracle, SecondOrder};
use bilevel_models::flat::{num_params, unflatten};
use bilevel_models::norm::{normalize, BatchNorm2d, BatchNorm2dConfig};
use burn::backend::{Autodiff, NdArray};
use burn::nn::BatchNormConfig;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

type Plain = NdArray<f64>;
type Tb = Autodiff<Plain>;

const N: usize = 3;
const C: usize = 2;
const H: usize = 4;
const W: usize = 5;
const LEN: usize = N * C * H * W;

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    to_vec(t).unwrap()
}

/// Inputs whose channels have very different means and scales.
fn input<B: Backend>(rng: &mut Rng, device: &B::Device) -> Tensor<B, 4> {
    let mut v = rng.normal_vec(LEN);
    for (i, e) in v.iter_mut().enumerate() {
        let c = (i / (H * W)) % C;
        *e = 3.0 * (c as f64 + 0.5) * *e + 10.0 * c as f64 - 4.0;
    }
    vector::<B>(&v, device).reshape([N, C, H, W])
}

/// Per-channel mean and biased variance of a host copy of `[n, c, h, w]`.
fn channel_stats(v: &[f64]) -> Vec<(f64, f64)> {
    (0..C)
        .map(|c| {
            let vals: Vec<f64> = (0..N)
                .flat_map(|n| (0..H * W).map(move |k| v[(n * C + c) * H * W + k]))
                .collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|x| (x - m).powi(2)).sum::<f64>() / vals.len() as f64;
            (m, var)
        })
        .collect()
}

#[test]
fn normalised_channels_have_zero_mean_unit_variance() {
    let device = Default::default();
    let x = input::<Plain>(&mut Rng::seed(1), &device);
    let raw = channel_stats(&host(x.clone()));
    let layer = BatchNorm2dConfig::new(C).init::<Plain>(&device);
    let out = host(layer.forward(x));
    for (c, (m, var)) in channel_stats(&out).into_iter().enumerate() {
        assert!(m.abs() < 1e-12, "channel {c}: mean {m}");
        // var / (var + ε) with ε = 1e-5: 1 up to ε / var.
        let expected = raw[c].1 / (raw[c].1 + 1e-5);
        assert!((var - expected).abs() < 1e-12, "channel {c}: var {var}");
        assert!((var - 1.0).abs() < 1e-4, "channel {c}: var {var}");
    }
}

#[test]
fn affine_map_comes_from_the_flat_vector() {
    let device = Default::default();
    let x = input::<Plain>(&mut Rng::seed(2), &device);
    let template = BatchNorm2dConfig::new(C).init::<Plain>(&device);
    assert_eq!(num_params::<Plain, _>(&template), 2 * C);
    // γ = [2, -0.5], β = [1, 3].
    let flat = vector::<Plain>(&[2.0, -0.5, 1.0, 3.0], &device);
    let layer = unflatten(template, flat).unwrap();
    let stats = channel_stats(&host(layer.forward(x)));
    let (gamma, beta) = ([2.0, -0.5], [1.0, 3.0]);
    for c in 0..C {
        let (m, var) = stats[c];
        assert!((m - beta[c]).abs() < 1e-12, "channel {c}: mean {m}");
        assert!(
            (var.sqrt() - f64::abs(gamma[c])).abs() < 1e-4,
            "channel {c}: std {}",
            var.sqrt()
        );
    }
}

#[test]
fn same_function_on_every_backend_level_and_equal_to_burn_batchnorm_in_training_mode() {
    let device = Default::default();
    let x = input::<Plain>(&mut Rng::seed(3), &device);
    let flat = [1.5, 0.7, -0.2, 0.4];
    let plain = unflatten(
        BatchNorm2dConfig::new(C).init::<Plain>(&device),
        vector::<Plain>(&flat, &device),
    )
    .unwrap()
    .forward(x.clone());
    let level1: Tensor<Tb, 4> = unflatten(
        BatchNorm2dConfig::new(C).init::<Tb>(&device),
        vector::<Tb>(&flat, &device),
    )
    .unwrap()
    .forward(Tensor::from_inner(x.clone()));
    type L2 = Autodiff<Tb>;
    let level2: Tensor<L2, 4> = unflatten(
        BatchNorm2dConfig::new(C).init::<L2>(&device),
        vector::<L2>(&flat, &device),
    )
    .unwrap()
    .forward(Tensor::from_inner(Tensor::from_inner(x.clone())));
    let p = host(plain.clone());
    assert_eq!(p, host(level1.inner()));
    assert_eq!(p, host(level2.inner().inner()));

    // burn's BatchNorm (γ = 1, β = 0) uses the batch statistics only on an autodiff backend …
    let ours = host(normalize(x.clone(), 1e-5));
    let burn_train = BatchNormConfig::new(C)
        .init::<Tb>(&device)
        .forward(Tensor::<Tb, 4>::from_inner(x.clone()));
    let err = rel_err_host(&ours, &host(burn_train.inner()));
    assert!(err < 1e-12, "burn BatchNorm (autodiff) vs ours: {err}");
    // … and its running statistics (mean 0, var 1 at start) on a plain one: not normalised.
    let burn_plain = host(
        BatchNormConfig::new(C)
            .init::<Plain>(&device)
            .forward(x.clone()),
    );
    let err = rel_err_host(&ours, &burn_plain);
    assert!(
        err > 0.5,
        "burn BatchNorm (plain) should not normalise: {err}"
    );
}

/// `g(x, y) = Σ A ⊙ z + ½ Σ D ⊙ z²` with `z = BN_x(y)`: `x` = the layer's flat `(γ, β)`,
/// `y` = the input tensor, so second derivatives run through the normalisation itself.
struct NormProblem<B: Backend> {
    a: Tensor<B, 4>,
    d: Tensor<B, 4>,
}

impl<B: Backend> NormProblem<B> {
    fn loss<C2: Lift<B>>(&self, x: Tensor<C2, 1>, y: Tensor<C2, 1>) -> Tensor<C2, 1> {
        let layer: BatchNorm2d<C2> =
            unflatten(BatchNorm2dConfig::new(C).init(&y.device()), x).unwrap();
        let z = layer.forward(y.reshape([N, C, H, W]));
        let lin = z.clone().mul(C2::lift(self.a.clone())).sum();
        let quad = z.powi_scalar(2).mul(C2::lift(self.d.clone())).sum();
        lin.add(quad.mul_scalar(0.5))
    }
}

impl<B: Backend> BilevelProblem<B> for NormProblem<B> {
    fn x_dim(&self) -> usize {
        2 * C
    }
    fn y_dim(&self) -> usize {
        LEN
    }
    fn device(&self) -> B::Device {
        self.a.device()
    }
    fn inner_loss<C2: Lift<B>>(
        &self,
        x: Tensor<C2, 1>,
        y: Tensor<C2, 1>,
        _: &Batch,
    ) -> Tensor<C2, 1> {
        self.loss(x, y)
    }
    fn outer_loss<C2: Lift<B>>(
        &self,
        x: Tensor<C2, 1>,
        y: Tensor<C2, 1>,
        _: &Batch,
    ) -> Tensor<C2, 1> {
        self.loss(x, y)
    }
}

fn setup() -> (NormProblem<Tb>, Vec<f64>, Vec<f64>, Vec<f64>, Rng) {
    let device = Default::default();
    let mut rng = Rng::seed(11);
    let a = vector::<Tb>(&rng.normal_vec(LEN), &device).reshape([N, C, H, W]);
    let d: Vec<f64> = rng.normal_vec(LEN).iter().map(|v| v.abs() + 0.5).collect();
    let d = vector::<Tb>(&d, &device).reshape([N, C, H, W]);
    let x: Vec<f64> = rng
        .normal_vec(2 * C)
        .iter()
        .map(|v| 1.0 + 0.3 * v)
        .collect();
    let y = host(input::<Plain>(&mut rng, &device).reshape([LEN]));
    let v = rng.normal_vec(LEN);
    (NormProblem { a, d }, x, y, v, rng)
}

fn t(v: &[f64]) -> Tensor<Tb, 1> {
    vector(v, &Default::default())
}

#[test]
fn gradient_matches_finite_differences() {
    let (problem, x, y, _, mut rng) = setup();
    let mut oracle = Oracle::new(&problem);
    let grad = oracle.grad_g(&t(&x), &t(&y), &Batch::Full).unwrap();
    let (gx, gy) = (host(grad.x), host(grad.y));
    let eps = 1e-6;
    let mut g_at = |x: &[f64], y: &[f64]| {
        bilevel_core::tensor::scalar(oracle.g_value(&t(x), &t(y), &Batch::Full).unwrap())
    };
    // Directional derivatives along random unit directions, for x and for y.
    let ux = rng.normal_vec(2 * C);
    let uy = rng.normal_vec(LEN);
    let shift = |v: &[f64], u: &[f64], s: f64| -> Vec<f64> {
        v.iter().zip(u).map(|(a, b)| a + s * b).collect()
    };
    let fd_x = (g_at(&shift(&x, &ux, eps), &y) - g_at(&shift(&x, &ux, -eps), &y)) / (2.0 * eps);
    let fd_y = (g_at(&x, &shift(&y, &uy, eps)) - g_at(&x, &shift(&y, &uy, -eps))) / (2.0 * eps);
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
    let (ex, ey) = (
        (dot(&gx, &ux) - fd_x).abs() / fd_x.abs(),
        (dot(&gy, &uy) - fd_y).abs() / fd_y.abs(),
    );
    println!("batch norm: grad_x rel_err={ex:.2e} grad_y rel_err={ey:.2e}");
    assert!(ex < 1e-7 && ey < 1e-7, "grad_x {ex}, grad_y {ey}");
    assert!(fd_x.abs() > 1e-2 && fd_y.abs() > 1e-2);
}

#[test]
fn hvp_and_jvp_match_finite_differences() {
    let (problem, x, y, v, _) = setup();
    let mut exact = Oracle::new(&problem);
    let (hv, jv) = exact.hvp_jvp(&t(&x), &t(&y), &t(&v), &Batch::Full).unwrap();
    let mut fd = Oracle::with_mode(&problem, SecondOrder::FiniteDifference { eps: 1e-6 });
    let (hv_fd, jv_fd) = fd.hvp_jvp(&t(&x), &t(&y), &t(&v), &Batch::Full).unwrap();
    let eh = rel_err_host(&host(hv.clone()), &host(hv_fd));
    let ej = rel_err_host(&host(jv.clone()), &host(jv_fd));
    println!("batch norm: hvp rel_err={eh:.2e} jvp rel_err={ej:.2e}");
    // Measured 5.5e-9 / 1.8e-8 (the differences' own round-off: inputs have offsets ~10).
    assert!(eh < 1e-6, "hvp rel err {eh}");
    assert!(ej < 1e-6, "jvp rel err {ej}");
    assert!(norm(&hv) > 1e-2 && norm(&jv) > 1e-2);
}
