//! The equilibrium (fixed-point) layer of paper 002 §7.1:
//! `z = Ψ(z) = tanh(A z + B u + c)`, one state `z ∈ ℝᵈ` per input `u ∈ ℝᵖ`.
//!
//! # Why `‖A‖_∞ ≤ ρ < 1` makes `Ψ` a contraction
//! `tanh` is 1-Lipschitz in each coordinate, so for two states `z, z'`
//! `|Ψ(z)_i − Ψ(z')_i| ≤ |(A(z − z'))_i| ≤ Σ_j |A_ij| |z_j − z'_j| ≤ ‖A‖_∞ ‖z − z'‖_∞`,
//! where `‖A‖_∞ = max_i Σ_j |A_ij|` (max absolute row sum) is the operator norm induced by
//! `‖·‖_∞`. Hence `‖Ψ(z) − Ψ(z')‖_∞ ≤ ρ ‖z − z'‖_∞`: by Banach's theorem the fixed point
//! `z*(u)` exists, is unique, and the iteration `z ← Ψ(z)` converges to it linearly with rate `ρ`
//! from any start (for a batch, the same bound holds row by row). The ∞-norm is used (rather
//! than the spectral norm, which works too) because the set `{A : ‖A‖_∞ ≤ ρ}` is a product of
//! per-row ℓ₁ balls, so its Euclidean projection is exact and cheap ([`project_contraction`]).
//!
//! Batched convention: states and inputs are rows, `Z = tanh(Z Aᵀ + U Bᵀ + 1 cᵀ)`.

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::error::ModelError;
use crate::Result as ModelResult;

/// Configuration of an [`Equilibrium`] layer.
#[derive(Config, Debug)]
pub struct EquilibriumConfig {
    /// State width `d`.
    pub state_dim: usize,
    /// Input width `p`.
    pub input_dim: usize,
    /// `A` is initialised `U(−ρ₀/d, ρ₀/d)`, so that `‖A‖_∞ ≤ ρ₀` from the start.
    #[config(default = 0.5)]
    pub init_contraction: f64,
}

/// Parameters `A [d, d]`, `B [d, p]`, `c [d]` of `z = tanh(A z + B u + c)`.
///
/// Flat parameter order (see [`crate::flat`]): `A` row-major, `B` row-major, `c`.
#[derive(Module, Debug)]
pub struct Equilibrium<B: Backend> {
    /// State matrix `A`, `[d, d]`.
    pub a: Param<Tensor<B, 2>>,
    /// Input matrix `B`, `[d, p]`.
    pub b: Param<Tensor<B, 2>>,
    /// Offset `c`, `[d]`.
    pub c: Param<Tensor<B, 1>>,
}

/// A fixed point found by [`Equilibrium::solve`].
#[derive(Debug, Clone)]
pub struct FixedPoint<B: Backend> {
    /// The states `z*`, `[n, d]`, untracked (a constant on every autodiff level).
    pub z: Tensor<B, 2>,
    /// Applications of `Ψ` made.
    pub iterations: usize,
    /// The last step length `‖z_k − z_{k−1}‖_∞` (`z = z_k`); with `‖A‖_∞ ≤ ρ < 1`,
    /// `‖z − z*‖_∞ ≤ ρ/(1 − ρ) · residual`.
    pub residual: f64,
    /// Whether `residual ≤ tol` was reached within `max_iters`.
    pub converged: bool,
}

impl EquilibriumConfig {
    /// Checks the widths and the initial contraction factor.
    pub fn validate(&self) -> ModelResult<()> {
        if self.state_dim == 0 || self.input_dim == 0 {
            return Err(ModelError::invalid(
                "state_dim/input_dim",
                "widths must be positive",
            ));
        }
        if !(0.0..1.0).contains(&self.init_contraction) {
            return Err(ModelError::invalid(
                "init_contraction",
                format!("must lie in [0, 1), got {}", self.init_contraction),
            ));
        }
        Ok(())
    }

    /// A layer with lazily initialised parameters: `A ~ U(−ρ₀/d, ρ₀/d)` (so `‖A‖_∞ ≤ ρ₀`),
    /// `B` with burn's default linear initialisation, `c = 0`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Equilibrium<B> {
        let (d, p) = (self.state_dim, self.input_dim);
        let r = self.init_contraction / d as f64;
        let a = Initializer::Uniform { min: -r, max: r }.init_with([d, d], None, None, device);
        let b = Initializer::KaimingUniform {
            gain: 1.0 / 3.0f64.sqrt(),
            fan_out_only: false,
        }
        .init_with([d, p], Some(p), Some(d), device);
        let c = Initializer::Zeros.init_with([d], None, None, device);
        Equilibrium { a, b, c }
    }

    /// Number of parameters `d² + d·p + d`.
    pub fn num_params(&self) -> usize {
        let (d, p) = (self.state_dim, self.input_dim);
        d * d + d * p + d
    }
}

