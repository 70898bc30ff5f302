//! `equilibrium`: the map `Ψ(z) = tanh(A z + B u + c)`, its fixed-point solve, the projection
//! onto `‖A‖_∞ ≤ ρ`, and exact second-order products / vector-Jacobian products of problems
//! built on it (paper 002 §7.1).

mod common;

use bilevel_core::sampling::Rng;
use bilevel_core::tensor::rel_err_host;
use bilevel_core::{Batch, BilevelProblem, Lift, Oracle};
use bilevel_models::equilibrium::{
    infinity_norm, project_contraction, rescale_contraction, Equilibrium, EquilibriumConfig,
};
use bilevel_models::linear::{cross_entropy, sigmoid, Linear, LinearConfig};
use bilevel_models::{num_params, unflatten, ModelError};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use common::{
    assert_errors, check_problem, host, norm_host, normal, onehot, seeded_flat, t, tensor,
    CeProblem, FlatNet, Inner, Nested, TestBackend,
};

const N: usize = 4;
const D: usize = 3;
const P: usize = 5;
const K: usize = 3;
/// Applications of Ψ unrolled in the all-parameters problem.
const T: usize = 3;

fn host_map(a: &[f64], b: &[f64], c: &[f64], z: &[f64], u: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; N * D];
    for i in 0..N {
        for r in 0..D {
            let az: f64 = (0..D).map(|j| a[r * D + j] * z[i * D + j]).sum();
            let bu: f64 = (0..P).map(|j| b[r * P + j] * u[i * P + j]).sum();
            out[i * D + r] = (az + bu + c[r]).tanh();
        }
    }
    out
}

fn layer<B: Backend>(flat: Vec<f64>) -> Equilibrium<B> {
    let cfg = EquilibriumConfig::new(D, P);
    let n = flat.len();
    unflatten(cfg.init(&Default::default()), tensor(flat, [n])).unwrap()
}

#[test]
fn config_init_and_forward_map() {
    let cfg = EquilibriumConfig::new(D, P);
    cfg.validate().unwrap();
    assert!(EquilibriumConfig::new(D, P)
        .with_init_contraction(1.0)
        .validate()
        .is_err());
    assert!(EquilibriumConfig::new(0, P).validate().is_err());
    assert_eq!(cfg.num_params(), D * D + D * P + D);
    let eq: Equilibrium<Inner> = cfg.init(&Default::default());
    assert_eq!(num_params::<Inner, _>(&eq), cfg.num_params());
    assert_eq!(eq.dims(), (D, P));
    assert!(eq.contraction_factor() <= 0.5 + 1e-15);
    assert_eq!(host(&eq.c.val()), vec![0.0; D]);

    let mut rng = Rng::seed(1);
    let (a, b, c) = (
        normal(&mut rng, D * D, 0.3),
        normal(&mut rng, D * P, 0.5),
        normal(&mut rng, D, 0.2),
    );
    let flat: Vec<f64> = [a.clone(), b.clone(), c.clone()].concat();
    let eq = layer::<Inner>(flat);
    let (z, u) = (normal(&mut rng, N * D, 1.0), normal(&mut rng, N * P, 1.0));
    let got = host(&eq.forward_map(tensor(z.clone(), [N, D]), tensor(u.clone(), [N, P])));
    assert!(rel_err_host(&got, &host_map(&a, &b, &c, &z, &u)) < 1e-15);
    // The input term u Bᵀ + c.
    let it = host(&eq.input_term(tensor(u.clone(), [N, P])));
    let want: f64 = (0..P).map(|j| b[j] * u[j]).sum::<f64>() + c[0];
    assert!((it[0] - want).abs() < 1e-15);
    let a_norm = (0..D)
        .map(|r| (0..D).map(|j| a[r * D + j].abs()).sum::<f64>())
        .fold(0.0, f64::max);
    assert!((eq.contraction_factor() - a_norm).abs() < 1e-15);
}

