#![allow(dead_code, missing_docs)]
//! Shared test helpers for `bilevel-models`: backends, host conversions, a tiny
//! cross-entropy bilevel problem over any flat model, and finite-difference checks.
//!
//! Usage from a test file: `mod common;` then implement [`FlatNet`] for the model under test,
//! wrap it in [`CeProblem`] and call [`check_problem`]. Everything runs on
//! `Autodiff<NdArray<f64>>` ([`TestBackend`]).

use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{rel_err_host, scalar, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, Lift, Oracle, SecondOrder};
use bilevel_models::flat::{he_normal_init, VectorInit};
use bilevel_models::linear::{cross_entropy_per_sample, mean, weighted_mean};
use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

/// The plain f64 backend.
pub type Inner = NdArray<f64>;
/// The backend every f64 test runs on (the oracle's `B`).
pub type TestBackend = Autodiff<Inner>;
/// The level exact second-order products evaluate losses on.
pub type Nested = Autodiff<TestBackend>;

pub fn dev() -> burn::tensor::Device<TestBackend> {
    Default::default()
}

/// The Flex device with this process's Flex precision fixed to f64 (call it before creating
/// any Flex tensor in a test; every Flex test of a binary is f64).
pub fn flex() -> bilevel_core::backend::FlexDevice {
    bilevel_core::backend::flex_device(bilevel_core::backend::Precision::F64).unwrap()
}

/// A 1-D f64 tensor on [`TestBackend`].
pub fn t(values: &[f64]) -> Tensor<TestBackend, 1> {
    vector(values, &dev())
}

/// An f64 tensor of any rank on any backend (through `TensorData::new`, no f32 rounding).
pub fn tensor<B: Backend, const D: usize>(values: Vec<f64>, shape: [usize; D]) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

/// Any tensor back to host f64 values.
pub fn host<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Vec<f64> {
    to_vec(t.clone()).unwrap()
}

/// `n` standard normal draws times `scale`.
/// Seeded flat parameters for `template` (He-normal weights, zero biases). Test points must
/// not come from `Config::init`: it draws from burn's process-wide generator, which the tests
/// of one binary share across threads, so its values change from run to run.
pub fn seeded_flat<B: Backend, M: burn::module::Module<B>>(template: &M, seed: u64) -> Vec<f64> {
    let mut rng = Rng::seed(seed);
    he_normal_init(template, VectorInit::Zeros, |n| rng.normal_vec(n))
}

pub fn normal(rng: &mut Rng, n: usize, scale: f64) -> Vec<f64> {
    rng.normal_vec(n).into_iter().map(|v| v * scale).collect()
}

/// One-hot rows for `labels` over `k` classes.
pub fn onehot<B: Backend>(labels: &[usize], k: usize) -> Tensor<B, 2> {
    let mut v = vec![0.0; labels.len() * k];
    for (i, &l) in labels.iter().enumerate() {
        v[i * k + l] = 1.0;
    }
    tensor(v, [labels.len(), k])
}

/// Euclidean norm of host values.
pub fn norm_host(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// A classifier evaluated from the flat bilevel variables `x` and `y`.
///
/// Constants (inputs, targets) live on `B` and are moved onto the evaluation level with
/// `C::lift`.
pub trait FlatNet<B: Backend> {
    /// Length of `x`.
    fn x_dim(&self) -> usize;
    /// Length of `y`.
    fn y_dim(&self) -> usize;
    /// One-hot targets `[n, k]`.
    fn targets(&self) -> Tensor<B, 2>;
    /// Logits `[n, k]`.
    fn logits<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>) -> Tensor<C, 2>;
    /// Per-sample weights `w(x)` `[n]` of the inner loss, or `None` (unweighted, `x` enters
    /// through [`FlatNet::logits`]).
    fn weights<C: Lift<B>>(&self, _x: Tensor<C, 1>) -> Option<Tensor<C, 1>> {
        None
    }
}

/// `g = (1/n) Σ w_i(x) CE_i(x, y) + (l2/2)‖y‖²`, `f = (1/n) Σ CE_i(x, y)` on the same samples.
pub struct CeProblem<B: Backend, N: FlatNet<B>> {
    pub net: N,
    pub l2: f64,
    pub device: B::Device,
}

