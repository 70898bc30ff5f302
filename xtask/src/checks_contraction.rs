//! hypergrad-check rows of SID (paper 002; `bilevel_algorithms::sid`) against closed forms.
//!
//! - `sid`: Monte-Carlo MSE `E‖ĝ − ∇Φ(x)‖²` ([`DRAWS`] draws) of stochastic SID (harmonic
//!   steps, no warm start) on a `LeastSquaresBilevel` in minimisation form (`Ψ = w − γ∇_w G`,
//!   `γ = 1/L`, `L` the largest eigenvalue of the closed form's inner Hessian `h`, a contraction
//!   since `γ < 2/L`) at `t = k = s ∈ {2, 8, 32}`; the row is the largest ratio
//!   `MSE(next level) / MSE(level)`.
//! - `sid_t`, `sid_k`, `sid_s`: `MSE(large) / MSE(small)` when only one size grows:
//!   `t: 1 → 8` and `k: 1 → 8` (others `8`, `s = 256`), `s: 1 → 256` (`t = k = 8`).
//! - `sid_deterministic`: full batches, constant `η = 1`, large `t = k`: relative error of `ĝ`
//!   against `∇Φ(x)` on the least-squares problem and on random quadratic instances.
//! - `alset`: ALSET (paper 002's Tables 3-4: `t = 1` from a warm-started lower level, a cold
//!   linear solve of `k` steps), full batches, `η = 1`, from `w_0 = y*(x)` (where a warm start
//!   has converged): one LL step keeps `w = y*`, and the cold `k = 120`-step solve leaves a bias
//!   `q^k ≈ 2e-12`; relative error against `∇Φ(x)` on random quadratic instances. The pre-#19
//!   `alset()` (= ALSET†, one warm LS step) fails it (0.96, tried).
//! - `alset_dagger`: ALSET† (`t = k = 1`, both warm-started) from its fixed point
//!   `(y*(x), v*)`, `v* = (γH)⁻¹∇_y f`: one step of each stays there, so `ĝ = ∇Φ(x)` to
//!   round-off; a dropped `∇_w F` in the LS step moves `v` off `v*` (0.33, tried).
//! - `sid_contraction`: the same with the problem's own contraction map, a linear map
//!   `Ψ(w, x) = Aw + Bx + c` with non-symmetric `A`, `‖A‖₂ ≤ 0.6` (so a transpose error in
//!   `∂_wΨᵀv` shows), against `∇Φ = μx + Bᵀ(I − A)⁻ᵀ(w* − t)`.

use anyhow::Result;
use bilevel_algorithms::sid::{InnerStepSchedule, LowerLevel, Sid, SidConfig};
use bilevel_core::dense::{norm, Dense};
use bilevel_core::problems::{
    LeastSquaresBilevel, LeastSquaresSpec, QuadraticBilevel, QuadraticForm, QuadraticSpec,
};
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{matrix, matvec, rel_err_host, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, HypergradientEstimator, Lift, Oracle, State};
use burn::tensor::Tensor;

use crate::check_rows::{Options, Worst};

use super::B;

/// Monte-Carlo draws per MSE estimate.
const DRAWS: usize = 20;
/// Levels of `t = k = s`.
const LEVELS: [usize; 3] = [2, 8, 32];
/// A ratio must be at most this: the MSE falls by at least 30% (observed over seeds 0–7:
/// `sid` 0.23–0.51, `sid_t` 0.23–0.57, `sid_k` 0.19–0.55, `sid_s` 0.03–0.27; the 1/n rate
/// would give 0.25 for the chain).
const TOL_RATIO: f64 = 0.7;
/// Tolerance of the deterministic estimates (bias `q^t`, `q^k` driven below round-off).
const TOL_DETERMINISTIC: f64 = 1e-6;

fn t(v: &[f64]) -> Tensor<B, 1> {
    vector(v, &Default::default())
}

