use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::{check_curvatures, random_matrix, random_spd, QuadraticForm};
use crate::dense::Dense;
use crate::error::{BilevelError, Result};
use crate::lift::Lift;
use crate::problem::{Batch, BilevelProblem};
use crate::sampling::Rng;
use crate::tensor::{matrix, matvec, vector};

/// How to draw a random [`QuadraticBilevel`] instance.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuadraticSpec {
    /// Length of `x`.
    pub x_dim: usize,
    /// Length of `y`.
    pub y_dim: usize,
    /// Smallest eigenvalue of `A` (the inner strong-convexity constant `μ_g`).
    pub min_curvature: f64,
    /// Largest eigenvalue of `A` (the inner smoothness constant `L_g`); eigenvalues are
    /// log-spaced between the two, so the condition number is their ratio.
    pub max_curvature: f64,
    /// Weight `μ` of `½μ‖x‖²` in `f`.
    pub x_regularization: f64,
    /// Standard deviation of the entries of the cross term `K` (0 drops `xᵀKy`).
    pub cross_scale: f64,
    /// Seed of the instance.
    pub seed: u64,
}

impl Default for QuadraticSpec {
    fn default() -> Self {
        Self {
            x_dim: 5,
            y_dim: 8,
            min_curvature: 1.0,
            max_curvature: 10.0,
            x_regularization: 0.1,
            cross_scale: 0.1,
            seed: 0,
        }
    }
}

impl QuadraticSpec {
    /// Checks dimensions and the spectrum.
    pub fn validate(&self) -> Result<()> {
        if self.x_dim == 0 || self.y_dim == 0 {
            return Err(BilevelError::invalid(
                "x_dim/y_dim",
                "dimensions must be ≥ 1",
            ));
        }
        check_curvatures(self.min_curvature, self.max_curvature)?;
        if !(self.x_regularization >= 0.0 && self.cross_scale >= 0.0) {
            return Err(BilevelError::invalid(
                "x_regularization/cross_scale",
                "must be ≥ 0",
            ));
        }
        Ok(())
    }
}

/// The deterministic quadratic bilevel problem
/// `g = ½yᵀAy − yᵀ(Bx + c)`, `f = ½‖y − t‖² + ½μ‖x‖² + xᵀKy`.
#[derive(Clone, Debug)]
pub struct QuadraticBilevel<B: Backend> {
    a: Tensor<B, 2>,
    b: Tensor<B, 2>,
    c: Tensor<B, 1>,
    t: Tensor<B, 1>,
    k: Tensor<B, 2>,
    mu: f64,
    form: QuadraticForm,
    device: B::Device,
}

impl<B: Backend> QuadraticBilevel<B> {
    /// Draws an instance from `spec`.
    pub fn random(spec: &QuadraticSpec, device: &B::Device) -> Result<Self> {
        spec.validate()?;
        let (m, n) = (spec.x_dim, spec.y_dim);
        let mut rng = Rng::seed(spec.seed);
        let a = random_spd(n, spec.min_curvature, spec.max_curvature, &mut rng);
        let b = random_matrix(n, m, 1.0 / (m as f64).sqrt(), &mut rng);
        let c = rng.normal_vec(n);
        let t = rng.normal_vec(n);
        let k = random_matrix(m, n, spec.cross_scale, &mut rng);
        Self::new(a, b, c, t, k, spec.x_regularization, device)
    }

    /// Builds the problem from explicit matrices (`A` must be SPD; checked shapes).
    pub fn new(
        a: Dense,
        b: Dense,
        c: Vec<f64>,
        t: Vec<f64>,
        k: Dense,
        mu: f64,
        device: &B::Device,
    ) -> Result<Self> {
        let n = a.rows;
        let m = b.cols;
        let shape_err =
            |what: &str, expected: Vec<usize>, got: Vec<usize>| BilevelError::ShapeMismatch {
                what: what.into(),
                expected,
                got,
            };
        if a.cols != n {
            return Err(shape_err("A", vec![n, n], vec![a.rows, a.cols]));
        }
        if b.rows != n {
            return Err(shape_err("B", vec![n, m], vec![b.rows, b.cols]));
        }
        if c.len() != n {
            return Err(shape_err("c", vec![n], vec![c.len()]));
        }
        if t.len() != n {
            return Err(shape_err("t", vec![n], vec![t.len()]));
        }
        if k.rows != m || k.cols != n {
            return Err(shape_err("K", vec![m, n], vec![k.rows, k.cols]));
        }
        let form = QuadraticForm {
            h: a.clone(),
            c: Dense {
                rows: n,
                cols: m,
                data: b.data.iter().map(|v| -v).collect(),
            },
            d: c.iter().map(|v| -v).collect(),
            p_mat: Dense::scaled_identity(n, 1.0),
            k: k.clone(),
            m: Dense::scaled_identity(m, mu),
            p: t.iter().map(|v| -v).collect(),
            q: vec![0.0; m],
            f0: 0.5 * t.iter().map(|v| v * v).sum::<f64>(),
        };
        Ok(Self {
            a: matrix(&a.data, n, n, device)?,
            b: matrix(&b.data, n, m, device)?,
            c: vector(&c, device),
            t: vector(&t, device),
            k: matrix(&k.data, m, n, device)?,
            mu,
            form,
            device: device.clone(),
        })
    }

    /// The closed form of this instance.
    pub fn closed_form(&self) -> &QuadraticForm {
        &self.form
    }
}

impl<B: Backend> BilevelProblem<B> for QuadraticBilevel<B> {
    fn x_dim(&self) -> usize {
        self.form.x_dim()
    }

    fn y_dim(&self) -> usize {
        self.form.y_dim()
    }

    fn device(&self) -> B::Device {
        self.device.clone()
    }

    fn inner_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        _batch: &Batch,
    ) -> Tensor<C, 1> {
        let ay = matvec(C::lift(self.a.clone()), y.clone());
        let shift = matvec(C::lift(self.b.clone()), x).add(C::lift(self.c.clone()));
        y.clone()
            .mul(ay)
            .sum()
            .mul_scalar(0.5)
            .sub(y.mul(shift).sum())
    }

    fn outer_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        _batch: &Batch,
    ) -> Tensor<C, 1> {
        let r = y.clone().sub(C::lift(self.t.clone()));
        let ky = matvec(C::lift(self.k.clone()), y);
        r.powi_scalar(2)
            .sum()
            .mul_scalar(0.5)
            .add(x.clone().powi_scalar(2).sum().mul_scalar(0.5 * self.mu))
            .add(x.mul(ky).sum())
    }
}