impl<B: Backend> Equilibrium<B> {
    /// `(d, p)`: state and input widths.
    pub fn dims(&self) -> (usize, usize) {
        let [d, p] = self.b.lazy_shape().dims();
        (d, p)
    }

    /// One application of the map, `Ψ(z) = tanh(z Aᵀ + u Bᵀ + c)` row by row (for problems in
    /// contraction form, where the states are the lower-level variable).
    ///
    /// # Shapes
    /// - `z`: `[n, d]`
    /// - `u`: `[n, p]`
    /// - output: `[n, d]`
    pub fn forward_map(&self, z: Tensor<B, 2>, u: Tensor<B, 2>) -> Tensor<B, 2> {
        Self::map_with(self.a.val(), self.b.val(), self.c.val(), z, u)
    }

    /// The input term `u Bᵀ + c`, which does not change along a fixed-point iteration.
    ///
    /// # Shapes
    /// - `u`: `[n, p]`
    /// - output: `[n, d]`
    pub fn input_term(&self, u: Tensor<B, 2>) -> Tensor<B, 2> {
        let c = self.c.val();
        let d = c.dims()[0];
        u.matmul(self.b.val().transpose()).add(c.reshape([1, d]))
    }

    fn map_with(
        a: Tensor<B, 2>,
        b: Tensor<B, 2>,
        c: Tensor<B, 1>,
        z: Tensor<B, 2>,
        u: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let d = c.dims()[0];
        z.matmul(a.transpose())
            .add(u.matmul(b.transpose()))
            .add(c.reshape([1, d]))
            .tanh()
    }

    /// The fixed point `z* = Ψ(z*)` by the iteration `z ← Ψ(z)` from `z = 0`, stopping when
    /// `‖Ψ(z) − z‖_∞ ≤ tol` or after `max_iters` applications.
    ///
    /// This is the lower-level *solution*, not part of any graph: parameters and inputs are
    /// copied into fresh untracked tensors first, so no autodiff level records the iteration
    /// (on a GPU this costs one host round trip of `A`, `B`, `c` and `u`). With
    /// `‖A‖_∞ ≤ ρ < 1` the error after `k` steps is at most `ρᵏ/(1 − ρ) · ‖Ψ(0)‖_∞`.
    ///
    /// # Shapes
    /// - `u`: `[n, p]`
    /// - `FixedPoint::z`: `[n, d]`
    pub fn solve(&self, u: Tensor<B, 2>, max_iters: usize, tol: f64) -> FixedPoint<B> {
        let device = u.device();
        let a: Tensor<B, 2> = Tensor::from_data(self.a.val().into_data(), &device);
        let b: Tensor<B, 2> = Tensor::from_data(self.b.val().into_data(), &device);
        let c: Tensor<B, 1> = Tensor::from_data(self.c.val().into_data(), &device);
        let u: Tensor<B, 2> = Tensor::from_data(u.into_data(), &device);
        let d = c.dims()[0];
        let n = u.dims()[0];
        // The input term is constant along the iteration.
        let offset = u.matmul(b.transpose()).add(c.reshape([1, d]));
        let a_t = a.transpose();
        let mut z = Tensor::<B, 2>::zeros([n, d], &device);
        let mut residual = f64::INFINITY;
        let mut iterations = 0;
        while iterations < max_iters {
            let next = z.clone().matmul(a_t.clone()).add(offset.clone()).tanh();
            residual = host_scalar(next.clone().sub(z).abs().max());
            z = next;
            iterations += 1;
            if residual <= tol {
                break;
            }
        }
        FixedPoint {
            z,
            iterations,
            residual,
            converged: residual <= tol,
        }
    }

    /// `‖A‖_∞ = max_i Σ_j |A_ij|`, the contraction factor of `Ψ` in `‖·‖_∞` (host scalar).
    pub fn contraction_factor(&self) -> f64 {
        infinity_norm(self.a.val())
    }
}

/// `‖A‖_∞ = max_i Σ_j |A_ij|` (max absolute row sum), as a host scalar.
///
/// # Shapes
/// - `a`: `[d, d']`
pub fn infinity_norm<B: Backend>(a: Tensor<B, 2>) -> f64 {
    host_scalar(a.abs().sum_dim(1).max())
}

