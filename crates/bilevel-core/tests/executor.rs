//! Executor: stopping rules, observers, CSV, divergence, and bit-identical resume.

mod common;

use bilevel_core::problems::{QuadraticBilevel, QuadraticSpec};
use bilevel_core::{Batch, BilevelProblem};
use bilevel_core::{
    Checkpoint, Checkpointing, CsvWriter, Executor, ObserverMode, Oracle, OuterOptimizer, Recorder,
    Result, Solver, State, TerminationReason,
};
use burn::tensor::Tensor;
use common::{dev, host, t, TestBackend};

type B = TestBackend;

/// Toy solver: `x ← Adam(x, ∇Φ(x) + σ ξ)` with the exact hypergradient and `ξ ~ N(0, I)` drawn
/// from the state's RNG, so that resume must restore the RNG and Adam's moments to be exact.
#[derive(Clone)]
struct NoisyExact {
    problem: QuadraticBilevel<B>,
    noise: f64,
    optimizer: OuterOptimizer,
}

impl Solver<B> for NoisyExact {
    fn name(&self) -> String {
        "noisy-exact".into()
    }
    fn next_iter<P: BilevelProblem<B>>(
        &mut self,
        oracle: &mut Oracle<'_, B, P>,
        mut state: State<B>,
    ) -> Result<State<B>> {
        let x = host(&state.x);
        let y = self.problem.closed_form().y_star(&x)?;
        state.y = t(&y);
        let loss = oracle.grad_f(&state.x, &state.y, &Batch::Full)?.value;
        state.outer_loss = Some(bilevel_core::tensor::scalar(loss));
        let exact = self.problem.closed_form().hypergradient(&x)?;
        let xi = state.rng.normal_vec(x.len());
        let g: Vec<f64> = exact
            .iter()
            .zip(&xi)
            .map(|(g, e)| g + self.noise * e)
            .collect();
        let g = t(&g);
        bilevel_core::tensor::check_finite("hypergradient", &g)?;
        state.x = self.optimizer.step(&mut state, g.clone());
        state.hypergradient = Some(g);
        state.iter += 1;
        Ok(state)
    }
}

fn setup(noise: f64, lr: f64) -> (QuadraticBilevel<B>, NoisyExact, State<B>) {
    let p = QuadraticBilevel::<B>::random(
        &QuadraticSpec {
            seed: 9,
            ..Default::default()
        },
        &dev(),
    )
    .unwrap();
    let solver = NoisyExact {
        problem: p.clone(),
        noise,
        optimizer: OuterOptimizer::adam(lr),
    };
    let state = State::new(t(&[0.5; 5]), t(&[0.0; 8]), 123);
    (p, solver, state)
}

fn bits(x: &Tensor<B, 1>) -> Vec<u64> {
    host(x).iter().map(|v| v.to_bits()).collect()
}

