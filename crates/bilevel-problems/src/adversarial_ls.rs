//! `adversarial-ls`: adversarial training with least squares at both levels (paper 003, §7.1
//! and Example 5.4, after Brückner & Scheffer 2011 and Bishop et al. 2020;
//! `docs/REPRODUCTION.md` `adversarial-ls`).
//!
//! The learner picks `x ∈ ℝ^d`; a data provider reports labels `y ∈ ℝ^n` in place of the true
//! ones `b`, paying for the change in a weighted norm:
//!
//! `f(x, y; S) = (1/2|S|) Σ_{i∈S} (a_iᵀx − y_i)²`,
//! `g(x, y; S) = (1/2|S|) Σ_{i∈S} m_i [(a_iᵀx − y_i)² + λ (y_i − b_i)²]`,
//!
//! i.e. `(1/2n)‖Ax − y‖²` and `(1/2n)‖Ax − y‖²_M + (λ/2n)‖y − b‖²_M` on the full data, with
//! `M = diag(m)`: a seeded random half of the `m_i` evenly spaced in `[σ⁺_min, σ_max]`, the rest
//! zero (`λ = 1`, `σ_max = 1`, `σ⁺_min = 10⁻⁹`). The lower level is convex but not strongly
//! convex (`y_i` with `m_i = 0` is free) and badly conditioned.
//!
//! Closed forms (the metrics): on `m_i > 0` the lower solution is `y_i = (a_iᵀx + λb_i)/(1 + λ)`;
//! a free `y_i` takes the optimistic value `a_iᵀx`, so
//! `φ(x) = (1/2n) (λ/(1+λ))² Σ_{m_i>0} (a_iᵀx − b_i)²` (the paper's reported "MSE") and
//! `g*(x) = (1/2n) (λ/(1+λ)) Σ_i m_i (a_iᵀx − b_i)²`.
//!
//! **Data.** The paper uses LIBSVM's `abalone`, which cannot be obtained offline here; the
//! default is UCI red wine quality (1599 × 11, `cargo xtask data fetch wine-quality`) as a
//! clearly labelled substitute, or a seeded synthetic regression (`data = "synthetic"`).
//! Features are standardised with training statistics and an intercept column is appended;
//! targets are left as they are. A seeded part of the samples is held out for `test_mse`.

use std::path::PathBuf;

use bilevel_core::dense::Dense;
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{check_len, matrix, matvec, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, Lift};
use bilevel_data::split::{split_indices, SplitSizes};
use bilevel_data::tabular::{wine_quality, RegressionSet, WINE_QUALITY};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

use crate::application::{Application, Metric};
use crate::common::{check_count, check_positive, check_range};
use crate::error::{ProblemError, Result};

/// Which regression data the problem is built on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdversarialLsData {
    /// UCI red wine quality, the substitute for abalone (default).
    #[default]
    WineQuality,
    /// A seeded synthetic linear regression (`synthetic_samples × synthetic_features`).
    Synthetic,
}

/// The `[problem]` table of `kind = "adversarial-ls"`. Every field is optional; defaults are
/// paper 003 §7.1's (`λ = 1`, `σ_max = 1`, `σ⁺_min = 10⁻⁹`, half of `M` nonzero) on
/// wine-quality.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdversarialLsSpec {
    /// `"wine-quality"` (default; substitute for abalone) or `"synthetic"`.
    pub data: AdversarialLsData,
    /// Folder holding `winequality-red.csv(.gz)`; default `<data dir>/wine-quality`
    /// (`$BILEVEL_DATA`, else the workspace's `data/`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wine_dir: Option<PathBuf>,
    /// Samples of the synthetic data (default 1599, like wine-quality).
    pub synthetic_samples: usize,
    /// Features of the synthetic data (default 11, like wine-quality).
    pub synthetic_features: usize,
    /// Fraction of the samples held out for `test_mse` (default 0.2; in `[0, 0.9]`).
    pub test_fraction: f64,
    /// `λ > 0`, weight of the provider's cost `‖y − b‖²_M` (default 1).
    pub lambda: f64,
    /// Smallest nonzero diagonal entry `σ⁺_min` of `M` (default 1e-9).
    pub sigma_min: f64,
    /// Largest diagonal entry `σ_max` of `M` (default 1).
    pub sigma_max: f64,
    /// Fraction of the training samples with `m_i > 0` (default 0.5).
    pub weighted_fraction: f64,
    /// Append a constant-1 feature (default true).
    pub intercept: bool,
}

