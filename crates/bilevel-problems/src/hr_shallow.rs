//! `hr-shallow`: shallow hyper-representation on generated data (paper 000 §4.1, eq. (8);
//! `docs/REPRODUCTION.md` `hr-shallow`).
//!
//! Regression with a learned embedding `T(·; λ)` and a ridge head `w`:
//!
//! `f(λ, w; S) = (1/2|S|) Σ_{i∈S} (T(a_i; λ)ᵀ w − b_i)²` over the validation set `(X₁, Y₁)`,
//! `g(λ, w; S) = (1/2|S|) Σ_{i∈S} (T(a_i; λ)ᵀ w − b_i)² + (γ/2) ‖w‖²` over the training set
//! `(X₂, Y₂)`,
//!
//! `x = λ` (the embedding's parameters), `y = w ∈ ℝᵉ` (no bias, as in eq. (8)). The embedding is
//! either linear, `T(a; λ) = Λᵀa` with `Λ ∈ ℝ^{m×e}` (flat row-major, no bias), or the two-layer
//! network `T(a) = W₂ᵀ relu(W₁ᵀa + b₁) + b₂` ([`bilevel_models::mlp::Mlp`], flat order `W₁`
//! `[m, h]`, `b₁`, `W₂` `[h, e]`, `b₂`).
//!
//! **Data** (paper 000 says only "following the same process as Grazzi et al. 2020"; its appendix
//! is not in the extraction, so this is a documented choice): inputs `a_i ~ N(0, I_m)`;
//! responses from a seeded *teacher* of the same architecture as the embedding, `b_i =
//! T(a_i; λ*)ᵀ w* + σ ε_i`, `ε_i ~ N(0, 1)`, with `Λ*`/`W₁*`/`W₂*` entries
//! `N(0, gain/fan_in)` (gain 2 before a ReLU, else 1), zero teacher biases, `w* ~ N(0, I/e)`, so
//! the noiseless responses have unit variance. Train, validation and test inputs are independent
//! draws; everything comes from the run's seed. Both levels are stochastic over their rows.

use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{check_len, matrix, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, Lift};
use bilevel_models::{unflatten, MlpConfig};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

use crate::application::{Application, Metric};
use crate::common::{check_count, check_positive, mean};
use crate::error::{ProblemError, Result};

/// The embedding model `T(·; λ)` of hr-shallow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Embedding {
    /// `T(a; Λ) = Λᵀa`, `Λ ∈ ℝ^{m×e}` (paper 000 Fig. 2 a–c).
    Linear,
    /// Two-layer ReLU network `m → h → e` with biases (paper 000 Fig. 2 d–f).
    Mlp,
}

/// Largest input / embedding / hidden width accepted.
pub const MAX_WIDTH: usize = 100_000;
/// Largest number of samples per part accepted.
pub const MAX_SAMPLES: usize = 10_000_000;

/// The `[problem]` table of `kind = "hr-shallow"`. Every field is optional.
///
/// Defaults: linear embedding, `m = 100` inputs, `e = 10` embedding width, `h = 50` hidden units
/// (MLP only), 500 training / 500 validation / 1 000 test samples, noise `σ = 0.1`,
/// `γ = 0.1` (the paper's sizes are not in the extraction).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HrShallowSpec {
    /// `"linear"` or `"mlp"` (default linear).
    pub embedding: Embedding,
    /// Input width `m` (default 100).
    pub input_dim: usize,
    /// Embedding width `e` = length of `y` (default 10).
    pub embed_dim: usize,
    /// Hidden width `h` of the MLP embedding (default 50; unused by the linear one).
    pub hidden: usize,
    /// Training samples `n₂` of the inner level (default 500).
    pub train: usize,
    /// Validation samples `n₁` of the outer level (default 500).
    pub val: usize,
    /// Held-out test samples (default 1 000).
    pub test: usize,
    /// Standard deviation `σ ≥ 0` of the response noise (default 0.1).
    pub noise: f64,
    /// Ridge weight `γ ≥ 0` of `(γ/2)‖w‖²` (default 0.1; `> 0` makes `g` strongly convex in `w`).
    pub reg: f64,
}

