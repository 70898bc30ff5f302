//! `mlp`: the two-layer embedding, and exact second-order products in both bilevel roles —
//! `y` = all MLP (+ head) parameters with per-sample weights as `x`, and PZOBO §4.1's
//! representation setting, `x` = the embedding, `y` = a linear head.

mod common;

use bilevel_core::sampling::Rng;
use bilevel_core::Lift;
use bilevel_models::linear::{sigmoid, Linear, LinearConfig};
use bilevel_models::mlp::{Activation, Mlp, MlpConfig};
use bilevel_models::{num_params, unflatten};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use common::{
    assert_errors, check_problem, host, normal, onehot, seeded_flat, tensor, CeProblem, FlatNet,
    Inner, TestBackend,
};

const N: usize = 4;
const IN: usize = 5;
const HIDDEN: usize = 6;
const EMB: usize = 4;
const K: usize = 3;

fn mlp_config(act: Activation) -> MlpConfig {
    MlpConfig::new(IN, HIDDEN, EMB).with_output_activation(act)
}

#[test]
fn mlp_forward_matches_host() {
    let cfg = mlp_config(Activation::Tanh);
    assert_eq!(cfg.num_params(), IN * HIDDEN + HIDDEN + HIDDEN * EMB + EMB);
    let template = cfg.init::<Inner>(&Default::default());
    assert_eq!(num_params::<Inner, _>(&template), cfg.num_params());
    let p: Vec<f64> = (0..cfg.num_params())
        .map(|i| ((i * 7919) % 23) as f64 / 23.0 - 0.5)
        .collect();
    let mlp = unflatten(template, tensor(p.clone(), [p.len()])).unwrap();
    let x: Vec<f64> = (0..N * IN).map(|i| (i as f64 * 0.71).cos()).collect();
    let out = host(&mlp.forward(tensor(x.clone(), [N, IN])));
    assert_eq!(out.len(), N * EMB);
    let (w1, rest) = p.split_at(IN * HIDDEN);
    let (b1, rest) = rest.split_at(HIDDEN);
    let (w2, b2) = rest.split_at(HIDDEN * EMB);
    for i in 0..N {
        let h: Vec<f64> = (0..HIDDEN)
            .map(|j| {
                let s: f64 = (0..IN).map(|k| x[i * IN + k] * w1[k * HIDDEN + j]).sum();
                (s + b1[j]).max(0.0)
            })
            .collect();
        for o in 0..EMB {
            let s: f64 = (0..HIDDEN).map(|j| h[j] * w2[j * EMB + o]).sum::<f64>() + b2[o];
            assert!((out[i * EMB + o] - s.tanh()).abs() < 1e-14);
        }
    }
    // Output activations.
    let t = tensor::<Inner, 1>(vec![-1.0, 0.0, 2.0], [3]);
    assert_eq!(
        host(&Activation::Identity.apply(t.clone())),
        [-1.0, 0.0, 2.0]
    );
    assert_eq!(host(&Activation::Relu.apply(t.clone())), [0.0, 0.0, 2.0]);
    assert!((host(&Activation::Sigmoid.apply(t))[2] - 1.0 / (1.0 + (-2f64).exp())).abs() < 1e-15);
}

/// `y` = MLP and head parameters, `x` = per-sample log-weights (weights `σ(x_i)`).
struct WeightedMlp<B: Backend> {
    inputs: Tensor<B, 2>,
    targets: Tensor<B, 2>,
    mlp: MlpConfig,
    head: LinearConfig,
}

impl<B: Backend> FlatNet<B> for WeightedMlp<B> {
    fn x_dim(&self) -> usize {
        N
    }
    fn y_dim(&self) -> usize {
        self.mlp.num_params() + self.head.num_params()
    }
    fn targets(&self) -> Tensor<B, 2> {
        self.targets.clone()
    }
    fn logits<C: Lift<B>>(&self, _x: Tensor<C, 1>, y: Tensor<C, 1>) -> Tensor<C, 2> {
        let m = self.mlp.num_params();
        let mlp: Mlp<C> =
            unflatten(self.mlp.init(&Default::default()), y.clone().slice(0..m)).unwrap();
        let head: Linear<C> = unflatten(
            self.head.init(&Default::default()),
            y.slice(m..self.y_dim()),
        )
        .unwrap();
        head.forward(mlp.forward(C::lift(self.inputs.clone())))
    }
    fn weights<C: Lift<B>>(&self, x: Tensor<C, 1>) -> Option<Tensor<C, 1>> {
        Some(sigmoid(x))
    }
}

