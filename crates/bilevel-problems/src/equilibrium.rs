//! `equilibrium`: an equilibrium (fixed-point) model on MNIST with a lower level in contraction
//! form (paper 002 §7.1, after Grazzi et al. 2020 §3.2; `docs/REPRODUCTION.md`
//! `equilibrium`).
//!
//! Each training image `i` has an equilibrium state `z_i ∈ ℝᵈ`,
//! `z_i = Ψ_i(z_i, x) = tanh(A z_i + B u_i + c)`, and is classified by `C z_i + d`:
//!
//! `min_x f(x, z*(x)) = (1/n) Σ_i CE(C z_i*(x) + d, t_i)` s.t. `‖A‖_∞ ≤ 1 − ε`,
//!
//! with the upper level on the **training** samples (as in the paper: there is no separate
//! validation set; the test images measure generalisation). `x = (A, B, c, C, d)` flat in the
//! order `A` `[d, d]` row-major, `B` `[d, p]` row-major, `c` `[d]` (the flat order of
//! [`bilevel_models::Equilibrium`]), then the classifier as a [`LinearShape`]: `Cᵀ` `[d, 10]`
//! row-major and `d` `[10]`. `y = (z_1, …, z_n)`, `n × d` row-major. `u_i` are the 784 pixels in
//! `[0, 1]` or, to keep `B` small, a fixed seeded Gaussian projection `u_i = Rᵀa_i`,
//! `R ∈ ℝ^{784×p}` with `N(0, 1/p)` entries (so `E‖u_i‖² = ‖a_i‖²`).
//!
//! **Contraction.** `‖A‖_∞ = max_r Σ_s |A_rs| ≤ 1 − ε` makes every `Ψ_i` a `(1 − ε)`-contraction
//! in `‖·‖_∞` (`tanh` is 1-Lipschitz; see [`bilevel_models::equilibrium`]), and so is the stacked
//! `Ψ = (Ψ_i)_i`. [`BilevelProblem::upper_constraint`] is the matching
//! [`Constraint::RowSumBall`] on the `A` block (exact Euclidean projection, row by row onto ℓ₁
//! balls).
//!
//! **Batches.** A sample is one training image. `f(x, y; D)` is the mean cross-entropy over the
//! images in `D`. The map of a batch `S` is the unbiased estimate
//! `Ψ̂(y, x; S) = y + (n/|S|) Σ_{i∈S} e_i ⊗ (Ψ_i(z_i, x) − z_i)` (`E Ψ̂ = Ψ`, paper 002's
//! stochastic setting; `Ψ̂ = Ψ` for the full batch or `S = {0..n−1}`). The paper solves the LL and
//! LS of each example deterministically (SID with `inner_batch = linear_batch = None`); a
//! stochastic LL with `|S| = b` needs steps `η ≤ b/n` (`η = b/n` is randomised block-coordinate
//! fixed-point iteration). `g(x, y; S) = (1/|S|) Σ_{i∈S} ½‖z_i − Ψ_i(z_i, x)‖²`, the fixed-point
//! residual, is a lower-level objective with the same unique minimiser `z*(x)` (zero residual)
//! for methods that need `argmin_y g` (AID, ITD, …).
//!
//! **Initialisation** (paper 002 sets `A⁰`, `c⁰`, `d⁰` and draws `B⁰`, `C⁰` from a Gaussian; the
//! values are lost in the extraction): `A⁰ = 0`, `c⁰ = 0`, `d⁰ = 0`, `B⁰`, `C⁰` entries
//! `N(0, σ₀²)` from the run's seed, `z⁰ = 0`.

use std::path::PathBuf;

use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{check_len, matrix, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, Constraint, Lift};
use bilevel_data::mnist::{TEST_LEN, TRAIN_LEN};
use bilevel_data::{Dataset, Mnist};
use bilevel_models::equilibrium::infinity_norm;
use bilevel_models::{unflatten, EquilibriumConfig};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};

use crate::application::{Application, Metric};
use crate::common::{
    check_count, check_positive, check_range, cross_entropy_per_sample, evaluate_linear,
    load_mnist, mean, mnist_source, split_mnist, ClassSet, LinearShape, MNIST_CLASSES,
    MNIST_FEATURES,
};
use crate::error::{ProblemError, Result};