impl Default for HrShallowSpec {
    fn default() -> Self {
        Self {
            embedding: Embedding::Linear,
            input_dim: 100,
            embed_dim: 10,
            hidden: 50,
            train: 500,
            val: 500,
            test: 1_000,
            noise: 0.1,
            reg: 0.1,
        }
    }
}

impl HrShallowSpec {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        check_count("input_dim", self.input_dim, MAX_WIDTH, 100)?;
        check_count("embed_dim", self.embed_dim, MAX_WIDTH, 10)?;
        check_count("hidden", self.hidden, MAX_WIDTH, 50)?;
        check_count("train", self.train, MAX_SAMPLES, 500)?;
        check_count("val", self.val, MAX_SAMPLES, 500)?;
        check_count("test", self.test, MAX_SAMPLES, 1_000)?;
        check_positive("noise", self.noise, true, 0.1)?;
        check_positive("reg", self.reg, true, 0.1)?;
        Ok(())
    }

    /// Generates the data from `seed` and builds the problem.
    pub fn build<B: Backend>(&self, seed: u64, device: &B::Device) -> Result<HrShallow<B>> {
        HrShallow::generate(self, seed, device)
    }

    /// Length of `x` for this embedding: `m·e` (linear) or `m·h + h + h·e + e` (MLP).
    pub fn x_dim(&self) -> usize {
        match self.embedding {
            Embedding::Linear => self.input_dim * self.embed_dim,
            Embedding::Mlp => self.mlp_config().num_params(),
        }
    }

    fn mlp_config(&self) -> MlpConfig {
        MlpConfig::new(self.input_dim, self.hidden, self.embed_dim)
    }
}

/// One regression set on the device: inputs `[n, m]` and responses `[n]`.
#[derive(Clone, Debug)]
struct RegSet<B: Backend> {
    inputs: Tensor<B, 2>,
    targets: Tensor<B, 1>,
}

/// The shallow hyper-representation problem (see the module documentation).
#[derive(Clone, Debug)]
pub struct HrShallow<B: Backend> {
    train: RegSet<B>,
    val: RegSet<B>,
    test: RegSet<B>,
    spec: HrShallowSpec,
    teacher: Vec<f64>,
    seed: u64,
    device: B::Device,
}

/// Flat parameters of `module` drawn like burn's default initialisation of linear and
/// convolutional layers, `U(−1/√fan_in, 1/√fan_in)` for weights and biases, but from `rng` (so
/// that a run's starting point depends on its seed only). The fan-in of a `[in, out]` weight
/// (this crate's linear layers) is `in`, of a `[out, in, k, k]` convolution `in·k·k`; a bias
/// uses the fan-in of the weight before it. Visiting order, as [`bilevel_models::flatten`].
pub fn seeded_uniform_init<B: Backend, M: Module<B>>(module: &M, rng: &mut Rng) -> Vec<f64> {
    struct Shapes(Vec<Vec<usize>>);
    impl<B: Backend> ModuleVisitor<B> for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.lazy_shape().to_vec());
        }
    }
    let mut shapes = Shapes(Vec::new());
    module.visit(&mut shapes);
    let mut out = Vec::new();
    let mut fan_in = 1usize;
    for dims in shapes.0 {
        fan_in = match dims.len() {
            1 if out.is_empty() => dims[0],
            1 => fan_in,
            2 => dims[0],
            _ => dims[1..].iter().product(),
        }
        .max(1);
        let bound = 1.0 / (fan_in as f64).sqrt();
        let n: usize = dims.iter().product();
        out.extend((0..n).map(|_| bound * (2.0 * rng.uniform() - 1.0)));
    }
    out
}

