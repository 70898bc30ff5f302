//! liu-hard (paper 003, Example 5.3; `docs/REPRODUCTION.md`): the problem's oracle against its
//! closed forms, and the experiment — IGFM approaches `x* = 1` while AID and ITD stall where
//! the initial `y₂` puts them.

mod common;

use bilevel_algorithms::aid::{Aid, AidConfig, InnerSteps, LinearSolver};
use bilevel_algorithms::igfm::{igfm, IgfmConfig};
use bilevel_algorithms::itd::{Itd, ItdConfig};
use bilevel_algorithms::sgm::SgmConfig;
use bilevel_core::problems::LiuHard;
use bilevel_core::tensor::scalar;
use bilevel_core::{Batch, Constraint, Oracle, OuterLoop, OuterOptimizer};
use common::nonconvex::*;
use common::*;

type Liu = LiuHard<TestBackend>;

#[test]
fn liu_hard_oracle_matches_its_closed_forms() {
    let p = liu_hard();
    let mut oracle = Oracle::new(&p);
    let full = Batch::Full;
    for (x, y, v) in [
        (0.3, [1.7, -0.4], [0.5, 2.0]),
        (-1.2, [0.0, 3.0], [-1.0, 0.25]),
    ] {
        let (xt, yt, vt) = (t(&[x]), t(&y), t(&v));
        let f = scalar(oracle.f_value(&xt, &yt, &full).unwrap());
        let g = scalar(oracle.g_value(&xt, &yt, &full).unwrap());
        assert!((f - Liu::upper_value(x, y)).abs() <= 1e-14);
        assert!((g - Liu::lower_value(x, y)).abs() <= 1e-14);
        let gf = oracle.grad_f(&xt, &yt, &full).unwrap();
        let gg = oracle.grad_g(&xt, &yt, &full).unwrap();
        let close = |a: Vec<f64>, b: &[f64]| a.iter().zip(b).all(|(u, w)| (u - w).abs() <= 1e-13);
        assert!(close(host(&gf.x), &[2.0 * (x - y[1])]));
        assert!(close(host(&gf.y), &[2.0 * (y[0] - 1.0), -2.0 * (x - y[1])]));
        assert!(close(host(&gg.x), &[-2.0 * y[0]]));
        assert!(close(host(&gg.y), &[2.0 * (y[0] - x), 0.0]));
        // ∇²_yy g = diag(2, 0) (singular: no strong convexity), ∇_x∇_y g · v = −2v₁.
        let (hv, jv) = oracle.hvp_jvp(&xt, &yt, &vt, &full).unwrap();
        assert!(close(host(&hv), &[2.0 * v[0], 0.0]));
        assert!(close(host(&jv), &[-2.0 * v[0]]));
    }
    // g − g* = (y₁ − x)² = dist(y, Y*(x))², φ = f at the optimistic solution (x, x).
    let (x, y) = (0.8, [-0.1, 4.0]);
    let gap = Liu::lower_value(x, y) - Liu::lower_optimal_value(x);
    assert!((gap - Liu::distance_to_lower_solutions(x, y).powi(2)).abs() <= 1e-14);
    let opt = Liu::optimistic_lower_solution(x);
    assert_eq!(Liu::upper_value(x, opt), Liu::hyper_objective(x));
    assert_eq!(Liu::hyper_objective(Liu::OPTIMAL_X), 0.0);
}