impl Default for AdversarialLsSpec {
    fn default() -> Self {
        Self {
            data: AdversarialLsData::WineQuality,
            wine_dir: None,
            synthetic_samples: 1599,
            synthetic_features: 11,
            test_fraction: 0.2,
            lambda: 1.0,
            sigma_min: 1e-9,
            sigma_max: 1.0,
            weighted_fraction: 0.5,
            intercept: true,
        }
    }
}

impl AdversarialLsSpec {
    /// This spec with `wine_dir` defaulting to `<data_dir>/wine-quality` when the spec names
    /// none and a data directory is given (the CLI's `--data-dir`, reproduce's data folder).
    pub fn with_data_dir(&self, data_dir: Option<&std::path::Path>) -> Self {
        match (&self.wine_dir, data_dir) {
            (None, Some(dir)) => Self {
                wine_dir: Some(dir.join(bilevel_data::tabular::WINE_QUALITY)),
                ..self.clone()
            },
            _ => self.clone(),
        }
    }

    /// Checks every field's range (no data is read).
    pub fn validate(&self) -> Result<()> {
        check_count(
            "synthetic_samples",
            self.synthetic_samples,
            10_000_000,
            1599,
        )?;
        check_count("synthetic_features", self.synthetic_features, 10_000, 11)?;
        check_range("test_fraction", self.test_fraction, 0.0, 0.9, 0.2)?;
        check_positive("lambda", self.lambda, false, 1.0)?;
        check_positive("sigma_min", self.sigma_min, false, 1e-9)?;
        check_positive("sigma_max", self.sigma_max, false, 1.0)?;
        if self.sigma_min > self.sigma_max {
            return Err(ProblemError::config(
                "sigma_min",
                format!(
                    "must not exceed sigma_max = {}, got {}; the defaults are 1e-9 and 1",
                    self.sigma_max, self.sigma_min
                ),
            ));
        }
        if !(self.weighted_fraction > 0.0 && self.weighted_fraction <= 1.0) {
            return Err(ProblemError::config(
                "weighted_fraction",
                format!(
                    "must lie in (0, 1], got {}; the default is 0.5",
                    self.weighted_fraction
                ),
            ));
        }
        Ok(())
    }

    /// The wine-quality folder this spec reads.
    pub fn resolve_wine_dir(&self) -> PathBuf {
        self.wine_dir
            .clone()
            .unwrap_or_else(|| bilevel_data::registry::data_dir().join(WINE_QUALITY))
    }

    /// Loads (or generates) the data and builds the problem.
    pub fn build<B: Backend>(&self, seed: u64, device: &B::Device) -> Result<AdversarialLs<B>> {
        self.validate()?;
        let (set, source) = match self.data {
            AdversarialLsData::WineQuality => {
                let dir = self.resolve_wine_dir();
                let set = wine_quality(&dir)?;
                (
                    set,
                    format!(
                        "wine-quality (substitute for abalone): UCI red wine quality, \
                         Cortez et al. 2009, from {}",
                        dir.display()
                    ),
                )
            }
            AdversarialLsData::Synthetic => (
                synthetic_regression(self.synthetic_samples, self.synthetic_features, seed)?,
                format!(
                    "synthetic linear regression (generated, seed {seed}; not abalone): \
                     a_i ~ N(0, I), b_i = a_iᵀβ + 0.5 + N(0, 0.5²)"
                ),
            ),
        };
        AdversarialLs::from_set(self, &set, &source, seed, device)
    }
}

/// A seeded linear regression: `a_i ~ N(0, I_d)`, `β ~ N(0, I_d)`,
/// `b_i = a_iᵀβ + 0.5 + ε_i`, `ε_i ~ N(0, 0.5²)`.
pub fn synthetic_regression(n: usize, d: usize, seed: u64) -> Result<RegressionSet> {
    let mut rng = Rng::seed(seed ^ 0x5e_9e55);
    let beta = rng.normal_vec(d);
    let features = rng.normal_vec(n * d);
    let noise = rng.normal_vec(n);
    let targets = (0..n)
        .map(|i| {
            let row = &features[i * d..(i + 1) * d];
            row.iter().zip(&beta).map(|(a, b)| a * b).sum::<f64>() + 0.5 + 0.5 * noise[i]
        })
        .collect();
    let names = (0..d).map(|j| format!("x{j}")).collect();
    Ok(RegressionSet::new(features, targets, d, names)?)
}