impl<B: Backend, N: FlatNet<B>> CeProblem<B, N> {
    pub fn new(net: N, l2: f64) -> Self {
        Self {
            net,
            l2,
            device: Default::default(),
        }
    }
}

impl<B: Backend, N: FlatNet<B>> BilevelProblem<B> for CeProblem<B, N> {
    fn x_dim(&self) -> usize {
        self.net.x_dim()
    }
    fn y_dim(&self) -> usize {
        self.net.y_dim()
    }
    fn device(&self) -> B::Device {
        self.device.clone()
    }
    fn inner_loss<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>, _: &Batch) -> Tensor<C, 1> {
        let logits = self.net.logits(x.clone(), y.clone());
        let ce = cross_entropy_per_sample(logits, C::lift(self.net.targets()));
        let data = match self.net.weights(x) {
            Some(w) => weighted_mean(ce, w),
            None => mean(ce),
        };
        data.add(y.powi_scalar(2).sum().mul_scalar(0.5 * self.l2))
    }
    fn outer_loss<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>, _: &Batch) -> Tensor<C, 1> {
        let logits = self.net.logits(x, y);
        mean(cross_entropy_per_sample(
            logits,
            C::lift(self.net.targets()),
        ))
    }
}

/// Relative errors measured by [`check_problem`], and the norms of the exact products.
#[derive(Debug, Clone, Copy)]
pub struct Errors {
    /// `‖Hv − Hv_fd‖/‖Hv_fd‖`, finite differences of `∇_y g` with ε = 1e-6.
    pub hvp: f64,
    /// `‖Jv − Jv_fd‖/‖Jv_fd‖`.
    pub jvp: f64,
    /// Directional derivatives of `g` in `y`: autodiff vs central differences of `g`.
    pub grad_g_y: f64,
    /// Directional derivatives of `g` in `x`.
    pub grad_g_x: f64,
    /// Directional derivatives of `f` in `y`.
    pub grad_f_y: f64,
    /// `‖Hv‖`.
    pub hv_norm: f64,
    /// `‖Jv‖`.
    pub jv_norm: f64,
}

/// Central difference step for loss values (f64: truncation h² ~ 1e-10, round-off 1e-16/h).
pub const H_VALUE: f64 = 1e-5;

/// `[⟨∇ℓ, d_j⟩]_j` and `[(ℓ(z + h d_j) − ℓ(z − h d_j))/2h]_j` for unit directions `d_j`.
fn directional(
    grad: &[f64],
    at: &[f64],
    dirs: &[Vec<f64>],
    mut value: impl FnMut(&[f64]) -> f64,
) -> (Vec<f64>, Vec<f64>) {
    let mut ad = Vec::new();
    let mut fd = Vec::new();
    for d in dirs {
        let nd = norm_host(d);
        let u: Vec<f64> = d.iter().map(|a| a / nd).collect();
        ad.push(grad.iter().zip(&u).map(|(g, u)| g * u).sum());
        let plus: Vec<f64> = at.iter().zip(&u).map(|(a, u)| a + H_VALUE * u).collect();
        let minus: Vec<f64> = at.iter().zip(&u).map(|(a, u)| a - H_VALUE * u).collect();
        fd.push((value(&plus) - value(&minus)) / (2.0 * H_VALUE));
    }
    (ad, fd)
}

