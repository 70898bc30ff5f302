//! `equilibrium` on a few MNIST images: gradients, HVP/JVP and `map_vjp` against finite
//! differences, the contraction property after projection, the unbiased batch map, the spec,
//! and a few BSGM (SID) steps lowering the training loss.

mod problem_checks;

use std::path::PathBuf;
use std::sync::OnceLock;

use bilevel_algorithms::sid::{bsgm, InnerStepSchedule, LowerLevel, SidConfig};
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::rel_err_host;
use bilevel_core::{Batch, BilevelProblem, Constraint, Oracle, Solver, State};
use bilevel_data::Mnist;
use bilevel_problems::equilibrium::{EquilibriumModel, EquilibriumSpec};
use bilevel_problems::{Application, ProblemError};
use problem_checks::{
    dev, directional_gradient_error, host, metric, second_order_errors, t, Level, TB,
};

fn mnist() -> &'static Mnist {
    static MNIST: OnceLock<Mnist> = OnceLock::new();
    MNIST.get_or_init(|| Mnist::load_bundled().unwrap())
}

/// `n` training images, `d` states, pixels projected to `p`.
fn small(n: usize, d: usize, p: usize) -> EquilibriumSpec {
    EquilibriumSpec {
        train: n,
        test: 50,
        state_dim: d,
        projection: Some(p),
        epsilon: 0.1,
        ..Default::default()
    }
}

fn problem(s: &EquilibriumSpec, seed: u64) -> EquilibriumModel<TB> {
    EquilibriumModel::from_mnist(s, mnist(), seed, &dev()).unwrap()
}

/// A random feasible `x` (`A` projected into `‖A‖_∞ ≤ 1 − ε`) and random states in `(−1, 1)`.
fn point(p: &EquilibriumModel<TB>, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = Rng::seed(seed);
    let x: Vec<f64> = rng.normal_vec(p.x_dim()).iter().map(|v| 0.3 * v).collect();
    let x = host(&p.upper_constraint().project(t(&x)));
    let y: Vec<f64> = rng
        .normal_vec(p.y_dim())
        .iter()
        .map(|v| 0.5 * v.tanh())
        .collect();
    (x, y)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

fn shifted(a: &[f64], s: f64, u: &[f64]) -> Vec<f64> {
    a.iter().zip(u).map(|(a, u)| a + s * u).collect()
}

#[test]
fn gradients_match_central_differences() {
    let p = problem(&small(6, 4, 5), 1);
    assert_eq!(p.x_dim(), 16 + 20 + 4 + 40 + 10);
    assert_eq!(p.y_dim(), 24);
    assert_eq!((p.inner_len(), p.outer_len()), (Some(6), Some(6)));
    let (x, y) = point(&p, 2);
    for level in [Level::Inner, Level::Outer] {
        for batch in [Batch::Full, Batch::Indices(vec![0, 5, 5, 2])] {
            let err = directional_gradient_error(&p, level, &x, &y, &batch, 4, 1e-5, 3);
            assert!(err < 1e-7, "{level:?} {batch:?}: {err:e}");
        }
    }
}

#[test]
fn exact_products_and_map_vjp_match_finite_differences() {
    let p = problem(&small(6, 4, 5), 3);
    let (x, y) = point(&p, 4);
    let mut rng = Rng::seed(5);
    let v = rng.normal_vec(p.y_dim());
    for batch in [Batch::Full, Batch::Indices(vec![1, 1, 4])] {
        // HVP / JVP of the residual objective g.
        let (eh, ej) = second_order_errors(&p, &x, &y, &v, &batch);
        println!("{batch:?}: hvp {eh:e}, jvp {ej:e}");
        assert!(eh < 1e-7 && ej < 1e-7, "{batch:?}: {eh:e} {ej:e}");

        // map_vjp: ⟨∂_yΨᵀv, w⟩ and ⟨∂_xΨᵀv, u⟩ against central differences of ⟨Ψ, v⟩.
        let mut oracle = Oracle::new(&p);
        let (vy, vx) = oracle.map_vjp(&t(&x), &t(&y), &t(&v), &batch).unwrap();
        let (vy, vx) = (host(&vy), host(&vx));
        let psi_dot = |oracle: &mut Oracle<'_, TB, _>, x: &[f64], y: &[f64]| {
            dot(&host(&oracle.map_value(&t(x), &t(y), &batch).unwrap()), &v)
        };
        let eps = 1e-6;
        let mut worst = 0.0f64;
        for _ in 0..4 {
            let w = rng.normal_vec(p.y_dim());
            let u = rng.normal_vec(p.x_dim());
            let fd_y = (psi_dot(&mut oracle, &x, &shifted(&y, eps, &w))
                - psi_dot(&mut oracle, &x, &shifted(&y, -eps, &w)))
                / (2.0 * eps);
            let fd_x = (psi_dot(&mut oracle, &shifted(&x, eps, &u), &y)
                - psi_dot(&mut oracle, &shifted(&x, -eps, &u), &y))
                / (2.0 * eps);
            let (ad_y, ad_x) = (dot(&vy, &w), dot(&vx, &u));
            worst = worst
                .max((fd_y - ad_y).abs() / ad_y.abs().max(1e-6))
                .max((fd_x - ad_x).abs() / ad_x.abs().max(1e-6));
        }
        println!("{batch:?}: map_vjp {worst:e}");
        assert!(worst < 1e-7, "{batch:?}: map_vjp {worst:e}");
        // The classifier (C, d) does not enter Ψ.
        assert!(vx[40..].iter().all(|a| *a == 0.0));
    }
}