/// Largest state width / projection width accepted.
pub const MAX_WIDTH: usize = 10_000;

/// The `[problem]` table of `kind = "equilibrium"`. Every field is optional.
///
/// Defaults: all 60 000 MNIST training images (as in paper 002 §7.1) and the 10 000 test images,
/// `d = 200` states per image, raw pixels (`projection` unset), `ε = 0.05`, `σ₀ = 0.05`,
/// evaluation solves to `‖z − Ψ(z)‖_∞ ≤ 10⁻⁶` within 1 000 iterations.
/// [`EquilibriumSpec::quick`] is a small size for smoke runs.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EquilibriumSpec {
    /// Training images `n` (default 60 000): `y` has `n·d` entries and `inner_len = n`.
    pub train: usize,
    /// Test images (default 10 000, at most 10 000).
    pub test: usize,
    /// State width `d` (default 200).
    pub state_dim: usize,
    /// Width `p` of a fixed seeded random projection of the pixels; unset (default): the 784
    /// pixels themselves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection: Option<usize>,
    /// `ε ∈ (0, 1)`: the constraint is `‖A‖_∞ ≤ 1 − ε` (default 0.05).
    pub epsilon: f64,
    /// Standard deviation `σ₀ ≥ 0` of the initial `B` and `C` entries (default 0.05).
    pub init_std: f64,
    /// Largest number of fixed-point iterations when evaluating (default 1 000).
    pub eval_iters: usize,
    /// Evaluation stops once `‖z − Ψ(z)‖_∞ ≤ eval_tol` (default 10⁻⁶).
    pub eval_tol: f64,
    /// Standardise pixels with training statistics (default false: pixels in `[0, 1]`).
    pub standardize: bool,
    /// Step `α > 0` of the proximal-gradient-map metric
    /// `G_α(x) = (x − P_X(x − α∇Φ(x)))/α` (default 1; paper 002's value is lost in the
    /// extraction).
    pub prox_map_step: f64,
    /// Folder with the four MNIST IDX files (plain or `.gz`); default: the bundled copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mnist_dir: Option<PathBuf>,
}

impl Default for EquilibriumSpec {
    fn default() -> Self {
        Self {
            train: 60_000,
            test: 10_000,
            state_dim: 200,
            projection: None,
            epsilon: 0.05,
            init_std: 0.05,
            eval_iters: 1_000,
            eval_tol: 1e-6,
            standardize: false,
            prox_map_step: 1.0,
            mnist_dir: None,
        }
    }
}

impl EquilibriumSpec {
    /// A small instance for `--quick` runs: 2 000 training / 1 000 test images, `d = 50`,
    /// pixels projected to `p = 100`.
    pub fn quick() -> Self {
        Self {
            train: 2_000,
            test: 1_000,
            state_dim: 50,
            projection: Some(100),
            ..Self::default()
        }
    }

    /// Checks every field's range (no data is read).
    pub fn validate(&self) -> Result<()> {
        check_count("train", self.train, TRAIN_LEN, TRAIN_LEN)?;
        check_count("test", self.test, TEST_LEN, TEST_LEN)?;
        check_count("state_dim", self.state_dim, MAX_WIDTH, 200)?;
        if let Some(p) = self.projection {
            check_count("projection", p, MAX_WIDTH, MNIST_FEATURES)?;
        }
        if !(self.epsilon > 0.0 && self.epsilon < 1.0) {
            return Err(ProblemError::config(
                "epsilon",
                format!(
                    "must lie in (0, 1) so that ‖A‖_∞ ≤ 1 − ε is a contraction, got {}; the \
                     default is 0.05",
                    self.epsilon
                ),
            ));
        }
        check_positive("init_std", self.init_std, true, 0.05)?;
        check_count("eval_iters", self.eval_iters, 10_000_000, 1_000)?;
        check_range("eval_tol", self.eval_tol, 0.0, 1.0, 1e-6)?;
        check_positive("prox_map_step", self.prox_map_step, false, 1.0)?;
        Ok(())
    }

