use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::{random_matrix, QuadraticForm};
use crate::dense::Dense;
use crate::error::{BilevelError, Result};
use crate::lift::Lift;
use crate::problem::{Batch, BilevelProblem};
use crate::sampling::Rng;
use crate::tensor::{matrix, matvec, vector};

/// How to draw a [`LeastSquaresBilevel`] instance (FSLA's synthetic experiment, paper 001).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LeastSquaresSpec {
    /// Length of the upper variable `λ` (= `x`).
    pub x_dim: usize,
    /// Length of the lower variable `ω` (= `y`).
    pub y_dim: usize,
    /// Rows of the inner data `(A_λ, A_ω, b)`.
    pub inner_rows: usize,
    /// Rows of the outer data `(A_o, b_o)`.
    pub outer_rows: usize,
    /// Standard deviation of the label noise.
    pub noise: f64,
    /// Seed of the instance.
    pub seed: u64,
}

impl Default for LeastSquaresSpec {
    fn default() -> Self {
        Self {
            x_dim: 5,
            y_dim: 5,
            inner_rows: 10_000,
            outer_rows: 10_000,
            noise: 0.1,
            seed: 0,
        }
    }
}

/// `g(x, y; S) = (1/2|S|) Σ_{i∈S} (a_λ,iᵀx + a_ω,iᵀy − b_i)²`,
/// `f(x, y; S) = (1/2|S|) Σ_{i∈S} (a_o,iᵀy − b_o,i)²` (paper 001's synthetic problem, with the
/// mean and the ½ so that batch estimates are unbiased and constants stay O(1)).
///
/// [`LeastSquaresBilevel::with_outer_x_design`] adds an outer design on `x`:
/// `f(x, y; S) = (1/2|S|) Σ_{i∈S} (a_o,iᵀy + c_o,iᵀx − b_o,i)²`, so that `∇_x F ≠ 0` and a test
/// can see an estimator's `∇_x F` term (paper 001's `f` ignores `x`: a dropped or sign-flipped
/// `∇_x F` is invisible on it).
#[derive(Clone, Debug)]
pub struct LeastSquaresBilevel<B: Backend> {
    a_x: Tensor<B, 2>,
    a_y: Tensor<B, 2>,
    b: Tensor<B, 1>,
    a_o: Tensor<B, 2>,
    b_o: Tensor<B, 1>,
    /// The outer design on `x` (`outer_rows × x_dim`), if any.
    c_o: Option<Tensor<B, 2>>,
    inner_rows: usize,
    outer_rows: usize,
    form: QuadraticForm,
    device: B::Device,
}

impl<B: Backend> LeastSquaresBilevel<B> {
    /// Draws an instance: Gaussian designs, labels from a planted `(x₀, y₀)` plus noise.
    pub fn random(spec: &LeastSquaresSpec, device: &B::Device) -> Result<Self> {
        let (m, d, n, no) = (spec.x_dim, spec.y_dim, spec.inner_rows, spec.outer_rows);
        if m == 0 || d == 0 || n < d || no == 0 {
            return Err(BilevelError::invalid(
                "least-squares spec",
                format!(
                    "need x_dim, y_dim ≥ 1 and inner_rows ≥ y_dim, outer_rows ≥ 1; got {spec:?}"
                ),
            ));
        }
        let mut rng = Rng::seed(spec.seed);
        let a_x = random_matrix(n, m, 1.0, &mut rng);
        let a_y = random_matrix(n, d, 1.0, &mut rng);
        let a_o = random_matrix(no, d, 1.0, &mut rng);
        let (x0, y0) = (rng.normal_vec(m), rng.normal_vec(d));
        let noise = |rng: &mut Rng, k| {
            rng.normal_vec(k)
                .into_iter()
                .map(|e| e * spec.noise)
                .collect::<Vec<_>>()
        };
        let (e, e_o) = (noise(&mut rng, n), noise(&mut rng, no));
        let (ax0, ay0) = (a_x.matvec(&x0), a_y.matvec(&y0));
        let b: Vec<f64> = (0..n).map(|i| ax0[i] + ay0[i] + e[i]).collect();
        let ao0 = a_o.matvec(&y0);
        let b_o: Vec<f64> = (0..no).map(|i| ao0[i] + e_o[i]).collect();
        Self::new(a_x, a_y, b, a_o, b_o, device)
    }