/// `EquilibriumModel::hypergradient` (fixed-point LL and adjoint solves, one backward pass)
/// against central differences of `Φ(x) = train_loss` at solved states, along 4 random
/// directions at a random feasible `x` (h = 1e-5, f64, solves to 1e-13): relative error ≤ 1e-6
/// (measured ~1e-9). The metric `prox_grad_map_norm` equals `‖∇Φ‖` where the projection is
/// inactive (`‖A‖_∞` well inside the ball) and is smaller than it once `A` sits on the ball's
/// boundary with `∇Φ` pointing out. Fails (tried) when the adjoint uses `A` instead of `Aᵀ`
/// (`w_i ← A(s_i ⊙ w_i)`), when `∇_z f` is left out of the adjoint, and when the projection is
/// skipped in the map.
#[test]
fn the_hypergradient_and_the_proximal_gradient_map() {
    let s = EquilibriumSpec {
        eval_iters: 2_000,
        eval_tol: 1e-13,
        prox_map_step: 0.5,
        ..small(7, 5, 6)
    };
    let p = problem(&s, 11);
    let (x, _) = point(&p, 12);
    let grad = host(&p.hypergradient(&t(&x)).unwrap());
    let phi = |x: &[f64]| {
        let m = p.evaluate(&t(x), &t(&vec![0.0; p.y_dim()])).unwrap();
        metric(&m, "train_loss")
    };
    let mut rng = Rng::seed(13);
    let h = 1e-5;
    for trial in 0..4 {
        let u = rng.normal_vec(p.x_dim());
        let fd = (phi(&shifted(&x, h, &u)) - phi(&shifted(&x, -h, &u))) / (2.0 * h);
        let exact = dot(&grad, &u);
        let err = (fd - exact).abs() / exact.abs().max(1e-12);
        println!("direction {trial}: fd {fd:.10e}, ∇Φ·u {exact:.10e}, rel {err:.1e}");
        assert!(err <= 1e-6, "direction {trial}: {fd} vs {exact}");
    }

    // Inside the ball (A scaled to ‖A‖_∞ ≤ 0.45) the map is the gradient.
    let d = s.state_dim;
    let inside: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, v)| if i < d * d { 0.5 * v } else { *v })
        .collect();
    let g_in = host(&p.hypergradient(&t(&inside)).unwrap());
    let norm = |v: &[f64]| dot(v, v).sqrt();
    let m = p.evaluate(&t(&inside), &t(&vec![0.0; p.y_dim()])).unwrap();
    let map = metric(&m, "prox_grad_map_norm");
    let row_sum = (0..d)
        .map(|r| {
            (0..d)
                .map(|c| (inside[r * d + c] - s.prox_map_step * g_in[r * d + c]).abs())
                .sum::<f64>()
        })
        .fold(0.0f64, f64::max);
    assert!(
        row_sum < 1.0 - s.epsilon,
        "the step leaves the ball: {row_sum}"
    );
    assert!(
        (map - norm(&g_in)).abs() <= 1e-9 * norm(&g_in),
        "{map} vs {}",
        norm(&g_in)
    );
    // On the boundary, pushed out: A = (1 − ε)·sign(∂Φ/∂A) row-normalised makes −∇Φ point out.
    let g = &grad;
    let mut edge = x.clone();
    for r in 0..d {
        let row = &g[r * d..(r + 1) * d];
        let l1: f64 = row.iter().map(|v| v.abs()).sum::<f64>().max(1e-300);
        for c in 0..d {
            edge[r * d + c] = -(1.0 - s.epsilon) * row[c] / l1;
        }
    }
    let g_edge = host(&p.hypergradient(&t(&edge)).unwrap());
    let m = p.evaluate(&t(&edge), &t(&vec![0.0; p.y_dim()])).unwrap();
    let map = metric(&m, "prox_grad_map_norm");
    println!("boundary: ‖G‖ = {map:.4e}, ‖∇Φ‖ = {:.4e}", norm(&g_edge));
    assert!(
        map < norm(&g_edge) * (1.0 - 1e-6),
        "{map} vs {}",
        norm(&g_edge)
    );
}