    /// Loads MNIST (the bundled copy or `mnist_dir`) and builds the problem.
    pub fn build<B: Backend>(&self, seed: u64, device: &B::Device) -> Result<EquilibriumModel<B>> {
        self.validate()?;
        let mnist = load_mnist(self.mnist_dir.as_deref())?;
        EquilibriumModel::from_mnist(self, &mnist, seed, device)
    }

    /// Input width `p` (784 without projection).
    pub fn input_dim(&self) -> usize {
        self.projection.unwrap_or(MNIST_FEATURES)
    }

    /// Length of `x`: `d² + d·p + d + 10·d + 10`.
    pub fn x_dim(&self) -> usize {
        let (d, p) = (self.state_dim, self.input_dim());
        d * d + d * p + d + d * MNIST_CLASSES + MNIST_CLASSES
    }
}

/// The equilibrium-model problem (see the module documentation).
#[derive(Clone, Debug)]
pub struct EquilibriumModel<B: Backend> {
    /// Inputs `u_i` as features, with one-hot targets and labels.
    train: ClassSet<B>,
    test: ClassSet<B>,
    head: LinearShape,
    spec: EquilibriumSpec,
    seed: u64,
    device: B::Device,
}

impl<B: Backend> EquilibriumModel<B> {
    /// Builds the problem from loaded MNIST: the training images are a seeded draw (all 60 000,
    /// shuffled, by default), the test images a seeded draw from the 10 000 test images.
    pub fn from_mnist(
        spec: &EquilibriumSpec,
        mnist: &Mnist,
        seed: u64,
        device: &B::Device,
    ) -> Result<Self> {
        spec.validate()?;
        let parts = split_mnist(mnist, spec.train, 0, spec.test, spec.standardize, seed)?;
        let projection = match spec.projection {
            None => None,
            Some(p) => {
                let mut rng = Rng::seed(seed ^ 0x9e0_1ec7);
                let r: Vec<f64> = rng
                    .normal_vec(MNIST_FEATURES * p)
                    .into_iter()
                    .map(|v| v / (p as f64).sqrt())
                    .collect();
                Some(matrix::<B>(&r, MNIST_FEATURES, p, device)?)
            }
        };
        let inputs = |data: &Dataset| -> ClassSet<B> {
            let mut set = ClassSet::new(data, &data.labels, MNIST_CLASSES, device);
            if let Some(r) = &projection {
                set.features = set.features.matmul(r.clone());
            }
            set
        };
        Ok(Self {
            train: inputs(&parts.train),
            test: inputs(&parts.test),
            head: LinearShape {
                features: spec.state_dim,
                classes: MNIST_CLASSES,
                bias: true,
            },
            spec: spec.clone(),
            seed,
            device: device.clone(),
        })
    }

    /// The spec the problem was built from.
    pub fn spec(&self) -> &EquilibriumSpec {
        &self.spec
    }

    /// The radius `1 − ε` of the constraint on `‖A‖_∞`.
    pub fn radius(&self) -> f64 {
        1.0 - self.spec.epsilon
    }

    fn layer_len(&self) -> usize {
        let (d, p) = (self.spec.state_dim, self.spec.input_dim());
        d * d + d * p + d
    }

    /// `(A, B, c)` from `x`.
    fn layer<C: Backend>(&self, x: Tensor<C, 1>) -> (Tensor<C, 2>, Tensor<C, 2>, Tensor<C, 1>) {
        let (d, p) = (self.spec.state_dim, self.spec.input_dim());
        let a = x.clone().narrow(0, 0, d * d).reshape([d, d]);
        let b = x.clone().narrow(0, d * d, d * p).reshape([d, p]);
        let c = x.narrow(0, d * d + d * p, d);
        (a, b, c)
    }

    /// The classifier part `(Cᵀ, d)` of `x`, flat.
    fn classifier<C: Backend>(&self, x: Tensor<C, 1>) -> Tensor<C, 1> {
        x.narrow(0, self.layer_len(), self.head.len())
    }