fn scaled_normal(rng: &mut Rng, n: usize, std: f64) -> Vec<f64> {
    rng.normal_vec(n).into_iter().map(|v| std * v).collect()
}

impl<B: Backend> HrShallow<B> {
    /// Generates the train / validation / test sets from `seed` (see the module documentation).
    pub fn generate(spec: &HrShallowSpec, seed: u64, device: &B::Device) -> Result<Self> {
        spec.validate()?;
        let (m, e, h) = (spec.input_dim, spec.embed_dim, spec.hidden);
        let mut rng = Rng::seed(seed ^ 0x5a11_0e4e);
        let mut teacher = match spec.embedding {
            Embedding::Linear => scaled_normal(&mut rng, m * e, (1.0 / m as f64).sqrt()),
            Embedding::Mlp => {
                let mut t = scaled_normal(&mut rng, m * h, (2.0 / m as f64).sqrt());
                t.extend(vec![0.0; h]);
                t.extend(scaled_normal(&mut rng, h * e, (1.0 / h as f64).sqrt()));
                t.extend(vec![0.0; e]);
                t
            }
        };
        let w_star = scaled_normal(&mut rng, e, (1.0 / e as f64).sqrt());
        let x_star = vector::<B>(&teacher, device);
        let mut make = |n: usize| -> Result<RegSet<B>> {
            let inputs = matrix::<B>(&rng.normal_vec(n * m), n, m, device)?;
            let clean = Self::predict_with(
                spec,
                x_star.clone(),
                vector(&w_star, device),
                inputs.clone(),
            );
            let noise = scaled_normal(&mut rng, n, spec.noise);
            let targets = clean.add(vector(&noise, device));
            Ok(RegSet { inputs, targets })
        };
        let train = make(spec.train)?;
        let val = make(spec.val)?;
        let test = make(spec.test)?;
        teacher.extend(w_star);
        Ok(Self {
            train,
            val,
            test,
            spec: spec.clone(),
            teacher,
            seed,
            device: device.clone(),
        })
    }

    /// The teacher's `(λ*, w*)` concatenated (`x_dim + y_dim` values).
    pub fn teacher(&self) -> &[f64] {
        &self.teacher
    }

    /// The spec the problem was built from.
    pub fn spec(&self) -> &HrShallowSpec {
        &self.spec
    }

    /// `T(A; λ)`, `[n, e]`.
    fn embed<C: Backend>(
        spec: &HrShallowSpec,
        x: Tensor<C, 1>,
        inputs: Tensor<C, 2>,
    ) -> Tensor<C, 2> {
        match spec.embedding {
            Embedding::Linear => inputs.matmul(x.reshape([spec.input_dim, spec.embed_dim])),
            Embedding::Mlp => {
                let device = x.device();
                match unflatten(spec.mlp_config().init::<C>(&device), x) {
                    Ok(mlp) => mlp.forward(inputs),
                    Err(e) => panic!("hr-shallow: x does not fit the MLP embedding: {e}"),
                }
            }
        }
    }

    /// `T(A; λ) w`, `[n]`.
    fn predict_with<C: Backend>(
        spec: &HrShallowSpec,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        inputs: Tensor<C, 2>,
    ) -> Tensor<C, 1> {
        let n = inputs.dims()[0];
        Self::embed(spec, x, inputs)
            .matmul(y.reshape([spec.embed_dim, 1]))
            .reshape([n])
    }

    /// `(1/2|S|) Σ (T(a_i)ᵀw − b_i)²` over the rows `batch` selects from `set`.
    fn half_mse<C: Lift<B>>(
        &self,
        set: &RegSet<B>,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        let inputs = batch.rows(C::lift(set.inputs.clone()));
        let targets = batch.rows(C::lift(set.targets.clone()));
        let r = Self::predict_with(&self.spec, x, y, inputs).sub(targets);
        mean(r.powi_scalar(2)).mul_scalar(0.5)
    }
}

