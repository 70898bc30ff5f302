//! Nested-autodiff products through conv2d + relu + log_softmax, against f64 central
//! differences (4e-11 measured here, `docs/ARCHITECTURE.md` "Numerics on burn 0.21"), on both
//! CPU backends in f64.

mod common;

use bilevel_core::backend::{flex_device, FlexAutodiff, Precision};
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{rel_err_host, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, Lift, Oracle, SecondOrder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{activation, Tensor};
use common::{dev, TestBackend};

const N: usize = 4; // images
const S: usize = 6; // side
const F: usize = 2; // filters
const K: usize = 3; // classes
const HW: usize = (S - 2) * (S - 2);
const Y_DIM: usize = F * 9 + F + F * HW * K + K;

/// `x` = an additive perturbation of every image (S×S), `y` = conv kernel, bias, linear head.
/// `g = CE(head(relu(conv(img + x)))) + ½·0.01‖y‖²`, so `∇_x∇_y g` is dense and nonlinear.
struct ConvProblem<B: Backend> {
    images: Tensor<B, 4>,
    onehot: Tensor<B, 2>,
}

impl<B: Backend> ConvProblem<B> {
    fn loss<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>) -> Tensor<C, 1> {
        let imgs = C::lift(self.images.clone()).add(x.reshape([1, 1, S, S]));
        let w = y.clone().slice(0..F * 9).reshape([F, 1, 3, 3]);
        let b = y.clone().slice(F * 9..F * 10);
        let head = y
            .clone()
            .slice(F * 10..F * 10 + F * HW * K)
            .reshape([F * HW, K]);
        let hb = y.clone().slice(F * 10 + F * HW * K..Y_DIM).reshape([1, K]);
        let h = activation::relu(conv2d(
            imgs,
            w,
            Some(b),
            ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
        ));
        let logits = h.reshape([N, F * HW]).matmul(head).add(hb);
        let logp = activation::log_softmax(logits, 1);
        let ce = logp
            .mul(C::lift(self.onehot.clone()))
            .sum()
            .mul_scalar(-1.0 / N as f64);
        ce.add(y.powi_scalar(2).sum().mul_scalar(0.005))
    }
}

impl<B: Backend> BilevelProblem<B> for ConvProblem<B> {
    fn x_dim(&self) -> usize {
        S * S
    }
    fn y_dim(&self) -> usize {
        Y_DIM
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

#[test]
fn conv_relu_log_softmax_products_match_finite_differences() {
    check_conv::<TestBackend>(dev());
}

/// The same on Flex (f64): burn-flex's conv2d, relu and log_softmax backward rules, nested.
/// (Fails when Flex rounds through f32: FD with ε = 1e-5 is
/// then meaningless.)
#[test]
fn conv_relu_log_softmax_products_match_finite_differences_on_flex() {
    check_conv::<FlexAutodiff>(flex_device(Precision::F64).unwrap());
}

fn check_conv<B: AutodiffBackend>(device: B::Device) {
    let t = |v: &[f64]| vector::<B>(v, &device);
    let host = |v: &Tensor<B, 1>| to_vec(v.clone()).unwrap();
    let mut rng = Rng::seed(42);
    let images = t(&rng.normal_vec(N * S * S)).reshape([N, 1, S, S]);
    let mut onehot = vec![0.0; N * K];
    for i in 0..N {
        onehot[i * K + i % K] = 1.0;
    }
    let onehot = t(&onehot).reshape([N, K]);
    let problem = ConvProblem { images, onehot };
    let x: Vec<f64> = rng.normal_vec(S * S).iter().map(|v| 0.3 * v).collect();
    let y: Vec<f64> = rng.normal_vec(Y_DIM).iter().map(|v| 0.5 * v).collect();
    let v = rng.normal_vec(Y_DIM);

    let mut exact = Oracle::new(&problem);
    let (hv, jv) = exact.hvp_jvp(&t(&x), &t(&y), &t(&v), &Batch::Full).unwrap();
    let mut fd = Oracle::with_mode(&problem, SecondOrder::FiniteDifference { eps: 1e-5 });
    let (hv_fd, jv_fd) = fd.hvp_jvp(&t(&x), &t(&y), &t(&v), &Batch::Full).unwrap();

    let (eh, ej) = (
        rel_err_host(&host(&hv), &host(&hv_fd)),
        rel_err_host(&host(&jv), &host(&jv_fd)),
    );
    println!("conv: hvp rel_err={eh:.2e} jvp rel_err={ej:.2e}");
    assert!(eh < 1e-7, "hvp rel err {eh}");
    assert!(ej < 1e-7, "jvp rel err {ej}");
    // Non-trivial products (a zero product would pass the comparison vacuously).
    assert!(bilevel_core::tensor::norm(&hv) > 1e-3 && bilevel_core::tensor::norm(&jv) > 1e-3);
}
