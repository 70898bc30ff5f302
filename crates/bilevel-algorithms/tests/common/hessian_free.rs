#![allow(dead_code, missing_docs)]
//! Helpers shared by the PZOBO / PZOBO-S and HOZOG tests: host-side (plain `f64`) replays of the
//! estimators on quadratic problems, where `y^N(x)` is affine in `x` and its Jacobian follows
//! the recursion `D_{t+1} = (I − αH_t) D_t − αC_t`, `D_0 = 0`.

use super::*;

use bilevel_core::dense::{axpy, Dense};
use bilevel_core::problems::{LeastSquaresBilevel, QuadraticBilevel, QuadraticForm, QuadraticSpec};
use bilevel_core::sampling::Rng;
use bilevel_core::State;
use bilevel_core::{Batch, BilevelProblem, Oracle, OracleCounts, Solver};

/// A random deterministic quadratic instance.
pub fn quadratic(
    seed: u64,
    x_dim: usize,
    y_dim: usize,
    max_curvature: f64,
) -> QuadraticBilevel<TestBackend> {
    QuadraticBilevel::random(
        &QuadraticSpec {
            x_dim,
            y_dim,
            max_curvature,
            seed,
            ..Default::default()
        },
        &dev(),
    )
    .unwrap()
}

/// A state at host vectors `x`, `y` with RNG seed `seed`.
pub fn state(x: &[f64], y: &[f64], seed: u64) -> State<TestBackend> {
    State::new(t(x), t(y), seed)
}

/// Runs `iters` outer iterations by `next_iter` (no executor).
pub fn run<S: Solver<TestBackend>, P: BilevelProblem<TestBackend>>(
    solver: &mut S,
    oracle: &mut Oracle<'_, TestBackend, P>,
    mut state: State<TestBackend>,
    iters: usize,
) -> State<TestBackend> {
    solver.validate().unwrap();
    for _ in 0..iters {
        state = solver.next_iter(oracle, state).unwrap();
    }
    state
}

/// Oracle calls of one `next_iter`, and the new state.
pub fn one_iter<S: Solver<TestBackend>, P: BilevelProblem<TestBackend>>(
    solver: &mut S,
    oracle: &mut Oracle<'_, TestBackend, P>,
    state: State<TestBackend>,
) -> (OracleCounts, State<TestBackend>) {
    let before = oracle.counts();
    let state = solver.next_iter(oracle, state).unwrap();
    (oracle.counts() - before, state)
}

/// Host (S)GD: step `t` uses the inner quadratic of `forms[t]`; returns `y^N`.
pub fn host_gd(forms: &[QuadraticForm], x: &[f64], y0: &[f64], step: f64) -> Vec<f64> {
    let mut y = y0.to_vec();
    for form in forms {
        y = axpy(&y, -step, &form.grad_y_g(x, &y));
    }
    y
}

/// `∂y^N/∂x` of the (S)GD map of [`host_gd`]: `D_{t+1} = (I − αH_t) D_t − αC_t`, `D_0 = 0`.
pub fn host_jacobian(forms: &[QuadraticForm], step: f64) -> Dense {
    let (n, m) = (forms[0].y_dim(), forms[0].x_dim());
    let mut d = Dense::zeros(n, m);
    for form in forms {
        let mut contraction = Dense::scaled_identity(n, 1.0);
        for (e, h) in contraction.data.iter_mut().zip(&form.h.data) {
            *e -= step * h;
        }
        d = contraction.matmul(&d);
        for (e, c) in d.data.iter_mut().zip(&form.c.data) {
            *e -= step * c;
        }
    }
    d
}

/// `∇Φ_N(x) = ∇_x f + D_Nᵀ ∇_y f` at `y^N`, the outer gradients from `outer`.
pub fn host_unrolled_hypergradient(
    forms: &[QuadraticForm],
    outer: &QuadraticForm,
    x: &[f64],
    y0: &[f64],
    step: f64,
) -> Vec<f64> {
    let y = host_gd(forms, x, y0, step);
    let d = host_jacobian(forms, step);
    axpy(
        &outer.grad_x_f(x, &y),
        1.0,
        &d.tmatvec(&outer.grad_y_f(x, &y)),
    )
}

