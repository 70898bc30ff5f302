//! Every deterministic method of `bilevel-algorithms` on one quadratic bilevel problem
//! (`g = ½yᵀAy − yᵀ(Bx + c)`, `f = ½‖y − t‖² + ½μ‖x‖² + xᵀKy`, κ(A) = 10), run through the
//! `Executor`; prints the exact final `‖∇Φ(x)‖` (closed form) and the oracle counts per method.
//!
//! `cargo run --release --example quadratic`

use bilevel_algorithms::aid::{Aid, AidConfig, LinearSolver};
use bilevel_algorithms::hoag::{Hoag, HoagConfig};
use bilevel_algorithms::itd::{Itd, ItdConfig};
use bilevel_algorithms::sid::{bsgm, InnerStepSchedule, SidConfig};
use bilevel_core::backend::{flex_device, FlexAutodiff, Precision};
use bilevel_core::problems::{QuadraticBilevel, QuadraticSpec};
use bilevel_core::tensor::{to_vec, vector};
use bilevel_core::{
    Executor, ExecutorConfig, OuterLoop, OuterOptimizer, RunOutcome, Solver, State,
};

/// The default CPU backend; `flex_device(Precision::F64)` (in `main`) makes it compute in f64.
type B = FlexAutodiff;

/// Outer iterations of every method.
const ITERS: u64 = 300;

fn run<S: Solver<B>>(problem: &QuadraticBilevel<B>, solver: S, iters: u64) -> RunOutcome<B> {
    let device = Default::default();
    let state = State::new(vector(&[1.0; 5], &device), vector(&[0.0; 8], &device), 0);
    Executor::new(problem, solver)
        .configure(|c| ExecutorConfig {
            max_iters: iters,
            ..c
        })
        .run(state)
        .expect("run failed")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Before the first tensor: Flex's default float is f32 unless the process asks for f64.
    let device = flex_device(Precision::F64)?;
    let problem = QuadraticBilevel::<B>::random(&QuadraticSpec::default(), &device)?;
    let form = problem.closed_form().clone();
    let report = |name: &str, out: RunOutcome<B>| -> Result<(), Box<dyn std::error::Error>> {
        let grad = form.hypergradient(&to_vec(out.state.x.clone())?)?;
        let norm = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
        println!(
            "{}",
            bilevel_examples::row(name, norm, out.state.iter, &out.state.counts)
        );
        Ok(())
    };
    println!("{}", bilevel_examples::header());
    let lr = OuterOptimizer::sgd(1.5);
    report(
        "aid-cg",
        run(
            &problem,
            OuterLoop::new(Aid::new(AidConfig::default())?, lr),
            ITERS,
        ),
    )?;
    let fp = AidConfig {
        linear_solver: LinearSolver::FixedPoint {
            step: 0.1,
            steps: 10,
        },
        ..Default::default()
    };
    report(
        "aid-fp",
        run(&problem, OuterLoop::new(Aid::new(fp)?, lr), ITERS),
    )?;
    report(
        "itd",
        run(
            &problem,
            OuterLoop::new(
                Itd::new(ItdConfig {
                    inner_steps: 40,
                    ..Default::default()
                })?,
                lr,
            ),
            ITERS,
        ),
    )?;
    report(
        "hoag",
        run(&problem, Hoag::new(HoagConfig::default())?, ITERS),
    )?;
    let sid = SidConfig {
        inner_steps: 60,
        linear_steps: 60,
        inner_batch: None,
        linear_batch: None,
        batch_size: None,
        inner_step_schedule: InnerStepSchedule::Constant { step: 1.0 },
        ..Default::default()
    };
    report("sid-bsgm", run(&problem, bsgm(sid, 1.5)?, ITERS))?;
    Ok(())
}