#[test]
fn the_map_is_a_contraction_after_projection() {
    let s = small(8, 6, 7);
    let p = problem(&s, 6);
    let rho = 1.0 - s.epsilon;
    let mut rng = Rng::seed(7);
    let mut worst = 0.0f64;
    for trial in 0..20 {
        // Large A (far outside the set) projected back: some rows land exactly on the sphere.
        let raw: Vec<f64> = rng.normal_vec(p.x_dim()).iter().map(|v| 2.0 * v).collect();
        let x = host(&p.upper_constraint().project(t(&raw)));
        let a = &x[..36];
        let norm = (0..6)
            .map(|r| a[r * 6..(r + 1) * 6].iter().map(|v| v.abs()).sum::<f64>())
            .fold(0.0f64, f64::max);
        assert!(norm <= rho + 1e-12, "trial {trial}: ‖A‖∞ = {norm}");
        let metrics = p.evaluate(&t(&x), &t(&vec![0.0; p.y_dim()])).unwrap();
        assert!((metric(&metrics, "contraction_factor") - norm).abs() < 1e-12);
        let mut oracle = Oracle::new(&p);
        for _ in 0..5 {
            let z: Vec<f64> = rng.normal_vec(p.y_dim());
            let z2: Vec<f64> = rng.normal_vec(p.y_dim()).iter().map(|v| 3.0 * v).collect();
            let psi = host(&oracle.map_value(&t(&x), &t(&z), &Batch::Full).unwrap());
            let psi2 = host(&oracle.map_value(&t(&x), &t(&z2), &Batch::Full).unwrap());
            let inf = |a: &[f64], b: &[f64]| {
                a.iter()
                    .zip(b)
                    .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
            };
            let ratio = inf(&psi, &psi2) / inf(&z, &z2);
            worst = worst.max(ratio);
        }
    }
    println!("largest ‖Ψ(z) − Ψ(z')‖∞ / ‖z − z'‖∞ = {worst}");
    assert!(worst <= rho, "{worst} > {rho}");
    // The constraint is the row-ℓ₁ ball on the A block.
    assert_eq!(
        p.upper_constraint(),
        Constraint::RowSumBall {
            offset: 0,
            rows: 6,
            cols: 6,
            radius: rho
        }
    );
}