/// The adversarial least-squares problem (see the module documentation).
#[derive(Clone, Debug)]
pub struct AdversarialLs<B: Backend> {
    a: Tensor<B, 2>,
    b: Tensor<B, 1>,
    m: Tensor<B, 1>,
    a_host: Dense,
    b_host: Vec<f64>,
    m_host: Vec<f64>,
    a_test: Dense,
    b_test: Vec<f64>,
    lambda: f64,
    source: String,
    spec: AdversarialLsSpec,
    device: B::Device,
}

fn with_intercept(set: &RegressionSet, intercept: bool) -> Dense {
    let d = set.dim + usize::from(intercept);
    let mut data = Vec::with_capacity(set.len * d);
    for i in 0..set.len {
        data.extend_from_slice(&set.features[i * set.dim..(i + 1) * set.dim]);
        if intercept {
            data.push(1.0);
        }
    }
    Dense {
        rows: set.len,
        cols: d,
        data,
    }
}

impl<B: Backend> AdversarialLs<B> {
    /// Builds the problem from a regression set: seeded train/test split, standardisation with
    /// training statistics, intercept, and the weights `M` (seeded). `source` names the data in
    /// [`Application::describe`].
    pub fn from_set(
        spec: &AdversarialLsSpec,
        set: &RegressionSet,
        source: &str,
        seed: u64,
        device: &B::Device,
    ) -> Result<Self> {
        spec.validate()?;
        let n_test = (set.len as f64 * spec.test_fraction).floor() as usize;
        let n_train = set.len - n_test;
        if n_train < 2 {
            return Err(ProblemError::config(
                "test_fraction",
                format!(
                    "leaves {n_train} training samples of {}; at least 2 are needed",
                    set.len
                ),
            ));
        }
        let idx = split_indices(set.len, SplitSizes::new(n_train, 0, n_test), seed)?;
        let mut train = set.subset(&idx.train)?;
        let mut test = set.subset(&idx.test)?;
        let scaling = train.standardize()?;
        scaling.apply(&mut test.features)?;
        let a_host = with_intercept(&train, spec.intercept);
        let a_test = with_intercept(&test, spec.intercept);
        // M: a seeded random `weighted_fraction` of the samples, evenly spaced in
        // [σ_min, σ_max] (in the order of that draw), the rest zero.
        let k = ((n_train as f64 * spec.weighted_fraction).round() as usize).clamp(1, n_train);
        let order = split_indices(n_train, SplitSizes::new(k, 0, 0), seed ^ 0x3a7_1c35)?.train;
        let mut m_host = vec![0.0; n_train];
        for (j, &i) in order.iter().enumerate() {
            let s = if k == 1 {
                1.0
            } else {
                j as f64 / (k - 1) as f64
            };
            m_host[i] = spec.sigma_min + s * (spec.sigma_max - spec.sigma_min);
        }
        Ok(Self {
            a: matrix(&a_host.data, a_host.rows, a_host.cols, device)?,
            b: vector(&train.targets, device),
            m: vector(&m_host, device),
            a_host,
            b_host: train.targets,
            m_host,
            a_test,
            b_test: test.targets,
            lambda: spec.lambda,
            source: source.to_string(),
            spec: spec.clone(),
            device: device.clone(),
        })
    }

    /// The diagonal of `M`.
    pub fn weights(&self) -> &[f64] {
        &self.m_host
    }

    /// The training design matrix `A` (standardised features, intercept last).
    pub fn design(&self) -> &Dense {
        &self.a_host
    }

    /// The training labels `b`.
    pub fn labels(&self) -> &[f64] {
        &self.b_host
    }

    /// `φ(x) = (1/2n) (λ/(1+λ))² Σ_{m_i>0} (a_iᵀx − b_i)²` (host).
    pub fn phi(&self, x: &[f64]) -> f64 {
        let n = self.b_host.len() as f64;
        let c = self.lambda / (1.0 + self.lambda);
        let r = self.a_host.matvec(x);
        c * c / (2.0 * n)
            * r.iter()
                .zip(&self.b_host)
                .zip(&self.m_host)
                .filter(|(_, &m)| m > 0.0)
                .map(|((r, b), _)| (r - b).powi(2))
                .sum::<f64>()
    }

    /// The optimistic lower solution `argmin_{y ∈ Y*(x)} f(x, y)` (host).
    pub fn optimistic_y(&self, x: &[f64]) -> Vec<f64> {
        let r = self.a_host.matvec(x);
        r.iter()
            .zip(&self.b_host)
            .zip(&self.m_host)
            .map(|((r, b), &m)| {
                if m > 0.0 {
                    (r + self.lambda * b) / (1.0 + self.lambda)
                } else {
                    *r
                }
            })
            .collect()
    }

