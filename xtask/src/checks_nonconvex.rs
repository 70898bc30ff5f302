//! hypergrad-check rows of the methods without lower-level strong convexity (paper 003):
//! SGM (Alg. 1) and IGFM's two-point estimate (Alg. 2).
//!
//! - `sgm`: `|g(x, y_out) − g*(x)| / ζ` with `ζ = 1e-2`, worst over LiuHard (Example 5.3,
//!   `g*(x) = −x²`; a random `x ∈ [−2, 3]`, `y₀ ~ N(0, I)`, `τ = 0.1`, `K₀ = 60`, `K = 100`,
//!   `θ = ζ/4`, `Y = [−10, 10]²`) and random quadratics (strongly convex `g`,
//!   `g*(x) = g(x, y*(x))` in closed form; `τ = 1/L_g`, `K₀ = 40`, `K = 150`, `θ = 1e-7`, `Y` a
//!   ball of radius `2‖y*‖ + 1`). Theorem 6.1 promises `g(x, y_out) − g*(x) ≤ ζ`; tolerance 1.
//!   Every averaged iterate passed `g − ĝ* ≤ 2θ`, so by convexity LiuHard's value is at most
//!   `2θ/ζ = 0.5` plus `ĝ*`'s error (measured 0.44–0.49 over seeds 0–5).
//! - `sgm_upper`: `|f(x, y_out) − φ(x)| / ζ`, the theorem's other half, on the same quadratics and
//!   on LiuHard with `τ = 1/L = 1/2`, `K = 200`, `y₀ = (0, s₀)`, `s₀ ∈ [−1, 1]`
//!   (`φ(x) = (x − 1)²`; SGM's average gives `f − φ = ((x − s₀)/100)²` there). With `τ = 0.1`
//!   and few steps SGM's average is still far from `φ` on LiuHard (`y₂` moves only on `f` steps),
//!   so that configuration enters the `sgm` row only. Measured at most 0.17 over seeds 0–5 (the
//!   quadratics' `O(√θ)` error in `y` dominates).
//! - `igfm`: IGFM's estimate `∇̂` at `x` on LiuHard (`d_x = 1`, `δ = 1e-3`, SGM `τ = 1/2`,
//!   `K = 80`) against `φ'(x) = 2(x − 1)`, relative error; `x ∈ [1.5, 3]`, `y₀ = (0, s₀)`,
//!   `s₀ ∈ [0, 1]`. SGM's `φ̃(x) = φ(x) + ((x − s₀)/40)²` there, so the error is at most 4e-3;
//!   tolerance 1e-2.
//!
//! At most 4 instances of each kind (each SGM solve is a few hundred oracle calls; the module
//! takes about 1 s).

use anyhow::Result;
use bilevel_algorithms::igfm::{igfm, IgfmConfig};
use bilevel_algorithms::sgm::{Sgm, SgmConfig};
use bilevel_core::problems::{LiuHard, QuadraticBilevel, QuadraticForm, QuadraticSpec};
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{to_vec, vector};
use bilevel_core::{Constraint, Oracle, Solver, State};

use crate::check_rows::{Options, Worst};

use super::B;
type Liu = LiuHard<B>;

/// The accuracy `ζ` of Theorem 6.1 that the `sgm` rows measure against.
const ZETA: f64 = 1e-2;
/// Tolerance of the `igfm` row (relative error of `∇̂` against `φ'`).
const TOL_IGFM: f64 = 1e-2;
const MAX_INSTANCES: u64 = 4;

fn t(v: &[f64]) -> burn::tensor::Tensor<B, 1> {
    vector(v, &Default::default())
}

/// `g(x, y) = ½yᵀHy + yᵀ(Cx + d)` (`QuadraticBilevel` has no constant in `g`).
fn quadratic_g(form: &QuadraticForm, x: &[f64], y: &[f64]) -> f64 {
    let (hy, cx) = (form.h.matvec(y), form.c.matvec(x));
    (0..y.len())
        .map(|i| y[i] * (0.5 * hy[i] + cx[i] + form.d[i]))
        .sum()
}