#[test]
fn solve_finds_the_fixed_point_and_is_detached() {
    let mut rng = Rng::seed(2);
    let rho = 0.8;
    // A with ‖A‖∞ = ρ exactly.
    let a = project_contraction(
        tensor::<Inner, 1>(normal(&mut rng, D * D, 2.0), [D * D]),
        D,
        rho,
    )
    .unwrap();
    let a = host(&a);
    let b = normal(&mut rng, D * P, 0.5);
    let c = normal(&mut rng, D, 0.2);
    let flat: Vec<f64> = [a.clone(), b.clone(), c.clone()].concat();
    let u = normal(&mut rng, N * P, 1.0);

    let eq = layer::<Inner>(flat.clone());
    assert!((eq.contraction_factor() - rho).abs() < 1e-12);
    let tol = 1e-12;
    let sol = eq.solve(tensor(u.clone(), [N, P]), 500, tol);
    assert!(sol.converged && sol.residual <= tol, "{sol:?}");
    let z = host(&sol.z);
    let psi = host_map(&a, &b, &c, &z, &u);
    let fp_err = z
        .iter()
        .zip(&psi)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(fp_err <= rho * tol + 1e-15, "‖Ψ(z) − z‖∞ = {fp_err}");
    // Linear convergence with rate ρ: k ≤ log(tol (1−ρ) / ‖Ψ(0)‖∞) / log ρ + 1.
    let psi0 = host_map(&a, &b, &c, &[0.0; N * D], &u);
    let psi0 = psi0.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let bound = ((tol * (1.0 - rho) / psi0).ln() / rho.ln()).ceil() as usize + 1;
    println!(
        "equilibrium solve: {} iterations (bound {bound}), residual {:.1e}",
        sol.iterations, sol.residual
    );
    assert!(sol.iterations <= bound);
    // Too few iterations: reported as not converged.
    let short = eq.solve(tensor(u.clone(), [N, P]), 2, tol);
    assert!(!short.converged && short.iterations == 2 && short.residual > tol);

    // On autodiff levels the solution is a constant: no gradient reaches the parameters.
    let flat1 = t(&flat).require_grad();
    let eq1: Equilibrium<TestBackend> = unflatten(
        EquilibriumConfig::new(D, P).init(&Default::default()),
        flat1.clone(),
    )
    .unwrap();
    let sol1 = eq1.solve(tensor(u.clone(), [N, P]), 500, tol);
    assert!(!sol1.z.is_require_grad());
    assert_eq!(host(&sol1.z), z);
    // A loss through one more application of Ψ sees only that application.
    let loss = eq1.forward_map(sol1.z, tensor(u.clone(), [N, P])).sum();
    assert!(flat1.grad(&loss.backward()).is_some());
    let flat2 = Tensor::<Nested, 1>::from_inner(flat1.clone()).require_grad();
    let eq2: Equilibrium<Nested> = unflatten(
        EquilibriumConfig::new(D, P).init(&Default::default()),
        flat2.clone(),
    )
    .unwrap();
    let sol2 = eq2.solve(tensor(u, [N, P]), 500, tol);
    assert_eq!(host(&sol2.z), z);
    assert!(flat2.grad(&sol2.z.sum().backward()).is_none());
}

#[test]
fn project_contraction_is_the_euclidean_projection() {
    // One row by hand: [3, 1, −0.5] onto ‖·‖₁ ≤ 0.9 → θ = 2.1 → [0.9, 0, 0].
    let row = project_contraction(
        tensor::<Inner, 1>(vec![3.0, 1.0, -0.5, 0.1, -0.2, 0.3, -1.0, 1.0, 0.0], [9]),
        3,
        0.9,
    )
    .unwrap();
    let row = host(&row);
    assert!(rel_err_host(&row[..3], &[0.9, 0.0, 0.0]) < 1e-15);
    assert_eq!(row[3..6], [0.1, -0.2, 0.3]); // inside its ball: unchanged
    assert!(rel_err_host(&row[6..], &[-0.45, 0.45, 0.0]) < 1e-15);

    let mut rng = Rng::seed(3);
    let d = 6;
    let rho = 0.7;
    let a = normal(&mut rng, d * d, 1.0);
    let p = host(&project_contraction(tensor::<Inner, 1>(a.clone(), [d * d]), d, rho).unwrap());
    let norm = infinity_norm(tensor::<Inner, 2>(p.clone(), [d, d]));
    assert!((norm - rho).abs() < 1e-14, "{norm}");
    // Idempotent.
    let pp = host(&project_contraction(tensor::<Inner, 1>(p.clone(), [d * d]), d, rho).unwrap());
    assert_eq!(pp, p);
    // Variational inequality ⟨A − P(A), Q − P(A)⟩ ≤ 0 for feasible Q (characterises P).
    for _ in 0..50 {
        let q = host(
            &rescale_contraction(
                tensor::<Inner, 1>(normal(&mut rng, d * d, 1.0), [d * d]),
                d,
                rho,
            )
            .unwrap(),
        );
        let vi: f64 = (0..d * d).map(|i| (a[i] - p[i]) * (q[i] - p[i])).sum();
        assert!(vi <= 1e-12, "{vi}");
    }
    // Rescaling: same direction, ∞-norm ρ.
    let r = host(&rescale_contraction(tensor::<Inner, 1>(a.clone(), [d * d]), d, rho).unwrap());
    let ratio = r[0] / a[0];
    assert!(r.iter().zip(&a).all(|(x, y)| (x - ratio * y).abs() < 1e-15));
    assert!((infinity_norm(tensor::<Inner, 2>(r, [d, d])) - rho).abs() < 1e-14);
    // Errors.
    assert_eq!(
        project_contraction(tensor::<Inner, 1>(vec![0.0; 8], [8]), 3, 0.5).unwrap_err(),
        ModelError::ParamCount {
            expected: 9,
            got: 8
        }
    );
    for bad in [0.0, 1.0, -0.5, f64::NAN] {
        assert!(matches!(
            rescale_contraction(tensor::<Inner, 1>(vec![0.0; 9], [9]), 3, bad),
            Err(ModelError::InvalidConfig { .. })
        ));
    }
}