    /// `g(x, y) − g*(x) ≥ 0` on the full training data (host).
    pub fn lower_gap(&self, x: &[f64], y: &[f64]) -> f64 {
        let n = self.b_host.len() as f64;
        let r = self.a_host.matvec(x);
        let mut g = 0.0;
        let mut g_star = 0.0;
        for i in 0..y.len() {
            let m = self.m_host[i];
            g += m * ((r[i] - y[i]).powi(2) + self.lambda * (y[i] - self.b_host[i]).powi(2));
            g_star += m * self.lambda / (1.0 + self.lambda) * (r[i] - self.b_host[i]).powi(2);
        }
        (g - g_star) / (2.0 * n)
    }

    /// Plain mean squared error `(1/n_test) Σ (a_iᵀx − b_i)²` on the held-out samples (NaN when
    /// none are held out).
    pub fn test_mse(&self, x: &[f64]) -> f64 {
        if self.b_test.is_empty() {
            return f64::NAN;
        }
        let r = self.a_test.matvec(x);
        r.iter()
            .zip(&self.b_test)
            .map(|(r, b)| (r - b).powi(2))
            .sum::<f64>()
            / self.b_test.len() as f64
    }
}

impl<B: Backend> BilevelProblem<B> for AdversarialLs<B> {
    fn x_dim(&self) -> usize {
        self.a_host.cols
    }

    fn y_dim(&self) -> usize {
        self.a_host.rows
    }

    fn device(&self) -> B::Device {
        self.device.clone()
    }

    fn inner_len(&self) -> Option<usize> {
        Some(self.a_host.rows)
    }

    fn outer_len(&self) -> Option<usize> {
        Some(self.a_host.rows)
    }

    fn inner_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        let rows = batch.len(Some(self.a_host.rows)).max(1);
        let y = batch.rows(y);
        let fit = matvec(batch.rows(C::lift(self.a.clone())), x).sub(y.clone());
        let cost = y.sub(batch.rows(C::lift(self.b.clone())));
        let m = batch.rows(C::lift(self.m.clone()));
        fit.powi_scalar(2)
            .add(cost.powi_scalar(2).mul_scalar(self.lambda))
            .mul(m)
            .sum()
            .mul_scalar(0.5 / rows as f64)
    }

    fn outer_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        let rows = batch.len(Some(self.a_host.rows)).max(1);
        matvec(batch.rows(C::lift(self.a.clone())), x)
            .sub(batch.rows(y))
            .powi_scalar(2)
            .sum()
            .mul_scalar(0.5 / rows as f64)
    }
}

impl<B: AutodiffBackend> Application<B> for AdversarialLs<B> {
    fn id(&self) -> &'static str {
        "adversarial-ls"
    }

    fn describe(&self) -> String {
        let weighted = self.m_host.iter().filter(|&&m| m > 0.0).count();
        format!(
            "adversarial-ls (paper 003 §7.1, Example 5.4): data {}; {} training samples \
             ({weighted} with m_i > 0, evenly spaced in [{}, {}]), {} held out; {} features \
             standardised with training statistics{}; x = linear model, y = reported labels, \
             λ = {}; mse = φ(x)",
            self.source,
            self.a_host.rows,
            self.spec.sigma_min,
            self.spec.sigma_max,
            self.b_test.len(),
            self.a_host.cols - usize::from(self.spec.intercept),
            if self.spec.intercept {
                " + intercept"
            } else {
                ""
            },
            self.lambda
        )
    }

    /// `x⁰ = 0` and `y⁰ = b` (the provider starts from the true labels); deterministic.
    fn initial_point(&self, _seed: u64) -> Result<(Tensor<B, 1>, Tensor<B, 1>)> {
        Ok((
            vector(&vec![0.0; self.x_dim()], &self.device),
            vector(&self.b_host, &self.device),
        ))
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec!["mse", "test_mse", "ll_gap"]
    }

    /// `mse = φ(x)` (the paper's reported MSE), `test_mse` = plain mean squared error of `x`
    /// on the held-out samples, `ll_gap = g(x, y) − g*(x)`.
    fn evaluate(&self, x: &Tensor<B, 1>, y: &Tensor<B, 1>) -> Result<Vec<Metric>> {
        check_len("x", x, self.x_dim())?;
        check_len("y", y, self.y_dim())?;
        let xh = to_vec(x.clone())?;
        let yh = to_vec(y.clone())?;
        Ok(vec![
            Metric::new("mse", self.phi(&xh)),
            Metric::new("test_mse", self.test_mse(&xh)),
            Metric::new("ll_gap", self.lower_gap(&xh, &yh)),
        ])
    }
}
