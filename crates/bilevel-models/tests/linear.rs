//! `linear`: the head, the f64-safe losses, why burn's `nn::Linear` is not used, and exact
//! second-order products through a weighted cross-entropy / logistic problem.

mod common;

use bilevel_core::sampling::Rng;
use bilevel_core::tensor::rel_err_host;
use bilevel_core::{Batch, BilevelProblem, Lift};
use bilevel_models::linear::{
    accuracy, cross_entropy, cross_entropy_int, cross_entropy_per_sample, log_sum_exp,
    logistic_loss, sigmoid, softplus, Linear, LinearConfig,
};
use bilevel_models::unflatten;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use common::{
    assert_errors, check_problem, host, normal, onehot, seeded_flat, tensor, CeProblem, FlatNet,
    Inner, Nested, TestBackend,
};

const N: usize = 4;
const D: usize = 5;
const K: usize = 3;

fn labels<B: Backend>(values: &[i64]) -> Tensor<B, 1, Int> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), [values.len()]),
        &Default::default(),
    )
}

fn host_ce(logits: &[f64], k: usize, labels: &[usize]) -> Vec<f64> {
    logits
        .chunks(k)
        .zip(labels)
        .map(|(row, &l)| {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|z| (z - m).exp()).sum::<f64>().ln();
            lse - row[l]
        })
        .collect()
}

#[test]
fn linear_forward_is_x_w_plus_b() {
    let cfg = LinearConfig::new(D, K);
    assert_eq!(cfg.num_params(), D * K + K);
    let p: Vec<f64> = (0..cfg.num_params())
        .map(|i| 0.1 * i as f64 - 1.0)
        .collect();
    let layer = unflatten(
        cfg.init::<Inner>(&Default::default()),
        tensor(p.clone(), [p.len()]),
    )
    .unwrap();
    assert_eq!(layer.dims(), (D, K));
    let x: Vec<f64> = (0..N * D).map(|i| (i as f64 * 0.37).sin()).collect();
    let out = host(&layer.forward(tensor(x.clone(), [N, D])));
    for i in 0..N {
        for c in 0..K {
            let want: f64 = (0..D).map(|j| x[i * D + j] * p[j * K + c]).sum::<f64>() + p[D * K + c];
            assert!((out[i * K + c] - want).abs() < 1e-14);
        }
    }
    // Without bias.
    let nb = LinearConfig::new(D, K).with_bias(false);
    assert_eq!(nb.num_params(), D * K);
    let layer = unflatten(
        nb.init::<Inner>(&Default::default()),
        tensor(p[..D * K].to_vec(), [D * K]),
    )
    .unwrap();
    assert!(layer.bias.is_none());
    let out = host(&layer.forward(tensor(x.clone(), [N, D])));
    let want: f64 = (0..D).map(|j| x[j] * p[j * K]).sum();
    assert!((out[0] - want).abs() < 1e-14);
}

#[test]
fn cross_entropy_matches_host_and_is_stable() {
    let logits = vec![
        1.0, 2.0, 3.0, //
        -1.0, 0.5, 0.0, //
        1000.0, -1000.0, 999.0, // huge logits: naive exp overflows
        -800.0, -805.0, -790.0,
    ];
    let lab = [2usize, 0, 1, 1];
    let want = host_ce(&logits, K, &lab);
    let per = host(&cross_entropy_per_sample(
        tensor::<Inner, 2>(logits.clone(), [N, K]),
        onehot(&lab, K),
    ));
    assert!(rel_err_host(&per, &want) < 1e-15, "{per:?} vs {want:?}");
    assert!(per.iter().all(|v| v.is_finite()));
    let mean_want = want.iter().sum::<f64>() / N as f64;
    let m1 = host(&cross_entropy(
        tensor::<Inner, 2>(logits.clone(), [N, K]),
        onehot(&lab, K),
    ))[0];
    let m2 = host(&cross_entropy_int(
        tensor::<Inner, 2>(logits.clone(), [N, K]),
        labels(&[2, 0, 1, 1]),
    ))[0];
    assert!((m1 - mean_want).abs() < 1e-12 * mean_want.abs());
    assert_eq!(m1, m2);
    let lse = host(&log_sum_exp(tensor::<Inner, 2>(logits.clone(), [N, K])));
    assert!((lse[2] - (1000.0 + (1.0 + (-1.0f64).exp()).ln())).abs() < 1e-12);

    // The gradient is softmax − onehot, finite even for huge logits.
    let z = tensor::<TestBackend, 2>(logits.clone(), [N, K]).require_grad();
    let g = host(
        &z.grad(&cross_entropy(z.clone(), onehot(&lab, K)).backward())
            .unwrap(),
    );
    assert!(g.iter().all(|v| v.is_finite()));
    let row2 = &logits[6..9];
    let s: f64 = row2.iter().map(|v| (v - 1000.0).exp()).sum();
    let want2 = [1.0 / s / 4.0, -0.25, (-1.0f64).exp() / s / 4.0]; // label 1
    assert!(rel_err_host(&g[6..9], &want2) < 1e-15, "{:?}", &g[6..9]);

    assert_eq!(
        accuracy(tensor::<Inner, 2>(logits, [N, K]), labels(&[2, 0, 0, 1])),
        0.5
    );
}