/// Largest eigenvalue of a symmetric PSD matrix (power iteration).
fn max_eigenvalue(h: &Dense) -> f64 {
    let mut v = vec![1.0; h.rows];
    let mut lambda = 0.0;
    for _ in 0..300 {
        let w = h.matvec(&v);
        lambda = norm(&w);
        v = w.into_iter().map(|x| x / lambda).collect();
    }
    lambda
}

/// Adds this module's rows to `worst`.
pub fn run(opts: &Options, worst: &mut Worst) -> Result<()> {
    let device = Default::default();
    let spec = LeastSquaresSpec {
        inner_rows: 2_000,
        outer_rows: 2_000,
        seed: opts.seed,
        ..Default::default()
    };
    let ls = LeastSquaresBilevel::<B>::random(&spec, &device)?;
    let form = ls.closed_form();
    let l = max_eigenvalue(&form.h);
    let mut rng = Rng::seed(opts.seed ^ 0x51d);
    let x = rng.normal_vec(ls.x_dim());
    {
        let corr = correlated(2, 5, 2_000, opts.seed)?;
        let cform = corr.closed_form();
        let cl = max_eigenvalue(&cform.h);
        // A point with ‖∇Φ(x)‖ = 2 (∇Φ is affine), so that the bias of small t and k is not
        // dwarfed by the variance of the estimate (which stays O(1) even at x*).
        let xs = cform.x_star()?;
        let dir = rng.normal_vec(2);
        let probe: Vec<f64> = xs.iter().zip(&dir).map(|(a, e)| a + e).collect();
        let scale = 2.0 / norm(&cform.hypergradient(&probe)?);
        let cx: Vec<f64> = xs.iter().zip(&dir).map(|(a, e)| a + scale * e).collect();
        mse_rows(&corr, cform, cl, &cx, opts.seed, worst)?;
    }

    // Deterministic: full batches, η = 1, contraction factor q = 1 − μ/L.
    let full = |steps: usize, gamma: f64| SidConfig {
        lower_level: LowerLevel::GradientStep { step: gamma },
        inner_steps: steps,
        linear_steps: steps,
        batch_size: None,
        inner_batch: None,
        linear_batch: None,
        inner_step_schedule: InnerStepSchedule::Constant { step: 1.0 },
        ..Default::default()
    };
    let g = estimate(&ls, &x, full(40, 1.0 / l), 0)?;
    worst.record(
        "sid_deterministic",
        TOL_DETERMINISTIC,
        rel_err_host(&g, &form.hypergradient(&x)?),
    );
    for i in 0..opts.instances.min(3) as u64 {
        let seed = opts.seed.wrapping_mul(7_919).wrapping_add(i);
        let spec = QuadraticSpec {
            x_dim: 1 + (seed % 4) as usize,
            y_dim: 2 + (seed % 5) as usize,
            max_curvature: 5.0,
            seed,
            ..Default::default()
        };
        let quad = QuadraticBilevel::<B>::random(&spec, &device)?;
        let x = Rng::seed(seed).normal_vec(spec.x_dim);
        // γ = 1/L, q = 1 − 1/κ = 0.8: 0.8^120 ≈ 2e-12.
        let g = estimate(&quad, &x, full(120, 1.0 / spec.max_curvature), 0)?;
        worst.record(
            "sid_deterministic",
            TOL_DETERMINISTIC,
            rel_err_host(&g, &quad.closed_form().hypergradient(&x)?),
        );
    }

    // ALSET and ALSET† at their warm-started fixed points, on random quadratic instances.
    for i in 0..opts.instances.min(3) as u64 {
        let seed = opts.seed.wrapping_mul(6_151).wrapping_add(i) ^ 0xa15e7;
        let spec = QuadraticSpec {
            x_dim: 1 + (seed % 3) as usize,
            y_dim: 2 + (seed % 4) as usize,
            max_curvature: 5.0,
            seed,
            ..Default::default()
        };
        let quad = QuadraticBilevel::<B>::random(&spec, &device)?;
        let form = quad.closed_form();
        let x = Rng::seed(seed).normal_vec(spec.x_dim);
        let y_star = form.y_star(&x)?;
        let exact = form.hypergradient(&x)?;
        let gamma = 1.0 / spec.max_curvature;
        let alset = full(120, gamma).alset();
        let g = estimate_from(&quad, &x, &y_star, &vec![0.0; spec.y_dim], alset)?;
        worst.record("alset", TOL_DETERMINISTIC, rel_err_host(&g, &exact));
        // v* = (γH)⁻¹ ∇_y f at y*: v_star() solves H v = ∇_y f.
        let v_star: Vec<f64> = form
            .v_star(&x, &y_star)?
            .into_iter()
            .map(|v| v / gamma)
            .collect();
        let dagger = full(1, gamma).alset_dagger();
        let g = estimate_from(&quad, &x, &y_star, &v_star, dagger)?;
        worst.record("alset_dagger", TOL_DETERMINISTIC, rel_err_host(&g, &exact));
    }

    // The problem's own (non-symmetric, linear) contraction map.
    let map = LinearMap::random(3, 6, opts.seed)?;
    let x = Rng::seed(opts.seed ^ 0xc0).normal_vec(3);
    let config = SidConfig {
        lower_level: LowerLevel::Contraction,
        ..full(80, 1.0)
    };
    let g = estimate(&map, &x, config, 0)?;
    worst.record(
        "sid_contraction",
        TOL_DETERMINISTIC,
        rel_err_host(&g, &map.hypergradient(&x)?),
    );
    Ok(())
}