    /// `tanh(Z Aᵀ + U Bᵀ + c)` row by row.
    fn psi<C: Backend>(&self, x: Tensor<C, 1>, z: Tensor<C, 2>, u: Tensor<C, 2>) -> Tensor<C, 2> {
        let d = self.spec.state_dim;
        let (a, b, c) = self.layer(x);
        z.matmul(a.transpose())
            .add(u.matmul(b.transpose()))
            .add(c.reshape([1, d]))
            .tanh()
    }

    fn states<C: Backend>(&self, y: Tensor<C, 1>) -> Tensor<C, 2> {
        y.reshape([self.train.len, self.spec.state_dim])
    }

    /// The fixed points `z*(x)` of the images of `set` by the iteration `z ← Ψ(z)` from 0
    /// (untracked), with the number of iterations and the last step length.
    fn solve(&self, x: &Tensor<B, 1>, set: &ClassSet<B>) -> Result<(Tensor<B, 2>, usize, f64)> {
        let config = EquilibriumConfig::new(self.spec.state_dim, self.spec.input_dim());
        let layer = unflatten(
            config.init::<B>(&self.device),
            x.clone().detach().narrow(0, 0, self.layer_len()),
        )?;
        let fp = layer.solve(
            set.features.clone(),
            self.spec.eval_iters,
            self.spec.eval_tol,
        );
        Ok((fp.z, fp.iterations, fp.residual))
    }

    /// Mean cross-entropy and accuracy of `x`'s classifier at the solved states of `set`.
    fn solved_metrics(&self, x: &Tensor<B, 1>, set: &ClassSet<B>) -> Result<(f64, f64)> {
        let (z, _, _) = self.solve(x, set)?;
        self.metrics_at(x, z, set)
    }

    /// Mean cross-entropy and accuracy of `x`'s classifier at the states `z` of `set`.
    fn metrics_at(
        &self,
        x: &Tensor<B, 1>,
        z: Tensor<B, 2>,
        set: &ClassSet<B>,
    ) -> Result<(f64, f64)> {
        let states = ClassSet {
            features: z,
            targets: set.targets.clone(),
            labels: set.labels.clone(),
            len: set.len,
        };
        evaluate_linear(&self.head, &states, self.classifier(x.clone().detach()))
    }
}

impl<B: Backend> BilevelProblem<B> for EquilibriumModel<B> {
    fn x_dim(&self) -> usize {
        self.spec.x_dim()
    }

    fn y_dim(&self) -> usize {
        self.train.len * self.spec.state_dim
    }

    fn device(&self) -> B::Device {
        self.device.clone()
    }

    fn inner_len(&self) -> Option<usize> {
        Some(self.train.len)
    }

    fn outer_len(&self) -> Option<usize> {
        Some(self.train.len)
    }

    /// `(1/|S|) Σ_{i∈S} ½‖z_i − Ψ_i(z_i, x)‖²`.
    fn inner_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        let z = batch.rows(self.states(y));
        let u = batch.rows(C::lift(self.train.features.clone()));
        let m = z.dims()[0];
        let r = self.psi(x, z.clone(), u).sub(z);
        mean(r.powi_scalar(2).sum_dim(1).reshape([m])).mul_scalar(0.5)
    }

    /// `(1/|D|) Σ_{i∈D} CE(C z_i + d, t_i)`.
    fn outer_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        let z = batch.rows(self.states(y));
        let targets = batch.rows(C::lift(self.train.targets.clone()));
        let logits = self.head.logits(z, self.classifier(x));
        mean(cross_entropy_per_sample(logits, targets))
    }

    /// `Ψ(y, x)` for the full batch; `y + (n/|S|) Σ_{i∈S} e_i ⊗ (Ψ_i − z_i)` for a batch `S`.
    fn contraction_map<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Option<Tensor<C, 1>> {
        let n = self.train.len;
        let len = n * self.spec.state_dim;
        let z = self.states(y);
        let u = C::lift(self.train.features.clone());
        Some(match batch {
            Batch::Full => self.psi(x, z, u).reshape([len]),
            Batch::Indices(idx) => {
                let zs = batch.rows(z.clone());
                let step = self
                    .psi(x, zs.clone(), batch.rows(u))
                    .sub(zs)
                    .mul_scalar(n as f64 / idx.len().max(1) as f64);
                let values: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
                let index = Tensor::<C, 1, Int>::from_data(
                    TensorData::new(values, [idx.len()]),
                    &z.device(),
                );
                z.select_assign(0, index, step, IndexingUpdateOp::Add)
                    .reshape([len])
            }
        })
    }

    fn upper_constraint(&self) -> Constraint {
        Constraint::RowSumBall {
            offset: 0,
            rows: self.spec.state_dim,
            cols: self.spec.state_dim,
            radius: self.radius(),
        }
    }
}