impl<B: Backend> BilevelProblem<B> for HrShallow<B> {
    fn x_dim(&self) -> usize {
        self.spec.x_dim()
    }

    fn y_dim(&self) -> usize {
        self.spec.embed_dim
    }

    fn device(&self) -> B::Device {
        self.device.clone()
    }

    fn inner_len(&self) -> Option<usize> {
        Some(self.spec.train)
    }

    fn outer_len(&self) -> Option<usize> {
        Some(self.spec.val)
    }

    fn inner_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        let ridge = y
            .clone()
            .powi_scalar(2)
            .sum()
            .mul_scalar(0.5 * self.spec.reg);
        self.half_mse(&self.train, x, y, batch).add(ridge)
    }

    fn outer_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        self.half_mse(&self.val, x, y, batch)
    }
}

impl<B: AutodiffBackend> Application<B> for HrShallow<B> {
    fn id(&self) -> &'static str {
        "hr-shallow"
    }

    fn describe(&self) -> String {
        let s = &self.spec;
        let model = match s.embedding {
            Embedding::Linear => format!("linear embedding {}→{}", s.input_dim, s.embed_dim),
            Embedding::Mlp => format!(
                "2-layer ReLU embedding {}→{}→{}",
                s.input_dim, s.hidden, s.embed_dim
            ),
        };
        format!(
            "hr-shallow (paper 000 §4.1, eq. (8)): generated regression data (seed {}), inputs \
             N(0, I_{}), responses from a teacher of the same architecture plus N(0, {}²) noise; \
             {} train / {} validation / {} test samples; x = {} ({} parameters), y = linear head \
             w ∈ ℝ^{} with (γ/2)‖w‖², γ = {}; f, g = half mean squared error",
            self.seed,
            s.input_dim,
            s.noise,
            s.train,
            s.val,
            s.test,
            model,
            s.x_dim(),
            s.embed_dim,
            s.reg
        )
    }

    /// `λ⁰` drawn like burn's default layer initialisation from `seed` (the teacher uses other
    /// draws), `w⁰ = 0`.
    fn initial_point(&self, seed: u64) -> Result<(Tensor<B, 1>, Tensor<B, 1>)> {
        let mut rng = Rng::seed(seed ^ 0x1a17_0000);
        let x0 = match self.spec.embedding {
            Embedding::Linear => {
                let template =
                    bilevel_models::LinearConfig::new(self.spec.input_dim, self.spec.embed_dim)
                        .with_bias(false)
                        .init::<B>(&self.device);
                seeded_uniform_init(&template, &mut rng)
            }
            Embedding::Mlp => {
                seeded_uniform_init(&self.spec.mlp_config().init::<B>(&self.device), &mut rng)
            }
        };
        Ok((
            vector(&x0, &self.device),
            vector(&vec![0.0; self.y_dim()], &self.device),
        ))
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec!["val_loss", "test_loss", "train_loss"]
    }

    /// Half mean squared errors of `T(·; λ)ᵀw` on the validation (`= f`), test and training
    /// sets (the training one without the ridge term).
    fn evaluate(&self, x: &Tensor<B, 1>, y: &Tensor<B, 1>) -> Result<Vec<Metric>> {
        check_len("x", x, self.x_dim())?;
        check_len("y", y, self.y_dim())?;
        let value = |set: &RegSet<B>| -> Result<f64> {
            let v = self.half_mse::<B>(set, x.clone().detach(), y.clone().detach(), &Batch::Full);
            let v = to_vec(v)?[0];
            if v.is_finite() {
                Ok(v)
            } else {
                Err(ProblemError::Bilevel(
                    bilevel_core::BilevelError::NonFinite {
                        what: "hr-shallow loss".into(),
                    },
                ))
            }
        };
        Ok(vec![
            Metric::new("val_loss", value(&self.val)?),
            Metric::new("test_loss", value(&self.test)?),
            Metric::new("train_loss", value(&self.train)?),
        ])
    }
}