/// Exact `Hv`, `Jv` against `SecondOrder::FiniteDifference { eps: 1e-6 }`, and gradients of `g`
/// and `f` against central differences of their values along `n_dirs` random directions.
/// Prints the measured errors under `name`.
///
/// Generic over the backend: the models' exactness tests run on ndarray ([`TestBackend`]) and
/// on Flex ([`flex`]), both in f64.
pub fn check_problem<B: AutodiffBackend, P: BilevelProblem<B>>(
    name: &str,
    problem: &P,
    x: &[f64],
    y: &[f64],
    seed: u64,
    n_dirs: usize,
) -> Errors {
    let device = problem.device();
    let t = |v: &[f64]| vector::<B>(v, &device);
    let mut rng = Rng::seed(seed);
    let v = rng.normal_vec(y.len());
    let (xt, yt, vt) = (t(x), t(y), t(&v));
    let b = Batch::Full;

    let mut exact = Oracle::new(problem);
    let clock = std::time::Instant::now();
    let (hv, jv) = exact.hvp_jvp(&xt, &yt, &vt, &b).unwrap();
    let t_exact = clock.elapsed().as_secs_f64();
    let mut fd = Oracle::with_mode(problem, SecondOrder::FiniteDifference { eps: 1e-6 });
    let clock = std::time::Instant::now();
    let (hv_fd, jv_fd) = fd.hvp_jvp(&xt, &yt, &vt, &b).unwrap();
    let t_fd = clock.elapsed().as_secs_f64();
    let (hv, jv, hv_fd, jv_fd) = (host(&hv), host(&jv), host(&hv_fd), host(&jv_fd));

    let gg = exact.grad_g(&xt, &yt, &b).unwrap();
    let gf = exact.grad_f(&xt, &yt, &b).unwrap();
    let (ggx, ggy, gfy) = (host(&gg.x), host(&gg.y), host(&gf.y));
    let dirs_y: Vec<Vec<f64>> = (0..n_dirs).map(|_| rng.normal_vec(y.len())).collect();
    let dirs_x: Vec<Vec<f64>> = (0..n_dirs).map(|_| rng.normal_vec(x.len())).collect();
    let mut g_at = |xv: &[f64], yv: &[f64]| scalar(exact.g_value(&t(xv), &t(yv), &b).unwrap());
    let (a, f) = directional(&ggy, y, &dirs_y, |yv| g_at(x, yv));
    let grad_g_y = rel_err_host(&a, &f);
    let (a, f) = directional(&ggx, x, &dirs_x, |xv| g_at(xv, y));
    let grad_g_x = rel_err_host(&a, &f);
    let mut f_at = |yv: &[f64]| scalar(exact.f_value(&t(x), &t(yv), &b).unwrap());
    let (a, f) = directional(&gfy, y, &dirs_y, &mut f_at);
    let grad_f_y = rel_err_host(&a, &f);

    let errors = Errors {
        hvp: rel_err_host(&hv, &hv_fd),
        jvp: rel_err_host(&jv, &jv_fd),
        grad_g_y,
        grad_g_x,
        grad_f_y,
        hv_norm: norm_host(&hv),
        jv_norm: norm_host(&jv),
    };
    println!(
        "{name}: x_dim={} y_dim={} hvp_rel={:.2e} jvp_rel={:.2e} grad_g_y={:.2e} grad_g_x={:.2e} \
         grad_f_y={:.2e} |Hv|={:.3e} |Jv|={:.3e}",
        x.len(),
        y.len(),
        errors.hvp,
        errors.jvp,
        errors.grad_g_y,
        errors.grad_g_x,
        errors.grad_f_y,
        errors.hv_norm,
        errors.jv_norm
    );
    println!("{name}: exact hvp_jvp {t_exact:.3}s, finite-difference hvp_jvp {t_fd:.3}s");
    errors
}

/// Asserts the errors of [`check_problem`] are below `tol_products` (Hv, Jv) and `tol_grads`
/// (directional derivatives), and that the products are not trivially zero.
pub fn assert_errors(name: &str, e: &Errors, tol_products: f64, tol_grads: f64) {
    assert!(e.hvp < tol_products, "{name}: hvp rel err {}", e.hvp);
    assert!(e.jvp < tol_products, "{name}: jvp rel err {}", e.jvp);
    assert!(
        e.grad_g_y < tol_grads,
        "{name}: grad_g_y rel err {}",
        e.grad_g_y
    );
    assert!(
        e.grad_g_x < tol_grads,
        "{name}: grad_g_x rel err {}",
        e.grad_g_x
    );
    assert!(
        e.grad_f_y < tol_grads,
        "{name}: grad_f_y rel err {}",
        e.grad_f_y
    );
    assert!(
        e.hv_norm > 1e-6,
        "{name}: Hv is (nearly) zero: {}",
        e.hv_norm
    );
    assert!(
        e.jv_norm > 1e-6,
        "{name}: Jv is (nearly) zero: {}",
        e.jv_norm
    );
}