impl<B: AutodiffBackend> EquilibriumModel<B> {
    /// `∇Φ(x)` on all training images at their solved states `z = z*(x)` ([`Self::solve`]):
    /// the adjoint `w = (∂Ψ/∂z)ᵀ w + ∇_z f(x, z)` by fixed-point iteration from `∇_z f` (row by
    /// row `w_i ← Aᵀ(s_i ⊙ w_i) + ∇_{z_i} f`, `s_i = 1 − Ψ_i(z_i)²`; the same `(1 − ε)`
    /// contraction, the same `eval_tol` and `eval_iters`), then
    /// `∇Φ = ∇_x f + (∂Ψ/∂x)ᵀ w` by one backward pass. Paper 002 §7.1 evaluates its
    /// proximal gradient map with such accurate LL and LS solves on all training examples.
    pub fn hypergradient(&self, x: &Tensor<B, 1>) -> Result<Tensor<B, 1>> {
        check_len("x", x, self.x_dim())?;
        let x = x.clone().detach();
        let (z, _, _) = self.solve(&x, &self.train)?;
        self.hypergradient_at(&x, z)
    }

    fn hypergradient_at(&self, x: &Tensor<B, 1>, z: Tensor<B, 2>) -> Result<Tensor<B, 1>> {
        let flat = self.y_dim();
        let missing = || ProblemError::config("x", "no gradient reached the variable (internal)");
        let zg = z.clone().detach().require_grad();
        let f = self.outer_loss::<B>(x.clone(), zg.clone().reshape([flat]), &Batch::Full);
        let gz = Tensor::<B, 2>::from_inner(zg.grad(&f.backward()).ok_or_else(missing)?);
        let u = self.train.features.clone();
        let psi = self.psi(x.clone(), z.clone(), u.clone());
        let s = psi.powi_scalar(2).neg().add_scalar(1.0);
        let (a, _, _) = self.layer(x.clone());
        let mut w = gz.clone();
        for _ in 0..self.spec.eval_iters {
            let next = s.clone().mul(w.clone()).matmul(a.clone()).add(gz.clone());
            let step = to_vec(next.clone().sub(w).abs().max())?[0];
            w = next;
            if step <= self.spec.eval_tol {
                break;
            }
        }
        let xg = x.clone().require_grad();
        let lagrangian = self
            .outer_loss::<B>(xg.clone(), z.clone().reshape([flat]), &Batch::Full)
            .add(self.psi(xg.clone(), z, u).mul(w.detach()).sum());
        let grad = xg.grad(&lagrangian.backward()).ok_or_else(missing)?;
        Ok(Tensor::from_inner(grad))
    }

    /// `‖G_α(x)‖`, `G_α(x) = (x − P_X(x − α∇Φ(x)))/α` with `α` = `prox_map_step` and `X` the
    /// contraction constraint (paper 002, Definition 11; `= ‖∇Φ(x)‖` where the projection is
    /// inactive), from the training states `z` solved at `x`.
    fn prox_map_norm(&self, x: &Tensor<B, 1>, z: Tensor<B, 2>) -> Result<f64> {
        let alpha = self.spec.prox_map_step;
        let grad = self.hypergradient_at(x, z)?;
        let moved = self
            .upper_constraint()
            .project(x.clone().sub(grad.mul_scalar(alpha)));
        let map = x.clone().sub(moved).div_scalar(alpha);
        Ok(to_vec(map.powi_scalar(2).sum().sqrt())?[0])
    }
}