/// `y` = layer and head parameters, `x` = per-sample log-weights; the states are `Ψᵀ(0)`
/// (T applications of `forward_map`), the logits `head(z)`.
struct Unrolled<B: Backend> {
    inputs: Tensor<B, 2>,
    targets: Tensor<B, 2>,
}

impl<B: Backend> FlatNet<B> for Unrolled<B> {
    fn x_dim(&self) -> usize {
        N
    }
    fn y_dim(&self) -> usize {
        EquilibriumConfig::new(D, P).num_params() + LinearConfig::new(D, K).num_params()
    }
    fn targets(&self) -> Tensor<B, 2> {
        self.targets.clone()
    }
    fn logits<C: Lift<B>>(&self, _x: Tensor<C, 1>, y: Tensor<C, 1>) -> Tensor<C, 2> {
        let m = EquilibriumConfig::new(D, P).num_params();
        let dev = Default::default();
        let eq: Equilibrium<C> = unflatten(
            EquilibriumConfig::new(D, P).init(&dev),
            y.clone().slice(0..m),
        )
        .unwrap();
        let head: Linear<C> =
            unflatten(LinearConfig::new(D, K).init(&dev), y.slice(m..self.y_dim())).unwrap();
        let u = C::lift(self.inputs.clone());
        let mut z = Tensor::zeros([N, D], &dev);
        for _ in 0..T {
            z = eq.forward_map(z, u.clone());
        }
        head.forward(z)
    }
    fn weights<C: Lift<B>>(&self, x: Tensor<C, 1>) -> Option<Tensor<C, 1>> {
        Some(sigmoid(x))
    }
}

#[test]
fn unrolled_equilibrium_products_match_finite_differences() {
    let mut rng = Rng::seed(4);
    let net = Unrolled::<TestBackend> {
        inputs: tensor(normal(&mut rng, N * P, 1.0), [N, P]),
        targets: onehot(&[0, 2, 1, 2], K),
    };
    let dev = Default::default();
    let mut y = seeded_flat(&EquilibriumConfig::new(D, P).init::<TestBackend>(&dev), 4);
    // A non-zero offset c, so that every parameter block is exercised away from 0.
    let m = y.len();
    for v in &mut y[m - D..] {
        *v = 0.1;
    }
    y.extend(normal(&mut rng, LinearConfig::new(D, K).num_params(), 0.5));
    let x = normal(&mut rng, N, 1.0);
    let problem = CeProblem::new(net, 1e-2);
    let e = check_problem(
        "equilibrium unrolled (y = A,B,c,head; x = log-weights)",
        &problem,
        &x,
        &y,
        5,
        4,
    );
    assert_errors("equilibrium unrolled", &e, 1e-6, 1e-8);
}

/// Paper 002's contraction form: `x` = the layer `(A, B, c)`, `y` = the states `z` of all
/// samples (flat `[n·d]`), `Ψ(y, x) = forward_map(z, u)`; `f` = cross-entropy of a fixed head
/// on `z`; `g = ½‖z − Ψ(z)‖²` (zero exactly at the fixed point).
struct ContractionForm<B: Backend> {
    inputs: Tensor<B, 2>,
    targets: Tensor<B, 2>,
    head: Vec<f64>,
}

impl<B: Backend> ContractionForm<B> {
    fn map<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>) -> Tensor<C, 1> {
        let eq: Equilibrium<C> =
            unflatten(EquilibriumConfig::new(D, P).init(&Default::default()), x).unwrap();
        eq.forward_map(y.reshape([N, D]), C::lift(self.inputs.clone()))
            .reshape([N * D])
    }
}