#[test]
fn resume_from_checkpoint_is_bit_identical() {
    let dir = std::env::temp_dir().join(format!("bilevel-exec-{}", std::process::id()));
    let (p, solver, state) = setup(0.3, 0.05);
    let full = Executor::new(&p, solver.clone())
        .configure(|c| bilevel_core::ExecutorConfig { max_iters: 40, ..c })
        .run(state.clone())
        .unwrap();
    assert_eq!(full.termination, TerminationReason::MaxItersReached);

    // "Kill" after 17 iterations (the checkpoint every 5 holds iteration 15 and the final write 17).
    let path = dir.join("ckpt.json");
    let part = Executor::new(&p, solver.clone())
        .configure(|c| bilevel_core::ExecutorConfig { max_iters: 17, ..c })
        .checkpointing(Checkpointing {
            path: path.clone(),
            every: 5,
            run: None,
        })
        .run(state)
        .unwrap();
    assert_eq!(part.state.iter, 17);
    let ckpt = Checkpoint::load(&path).unwrap();
    assert_eq!(ckpt.state.iter, 17);
    let resumed = Executor::new(&p, solver.clone())
        .configure(|c| bilevel_core::ExecutorConfig { max_iters: 40, ..c })
        .resume(&ckpt)
        .unwrap();
    assert_eq!(resumed.state.iter, 40);
    assert_eq!(bits(&resumed.state.x), bits(&full.state.x));
    assert_eq!(resumed.state.counts, full.state.counts);

    // A checkpoint from another solver or of another shape is refused.
    let mut other = ckpt.clone();
    other.solver = "aid-cg".into();
    let err = Executor::new(&p, solver.clone())
        .resume(&other)
        .unwrap_err();
    assert!(
        matches!(err, bilevel_core::BilevelError::Checkpoint(_)),
        "{err}"
    );
    let mut short = ckpt;
    short.state.x.pop();
    let err = Executor::new(&p, solver).resume(&short).unwrap_err();
    assert!(
        matches!(err, bilevel_core::BilevelError::ShapeMismatch { .. }),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn converges_records_and_writes_csv() {
    let dir = std::env::temp_dir().join(format!("bilevel-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("metrics.csv");
    let (p, solver, state) = setup(0.0, 0.1);
    let recorder = Recorder::new();
    let form = p.closed_form().clone();
    let out = Executor::new(&p, solver)
        .configure(|c| bilevel_core::ExecutorConfig {
            max_iters: 5000,
            hypergrad_tol: Some(1e-8),
            ..c
        })
        .add_observer(recorder.clone(), ObserverMode::Always)
        .add_observer(CsvWriter::new(&csv), ObserverMode::Every(10))
        .add_metric("phi", |m| form.phi(&host(&m.x)).unwrap())
        .run(state)
        .unwrap();
    assert_eq!(out.termination, TerminationReason::Converged);
    let x = host(&out.state.x);
    let err = bilevel_core::tensor::rel_err_host(&x, &p.closed_form().x_star().unwrap());
    assert!(err < 1e-6, "x error {err}");
    let records = recorder.records();
    assert_eq!(records.len() as u64, out.state.iter);
    assert_eq!(records.last().unwrap().counts.grad_f, out.state.iter);
    // Φ decreases overall and the metric is the closed-form value.
    let phi_star = p
        .closed_form()
        .phi(&p.closed_form().x_star().unwrap())
        .unwrap();
    assert!((records.last().unwrap().metrics[0].1 - phi_star).abs() < 1e-8);
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("iter,wall_time_s,outer_loss,hypergrad_norm,")
            && lines[0].ends_with(",phi")
    );
    // Every 10th iteration, and the last (the run converged off that cadence): fails if
    // `ObserverMode::Every` skipped the last iteration, as its doc said it did not (issue 21's
    // item 12).
    assert_ne!(
        out.state.iter % 10,
        0,
        "the test needs a last iteration off the cadence"
    );
    assert_eq!(lines.len() as u64, 1 + out.state.iter / 10 + 1);
    assert!(lines[1].starts_with("10,"));
    assert!(lines
        .last()
        .unwrap()
        .starts_with(&format!("{},", out.state.iter)));
    assert!(
        !lines.last().unwrap().ends_with(','),
        "the last row has its metric"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn divergence_stops_with_the_last_finite_state() {
    let (p, mut solver, state) = setup(0.0, 1.0);
    solver.optimizer = OuterOptimizer::sgd(1e150);
    let dir = std::env::temp_dir().join(format!("bilevel-nan-{}", std::process::id()));
    let path = dir.join("ckpt.json");
    let out = Executor::new(&p, solver)
        .configure(|c| bilevel_core::ExecutorConfig { max_iters: 50, ..c })
        .checkpointing(Checkpointing {
            path: path.clone(),
            every: 1,
            run: None,
        })
        .run(state)
        .unwrap();
    assert!(
        matches!(out.termination, TerminationReason::NonFinite(_)),
        "{:?}",
        out.termination
    );
    assert!(out.state.iter < 50);
    assert!(host(&out.state.x).iter().all(|v| v.is_finite()));
    let ckpt = Checkpoint::load(&path).unwrap();
    assert!(ckpt.state.x.iter().all(|v| v.is_finite()));
    assert_eq!(ckpt.state.iter, out.state.iter);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_inputs_are_errors() {
    let (p, solver, _) = setup(0.0, 0.1);
    let err = Executor::new(&p, solver.clone())
        .run(State::new(t(&[0.0; 4]), t(&[0.0; 8]), 0))
        .unwrap_err();
    assert!(matches!(
        err,
        bilevel_core::BilevelError::ShapeMismatch { .. }
    ));
    let mut bad = solver;
    bad.optimizer = OuterOptimizer::sgd(-1.0);
    assert!(bad.optimizer.validate().is_err());
    assert!(Checkpoint::load(std::path::Path::new("/nonexistent/ckpt.json")).is_err());
}

/// [`NoisyExact`] reporting `−x` and `−y` as its output, so that a metric that read the state
/// instead of the reported point would be seen.
#[derive(Clone)]
struct ReportsNegated(NoisyExact);

impl Solver<B> for ReportsNegated {
    fn name(&self) -> String {
        "reports-negated".into()
    }
    fn next_iter<P: BilevelProblem<B>>(
        &mut self,
        oracle: &mut Oracle<'_, B, P>,
        state: State<B>,
    ) -> Result<State<B>> {
        self.0.next_iter(oracle, state)
    }
    fn reported_x(&self, state: &State<B>) -> Tensor<B, 1> {
        state.x.clone().neg()
    }
    fn reported_y(&self, state: &State<B>) -> Tensor<B, 1> {
        state.y.clone().neg()
    }
}

/// Metrics see the method's reported point (not the state's), grouped metrics run on their
/// cadence only (NaN elsewhere), and the outcome carries the reported point. Fails if the
/// executor hands metrics `state.x` (the `x` column would equal `state.x[0]`, not its
/// negation), if the cadence test is dropped (no NaN rows) or inverted, or if the outcome's
/// `reported` is the state's point.
#[test]
fn metrics_see_the_reported_point_on_their_cadence() {
    let (p, solver, state) = setup(0.0, 0.05);
    let recorder = Recorder::new();
    let calls = std::cell::Cell::new(0u32);
    let out = Executor::new(&p, ReportsNegated(solver))
        .configure(|c| bilevel_core::ExecutorConfig { max_iters: 7, ..c })
        .add_observer(recorder.clone(), ObserverMode::Always)
        .add_metric("x0", |m| host(&m.x)[0])
        .add_metrics(&["y0", "state_x0"], 3, |m| {
            calls.set(calls.get() + 1);
            Ok(vec![host(&m.y)[0], host(&m.state.x)[0]])
        })
        .run(state)
        .unwrap();
    let records = recorder.records();
    assert_eq!(records.len(), 7);
    for r in &records {
        let names: Vec<&str> = r.metrics.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x0", "y0", "state_x0"]);
        let (x0, y0, sx0) = (r.metrics[0].1, r.metrics[1].1, r.metrics[2].1);
        assert!(x0.is_finite());
        if r.iter % 3 == 0 {
            assert!(y0.is_finite() && sx0.is_finite(), "iteration {}", r.iter);
            assert_eq!(x0, -sx0, "metrics must see the reported x = −state.x");
        } else {
            assert!(y0.is_nan() && sx0.is_nan(), "iteration {}", r.iter);
        }
    }
    assert_eq!(calls.get(), 2, "evaluated at iterations 3 and 6 only");
    assert_eq!(host(&out.reported.x), host(&out.state.x.clone().neg()));
    assert_eq!(host(&out.reported.y), host(&out.state.y.clone().neg()));
    assert_eq!(out.reported.name, "returned");
    assert!(out.alternatives.is_empty());
}

/// The run's clock counts the algorithm only: a metric that sleeps 0.1 s at each of 6 iterations
/// leaves the records' wall times and the outcome's `elapsed_s` far below the 0.6 s slept (the
/// quadratic's iterations take microseconds; bound 0.25 s), while the wall clock passed 0.6 s.
/// Fails (tried) when the time spent evaluating metrics is not set aside.
#[test]
fn wall_times_leave_out_metric_evaluation() {
    let (p, solver, state) = setup(0.0, 0.05);
    let recorder = Recorder::new();
    let started = std::time::Instant::now();
    let out = Executor::new(&p, solver)
        .configure(|c| bilevel_core::ExecutorConfig { max_iters: 6, ..c })
        .add_observer(recorder.clone(), ObserverMode::Always)
        .add_metric("slow", |_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            1.0
        })
        .run(state)
        .unwrap();
    assert!(started.elapsed().as_secs_f64() >= 0.6);
    let records = recorder.records();
    assert_eq!(records.len(), 6);
    let last = records.last().unwrap().wall_time_s;
    assert!(
        last <= 0.25 && out.elapsed_s <= 0.25,
        "{last} s, {} s",
        out.elapsed_s
    );
    assert!(records
        .windows(2)
        .all(|w| w[0].wall_time_s <= w[1].wall_time_s));
}

/// A metric group that fails, or returns the wrong number of values, ends the run with an
/// error (fails if errors were swallowed into NaN, as the runner's cache once did).
#[test]
fn metric_errors_end_the_run() {
    let (p, solver, state) = setup(0.0, 0.05);
    let err = Executor::new(&p, solver.clone())
        .configure(|c| bilevel_core::ExecutorConfig { max_iters: 3, ..c })
        .add_observer(Recorder::new(), ObserverMode::Always)
        .add_metrics(&["a", "b"], 1, |_| Ok(vec![1.0]))
        .run(state.clone())
        .unwrap_err();
    assert!(
        matches!(err, bilevel_core::BilevelError::ShapeMismatch { .. }),
        "{err}"
    );
    let err = Executor::new(&p, solver)
        .configure(|c| bilevel_core::ExecutorConfig { max_iters: 3, ..c })
        .add_observer(Recorder::new(), ObserverMode::Always)
        .add_metrics(&["a"], 2, |m| {
            if m.state.iter == 2 {
                Err(bilevel_core::BilevelError::invalid(
                    "a",
                    "evaluation failed",
                ))
            } else {
                Ok(vec![0.0])
            }
        })
        .run(state)
        .unwrap_err();
    assert!(err.to_string().contains("evaluation failed"), "{err}");
}

/// A record whose metric was evaluated on even iterations (NaN elsewhere).
fn record(iter: u64) -> bilevel_core::IterRecord {
    let acc = if iter % 2 == 0 { 0.5 } else { f64::NAN };
    bilevel_core::IterRecord {
        iter,
        wall_time_s: iter as f64,
        outer_loss: Some(1.0 / (iter as f64 + 1.0)),
        hypergrad_norm: None,
        counts: Default::default(),
        metrics: vec![("acc".to_string(), acc)],
    }
}

/// The one CSV writer on resume: keeps the header and the complete rows up to the checkpoint,
/// drops later rows (written by a killed run after its checkpoint) and a partial last line,
/// then appends; a metric cell is empty where the metric was not evaluated (NaN). Fails if
/// `resume` appended without truncating (rows 4..6 would stay, duplicated), kept the partial
/// line, or wrote "NaN" for a metric that was not evaluated.
#[test]
fn csv_writer_resumes_after_its_checkpoint() {
    let dir = std::env::temp_dir().join(format!("bilevel-csv-resume-{}", std::process::id()));
    let path = dir.join("m.csv");
    let mut w = CsvWriter::create(&path, &["acc"]).unwrap();
    for i in 0..=6 {
        w.write(&record(i)).unwrap();
    }
    drop(w);
    // A killed run's half-written line.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("7,0.1");
    std::fs::write(&path, text).unwrap();
    let mut w = CsvWriter::resume(&path, &["acc"], 3).unwrap();
    w.write(&record(4)).unwrap();
    let mut last = record(5);
    last.metrics[0].1 = 0.25;
    w.write(&last).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("iter,") && lines[0].ends_with(",acc"),
        "{text}"
    );
    let iters: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(iters, ["0", "1", "2", "3", "4", "5"], "{text}");
    let acc = |line: &str| line.rsplit(',').next().unwrap().to_string();
    assert_eq!(acc(lines[2]), "", "row 1 is off the metric cadence");
    assert_eq!(acc(lines[3]), "5e-1");
    assert_eq!(acc(lines[6]), "2.5e-1", "a row carries the metrics it has");
    // A missing file is started with the header.
    let fresh = dir.join("new.csv");
    CsvWriter::resume(&fresh, &["acc"], 10).unwrap();
    assert_eq!(std::fs::read_to_string(&fresh).unwrap().lines().count(), 1);
    std::fs::remove_dir_all(&dir).ok();
}

/// A checkpoint is tied to its content and its run: an edited file (its iteration, one bit of
/// `x`), one without a digest, one of another run, and one past `max_iters` are refused (issue
/// 21's item 5: each was accepted and produced a wrong report). Fails without the digest check
/// (the edited files load), without the run check, or without the `max_iters` check.
#[test]
fn checkpoints_are_tied_to_their_content_and_run() {
    let dir = std::env::temp_dir().join(format!("bilevel-ckpt-tie-{}", std::process::id()));
    let path = dir.join("ckpt.json");
    let (p, solver, state) = setup(0.3, 0.05);
    let checkpointing = |run: &str| Checkpointing {
        path: path.clone(),
        every: 0,
        run: Some(run.into()),
    };
    Executor::new(&p, solver.clone())
        .configure(|c| bilevel_core::ExecutorConfig { max_iters: 6, ..c })
        .checkpointing(checkpointing("run-a"))
        .run(state)
        .unwrap();
    let good = Checkpoint::load(&path).unwrap();
    assert_eq!((good.state.iter, good.run.as_deref()), (6, Some("run-a")));
    let text = std::fs::read_to_string(&path).unwrap();
    for (what, edited) in [
        ("iteration", text.replace("\"iter\":6", "\"iter\":999999")),
        ("no digest", {
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v.as_object_mut().unwrap().remove("digest");
            v.to_string()
        }),
        ("x", {
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let x0 = v["state"]["x"][0].as_f64().unwrap();
            v["state"]["x"][0] = serde_json::json!(f64::from_bits(x0.to_bits() ^ 1));
            v.to_string()
        }),
    ] {
        assert_ne!(edited, text, "{what}: the edit must change the file");
        std::fs::write(&path, &edited).unwrap();
        let err = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(err.contains("digest"), "{what}: {err}");
    }
    let resume = |run: &str, max_iters: u64| {
        Executor::new(&p, solver.clone())
            .configure(|c| bilevel_core::ExecutorConfig { max_iters, ..c })
            .checkpointing(checkpointing(run))
            .resume(&good)
    };
    let err = resume("run-b", 10).unwrap_err().to_string();
    assert!(err.contains("another run"), "{err}");
    let err = resume("run-a", 5).unwrap_err().to_string();
    assert!(err.contains("past this run's max_iters"), "{err}");
    assert_eq!(resume("run-a", 10).unwrap().state.iter, 10);
    std::fs::remove_dir_all(&dir).ok();
}

/// `into_result` turns a divergence into an error naming what diverged, and passes any other
/// outcome through (fails if it let `NonFinite` through as `Ok`, issue 21's item 10).
#[test]
fn into_result_makes_divergence_an_error() {
    let (p, mut solver, state) = setup(0.0, 1.0);
    solver.optimizer = OuterOptimizer::sgd(1e150);
    let out = Executor::new(&p, solver.clone())
        .configure(|c| bilevel_core::ExecutorConfig { max_iters: 50, ..c })
        .run(state.clone())
        .unwrap();
    assert!(matches!(out.termination, TerminationReason::NonFinite(_)));
    let err = out.into_result().unwrap_err();
    assert!(
        matches!(err, bilevel_core::BilevelError::NonFinite { .. }),
        "{err}"
    );
    let (p, solver, state) = setup(0.0, 0.05);
    let out = Executor::new(&p, solver)
        .configure(|c| bilevel_core::ExecutorConfig { max_iters: 3, ..c })
        .run(state)
        .unwrap();
    assert_eq!(out.into_result().unwrap().state.iter, 3);
}

/// A diverging inner loop is reported as one (not as a non-finite CG right-hand side or loss
/// further on, issue 21's item 10). Fails without the check at the end of the inner loop.
#[test]
fn a_diverging_inner_loop_is_named() {
    let (p, _, state) = setup(0.0, 0.05);
    let mut oracle = Oracle::new(&p);
    let gd = bilevel_core::inner::InnerGd {
        step: 1e6,
        steps: 400,
    };
    let err =
        bilevel_core::inner::gradient_descent(&mut oracle, &state.x, state.y.clone(), &gd, |_| {
            Batch::Full
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("inner gradient descent diverged"),
        "{err}"
    );
}
