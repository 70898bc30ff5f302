#![allow(dead_code, missing_docs)]
//! Numerical checks shared by the problem tests: gradients against central differences of the
//! losses, exact second-order products against finite differences.

use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{rel_err_host, scalar, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, Oracle, SecondOrder};
use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

/// The backend every f64 test runs on.
pub type TB = Autodiff<NdArray<f64>>;

/// The Flex device in f64 (the exactness tests that also run on Flex; every Flex tensor of a
/// test binary must be f64, which this fixes before the first one).
pub fn flex() -> bilevel_core::backend::FlexDevice {
    bilevel_core::backend::flex_device(bilevel_core::backend::Precision::F64).unwrap()
}

pub fn dev() -> burn::tensor::Device<TB> {
    Default::default()
}

pub fn t(values: &[f64]) -> Tensor<TB, 1> {
    vector(values, &dev())
}

pub fn host(t: &Tensor<TB, 1>) -> Vec<f64> {
    to_vec(t.clone()).unwrap()
}

/// Which loss to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Inner,
    Outer,
}

fn loss<P: BilevelProblem<TB>>(p: &P, level: Level, x: &[f64], y: &[f64], batch: &Batch) -> f64 {
    let (x, y) = (t(x), t(y));
    match level {
        Level::Inner => scalar(p.inner_loss::<TB>(x, y, batch)),
        Level::Outer => scalar(p.outer_loss::<TB>(x, y, batch)),
    }
}