/// One SID estimate at `x` from a fresh state seeded with `seed`.
fn estimate<P: BilevelProblem<B>>(
    p: &P,
    x: &[f64],
    config: SidConfig,
    seed: u64,
) -> Result<Vec<f64>> {
    let mut state = State::new(t(x), t(&vec![0.0; p.y_dim()]), seed);
    let mut oracle = Oracle::new(p);
    let g = Sid::new(config)?.estimate(&mut oracle, &mut state)?;
    Ok(to_vec(g)?)
}

/// One SID estimate at `x` from `state.y = y`, `state.v = v` (read by the warm-start variants).
fn estimate_from<P: BilevelProblem<B>>(
    p: &P,
    x: &[f64],
    y: &[f64],
    v: &[f64],
    config: SidConfig,
) -> Result<Vec<f64>> {
    let mut state = State::new(t(x), t(y), 0);
    state.v = t(v);
    let mut oracle = Oracle::new(p);
    let g = Sid::new(config)?.estimate(&mut oracle, &mut state)?;
    Ok(to_vec(g)?)
}

/// `E‖ĝ − ∇Φ(x)‖²` over [`DRAWS`] independent estimates.
fn mse<P: BilevelProblem<B>>(
    p: &P,
    x: &[f64],
    exact: &[f64],
    config: SidConfig,
    seed: u64,
) -> Result<f64> {
    let mut total = 0.0;
    for d in 0..DRAWS as u64 {
        let g = estimate(p, x, config, seed.wrapping_mul(1_000).wrapping_add(d))?;
        total += g
            .iter()
            .zip(exact)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>();
    }
    Ok(total / DRAWS as f64)
}