/// From `x₀ = 3`, `y₀ = (0, s₀)`:
///
/// - **IGFM** (`η = 1/4`, `δ = 1e-3`, SGM with `τ = 1/L = 1/2`, `K₀ = 10`, `K = 50`,
///   `θ = 1e-6`, `Y = [−10, 10]²`; 25 iterations) reaches `|x − 1| = 3.2e-3`. The residual is
///   SGM's: its average over `I` keeps `y₁ = (x, s₀)` (tests/sgm.rs), so
///   `φ̃(x) = (x − 1)² + ((x − s₀)/N)²`, `N = K/2`, whose minimiser is `(N² + s₀)/(N² + 1)`
///   (`= 0.996805` for `s₀ = −1`). The test checks `|x_T − 1| ≤ 5e-3` and `x_T` against that
///   minimiser to 5e-5 (measured 1.8e-5). The path: `x_t − 1 ≈ 2^{1−t}` down to
///   `x_9 = 1.00066`, inside the band `(x − 1)² ≤ 2θ` where SGM's `f` steps stay feasible and
///   `φ̃` drops by ≈ 5e-3 (a jump, not a slope); the two-point difference across that edge kicks
///   `x_10` to 0.407, from where it contracts by 1/2 per step towards the minimiser.
/// - **AID-FP** (`α = η = 1/4`, `T = N = 10`, warm starts) stalls at `(1 + s₀)/2` and **ITD**
///   (`α = 1/4`, `T = 10`, warm start) at `(s₀ + c)/(1 + c)`, `c = 1 − (1 − 2α)^T`
///   ([`LiuHard::frozen_y2_stationary_point`]): `y₂` never leaves `s₀`. Checked to 1e-6 for
///   `s₀ = −1` (stall ≈ 0) and `s₀ = 2` (stall ≈ 1.5), 25 outer SGD steps of 0.2 each.
///
/// - **AID-CG** (same, CG with `N = 10`): on this singular `∇²_yy g = diag(2, 0)` CG's second
///   direction has zero curvature up to rounding, so CG stops after one step
///   ([`bilevel_core::linear::CURVATURE_RTOL`]) with `v₁ = (b₁² + b₂²)/(2b₁)`, not the
///   `∂_{y₁}f/2` of the analysis; `y₂` stays frozen and `x` stays away from 1.
#[test]
fn igfm_reaches_x_star_while_aid_and_itd_stall_at_the_initial_y2() {
    let p = liu_hard();
    let x0 = 3.0;

    let s0 = -1.0;
    let (k, inner) = (50usize, 0.25);
    let sgm = SgmConfig {
        step: 0.5,
        lower_value_steps: 10,
        switching_steps: k,
        feasibility_threshold: 1e-6,
        lower_constraint: Constraint::Box {
            lower: -10.0,
            upper: 10.0,
        },
    };
    let mut solver = igfm(IgfmConfig {
        step: 0.25,
        smoothing_radius: 1e-3,
        lower_solver: sgm,
        warm_start: false,
    })
    .unwrap();
    let mut oracle = Oracle::new(&p);
    let end = run(&mut solver, &mut oracle, state(&[x0], &[0.0, s0], 0), 25);
    let x_igfm = host(&end.x)[0];
    let n2 = ((k / 2) as f64).powi(2);
    let predicted = (n2 + s0) / (n2 + 1.0);
    println!(
        "IGFM: x_T = {x_igfm:.6}, |x_T − x*| = {:.3e}, predicted {predicted:.6}",
        (x_igfm - 1.0).abs()
    );
    assert!(
        (x_igfm - Liu::OPTIMAL_X).abs() <= 5e-3,
        "IGFM x_T = {x_igfm}"
    );
    assert!(
        (x_igfm - predicted).abs() <= 5e-5,
        "IGFM x_T = {x_igfm}, predicted {predicted}"
    );

    for s0 in [-1.0, 2.0] {
        let aid = AidConfig {
            inner_step: inner,
            inner_steps: InnerSteps::Constant { steps: 10 },
            warm_start_inner: true,
            linear_solver: LinearSolver::FixedPoint {
                step: 0.25,
                steps: 10,
            },
            warm_start_linear: true,
            batches: Default::default(),
        };
        let mut solver = OuterLoop::new(Aid::new(aid).unwrap(), OuterOptimizer::sgd(0.2));
        let mut oracle = Oracle::new(&p);
        let end = run(&mut solver, &mut oracle, state(&[x0], &[0.0, s0], 0), 25);
        let x_aid = host(&end.x)[0];
        let stall = Liu::frozen_y2_stationary_point(s0, 1.0);
        println!("AID-FP, s₀ = {s0}: x_T = {x_aid:.6}, predicted stall {stall:.6}");
        assert_eq!(host(&end.y)[1], s0, "AID moved y₂");
        assert!(
            (x_aid - stall).abs() <= 1e-6,
            "AID x_T = {x_aid}, predicted {stall}"
        );
        assert!((x_aid - Liu::OPTIMAL_X).abs() >= 0.4);

        // AID-CG: on the singular ∇²_yy g = diag(2, 0) CG stops at its second direction (zero
        // curvature up to rounding) with v = (b₁² + b₂²)/(2b₁)·b; y₂ is frozen all the same.
        let cg = AidConfig {
            linear_solver: LinearSolver::ConjugateGradient {
                steps: 10,
                tol: 1e-10,
            },
            ..aid
        };
        let mut solver = OuterLoop::new(Aid::new(cg).unwrap(), OuterOptimizer::sgd(0.2));
        let mut oracle = Oracle::new(&p);
        let end = run(&mut solver, &mut oracle, state(&[x0], &[0.0, s0], 0), 25);
        let x_cg = host(&end.x)[0];
        println!("AID-CG, s₀ = {s0}: x_T = {x_cg:.6}");
        assert_eq!(host(&end.y)[1], s0, "AID-CG moved y₂");
        assert!(x_cg.is_finite());
        assert!((x_cg - Liu::OPTIMAL_X).abs() >= 0.4, "AID-CG x_T = {x_cg}");

        let itd = ItdConfig {
            inner_step: inner,
            inner_steps: 10,
            warm_start: true,
            truncation: None,
        };
        let mut solver = OuterLoop::new(Itd::new(itd).unwrap(), OuterOptimizer::sgd(0.2));
        let mut oracle = Oracle::new(&p);
        let end = run(&mut solver, &mut oracle, state(&[x0], &[0.0, s0], 0), 25);
        let x_itd = host(&end.x)[0];
        let c = 1.0 - (1.0 - 2.0 * inner).powi(10);
        let stall = Liu::frozen_y2_stationary_point(s0, c);
        println!("ITD, s₀ = {s0}: x_T = {x_itd:.6}, predicted stall {stall:.6}");
        assert_eq!(host(&end.y)[1], s0, "ITD moved y₂");
        assert!(
            (x_itd - stall).abs() <= 1e-6,
            "ITD x_T = {x_itd}, predicted {stall}"
        );
        assert!((x_itd - Liu::OPTIMAL_X).abs() >= 0.4);
    }
}