#[test]
fn logistic_loss_softplus_sigmoid_match_host() {
    let scores = vec![0.3, -2.0, 40.0, -750.0, 750.0];
    let ys = vec![1.0, 1.0, -1.0, -1.0, -1.0];
    let want: Vec<f64> = scores
        .iter()
        .zip(&ys)
        .map(|(s, y)| {
            let t: f64 = -s * y;
            t.max(0.0) + (-t.abs()).exp().ln_1p()
        })
        .collect();
    let got = host(&logistic_loss(
        tensor::<Inner, 1>(scores.clone(), [5]),
        tensor(ys.clone(), [5]),
    ))[0];
    let mean_want = want.iter().sum::<f64>() / 5.0;
    assert!(
        (got - mean_want).abs() < 1e-13 * mean_want,
        "{got} vs {mean_want}"
    );
    assert!((want[4] - 750.0).abs() < 1e-12);

    let sp = host(&softplus(tensor::<Inner, 1>(vec![-50.0, 0.0, 3.0], [3])));
    assert!((sp[0] - (-50.0f64).exp()).abs() < 1e-30);
    assert!((sp[1] - 2f64.ln()).abs() < 1e-15);
    assert!((sp[2] - (1.0 + 3f64.exp()).ln()).abs() < 1e-14);

    let t = vec![-800.0, -3.0, 0.0, 2.5, 800.0, -1e-300, 1e-300];
    let s = host(&sigmoid(tensor::<Inner, 1>(t.clone(), [7])));
    for (a, b) in s.iter().zip(&t) {
        let want = 1.0 / (1.0 + (-b).exp());
        assert!(
            (a - want).abs() <= 1e-15 * want.max(1e-300),
            "{a} vs {want}"
        );
    }
    // Its derivative σ(1−σ) in f64, finite in the tails.
    // (At t = 0 exactly too: the kinks of relu/|·| must not zero the derivative.)
    let x = tensor::<TestBackend, 1>(t.clone(), [7]).require_grad();
    let g = host(&x.grad(&sigmoid(x.clone()).sum().backward()).unwrap());
    for (gi, ti) in g.iter().zip(&t) {
        let sv = 1.0 / (1.0 + (-ti).exp());
        let want = sv * (1.0 - sv);
        assert!(
            (gi - want).abs() <= 4e-15 * want.max(1e-300),
            "{ti}: {gi} vs {want}"
        );
    }
    // softplus' = σ and softplus'' = σ(1−σ) at the kink t = 0, through nested autodiff.
    let t1 = tensor::<TestBackend, 1>(vec![0.0], [1]).require_grad();
    let t2 = Tensor::<Nested, 1>::from_inner(t1.clone()).require_grad();
    let d1 = t2.grad(&softplus(t2.clone()).sum().backward()).unwrap();
    assert_eq!(host(&d1), [0.5]);
    let d2 = t1.grad(&d1.sum().backward()).unwrap();
    assert_eq!(host(&d2), [0.25]);
}

/// burn's `nn::Linear` uses the fused `linear` op, whose backward `Autodiff<B>` refuses to
/// differentiate: the reason `bilevel_models::linear::Linear` exists.
#[test]
fn burn_nn_linear_cannot_be_differentiated_twice() {
    let run = || {
        let layer = burn::nn::LinearConfig::new(D, K).init::<Nested>(&Default::default());
        let w1 = tensor::<TestBackend, 2>(vec![0.1; D * K], [D, K]).require_grad();
        let w2 = Tensor::<Nested, 2>::from_inner(w1.clone()).require_grad();
        let layer = burn::nn::Linear {
            weight: burn::module::Param::from_tensor(w2.clone()),
            bias: layer.bias,
        };
        let x = tensor::<Nested, 2>(vec![0.5; N * D], [N, D]);
        let g2 = w2
            .grad(&layer.forward(x).powi_scalar(2).sum().backward())
            .unwrap();
        g2.sum().backward()
    };
    // (The panic message printed below is expected.)
    let outcome = std::panic::catch_unwind(run);
    let msg = outcome
        .err()
        .expect("burn 0.21 nn::Linear double backward should panic");
    let msg = msg
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| msg.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(msg.contains("linear"), "unexpected panic: {msg}");
}