    /// Builds the problem from explicit data (checked shapes).
    pub fn new(
        a_x: Dense,
        a_y: Dense,
        b: Vec<f64>,
        a_o: Dense,
        b_o: Vec<f64>,
        device: &B::Device,
    ) -> Result<Self> {
        let n = a_x.rows;
        let (m, d) = (a_x.cols, a_y.cols);
        let mismatch =
            |what: &str, expected: Vec<usize>, got: Vec<usize>| BilevelError::ShapeMismatch {
                what: what.into(),
                expected,
                got,
            };
        if a_y.rows != n {
            return Err(mismatch("A_ω", vec![n, d], vec![a_y.rows, d]));
        }
        if b.len() != n {
            return Err(mismatch("b", vec![n], vec![b.len()]));
        }
        if a_o.cols != d {
            return Err(mismatch("A_o", vec![a_o.rows, d], vec![a_o.rows, a_o.cols]));
        }
        if b_o.len() != a_o.rows {
            return Err(mismatch("b_o", vec![a_o.rows], vec![b_o.len()]));
        }
        let (nf, nof) = (n as f64, a_o.rows as f64);
        let scale = |mut m: Dense, s: f64| {
            m.data.iter_mut().for_each(|v| *v *= s);
            m
        };
        let a_y_t = a_y.transpose();
        let a_o_t = a_o.transpose();
        let form = QuadraticForm {
            h: scale(a_y_t.matmul(&a_y), 1.0 / nf),
            c: scale(a_y_t.matmul(&a_x), 1.0 / nf),
            d: a_y.tmatvec(&b).into_iter().map(|v| -v / nf).collect(),
            p_mat: scale(a_o_t.matmul(&a_o), 1.0 / nof),
            k: Dense::zeros(m, d),
            m: Dense::zeros(m, m),
            p: a_o.tmatvec(&b_o).into_iter().map(|v| -v / nof).collect(),
            q: vec![0.0; m],
            f0: b_o.iter().map(|v| v * v).sum::<f64>() / (2.0 * nof),
        };
        Ok(Self {
            a_x: matrix(&a_x.data, n, m, device)?,
            a_y: matrix(&a_y.data, n, d, device)?,
            b: vector(&b, device),
            a_o: matrix(&a_o.data, a_o.rows, d, device)?,
            b_o: vector(&b_o, device),
            c_o: None,
            inner_rows: n,
            outer_rows: a_o.rows,
            form,
            device: device.clone(),
        })
    }

    /// Adds the outer design `C_o` on `x` (`outer_rows × x_dim`, row `i` is `c_o,iᵀ`; see the
    /// type's documentation), replacing any earlier one, and updates the closed form:
    /// `K = C_oᵀA_o/n_o`, `M = C_oᵀC_o/n_o`, `q = −C_oᵀb_o/n_o`. The labels `b_o` are kept.
    pub fn with_outer_x_design(mut self, c_o: Dense) -> Result<Self> {
        let (no, m) = (self.outer_rows, self.form.x_dim());
        if c_o.rows != no || c_o.cols != m {
            return Err(BilevelError::ShapeMismatch {
                what: "C_o".into(),
                expected: vec![no, m],
                got: vec![c_o.rows, c_o.cols],
            });
        }
        let a_o = Dense {
            rows: no,
            cols: self.form.y_dim(),
            data: crate::tensor::to_vec(self.a_o.clone())?,
        };
        let b_o = crate::tensor::to_vec(self.b_o.clone())?;
        let inv = 1.0 / no as f64;
        let c_o_t = c_o.transpose();
        let scaled = |mut d: Dense| {
            d.data.iter_mut().for_each(|v| *v *= inv);
            d
        };
        self.form.k = scaled(c_o_t.matmul(&a_o));
        self.form.m = scaled(c_o_t.matmul(&c_o));
        self.form.q = c_o.tmatvec(&b_o).into_iter().map(|v| -v * inv).collect();
        self.c_o = Some(matrix(&c_o.data, no, m, &self.device)?);
        Ok(self)
    }

    /// The closed form of the full-data problem.
    pub fn closed_form(&self) -> &QuadraticForm {
        &self.form
    }
}

impl<B: Backend> BilevelProblem<B> for LeastSquaresBilevel<B> {
    fn x_dim(&self) -> usize {
        self.form.x_dim()
    }

    fn y_dim(&self) -> usize {
        self.form.y_dim()
    }

    fn device(&self) -> B::Device {
        self.device.clone()
    }

    fn inner_len(&self) -> Option<usize> {
        Some(self.inner_rows)
    }

    fn outer_len(&self) -> Option<usize> {
        Some(self.outer_rows)
    }

    fn inner_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        let rows = batch.len(Some(self.inner_rows)).max(1);
        let r = matvec(batch.rows(C::lift(self.a_x.clone())), x)
            .add(matvec(batch.rows(C::lift(self.a_y.clone())), y))
            .sub(batch.rows(C::lift(self.b.clone())));
        // mul_scalar, not div_scalar: the latter's backward loses f64 precision
        // (docs/ARCHITECTURE.md, "Numerics on burn 0.21").
        r.powi_scalar(2).sum().mul_scalar(0.5 / rows as f64)
    }

    fn outer_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        let rows = batch.len(Some(self.outer_rows)).max(1);
        let mut r = matvec(batch.rows(C::lift(self.a_o.clone())), y)
            .sub(batch.rows(C::lift(self.b_o.clone())));
        if let Some(c_o) = &self.c_o {
            r = r.add(matvec(batch.rows(C::lift(c_o.clone())), x));
        }
        r.powi_scalar(2).sum().mul_scalar(0.5 / rows as f64)
    }
}