/// Adds the `sgm`, `sgm_upper` and `igfm` rows to `worst`.
pub fn run(opts: &Options, worst: &mut Worst) -> Result<()> {
    let device = Default::default();
    let liu = Liu::new(&device);
    for i in 0..(opts.instances as u64).min(MAX_INSTANCES) {
        let seed = opts.seed.wrapping_mul(1_000_003).wrapping_add(i);
        let mut rng = Rng::seed(seed ^ 0x5c3a);

        // LiuHard, generic step: the lower-level half of Theorem 6.1.
        let x = -2.0 + 5.0 * rng.uniform();
        let y0 = rng.normal_vec(2);
        let cfg = SgmConfig {
            step: 0.1,
            lower_value_steps: 60,
            switching_steps: 100,
            feasibility_threshold: ZETA / 4.0,
            lower_constraint: Constraint::Box {
                lower: -10.0,
                upper: 10.0,
            },
        };
        let out = Sgm::new(cfg)?.solve(&mut Oracle::new(&liu), &t(&[x]), t(&y0))?;
        let y = to_vec(out.solution)?;
        let lower_gap = Liu::lower_value(x, [y[0], y[1]]) - Liu::lower_optimal_value(x);
        worst.record("sgm", 1.0, lower_gap.abs() / ZETA);

        // LiuHard, τ = 1/L: the upper-level half.
        let s0 = -1.0 + 2.0 * rng.uniform();
        let cfg = SgmConfig {
            step: 0.5,
            lower_value_steps: 5,
            switching_steps: 200,
            feasibility_threshold: 1e-6,
            lower_constraint: Constraint::Box {
                lower: -10.0,
                upper: 10.0,
            },
        };
        let out = Sgm::new(cfg)?.solve(&mut Oracle::new(&liu), &t(&[x]), t(&[0.0, s0]))?;
        let y = to_vec(out.solution)?;
        let upper_gap = Liu::upper_value(x, [y[0], y[1]]) - Liu::hyper_objective(x);
        worst.record("sgm_upper", 1.0, upper_gap.abs() / ZETA);

        // A random strongly convex quadratic: both halves against the closed form.
        let spec = QuadraticSpec {
            x_dim: 1 + rng.index(4),
            y_dim: 1 + rng.index(6),
            max_curvature: 1.5 + 1.5 * rng.uniform(),
            seed,
            ..Default::default()
        };
        let quad = QuadraticBilevel::<B>::random(&spec, &device)?;
        let form = quad.closed_form();
        let x = rng.normal_vec(spec.x_dim);
        let y_star = form.y_star(&x)?;
        let radius = 2.0 * y_star.iter().map(|v| v * v).sum::<f64>().sqrt() + 1.0;
        let cfg = SgmConfig {
            step: 1.0 / spec.max_curvature,
            lower_value_steps: 40,
            switching_steps: 150,
            feasibility_threshold: 1e-7,
            lower_constraint: Constraint::L2Ball { radius },
        };
        let y0 = vec![0.0; spec.y_dim];
        let out = Sgm::new(cfg)?.solve(&mut Oracle::new(&quad), &t(&x), t(&y0))?;
        let y = to_vec(out.solution)?;
        let lower_gap = quadratic_g(form, &x, &y) - quadratic_g(form, &x, &y_star);
        worst.record("sgm", 1.0, lower_gap.abs() / ZETA);
        let upper_gap = form.f(&x, &y) - form.phi(&x)?;
        worst.record("sgm_upper", 1.0, upper_gap.abs() / ZETA);

        // IGFM's first estimate on LiuHard against φ'(x).
        let x = 1.5 + 1.5 * rng.uniform();
        let s0 = rng.uniform();
        let mut solver = igfm(IgfmConfig {
            step: 0.1,
            smoothing_radius: 1e-3,
            lower_solver: SgmConfig {
                step: 0.5,
                lower_value_steps: 5,
                switching_steps: 80,
                feasibility_threshold: 1e-6,
                lower_constraint: Constraint::Box {
                    lower: -10.0,
                    upper: 10.0,
                },
            },
            warm_start: false,
        })?;
        let state = State::<B>::new(t(&[x]), t(&[0.0, s0]), seed);
        let state = solver.next_iter(&mut Oracle::new(&liu), state)?;
        let estimate = to_vec(state.hypergradient.expect("IGFM sets ĝ"))?[0];
        let exact = 2.0 * (x - 1.0);
        worst.record("igfm", TOL_IGFM, (estimate - exact).abs() / exact.abs());
    }
    Ok(())
}