impl<B: AutodiffBackend> Application<B> for EquilibriumModel<B> {
    fn id(&self) -> &'static str {
        "equilibrium"
    }

    fn describe(&self) -> String {
        let inputs = match self.spec.projection {
            None => "the 784 pixels".to_string(),
            Some(p) => format!("a fixed seeded Gaussian projection of the pixels to {p} dims"),
        };
        format!(
            "equilibrium (paper 002 §7.1): {}; {} training images (inner and outer level), {} \
             test images, split seed {}; z_i = tanh(A z_i + B u_i + c) with d = {} states per \
             image, u_i = {}; x = (A, B, c, C, d) ({} parameters) with ‖A‖_∞ ≤ 1 − ε = {}; y = \
             the n×d states ({} values); f = mean CE(C z_i + d) on the training images",
            mnist_source(self.spec.mnist_dir.as_ref()),
            self.train.len,
            self.test.len,
            self.seed,
            self.spec.state_dim,
            inputs,
            self.x_dim(),
            self.radius(),
            self.y_dim()
        )
    }

    /// `A⁰ = 0`, `c⁰ = 0`, `d⁰ = 0`; `B⁰`, `C⁰` entries `N(0, σ₀²)` from `seed`; `z⁰ = 0`.
    fn initial_point(&self, seed: u64) -> Result<(Tensor<B, 1>, Tensor<B, 1>)> {
        let (d, p) = (self.spec.state_dim, self.spec.input_dim());
        let mut rng = Rng::seed(seed ^ 0xe9_0111);
        let s = self.spec.init_std;
        let mut x = vec![0.0; d * d];
        x.extend(rng.normal_vec(d * p).into_iter().map(|v| s * v));
        x.extend(vec![0.0; d]);
        x.extend(rng.normal_vec(d * MNIST_CLASSES).into_iter().map(|v| s * v));
        x.extend(vec![0.0; MNIST_CLASSES]);
        Ok((
            vector(&x, &self.device),
            vector(&vec![0.0; self.y_dim()], &self.device),
        ))
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec![
            "test_accuracy",
            "test_loss",
            "train_accuracy",
            "train_loss",
            "fixed_point_residual",
            "contraction_factor",
            "prox_grad_map_norm",
        ]
    }

    /// Test and training accuracy / mean cross-entropy at the states `z*(x)` solved by
    /// fixed-point iteration (`eval_iters`, `eval_tol`) — so `train_loss` is `Φ(x)` up to the
    /// solver tolerance —, the residual `‖Ψ(y, x) − y‖_∞` of the given states `y`, and
    /// `‖A‖_∞`, and the norm of the proximal gradient map at `x`
    /// ([`EquilibriumModel::hypergradient`]; `prox_map_step`).
    fn evaluate(&self, x: &Tensor<B, 1>, y: &Tensor<B, 1>) -> Result<Vec<Metric>> {
        check_len("x", x, self.x_dim())?;
        check_len("y", y, self.y_dim())?;
        let (test_loss, test_acc) = self.solved_metrics(x, &self.test)?;
        let (x, y) = (x.clone().detach(), y.clone().detach());
        let (z_train, _, _) = self.solve(&x, &self.train)?;
        let (train_loss, train_acc) = self.metrics_at(&x, z_train.clone(), &self.train)?;
        let prox = self.prox_map_norm(&x, z_train)?;
        let residual = match self.contraction_map::<B>(x.clone(), y.clone(), &Batch::Full) {
            Some(psi) => to_vec(psi.sub(y).abs().max())?[0],
            None => f64::NAN,
        };
        let d = self.spec.state_dim;
        let factor = infinity_norm(x.narrow(0, 0, d * d).reshape([d, d]));
        Ok(vec![
            Metric::new("test_accuracy", test_acc),
            Metric::new("test_loss", test_loss),
            Metric::new("train_accuracy", train_acc),
            Metric::new("train_loss", train_loss),
            Metric::new("fixed_point_residual", residual),
            Metric::new("contraction_factor", factor),
            Metric::new("prox_grad_map_norm", prox),
        ])
    }
}