#[test]
fn batch_map_is_unbiased_and_full_batch_is_the_map() {
    let p = problem(&small(5, 3, 4), 8);
    let (x, y) = point(&p, 9);
    let mut oracle = Oracle::new(&p);
    let full = host(&oracle.map_value(&t(&x), &t(&y), &Batch::Full).unwrap());
    // S = {0..n−1}: exactly Ψ.
    let all = host(
        &oracle
            .map_value(&t(&x), &t(&y), &Batch::Indices((0..5).collect()))
            .unwrap(),
    );
    assert!(rel_err_host(&all, &full) < 1e-14);
    // Single-sample maps: rows other than i unchanged, row i moved by n(Ψ_i − z_i); their mean
    // over i is Ψ.
    let mut avg = vec![0.0; 15];
    for i in 0..5 {
        let one = host(
            &oracle
                .map_value(&t(&x), &t(&y), &Batch::Indices(vec![i]))
                .unwrap(),
        );
        for (k, value) in one.iter().enumerate() {
            let row = k / 3;
            if row != i {
                assert_eq!(*value, y[k]);
            } else {
                assert!((value - (y[k] + 5.0 * (full[k] - y[k]))).abs() < 1e-12);
            }
            avg[k] += value / 5.0;
        }
    }
    assert!(rel_err_host(&avg, &full) < 1e-12);
    // Residual metric: ‖Ψ(y) − y‖∞ of the given states.
    let m = p.evaluate(&t(&x), &t(&y)).unwrap();
    let res = full
        .iter()
        .zip(&y)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!((metric(&m, "fixed_point_residual") - res).abs() < 1e-14);
}

#[test]
fn spec_defaults_toml_and_validation() {
    let d = EquilibriumSpec::default();
    assert_eq!((d.train, d.test, d.state_dim), (60_000, 10_000, 200));
    assert_eq!(d.projection, None);
    assert_eq!((d.epsilon, d.init_std), (0.05, 0.05));
    assert_eq!((d.eval_iters, d.eval_tol), (1_000, 1e-6));
    assert_eq!(d.input_dim(), 784);
    assert_eq!(d.x_dim(), 200 * 200 + 200 * 784 + 200 + 2_000 + 10);
    EquilibriumSpec::quick().validate().unwrap();

    let parsed: EquilibriumSpec = toml::from_str("projection = 30\nstate_dim = 8\n").unwrap();
    assert_eq!(
        parsed,
        EquilibriumSpec {
            projection: Some(30),
            state_dim: 8,
            ..Default::default()
        }
    );
    let with_dir = EquilibriumSpec {
        mnist_dir: Some(PathBuf::from("/somewhere/mnist")),
        ..parsed
    };
    let text = toml::to_string(&with_dir).unwrap();
    assert_eq!(toml::from_str::<EquilibriumSpec>(&text).unwrap(), with_dir);
    let text = toml::to_string(&EquilibriumSpec::default()).unwrap();
    assert!(!text.contains("projection"), "{text}");
    assert_eq!(
        toml::from_str::<EquilibriumSpec>(&text).unwrap(),
        EquilibriumSpec::default()
    );
    assert!(toml::from_str::<EquilibriumSpec>("eps = 0.1\n").is_err());

    let bad = |s: EquilibriumSpec, key: &str| match s.validate() {
        Err(ProblemError::Config { name, .. }) => assert_eq!(name, key),
        other => panic!("{key}: {other:?}"),
    };
    let base = small(10, 4, 5);
    bad(
        EquilibriumSpec {
            train: 0,
            ..base.clone()
        },
        "train",
    );
    bad(
        EquilibriumSpec {
            train: 60_001,
            ..base.clone()
        },
        "train",
    );
    bad(
        EquilibriumSpec {
            test: 10_001,
            ..base.clone()
        },
        "test",
    );
    bad(
        EquilibriumSpec {
            state_dim: 0,
            ..base.clone()
        },
        "state_dim",
    );
    bad(
        EquilibriumSpec {
            projection: Some(0),
            ..base.clone()
        },
        "projection",
    );
    bad(
        EquilibriumSpec {
            epsilon: 0.0,
            ..base.clone()
        },
        "epsilon",
    );
    bad(
        EquilibriumSpec {
            epsilon: 1.0,
            ..base.clone()
        },
        "epsilon",
    );
    bad(
        EquilibriumSpec {
            init_std: -0.1,
            ..base.clone()
        },
        "init_std",
    );
    bad(
        EquilibriumSpec {
            eval_iters: 0,
            ..base.clone()
        },
        "eval_iters",
    );
    bad(
        EquilibriumSpec {
            eval_tol: 2.0,
            ..base.clone()
        },
        "eval_tol",
    );
    let missing = EquilibriumSpec {
        mnist_dir: Some(PathBuf::from("/nonexistent/mnist")),
        ..base
    };
    assert!(matches!(
        missing.build::<TB>(0, &dev()),
        Err(ProblemError::Data(_))
    ));
}

