//! hypergrad-check rows of the Hessian-free estimators (paper 000): PZOBO and HOZOG.
//!
//! On a quadratic problem with a fixed `y_0`, `y^N(x)` (N GD steps) is affine in `x` with
//! Jacobian `D_N`, `D_{t+1} = (I − αH) D_t − αC`, `D_0 = 0` (`∇_y g = Hy + Cx + d`), so
//! `∇Φ_N(x) = ∇_x f + D_Nᵀ ∇_y f` at `y^N` in closed form, and:
//!
//! - `pzobo_replay`: PZOBO's `δ_j` equals `D_N u_j` for any `μ`, so one estimate equals
//!   `∇_x f + (1/Q) Σ ⟨D_N u_j, ∇_y f⟩ u_j` with the `u_j` replayed from a clone of the state's
//!   RNG; relative error (round-off of the difference quotient only).
//! - `pzobo`, `hozog`: both estimators are then unbiased for `∇Φ_N` (`E[u uᵀ] = I`; HOZOG's
//!   `O(μ)` curvature term is odd in `u`). The mean of `M` independent estimates of `Q`
//!   directions each is compared with `∇Φ_N` coordinate-wise in units of its exact standard
//!   error (see [`z_score`]): value `max_i |mean_i − ∇Φ_N,i| / (4·SE_i)`, tolerance 1 (a z-test at
//!   4σ, since the maximum runs over every coordinate of every instance). With `M·Q = 150`
//!   directions the standard error is ≈ `‖w‖·√(2/150)` (`w` the estimated term below), so the
//!   test catches errors of the order of `‖w‖` — a dropped or doubled Jacobian term, a wrong
//!   direction scale — and not a 10% bias; `pzobo_replay` is the sharp check of PZOBO.

use anyhow::Result;
use bilevel_algorithms::hozog::{DirectionDistribution, Hozog, HozogConfig};
use bilevel_algorithms::pzobo::{InnerStart, Pzobo, PzoboConfig};
use bilevel_core::dense::{axpy, Dense};
use bilevel_core::problems::{QuadraticBilevel, QuadraticForm, QuadraticSpec};
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{rel_err_host, to_vec, vector};
use bilevel_core::{BilevelProblem, HypergradientEstimator, Oracle, State};

use crate::check_rows::{Options, Worst};

use super::B;

/// Round-off of `(y^N(x + μu) − y^N(x))/μ` with `μ = 1e-3`: `u_mach·‖y‖/μ ≈ 1e-13` relative.
const TOL_REPLAY: f64 = 1e-8;
/// The z-test rows pass when every coordinate lies within 4 standard errors.
const TOL_Z: f64 = 1.0;
/// Independent estimates per instance in the z-test rows.
const ESTIMATES: usize = 5;
/// Directions per estimate (`Q`) in the z-test rows.
const DIRECTIONS: usize = 30;
/// Quadratic instances (at most; `--instances` caps it) — each z-test costs
/// `ESTIMATES·(Q + 1)·N` inner gradients.
const MAX_INSTANCES: usize = 2;

/// Adds this module's rows to `worst`.
pub fn run(opts: &Options, worst: &mut Worst) -> Result<()> {
    for i in 0..opts.instances.min(MAX_INSTANCES) as u64 {
        let seed = opts.seed.wrapping_mul(7_919).wrapping_add(i) ^ 0x2e0b0;
        for (name, tol, value) in instance_rows(seed, 1.0)? {
            worst.record(name, tol, value);
        }
    }
    Ok(())
}