fn add_scaled(a: &[f64], s: f64, u: &[f64]) -> Vec<f64> {
    a.iter().zip(u).map(|(a, u)| a + s * u).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// Compares `⟨∇_x L, u⟩` and `⟨∇_y L, w⟩` from the oracle with central differences of the loss
/// (step `eps`) along the normalised gradient itself and along `directions` random unit
/// directions, in x-space and y-space separately. Returns the largest error
/// `|fd − ad| / max(‖∇L‖, floor)` seen (relative to the gradient's norm, since a random
/// direction's derivative can be tiny in high dimension).
#[allow(clippy::too_many_arguments)]
pub fn directional_gradient_error<P: BilevelProblem<TB>>(
    p: &P,
    level: Level,
    x: &[f64],
    y: &[f64],
    batch: &Batch,
    directions: usize,
    eps: f64,
    seed: u64,
) -> f64 {
    let mut oracle = Oracle::new(p);
    let g = match level {
        Level::Inner => oracle.grad_g(&t(x), &t(y), batch).unwrap(),
        Level::Outer => oracle.grad_f(&t(x), &t(y), batch).unwrap(),
    };
    let (gx, gy) = (host(&g.x), host(&g.y));
    let value = scalar(g.value);
    let direct = loss(p, level, x, y, batch);
    assert!(
        (value - direct).abs() <= 1e-12 * direct.abs().max(1.0),
        "oracle value {value} vs loss {direct}"
    );
    let unit = |v: &[f64]| {
        let n = dot(v, v).sqrt();
        if n == 0.0 {
            v.to_vec()
        } else {
            v.iter().map(|a| a / n).collect::<Vec<_>>()
        }
    };
    let floor = 1e-8;
    let mut rng = Rng::seed(seed);
    let mut worst = 0.0f64;
    let (nx, ny) = (dot(&gx, &gx).sqrt(), dot(&gy, &gy).sqrt());
    for k in 0..=directions {
        let (u, w) = if k == 0 {
            (unit(&gx), unit(&gy))
        } else {
            (
                unit(&rng.normal_vec(x.len())),
                unit(&rng.normal_vec(y.len())),
            )
        };
        let fd_x = (loss(p, level, &add_scaled(x, eps, &u), y, batch)
            - loss(p, level, &add_scaled(x, -eps, &u), y, batch))
            / (2.0 * eps);
        let fd_y = (loss(p, level, x, &add_scaled(y, eps, &w), batch)
            - loss(p, level, x, &add_scaled(y, -eps, &w), batch))
            / (2.0 * eps);
        let (ad_x, ad_y) = (dot(&gx, &u), dot(&gy, &w));
        worst = worst
            .max((fd_x - ad_x).abs() / nx.max(floor))
            .max((fd_y - ad_y).abs() / ny.max(floor));
    }
    worst
}

/// Relative errors of the exact `(Hv, Jv)` against central finite differences (ε = 1e-6).
pub fn second_order_errors<P: BilevelProblem<TB>>(
    p: &P,
    x: &[f64],
    y: &[f64],
    v: &[f64],
    batch: &Batch,
) -> (f64, f64) {
    let mut exact = Oracle::new(p);
    let (hv, jv) = exact.hvp_jvp(&t(x), &t(y), &t(v), batch).unwrap();
    let mut fd = Oracle::with_mode(p, SecondOrder::FiniteDifference { eps: 1e-6 });
    let (hv_fd, jv_fd) = fd.hvp_jvp(&t(x), &t(y), &t(v), batch).unwrap();
    (
        rel_err_host(&host(&hv), &host(&hv_fd)),
        rel_err_host(&host(&jv), &host(&jv_fd)),
    )
}

/// Plain gradient descent on `g(x, ·)` with the full batch.
pub fn inner_gd<P: BilevelProblem<TB>>(
    p: &P,
    x: &Tensor<TB, 1>,
    y0: Tensor<TB, 1>,
    step: f64,
    steps: usize,
) -> Tensor<TB, 1> {
    let mut oracle = Oracle::new(p);
    bilevel_core::inner::gradient_descent(
        &mut oracle,
        x,
        y0,
        &bilevel_core::inner::InnerGd { step, steps },
        |_| Batch::Full,
    )
    .unwrap()
}

/// The value of the metric `name`.
pub fn metric(metrics: &[bilevel_problems::Metric], name: &str) -> f64 {
    metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no metric {name} in {metrics:?}"))
        .value
}

/// Largest relative difference between the oracle's default path (the problem's hand-derived
/// [`bilevel_core::ClosedForm`]) and autodiff / nested autodiff, over `g` and its gradients
/// (with and without `∇_x g`), `f` and its gradients, `Hv`, `Jv` and `hvp_jvp`, on `batch`.
/// Panics if the problem has no closed form (the comparison would be autodiff against itself).
///
/// Generic over the backend, so that the same comparison runs on ndarray ([`TB`]) and Flex
/// ([`flex`]).
pub fn closed_form_vs_autodiff<B: AutodiffBackend, P: BilevelProblem<B>>(
    p: &P,
    x: &[f64],
    y: &[f64],
    v: &[f64],
    batch: &Batch,
    outer_batch: &Batch,
) -> f64 {
    assert!(p.closed_form().is_some(), "the problem has no closed form");
    let device = p.device();
    let (x, y, v) = (
        vector::<B>(x, &device),
        vector::<B>(y, &device),
        vector::<B>(v, &device),
    );
    let mut closed = Oracle::new(p);
    let mut auto = Oracle::with_mode(p, SecondOrder::Autodiff);
    let mut worst = 0.0f64;
    let mut cmp = |what: &str, a: &Tensor<B, 1>, b: &Tensor<B, 1>| {
        let e = rel_err_host(&to_vec(a.clone()).unwrap(), &to_vec(b.clone()).unwrap());
        assert!(e.is_finite(), "{what}: {e}");
        worst = worst.max(e);
    };
    let (gc, ga) = (
        closed.grad_g(&x, &y, batch).unwrap(),
        auto.grad_g(&x, &y, batch).unwrap(),
    );
    cmp("g", &gc.value, &ga.value);
    cmp("∇_x g", &gc.x, &ga.x);
    cmp("∇_y g", &gc.y, &ga.y);
    cmp(
        "∇_y g alone",
        &closed.grad_g_y(&x, &y, batch).unwrap(),
        &ga.y,
    );
    let (fc, fa) = (
        closed.grad_f(&x, &y, outer_batch).unwrap(),
        auto.grad_f(&x, &y, outer_batch).unwrap(),
    );
    cmp("f", &fc.value, &fa.value);
    cmp("∇_x f", &fc.x, &fa.x);
    cmp("∇_y f", &fc.y, &fa.y);
    let (hc, jc) = closed.hvp_jvp(&x, &y, &v, batch).unwrap();
    let (ha, ja) = auto.hvp_jvp(&x, &y, &v, batch).unwrap();
    cmp("H v", &hc, &ha);
    cmp("J v", &jc, &ja);
    cmp("hvp alone", &closed.hvp(&x, &y, &v, batch).unwrap(), &ha);
    cmp("jvp alone", &closed.jvp(&x, &y, &v, batch).unwrap(), &ja);
    // The hand-derived path is counted like autodiff (two calls of each kind above).
    let c = closed.counts();
    assert_eq!((c.grad_g, c.grad_f, c.hvp, c.jvp), (2, 1, 2, 2), "{c:?}");
    worst
}