/// What PZOBO(-S) must return, replayed on the host from a clone of the state's RNG (draw
/// order: `S_0..S_{N−1}`, `D_F`, `u_1..u_Q`): `∇_x F + (1/Q) Σ ⟨D_N u_j, ∇_y F⟩ u_j` at `y^N`,
/// where `form_of(S_t)` is the quadratic of inner batch `S_t` and `outer_of(D_F)` that of the
/// outer batch. Exact for any `μ` because `y^N(x)` is affine.
#[allow(clippy::too_many_arguments)]
pub fn replay_pzobo(
    rng: &Rng,
    form_of: impl Fn(&Batch) -> QuadraticForm,
    outer_of: impl Fn(&Batch) -> QuadraticForm,
    lens: (Option<usize>, Option<usize>),
    batches: (Option<usize>, Option<usize>),
    x: &[f64],
    y0: &[f64],
    step: f64,
    steps: usize,
    directions: usize,
) -> Vec<f64> {
    let mut rng = rng.clone();
    let forms: Vec<_> = (0..steps)
        .map(|_| form_of(&rng.batch(lens.0, batches.0)))
        .collect();
    let outer = outer_of(&rng.batch(lens.1, batches.1));
    let y = host_gd(&forms, x, y0, step);
    let d = host_jacobian(&forms, step);
    let gy = outer.grad_y_f(x, &y);
    let mut g = outer.grad_x_f(x, &y);
    for _ in 0..directions {
        let u = rng.normal_vec(x.len());
        let coefficient: f64 = d.matvec(&u).iter().zip(&gy).map(|(a, b)| a * b).sum();
        g = axpy(&g, coefficient / directions as f64, &u);
    }
    g
}

/// Data of a least-squares bilevel problem kept on the host, so tests can form the quadratic of
/// any batch: `g(S) = (1/2|S|)‖A_x[S] x + A_y[S] y − b[S]‖²`, `f(D) = (1/2|D|)‖A_o[D] y − b_o[D]‖²`.
pub struct LsData {
    pub a_x: Dense,
    pub a_y: Dense,
    pub b: Vec<f64>,
    pub a_o: Dense,
    pub b_o: Vec<f64>,
}

impl LsData {
    /// `x`-features correlated with the first `y`-features (`A_x = A_y[:, :m] + 0.5·N`), so that
    /// `∇_x∇_y g` is O(1) and `Φ` is well conditioned (with independent features it is
    /// O(1/√rows) and no stochastic method moves in a test's budget).
    pub fn correlated(x_dim: usize, y_dim: usize, rows: usize, noise: f64, seed: u64) -> Self {
        assert!(x_dim <= y_dim);
        let mut rng = Rng::seed(seed);
        let mut gauss = |r: usize, c: usize, s: f64| Dense {
            rows: r,
            cols: c,
            data: rng.normal_vec(r * c).into_iter().map(|v| v * s).collect(),
        };
        let a_y = gauss(rows, y_dim, 1.0);
        let mut a_x = gauss(rows, x_dim, 0.5);
        let a_o = gauss(rows, y_dim, 1.0);
        for i in 0..rows {
            for j in 0..x_dim {
                a_x.set(i, j, a_x.get(i, j) + a_y.get(i, j));
            }
        }
        let x0 = gauss(x_dim, 1, 1.0).data;
        let y0 = gauss(y_dim, 1, 1.0).data;
        let e = gauss(rows, 1, noise).data;
        let e_o = gauss(rows, 1, noise).data;
        let (ax, ay, ao) = (a_x.matvec(&x0), a_y.matvec(&y0), a_o.matvec(&y0));
        let b = (0..rows).map(|i| ax[i] + ay[i] + e[i]).collect();
        let b_o = (0..rows).map(|i| ao[i] + e_o[i]).collect();
        Self {
            a_x,
            a_y,
            b,
            a_o,
            b_o,
        }
    }