/// The rows of one random quadratic instance. The z-tests compare with
/// `∇_x f + scale·D_Nᵀ∇_y f` (`scale = 1`: `∇Φ_N`; other values only to show the test fails).
fn instance_rows(seed: u64, scale: f64) -> Result<[(&'static str, f64, f64); 3]> {
    let device = Default::default();
    let mut rng = Rng::seed(seed);
    let spec = QuadraticSpec {
        x_dim: 2 + rng.index(3),
        y_dim: 2 + rng.index(5),
        max_curvature: 2.0 + 8.0 * rng.uniform(),
        cross_scale: 0.5,
        seed,
        ..Default::default()
    };
    let p = QuadraticBilevel::<B>::random(&spec, &device)?;
    let form = p.closed_form();
    let (x, y0) = (rng.normal_vec(p.x_dim()), rng.normal_vec(p.y_dim()));
    let step = 1.0 / spec.max_curvature;
    let steps = 4;
    let exact = unrolled_hypergradient(form, &x, &y0, step, steps);
    // The random part of both estimators is (1/Q) Σ u_j u_jᵀ w: for PZOBO
    // w = D_Nᵀ ∇_y f = ∇Φ_N − ∇_x f, for HOZOG w = ∇Φ_N (plus an O(μ) term of negligible
    // variance).
    let y_n = gd(form, &x, &y0, step, steps);
    let grad_x_f = form.grad_x_f(&x, &y_n);
    let w = axpy(&exact, -1.0, &grad_x_f);
    let reference = axpy(&grad_x_f, scale, &w);

    let pzobo = PzoboConfig {
        inner_steps: steps,
        inner_step: step,
        directions: DIRECTIONS,
        smoothing_radius: 1e-3,
        inner_start: InnerStart::Initial,
        inner_batch: None,
        outer_batch: None,
    };
    let replay = pzobo_replay_error(&p, &pzobo, &x, &y0, seed)?;
    let samples = estimates(&mut Pzobo::new(pzobo)?, &p, &x, &y0, seed)?;
    let z_pzobo = z_score(&samples, &reference, &w) / 4.0;

    let mut hozog = Hozog::new(HozogConfig {
        inner_steps: steps,
        inner_step: step,
        directions: DIRECTIONS,
        smoothing_radius: 1e-3,
        distribution: DirectionDistribution::Gaussian,
        inner_start: InnerStart::Initial,
    })?;
    let samples = estimates(&mut hozog, &p, &x, &y0, seed)?;
    let z_hozog = z_score(&samples, &reference, &exact) / 4.0;
    Ok([
        ("pzobo_replay", TOL_REPLAY, replay),
        ("pzobo", TOL_Z, z_pzobo),
        ("hozog", TOL_Z, z_hozog),
    ])
}

/// `ESTIMATES` independent estimates at `(x, y0)` (fresh state and RNG stream each).
fn estimates<E: HypergradientEstimator<B>>(
    est: &mut E,
    p: &QuadraticBilevel<B>,
    x: &[f64],
    y0: &[f64],
    seed: u64,
) -> Result<Vec<Vec<f64>>> {
    let device = Default::default();
    let mut oracle = Oracle::new(p);
    (0..ESTIMATES as u64)
        .map(|m| {
            let mut state = State::new(
                vector::<B>(x, &device),
                vector(y0, &device),
                seed ^ (m + 1).wrapping_mul(0x9e37_79b9),
            );
            Ok(to_vec(est.estimate(&mut oracle, &mut state)?)?)
        })
        .collect()
}

/// `max_i |mean_i − exact_i| / SE_i` over the coordinates of `samples`, each sample the mean of
/// `DIRECTIONS` terms `u uᵀ w` (`u ~ N(0, I)`), whose covariance is known exactly:
/// `E[u uᵀ w wᵀ u uᵀ] − w wᵀ = ‖w‖² I + w wᵀ`, so `SE_i² = (‖w‖² + w_i²)/(M·Q)`. (The sample
/// standard error of a few dozen such heavy-tailed terms is itself too noisy for a 4σ test.)
fn z_score(samples: &[Vec<f64>], exact: &[f64], w: &[f64]) -> f64 {
    let m = samples.len() as f64;
    let draws = m * DIRECTIONS as f64;
    let w2: f64 = w.iter().map(|v| v * v).sum();
    (0..exact.len())
        .map(|i| {
            let mean = samples.iter().map(|s| s[i]).sum::<f64>() / m;
            let se = ((w2 + w[i] * w[i]) / draws).sqrt().max(1e-300);
            (mean - exact[i]).abs() / se
        })
        .fold(0.0, f64::max)
}

/// One PZOBO estimate against `∇_x f + (1/Q) Σ ⟨D_N u_j, ∇_y f⟩ u_j`, the `u_j` replayed.
fn pzobo_replay_error(
    p: &QuadraticBilevel<B>,
    cfg: &PzoboConfig,
    x: &[f64],
    y0: &[f64],
    seed: u64,
) -> Result<f64> {
    let device = Default::default();
    let form = p.closed_form();
    let mut state = State::new(vector::<B>(x, &device), vector(y0, &device), seed);
    let mut rng = state.rng.clone();
    let y = gd(form, x, y0, cfg.inner_step, cfg.inner_steps);
    let d = jacobian(form, cfg.inner_step, cfg.inner_steps);
    let gy = form.grad_y_f(x, &y);
    let mut expected = form.grad_x_f(x, &y);
    for _ in 0..cfg.directions {
        let u = rng.normal_vec(x.len());
        let coefficient: f64 = d.matvec(&u).iter().zip(&gy).map(|(a, b)| a * b).sum();
        expected = axpy(&expected, coefficient / cfg.directions as f64, &u);
    }
    let got = to_vec(Pzobo::new(*cfg)?.estimate(&mut Oracle::new(p), &mut state)?)?;
    Ok(rel_err_host(&got, &expected))
}

/// Host GD: `y ← y − α(Hy + Cx + d)`, `steps` times.
fn gd(form: &QuadraticForm, x: &[f64], y0: &[f64], step: f64, steps: usize) -> Vec<f64> {
    let mut y = y0.to_vec();
    for _ in 0..steps {
        y = axpy(&y, -step, &form.grad_y_g(x, &y));
    }
    y
}

/// `D_N = ∂y^N/∂x`: `D_{t+1} = (I − αH) D_t − αC`, `D_0 = 0`.
fn jacobian(form: &QuadraticForm, step: f64, steps: usize) -> Dense {
    let (n, m) = (form.y_dim(), form.x_dim());
    let mut contraction = Dense::scaled_identity(n, 1.0);
    for (e, h) in contraction.data.iter_mut().zip(&form.h.data) {
        *e -= step * h;
    }
    let mut d = Dense::zeros(n, m);
    for _ in 0..steps {
        d = contraction.matmul(&d);
        for (e, c) in d.data.iter_mut().zip(&form.c.data) {
            *e -= step * c;
        }
    }
    d
}

/// `∇Φ_N(x) = ∇_x f + D_Nᵀ ∇_y f` at `y^N(x)`.
fn unrolled_hypergradient(
    form: &QuadraticForm,
    x: &[f64],
    y0: &[f64],
    step: f64,
    steps: usize,
) -> Vec<f64> {
    let y = gd(form, x, y0, step, steps);
    let d = jacobian(form, step, steps);
    axpy(
        &form.grad_x_f(x, &y),
        1.0,
        &d.tmatvec(&form.grad_y_f(x, &y)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_pass_and_a_biased_reference_fails() {
        super::super::fix_f64();
        let mut worst = Worst::default();
        run(
            &Options {
                seed: 1,
                instances: 10,
                backends: Vec::new(),
            },
            &mut worst,
        )
        .unwrap();
        let names: Vec<_> = worst.0.iter().map(|r| r.name).collect();
        assert_eq!(names, ["pzobo_replay", "pzobo", "hozog"]);
        for row in &worst.0 {
            assert!(row.ok(), "{row}");
        }
        // Dropping the Jacobian term (first-order, FOMAML-like) or doubling it fails both rows.
        for scale in [0.0, 2.0] {
            let rows = instance_rows(5, scale).unwrap();
            assert!(
                rows[1].2 > 1.0 && rows[2].2 > 1.0,
                "scale {scale}: {rows:?}"
            );
        }
    }
}