impl<B: Backend> BilevelProblem<B> for ContractionForm<B> {
    fn x_dim(&self) -> usize {
        EquilibriumConfig::new(D, P).num_params()
    }
    fn y_dim(&self) -> usize {
        N * D
    }
    fn device(&self) -> B::Device {
        Default::default()
    }
    fn inner_loss<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>, _: &Batch) -> Tensor<C, 1> {
        let r = y.clone().sub(self.map(x, y));
        r.powi_scalar(2).sum().mul_scalar(0.5)
    }
    fn outer_loss<C: Lift<B>>(&self, _x: Tensor<C, 1>, y: Tensor<C, 1>, _: &Batch) -> Tensor<C, 1> {
        let n = self.head.len();
        let head: Linear<C> = unflatten(
            LinearConfig::new(D, K).init(&Default::default()),
            tensor(self.head.clone(), [n]),
        )
        .unwrap();
        cross_entropy(
            head.forward(y.reshape([N, D])),
            C::lift(self.targets.clone()),
        )
    }
    fn contraction_map<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        _: &Batch,
    ) -> Option<Tensor<C, 1>> {
        Some(self.map(x, y))
    }
}

#[test]
fn contraction_form_vjps_and_products_match_finite_differences() {
    let mut rng = Rng::seed(6);
    let u = normal(&mut rng, N * P, 1.0);
    let problem = ContractionForm::<TestBackend> {
        inputs: tensor(u.clone(), [N, P]),
        targets: onehot(&[1, 0, 2, 1], K),
        head: normal(&mut rng, LinearConfig::new(D, K).num_params(), 0.5),
    };
    let rho = 0.6;
    let a = host(&project_contraction(t(&normal(&mut rng, D * D, 1.0)), D, rho).unwrap());
    let x: Vec<f64> = [a, normal(&mut rng, D * P, 0.5), normal(&mut rng, D, 0.2)].concat();
    let b = Batch::Full;

    // The lower-level solution is the fixed point of the oracle's map.
    let eq = layer::<Inner>(x.clone());
    let z_star = host(&eq.solve(tensor(u, [N, P]), 200, 1e-13).z);
    let mut oracle = Oracle::new(&problem);
    let psi = host(&oracle.map_value(&t(&x), &t(&z_star), &b).unwrap());
    assert!(rel_err_host(&psi, &z_star) < 1e-12);

    // VJPs (∂_yΨᵀv, ∂_xΨᵀv) against central differences of ⟨Ψ, v⟩ along random directions,
    // at a point off the fixed point.
    let y = normal(&mut rng, N * D, 0.7);
    let v = normal(&mut rng, N * D, 1.0);
    let (jy, jx) = oracle.map_vjp(&t(&x), &t(&y), &t(&v), &b).unwrap();
    let (jy, jx) = (host(&jy), host(&jx));
    let mut phi = |xs: &[f64], ys: &[f64]| -> f64 {
        let m = host(&oracle.map_value(&t(xs), &t(ys), &b).unwrap());
        m.iter().zip(&v).map(|(a, b)| a * b).sum()
    };
    let h = 1e-5;
    let (mut ad, mut fd) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        let dy = normal(&mut rng, N * D, 1.0);
        let dx = normal(&mut rng, x.len(), 1.0);
        let shift = |base: &[f64], d: &[f64], s: f64| -> Vec<f64> {
            base.iter().zip(d).map(|(a, b)| a + s * h * b).collect()
        };
        ad.push(jy.iter().zip(&dy).map(|(a, b)| a * b).sum::<f64>());
        fd.push((phi(&x, &shift(&y, &dy, 1.0)) - phi(&x, &shift(&y, &dy, -1.0))) / (2.0 * h));
        ad.push(jx.iter().zip(&dx).map(|(a, b)| a * b).sum::<f64>());
        fd.push((phi(&shift(&x, &dx, 1.0), &y) - phi(&shift(&x, &dx, -1.0), &y)) / (2.0 * h));
    }
    let err = rel_err_host(&ad, &fd);
    println!("equilibrium contraction form: map_vjp rel err vs FD {err:.2e}");
    assert!(err < 1e-8, "{err}");
    assert!(norm_host(&jy) > 1e-3 && norm_host(&jx) > 1e-3);

    // Hv / Jv of g = ½‖z − Ψ(z)‖² (second derivatives of tanh and of the products A z, B u).
    let e = check_problem(
        "equilibrium contraction form (x = A,B,c; y = z)",
        &problem,
        &x,
        &y,
        7,
        4,
    );
    assert_errors("equilibrium contraction form", &e, 1e-6, 1e-8);
}