fn mse_rows(
    ls: &LeastSquaresBilevel<B>,
    form: &QuadraticForm,
    l: f64,
    x: &[f64],
    seed: u64,
    worst: &mut Worst,
) -> Result<()> {
    let exact = form.hypergradient(x)?;
    let config = |t: usize, k: usize, s: usize| SidConfig {
        lower_level: LowerLevel::GradientStep { step: 1.0 / l },
        inner_steps: t,
        linear_steps: k,
        batch_size: Some(s),
        // 10 samples per LL/LS step (the paper takes 1): with one sample the variance of the
        // stochastic LS grows over its first steps faster than its bias falls, so at these
        // small k the MSE is not yet monotone in k (the O(1/k) rate is asymptotic).
        inner_batch: Some(10),
        linear_batch: Some(10),
        // η_j = β/(c + j), β = 2 > 1/(1 − q) = 1/(γμ) ≈ κ ≈ 1.2 (paper 002 Thm. 8 via Grazzi et
        // al. 2021 Thm. 4.2), c = 10 so that η_0 γ ‖a‖² = 0.2 · 5 / L ≈ 1 for one row a.
        inner_step_schedule: InnerStepSchedule::harmonic(2.0, 10.0),
        ..Default::default()
    };
    let mut by_level = Vec::new();
    for &n in &LEVELS {
        by_level.push(mse(ls, x, &exact, config(n, n, n), seed)?);
    }
    let ratio = by_level.windows(2).map(|w| w[1] / w[0]).fold(0.0, f64::max);
    println!(
        "sid: MSE at t=k=s={LEVELS:?}: {:?} (‖∇Φ‖² = {:.3e})",
        by_level
            .iter()
            .map(|m| format!("{m:.3e}"))
            .collect::<Vec<_>>(),
        exact.iter().map(|v| v * v).sum::<f64>()
    );
    worst.record("sid", TOL_RATIO, ratio);
    // One size at a time: 1 → 8 for t and k with s = 256 (s costs samples, not oracle calls,
    // and a large s keeps the other variance terms small); s: 1 → 256 at t = k = 8.
    let base = mse(ls, x, &exact, config(8, 8, 256), seed)?;
    for (name, c) in [
        ("sid_t", config(1, 8, 256)),
        ("sid_k", config(8, 1, 256)),
        ("sid_s", config(8, 8, 1)),
    ] {
        let small = mse(ls, x, &exact, c, seed)?;
        println!("{name}: MSE {small:.3e} → {base:.3e}");
        worst.record(name, TOL_RATIO, base / small);
    }
    Ok(())
}

/// A least-squares instance whose `x`-features are those of `y` plus noise
/// (`A_x = A_y[:, :m] + 0.5·N`): with `LeastSquaresBilevel::random`'s independent features,
/// `∇_x∇_y g = A_yᵀA_x/n` is O(1/√n), so `‖∇Φ‖² ≈ 1e-4` while one-sample Jacobians are O(1) and
/// `ĝ ≈ 0` beats every honest estimate; here `∇Φ` is O(1).
fn correlated(
    x_dim: usize,
    y_dim: usize,
    rows: usize,
    seed: u64,
) -> Result<LeastSquaresBilevel<B>> {
    let mut rng = Rng::seed(seed ^ 0xc0de);
    // Rademacher (±s) entries: bounded rows keep the one-sample products light-tailed.
    let mut gauss = |r: usize, c: usize, s: f64| Dense {
        rows: r,
        cols: c,
        data: (0..r * c)
            .map(|_| if rng.uniform() < 0.5 { -s } else { s })
            .collect(),
    };
    let a_y = gauss(rows, y_dim, 1.0);
    let mut a_x = gauss(rows, x_dim, 0.5);
    for i in 0..rows {
        for j in 0..x_dim {
            a_x.set(i, j, a_x.get(i, j) + a_y.get(i, j));
        }
    }
    let a_o = gauss(rows, y_dim, 1.0);
    let (x0, y0) = (gauss(x_dim, 1, 1.0).data, gauss(y_dim, 1, 1.0).data);
    let (e, e_o) = (gauss(rows, 1, 0.1).data, gauss(rows, 1, 0.1).data);
    let (ax, ay, ao) = (a_x.matvec(&x0), a_y.matvec(&y0), a_o.matvec(&y0));
    let b: Vec<f64> = (0..rows).map(|i| ax[i] + ay[i] + e[i]).collect();
    let b_o: Vec<f64> = (0..rows).map(|i| ao[i] + e_o[i]).collect();
    Ok(LeastSquaresBilevel::new(
        a_x,
        a_y,
        b,
        a_o,
        b_o,
        &Default::default(),
    )?)
}

