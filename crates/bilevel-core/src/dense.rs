//! Host-side dense `f64` linear algebra for closed-form references (small problems only).
//!
//! Independent of burn on purpose: the closed forms that tests compare against must not share
//! code paths with what they test.

use crate::error::{BilevelError, Result};

/// A row-major `rows × cols` matrix.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Dense {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Row-major entries.
    pub data: Vec<f64>,
}

impl Dense {
    /// All zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// The identity times `scale`.
    pub fn scaled_identity(n: usize, scale: f64) -> Self {
        let mut m = Self::zeros(n, n);
        for i in 0..n {
            m.data[i * n + i] = scale;
        }
        m
    }

    /// Entry `(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.cols + j]
    }

    /// Sets entry `(i, j)`.
    pub fn set(&mut self, i: usize, j: usize, v: f64) {
        self.data[i * self.cols + j] = v;
    }

    /// `self · v`.
    pub fn matvec(&self, v: &[f64]) -> Vec<f64> {
        assert_eq!(v.len(), self.cols, "Dense::matvec: length mismatch");
        (0..self.rows)
            .map(|i| {
                self.data[i * self.cols..(i + 1) * self.cols]
                    .iter()
                    .zip(v)
                    .map(|(a, b)| a * b)
                    .sum()
            })
            .collect()
    }

    /// `selfᵀ · v`.
    pub fn tmatvec(&self, v: &[f64]) -> Vec<f64> {
        assert_eq!(v.len(), self.rows, "Dense::tmatvec: length mismatch");
        let mut out = vec![0.0; self.cols];
        for (i, vi) in v.iter().enumerate() {
            for (j, o) in out.iter_mut().enumerate() {
                *o += self.data[i * self.cols + j] * vi;
            }
        }
        out
    }

    /// `selfᵀ`.
    pub fn transpose(&self) -> Self {
        let mut t = Self::zeros(self.cols, self.rows);
        for i in 0..self.rows {
            for j in 0..self.cols {
                t.set(j, i, self.get(i, j));
            }
        }
        t
    }

    /// `self · other`.
    pub fn matmul(&self, other: &Dense) -> Self {
        assert_eq!(
            self.cols, other.rows,
            "Dense::matmul: inner dimension mismatch"
        );
        let mut out = Self::zeros(self.rows, other.cols);
        for i in 0..self.rows {
            for k in 0..self.cols {
                let a = self.get(i, k);
                for j in 0..other.cols {
                    out.data[i * other.cols + j] += a * other.get(k, j);
                }
            }
        }
        out
    }

    /// Solves `self · z = b` by Gaussian elimination with partial pivoting.
    pub fn solve(&self, b: &[f64]) -> Result<Vec<f64>> {
        let n = self.rows;
        if self.cols != n || b.len() != n {
            return Err(BilevelError::LinearAlgebra(format!(
                "solve needs a square system, got {}×{} with rhs {}",
                self.rows,
                self.cols,
                b.len()
            )));
        }
        let mut a = self.data.clone();
        let mut z = b.to_vec();
        for col in 0..n {
            let pivot = (col..n)
                .max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))
                .unwrap_or(col);
            if a[pivot * n + col].abs() < 1e-300 {
                return Err(BilevelError::LinearAlgebra("matrix is singular".into()));
            }
            if pivot != col {
                for j in 0..n {
                    a.swap(col * n + j, pivot * n + j);
                }
                z.swap(col, pivot);
            }
            for i in col + 1..n {
                let factor = a[i * n + col] / a[col * n + col];
                if factor != 0.0 {
                    for j in col..n {
                        a[i * n + j] -= factor * a[col * n + j];
                    }
                    z[i] -= factor * z[col];
                }
            }
        }
        for i in (0..n).rev() {
            let s: f64 = (i + 1..n).map(|j| a[i * n + j] * z[j]).sum();
            z[i] = (z[i] - s) / a[i * n + i];
        }
        Ok(z)
    }
}

/// `a + s·b`.
pub fn axpy(a: &[f64], s: f64, b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + s * y).collect()
}

/// Euclidean norm.
pub fn norm(a: &[f64]) -> f64 {
    a.iter().map(|v| v * v).sum::<f64>().sqrt()
}