/// PZOBO §4.1: `x` = the 2-layer embedding, `y` = the linear head on the embedding.
struct Representation<B: Backend> {
    inputs: Tensor<B, 2>,
    targets: Tensor<B, 2>,
    mlp: MlpConfig,
    head: LinearConfig,
}

impl<B: Backend> FlatNet<B> for Representation<B> {
    fn x_dim(&self) -> usize {
        self.mlp.num_params()
    }
    fn y_dim(&self) -> usize {
        self.head.num_params()
    }
    fn targets(&self) -> Tensor<B, 2> {
        self.targets.clone()
    }
    fn logits<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>) -> Tensor<C, 2> {
        let mlp: Mlp<C> = unflatten(self.mlp.init(&Default::default()), x).unwrap();
        let head: Linear<C> = unflatten(self.head.init(&Default::default()), y).unwrap();
        head.forward(mlp.forward(C::lift(self.inputs.clone())))
    }
}

fn data<B: Backend>(rng: &mut Rng) -> (Tensor<B, 2>, Tensor<B, 2>) {
    (
        tensor(normal(rng, N * IN, 1.0), [N, IN]),
        onehot(&[0, 1, 2, 0], K),
    )
}

#[test]
fn mlp_all_params_products_match_finite_differences() {
    mlp_all_params_on::<TestBackend>();
}

/// The same on Flex (f64). (Tried: with Flex fixed to f32 instead, the HVP
/// is off by 0.24 relative and this fails.)
#[test]
fn mlp_all_params_products_match_finite_differences_on_flex() {
    common::flex();
    mlp_all_params_on::<bilevel_core::backend::FlexAutodiff>();
}

fn mlp_all_params_on<B: burn::tensor::backend::AutodiffBackend>() {
    for (act, seed) in [(Activation::Tanh, 3), (Activation::Identity, 4)] {
        let mut rng = Rng::seed(seed);
        let (inputs, targets) = data::<B>(&mut rng);
        let net = WeightedMlp {
            inputs,
            targets,
            mlp: mlp_config(act),
            head: LinearConfig::new(EMB, K),
        };
        let dev = Default::default();
        // Distinct seeds: the head's weights must not be the first draws of the MLP's.
        let mut y = seeded_flat(&net.mlp.init::<B>(&dev), 7);
        y.extend(seeded_flat(&net.head.init::<B>(&dev), 8));
        let x = normal(&mut rng, N, 1.0);
        let problem = CeProblem::new(net, 1e-2);
        let name = format!("mlp {act:?} (y = mlp+head, x = sample log-weights)");
        let e = check_problem(&name, &problem, &x, &y, 13, 4);
        assert_errors(&name, &e, 1e-6, 1e-8);
    }
}

#[test]
fn mlp_embedding_as_upper_variable_products_match_finite_differences() {
    let mut rng = Rng::seed(5);
    let (inputs, targets) = data::<TestBackend>(&mut rng);
    let net = Representation {
        inputs,
        targets,
        mlp: mlp_config(Activation::Tanh),
        head: LinearConfig::new(EMB, K),
    };
    let dev = Default::default();
    let x = seeded_flat(&net.mlp.init::<TestBackend>(&dev), 7);
    let y = normal(&mut rng, net.head.num_params(), 0.5);
    let problem = CeProblem::new(net, 1e-2);
    let e = check_problem("mlp (x = embedding, y = head)", &problem, &x, &y, 14, 4);
    assert_errors("mlp representation", &e, 1e-6, 1e-8);
}