#[test]
fn bsgm_lowers_the_training_loss() {
    let s = EquilibriumSpec {
        train: 200,
        test: 300,
        state_dim: 20,
        projection: Some(50),
        epsilon: 0.1,
        ..Default::default()
    };
    let p = problem(&s, 0);
    let (x0, y0) = p.initial_point(0).unwrap();
    let m0 = p.evaluate(&x0, &y0).unwrap();
    assert_eq!(
        p.metric_names(),
        vec![
            "test_accuracy",
            "test_loss",
            "train_accuracy",
            "train_loss",
            "fixed_point_residual",
            "contraction_factor",
            "prox_grad_map_norm"
        ]
    );
    assert_eq!(metric(&m0, "contraction_factor"), 0.0); // A⁰ = 0
    assert!(p.describe().contains("equilibrium"));
    // The paper's setting: deterministic LL/LS per example (η = 1), UL batch s.
    let cfg = SidConfig {
        lower_level: LowerLevel::Contraction,
        inner_steps: 40,
        linear_steps: 40,
        batch_size: None,
        inner_batch: None,
        linear_batch: None,
        inner_step_schedule: InnerStepSchedule::Constant { step: 1.0 },
        warm_start_inner: false,
        warm_start_linear: false,
    };
    let mut solver = bsgm(cfg, 0.5).unwrap();
    let mut oracle = Oracle::new(&p);
    let mut state = State::new(x0, y0, 0);
    for _ in 0..30 {
        state = solver.next_iter(&mut oracle, state).unwrap();
    }
    let m = p.evaluate(&state.x, &state.y).unwrap();
    println!("BSGM, 30 steps: {m0:?}\n  → {m:?}");
    let (l0, l1) = (metric(&m0, "train_loss"), metric(&m, "train_loss"));
    // Measured: train loss 2.286 → 0.765 (train accuracy 0.165 → 0.80, test 0.137 → 0.57), and
    // the projection keeps ‖A‖∞ at its bound 0.9. (`state.y` solves the LL at the previous x,
    // so its residual at the new x is not small: not checked.)
    assert!(l1 < 0.5 * l0, "{l0} → {l1}");
    assert!(metric(&m, "contraction_factor") <= 0.9 + 1e-12);
    assert!(metric(&m, "test_accuracy") > 0.5, "{m:?}");

    // A stochastic UL batch and a warm-started LL run too (one step each).
    for cfg in [
        SidConfig {
            batch_size: Some(32),
            ..cfg
        },
        SidConfig {
            batch_size: Some(32),
            ..cfg
        }
        .warm_inner(),
    ] {
        let mut solver = bsgm(cfg, 0.5).unwrap();
        let next = solver.next_iter(&mut oracle, state.clone()).unwrap();
        assert!(host(&next.x).iter().all(|v| v.is_finite()));
    }
}