    /// The burn problem of this data.
    pub fn problem(&self) -> LeastSquaresBilevel<TestBackend> {
        LeastSquaresBilevel::new(
            self.a_x.clone(),
            self.a_y.clone(),
            self.b.clone(),
            self.a_o.clone(),
            self.b_o.clone(),
            &dev(),
        )
        .unwrap()
    }

    /// The quadratic of inner batch `inner` and outer batch `outer`.
    pub fn form(&self, inner: &Batch, outer: &Batch) -> QuadraticForm {
        let pick = |a: &Dense, v: &[f64], batch: &Batch| {
            let rows: Vec<usize> = match batch {
                Batch::Full => (0..a.rows).collect(),
                Batch::Indices(idx) => idx.clone(),
            };
            let mut sub = Dense::zeros(rows.len(), a.cols);
            for (r, &i) in rows.iter().enumerate() {
                for j in 0..a.cols {
                    sub.set(r, j, a.get(i, j));
                }
            }
            let w: Vec<f64> = rows.iter().map(|&i| v[i]).collect();
            (sub, w)
        };
        let (ax, b) = pick(&self.a_x, &self.b, inner);
        let (ay, _) = pick(&self.a_y, &self.b, inner);
        let (ao, bo) = pick(&self.a_o, &self.b_o, outer);
        let (n, no) = (ax.rows as f64, ao.rows as f64);
        let scaled = |m: Dense, s: f64| Dense {
            data: m.data.iter().map(|v| v * s).collect(),
            ..m
        };
        let (m, d) = (self.a_x.cols, self.a_y.cols);
        let ayt = ay.transpose();
        let aot = ao.transpose();
        QuadraticForm {
            h: scaled(ayt.matmul(&ay), 1.0 / n),
            c: scaled(ayt.matmul(&ax), 1.0 / n),
            d: ay.tmatvec(&b).into_iter().map(|v| -v / n).collect(),
            p_mat: scaled(aot.matmul(&ao), 1.0 / no),
            k: Dense::zeros(m, d),
            m: Dense::zeros(m, m),
            p: ao.tmatvec(&bo).into_iter().map(|v| -v / no).collect(),
            q: vec![0.0; m],
            f0: bo.iter().map(|v| v * v).sum::<f64>() / (2.0 * no),
        }
    }
}

/// A quadratic instance whose outer loss vanishes at a known `x_true`: `A` of [`quadratic`]
/// (spectrum in `[1, max_curvature]`), `B = [I_m; 0]` (so `∂y*/∂x = A⁻¹B` is well conditioned),
/// `f = ½‖y − t‖²` with `t = y*(x_true)` and no `x`-terms. Then `Φ(x) = ½‖A⁻¹B(x − x_true)‖²`,
/// with Hessian spectrum in `[1/max_curvature², 1]`, is minimised at `x_true`, where
/// `∇_y f = 0`: the zeroth-order noise of PZOBO/HOZOG is multiplicative and vanishes at the
/// solution, so a constant outer step converges linearly. Needs `x_dim ≤ y_dim`.
pub fn realizable_quadratic(
    seed: u64,
    x_dim: usize,
    y_dim: usize,
    max_curvature: f64,
) -> (QuadraticBilevel<TestBackend>, Vec<f64>) {
    assert!(x_dim <= y_dim);
    let base = quadratic(seed, x_dim, y_dim, max_curvature);
    let form = base.closed_form();
    let mut b = Dense::zeros(y_dim, x_dim);
    for j in 0..x_dim {
        b.set(j, j, 1.0);
    }
    let x_true = Rng::seed(seed ^ 0xabc).normal_vec(x_dim);
    let c: Vec<f64> = form.d.iter().map(|e| -e).collect();
    let rhs = axpy(&b.matvec(&x_true), 1.0, &c);
    let t = form.h.solve(&rhs).unwrap();
    let p = QuadraticBilevel::new(
        form.h.clone(),
        b,
        c,
        t,
        Dense::zeros(x_dim, y_dim),
        0.0,
        &dev(),
    )
    .unwrap();
    (p, x_true)
}
