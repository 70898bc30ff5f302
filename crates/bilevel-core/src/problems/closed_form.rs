use crate::dense::{axpy, Dense};
use crate::error::{BilevelError, Result};

/// A bilevel problem with quadratic `f` and `g`, in host `f64`:
///
/// `g(x, y) = ½yᵀHy + yᵀ(Cx + d) + g₀`, `f(x, y) = ½yᵀPy + xᵀKy + ½xᵀMx + pᵀy + qᵀx + f₀`,
/// `H` SPD. Then `y*(x) = −H⁻¹(Cx + d)`, `∇²_yy g = H`, `∇_x∇_y g · v = Cᵀv`, and
/// `∇Φ(x) = ∇_x f − CᵀH⁻¹∇_y f` at `y*(x)`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuadraticForm {
    /// `H` (`n × n`, SPD).
    pub h: Dense,
    /// `C` (`n × m`).
    pub c: Dense,
    /// `d` (`n`).
    pub d: Vec<f64>,
    /// `P` (`n × n`).
    pub p_mat: Dense,
    /// `K` (`m × n`).
    pub k: Dense,
    /// `M` (`m × m`).
    pub m: Dense,
    /// `p` (`n`).
    pub p: Vec<f64>,
    /// `q` (`m`).
    pub q: Vec<f64>,
    /// Constant of `f`.
    pub f0: f64,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    axpy(a, 1.0, b)
}

impl QuadraticForm {
    /// Length of `x`.
    pub fn x_dim(&self) -> usize {
        self.c.cols
    }

    /// Length of `y`.
    pub fn y_dim(&self) -> usize {
        self.h.rows
    }

    /// `∇_y g(x, y) = Hy + Cx + d`.
    pub fn grad_y_g(&self, x: &[f64], y: &[f64]) -> Vec<f64> {
        add(&add(&self.h.matvec(y), &self.c.matvec(x)), &self.d)
    }

    /// `∇_x g(x, y) = Cᵀy`.
    pub fn grad_x_g(&self, _x: &[f64], y: &[f64]) -> Vec<f64> {
        self.c.tmatvec(y)
    }

    /// `∇²_yy g · v = Hv`.
    pub fn hvp(&self, v: &[f64]) -> Vec<f64> {
        self.h.matvec(v)
    }

    /// `∇_x∇_y g · v = Cᵀv`.
    pub fn jvp(&self, v: &[f64]) -> Vec<f64> {
        self.c.tmatvec(v)
    }

    /// `f(x, y)`.
    pub fn f(&self, x: &[f64], y: &[f64]) -> f64 {
        0.5 * dot(y, &self.p_mat.matvec(y))
            + dot(x, &self.k.matvec(y))
            + 0.5 * dot(x, &self.m.matvec(x))
            + dot(&self.p, y)
            + dot(&self.q, x)
            + self.f0
    }

    /// `∇_x f(x, y) = Mx + Ky + q`.
    pub fn grad_x_f(&self, x: &[f64], y: &[f64]) -> Vec<f64> {
        add(&add(&self.m.matvec(x), &self.k.matvec(y)), &self.q)
    }

    /// `∇_y f(x, y) = Py + Kᵀx + p`.
    pub fn grad_y_f(&self, x: &[f64], y: &[f64]) -> Vec<f64> {
        add(&add(&self.p_mat.matvec(y), &self.k.tmatvec(x)), &self.p)
    }

    /// `y*(x) = −H⁻¹(Cx + d)`.
    pub fn y_star(&self, x: &[f64]) -> Result<Vec<f64>> {
        let rhs = add(&self.c.matvec(x), &self.d);
        Ok(self.h.solve(&rhs)?.into_iter().map(|v| -v).collect())
    }

    /// `v* = H⁻¹ ∇_y f(x, y)`.
    pub fn v_star(&self, x: &[f64], y: &[f64]) -> Result<Vec<f64>> {
        self.h.solve(&self.grad_y_f(x, y))
    }

    /// `Φ(x) = f(x, y*(x))`.
    pub fn phi(&self, x: &[f64]) -> Result<f64> {
        Ok(self.f(x, &self.y_star(x)?))
    }

    /// `∇Φ(x) = ∇_x f − Cᵀ H⁻¹ ∇_y f` at `y*(x)`.
    pub fn hypergradient(&self, x: &[f64]) -> Result<Vec<f64>> {
        let y = self.y_star(x)?;
        let v = self.v_star(x, &y)?;
        Ok(axpy(&self.grad_x_f(x, &y), -1.0, &self.jvp(&v)))
    }

    /// The stationary point `x*` of `Φ` (`∇Φ` is affine in `x`; fails if it is singular).
    pub fn x_star(&self) -> Result<Vec<f64>> {
        let m = self.x_dim();
        let zero = vec![0.0; m];
        let g0 = self.hypergradient(&zero)?;
        let mut hess = Dense::zeros(m, m);
        for j in 0..m {
            let mut e = zero.clone();
            e[j] = 1.0;
            let col = axpy(&self.hypergradient(&e)?, -1.0, &g0);
            for (i, v) in col.iter().enumerate() {
                hess.set(i, j, *v);
            }
        }
        let neg: Vec<f64> = g0.iter().map(|v| -v).collect();
        hess.solve(&neg)
            .map_err(|e| BilevelError::LinearAlgebra(format!("∇²Φ is singular: {e}")))
    }
}