fn check_contraction_args(len: usize, d: usize, rho: f64) -> ModelResult<()> {
    if len != d * d {
        return Err(ModelError::ParamCount {
            expected: d * d,
            got: len,
        });
    }
    if !(rho > 0.0 && rho < 1.0) {
        return Err(ModelError::invalid(
            "rho",
            format!("the contraction factor must lie in (0, 1), got {rho}"),
        ));
    }
    Ok(())
}

/// Euclidean projection of `A` (given flat, row-major, `d·d` entries) onto the closed convex
/// set `{A : ‖A‖_∞ ≤ ρ}`, `0 < ρ < 1`, which makes `Ψ` a `ρ`-contraction (see the module docs).
///
/// The set is the product of the ℓ₁ balls `{a_i : ‖a_i‖₁ ≤ ρ}` of the rows, so the projection is
/// row by row: a row inside its ball is kept, a row outside is soft-thresholded,
/// `a_ij ← sign(a_ij) max(|a_ij| − θ_i, 0)` with `θ_i` such that the new row has `‖·‖₁ = ρ`
/// (sort-based, Duchi et al. 2008). Rows already inside the ball (up to a relative `1e-12`
/// for rounding) are unchanged, so a matrix with `‖A‖_∞ ≤ ρ` is returned as is and the
/// projection is idempotent. Computed on the host in `f64` (one round trip); the
/// result is an untracked tensor on the input's device.
///
/// # Errors
/// [`ModelError::ParamCount`] when `a_flat` does not have `d²` entries;
/// [`ModelError::InvalidConfig`] unless `0 < rho < 1`.
pub fn project_contraction<B: Backend>(
    a_flat: Tensor<B, 1>,
    d: usize,
    rho: f64,
) -> ModelResult<Tensor<B, 1>> {
    check_contraction_args(a_flat.dims()[0], d, rho)?;
    let device = a_flat.device();
    let mut values: Vec<f64> = a_flat
        .into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .map_err(|e| ModelError::invalid("a_flat", format!("{e:?}")))?;
    for row in values.chunks_mut(d.max(1)) {
        project_l1_ball(row, rho);
    }
    let data = TensorData::new(values, [d * d]);
    Ok(Tensor::from_data(data, &device))
}

/// `A · min(1, ρ/‖A‖_∞)`: a cheaper way (on the device, no sort) into `{‖A‖_∞ ≤ ρ}`. Not the
/// Euclidean projection (it shrinks every row, not only those outside their ball), but it
/// keeps the direction of `A`.
///
/// # Errors
/// As [`project_contraction`].
pub fn rescale_contraction<B: Backend>(
    a_flat: Tensor<B, 1>,
    d: usize,
    rho: f64,
) -> ModelResult<Tensor<B, 1>> {
    check_contraction_args(a_flat.dims()[0], d, rho)?;
    let norm = infinity_norm(a_flat.clone().reshape([d, d]));
    Ok(if norm > rho {
        a_flat.mul_scalar(rho / norm)
    } else {
        a_flat
    })
}

/// Relative slack under which a row counts as inside its ball: a projected row's ℓ₁ norm is
/// `radius` up to rounding, and must not be projected again (projection is idempotent).
const INSIDE_SLACK: f64 = 1e-12;

/// In-place Euclidean projection of `row` onto `{v : ‖v‖₁ ≤ radius}` (rows within
/// `radius·(1 + 1e-12)` are kept as they are).
fn project_l1_ball(row: &mut [f64], radius: f64) {
    let l1: f64 = row.iter().map(|v| v.abs()).sum();
    if l1 <= radius * (1.0 + INSIDE_SLACK) {
        return;
    }
    let mut mags: Vec<f64> = row.iter().map(|v| v.abs()).collect();
    mags.sort_by(|a, b| b.total_cmp(a));
    // θ = (Σ_{j≤ρ*} μ_j − radius)/ρ*, ρ* the largest j with μ_j > (Σ_{i≤j} μ_i − radius)/j.
    let mut cumsum = 0.0;
    let mut theta = 0.0;
    for (j, &m) in mags.iter().enumerate() {
        cumsum += m;
        let t = (cumsum - radius) / (j + 1) as f64;
        if m > t {
            theta = t;
        } else {
            break;
        }
    }
    for v in row.iter_mut() {
        *v = v.signum() * (v.abs() - theta).max(0.0);
    }
}

/// A one-element tensor as `f64`, read in the tensor's own dtype (`into_scalar` goes through
/// `B::FloatElem`, which is f32 on Flex even when the tensor holds f64).
fn host_scalar<B: Backend, const D: usize>(t: Tensor<B, D>) -> f64 {
    t.into_data().iter::<f64>().next().unwrap_or(f64::NAN)
}