/// Per-sample weights `σ(x_i)` (hyper-cleaning), `y` = a linear classifier.
struct WeightedLinear<B: Backend> {
    inputs: Tensor<B, 2>,
    targets: Tensor<B, 2>,
    config: LinearConfig,
}

impl<B: Backend> FlatNet<B> for WeightedLinear<B> {
    fn x_dim(&self) -> usize {
        N
    }
    fn y_dim(&self) -> usize {
        self.config.num_params()
    }
    fn targets(&self) -> Tensor<B, 2> {
        self.targets.clone()
    }
    fn logits<C: Lift<B>>(&self, _x: Tensor<C, 1>, y: Tensor<C, 1>) -> Tensor<C, 2> {
        let head: Linear<C> = unflatten(self.config.init(&Default::default()), y).unwrap();
        head.forward(C::lift(self.inputs.clone()))
    }
    fn weights<C: Lift<B>>(&self, x: Tensor<C, 1>) -> Option<Tensor<C, 1>> {
        Some(sigmoid(x))
    }
}

#[test]
fn weighted_cross_entropy_products_match_finite_differences() {
    let mut rng = Rng::seed(1);
    let net = WeightedLinear::<TestBackend> {
        inputs: tensor(normal(&mut rng, N * D, 1.0), [N, D]),
        targets: onehot(&[0, 1, 2, 1], K),
        config: LinearConfig::new(D, K),
    };
    let y = seeded_flat(&net.config.init::<TestBackend>(&Default::default()), 11);
    let x = normal(&mut rng, N, 1.0);
    let problem = CeProblem::new(net, 1e-2);
    let e = check_problem(
        "linear (y = head, x = sample log-weights)",
        &problem,
        &x,
        &y,
        11,
        4,
    );
    assert_errors("linear", &e, 1e-6, 1e-8);
}

/// Logistic regression with per-feature ℓ2 weights `exp(x_j)` (ho-logreg-text): `y = (w, b)`.
struct LogReg<B: Backend> {
    inputs: Tensor<B, 2>,
    labels: Tensor<B, 1>,
}

impl<B: Backend> LogReg<B> {
    fn scores<C: Lift<B>>(&self, y: Tensor<C, 1>) -> Tensor<C, 1> {
        let head: Linear<C> =
            unflatten(LinearConfig::new(D, 1).init(&Default::default()), y).unwrap();
        head.forward(C::lift(self.inputs.clone())).reshape([N])
    }
}

impl<B: Backend> BilevelProblem<B> for LogReg<B> {
    fn x_dim(&self) -> usize {
        D
    }
    fn y_dim(&self) -> usize {
        D + 1
    }
    fn device(&self) -> B::Device {
        Default::default()
    }
    fn inner_loss<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>, _: &Batch) -> Tensor<C, 1> {
        let w = y.clone().slice(0..D);
        let reg = x.exp().mul(w.powi_scalar(2)).sum().mul_scalar(0.5);
        logistic_loss(self.scores(y), C::lift(self.labels.clone())).add(reg)
    }
    fn outer_loss<C: Lift<B>>(&self, _x: Tensor<C, 1>, y: Tensor<C, 1>, _: &Batch) -> Tensor<C, 1> {
        logistic_loss(self.scores(y), C::lift(self.labels.clone()))
    }
}

#[test]
fn logistic_products_match_finite_differences() {
    let mut rng = Rng::seed(2);
    let problem = LogReg::<TestBackend> {
        inputs: tensor(normal(&mut rng, N * D, 1.0), [N, D]),
        labels: tensor(vec![1.0, -1.0, -1.0, 1.0], [N]),
    };
    let y = normal(&mut rng, D + 1, 0.5);
    let x = normal(&mut rng, D, 0.5);
    let e = check_problem(
        "logistic (y = w,b; x = log ℓ2 weights)",
        &problem,
        &x,
        &y,
        12,
        4,
    );
    assert_errors("logistic", &e, 1e-6, 1e-8);
}