/// `Ψ(w, x) = Aw + Bx + c` (deterministic), `f = ½‖w − t‖² + ½μ‖x‖²`.
struct LinearMap {
    a: Dense,
    b: Dense,
    c: Vec<f64>,
    target: Vec<f64>,
    mu: f64,
    a_t: Tensor<B, 2>,
    b_t: Tensor<B, 2>,
    c_t: Tensor<B, 1>,
    target_t: Tensor<B, 1>,
}

impl LinearMap {
    fn random(x_dim: usize, y_dim: usize, seed: u64) -> Result<Self> {
        let mut rng = Rng::seed(seed ^ 0x11a);
        let g = rng.normal_vec(y_dim * y_dim);
        // ‖A‖₂ ≤ ‖A‖_F = 0.6.
        let scale = 0.6 / norm(&g);
        let a = Dense {
            rows: y_dim,
            cols: y_dim,
            data: g.into_iter().map(|v| v * scale).collect(),
        };
        let b = Dense {
            rows: y_dim,
            cols: x_dim,
            data: rng.normal_vec(y_dim * x_dim),
        };
        let (c, target) = (rng.normal_vec(y_dim), rng.normal_vec(y_dim));
        let device = Default::default();
        Ok(Self {
            a_t: matrix(&a.data, y_dim, y_dim, &device)?,
            b_t: matrix(&b.data, y_dim, x_dim, &device)?,
            c_t: vector(&c, &device),
            target_t: vector(&target, &device),
            a,
            b,
            c,
            target,
            mu: 0.1,
        })
    }

    /// `I − A`.
    fn identity_minus_a(&self) -> Dense {
        let n = self.a.rows;
        let mut m = Dense::scaled_identity(n, 1.0);
        for i in 0..n {
            for j in 0..n {
                m.set(i, j, m.get(i, j) - self.a.get(i, j));
            }
        }
        m
    }

    /// `∇Φ(x) = μx + Bᵀ(I − A)⁻ᵀ(w* − t)`, `w* = (I − A)⁻¹(Bx + c)`.
    fn hypergradient(&self, x: &[f64]) -> Result<Vec<f64>> {
        let m = self.identity_minus_a();
        let rhs: Vec<f64> = self
            .b
            .matvec(x)
            .iter()
            .zip(&self.c)
            .map(|(u, v)| u + v)
            .collect();
        let w = m.solve(&rhs)?;
        let r: Vec<f64> = w.iter().zip(&self.target).map(|(u, v)| u - v).collect();
        let v = m.transpose().solve(&r)?;
        Ok(self
            .b
            .tmatvec(&v)
            .iter()
            .zip(x)
            .map(|(u, xi)| u + self.mu * xi)
            .collect())
    }
}

impl BilevelProblem<B> for LinearMap {
    fn x_dim(&self) -> usize {
        self.b.cols
    }
    fn y_dim(&self) -> usize {
        self.a.rows
    }
    fn device(&self) -> burn::tensor::Device<B> {
        Default::default()
    }
    /// `½‖w − Ψ(w, x)‖²` (unused by the contraction form; its minimiser is `w*`).
    fn inner_loss<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>, b: &Batch) -> Tensor<C, 1> {
        let psi = self.contraction_map(x, y.clone(), b).expect("has a map");
        y.sub(psi).powi_scalar(2).sum().mul_scalar(0.5)
    }
    fn outer_loss<C: Lift<B>>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>, _: &Batch) -> Tensor<C, 1> {
        let r = y.sub(C::lift(self.target_t.clone()));
        r.powi_scalar(2)
            .sum()
            .mul_scalar(0.5)
            .add(x.powi_scalar(2).sum().mul_scalar(0.5 * self.mu))
    }
    fn contraction_map<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        _: &Batch,
    ) -> Option<Tensor<C, 1>> {
        Some(
            matvec(C::lift(self.a_t.clone()), y)
                .add(matvec(C::lift(self.b_t.clone()), x))
                .add(C::lift(self.c_t.clone())),
        )
    }
}
