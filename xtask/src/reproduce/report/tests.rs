use super::*;

/// Two fake methods × two seeds on one variant: `decay` halves a gap each iteration,
/// `flat` stays at 1; accuracy rises towards 0.9.
pub(crate) fn synthetic_runs() -> Vec<SeedRun> {
    let mut runs = Vec::new();
    for (method, rate) in [("decay", 0.5), ("flat", 1.0)] {
        for seed in 0..2u64 {
            let scale = 1.0 + 0.1 * seed as f64;
            let records: Vec<IterRecord> = (0..=20u64)
                .map(|k| IterRecord {
                    iter: k,
                    wall_time_s: 0.01 * k as f64 * scale,
                    outer_loss: Some(1.0 / (1.0 + k as f64)),
                    hypergrad_norm: Some(scale * f64::powi(rate, k as i32)),
                    counts: OracleCounts {
                        grad_f: k,
                        grad_g: 10 * k,
                        hvp: 5 * k,
                        jvp: k,
                        samples_g: 500 * k,
                        ..Default::default()
                    },
                    metrics: if k % 5 == 0 {
                        vec![
                            ("grad_norm".into(), scale * f64::powi(rate, k as i32)),
                            ("test_accuracy".into(), 0.9 - 0.5 / (1.0 + k as f64)),
                        ]
                    } else {
                        vec![]
                    },
                })
                .collect();
            let last = records.last().unwrap().clone();
            runs.push(SeedRun {
                variant: "main".into(),
                method: method.into(),
                algorithm: method.into(),
                seed,
                final_metrics: last.metrics.clone(),
                wall_time_s: last.wall_time_s,
                iterations: last.iter,
                counts: last.counts,
                records,
                termination: "maximum number of iterations reached".into(),
            });
        }
    }
    runs
}

/// A quick-mode summary of the fake experiment with these tables and plots.
fn fake_summary(
    variants: Vec<VariantSummary>,
    targets: Vec<TargetResult>,
    plots: Vec<String>,
) -> Summary {
    Summary {
        experiment: "fake".into(),
        paper: "none".into(),
        title: "a test".into(),
        mode: "quick".into(),
        seeds: vec![0, 1],
        data: "generated".into(),
        variants,
        checks: vec![],
        targets,
        checks_note: None,
        notes: vec![],
        plots,
    }
}

#[test]
fn csv_has_one_row_per_record_and_empty_cells_where_not_evaluated() {
    let runs = synthetic_runs();
    let csv = metrics_csv(&runs);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 4 * 21);
    let header: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(
        &header[..5],
        &["variant", "method", "seed", "iter", "wall_time_s"]
    );
    assert_eq!(header[header.len() - 2..], ["grad_norm", "test_accuracy"]);
    for line in &lines[1..] {
        assert_eq!(line.split(',').count(), header.len(), "{line}");
    }
    let row1: Vec<&str> = lines[2].split(',').collect();
    assert_eq!(row1[3], "1");
    assert_eq!(row1[header.len() - 1], "");
    let row5: Vec<&str> = lines[6].split(',').collect();
    assert_eq!(row5[3], "5");
    let acc: f64 = row5[header.len() - 1].parse().unwrap();
    assert!((acc - (0.9 - 0.5 / 6.0)).abs() < 1e-15);
}

#[test]
fn stats_are_mean_and_sample_std() {
    let s = Stats::of(&[1.0, 2.0, 3.0]).unwrap();
    assert_eq!((s.mean, s.std, s.min, s.max), (2.0, 1.0, 1.0, 3.0));
    assert_eq!(Stats::of(&[4.0]).unwrap().std, 0.0);
    assert!(Stats::of(&[]).is_none());
    assert_eq!(fmt_num(0.912345), "0.9123");
    assert_eq!(fmt_num(123.456), "123.5");
    assert_eq!(fmt_num(1.5e-7), "1.500e-7");
}

#[test]
fn summary_has_final_and_initial_values_per_method() {
    let runs = synthetic_runs();
    let v = summarize_variant("main", "fake", &runs, &["test_accuracy"]);
    assert_eq!(v.metrics, ["test_accuracy", "grad_norm", "outer_loss"]);
    assert_eq!(v.methods.len(), 2);
    let decay = &v.methods[0];
    assert_eq!(decay.label, "decay");
    assert_eq!(decay.seeds, 2);
    let g = &decay.final_metrics["grad_norm"];
    assert!((g.values[0] - 0.5f64.powi(20)).abs() < 1e-18);
    assert!((decay.initial_metrics["grad_norm"].values[1] - 1.1).abs() < 1e-15);
    assert_eq!(decay.iterations.mean, 20.0);
    assert_eq!(decay.counts["hvp"].mean, 100.0);
    let md = summary_markdown(&fake_summary(vec![v], vec![], vec!["a.png".into()]));
    assert!(md.contains("| decay | 0.8762 ± 0 |"), "{md}");
    assert!(md.contains("![a.png](a.png)"));
}

#[test]
fn time_aggregation_interpolates_within_each_seed() {
    let runs = synthetic_runs();
    let decay: Vec<&SeedRun> = runs.iter().filter(|r| r.method == "decay").collect();
    let by_iter = aggregate_by_iter(&decay, "grad_norm");
    assert_eq!(by_iter.len(), 5);
    assert!(by_iter.iter().all(|p| p.n == 2));
    assert!((by_iter[0].mean - 1.05).abs() < 1e-15);
    let by_time = aggregate_by_time(&decay, "test_accuracy", 11, false);
    assert_eq!(by_time.len(), 11);
    // Seed 0 stops at 0.2 s, seed 1 at 0.22 s: the last grid point has seed 1 only.
    assert_eq!(by_time[10].n, 1);
    assert_eq!(by_time[0].n, 2);
    assert!(by_time.windows(2).all(|w| w[0].mean <= w[1].mean + 1e-15));
    // Geometric interpolation of a geometric decay is exact: seed 0 has 0.5^k at 0.01 k s.
    let s: Vec<(f64, f64)> = (0..=4)
        .map(|k| (0.05 * k as f64, 0.5f64.powi(5 * k)))
        .collect();
    let mid = interpolate(&s, 0.07, true).unwrap();
    assert!((mid - 0.5f64.powi(7)).abs() < 1e-15);
    assert_eq!(interpolate(&s, 0.3, true), None);
}

/// Time-to-target takes the first record at the level, per seed, with the algorithm's wall
/// time there: `decay`'s `grad_norm = s·0.5^k` (recorded at k = 0, 5, 10, …) reaches 1e-3 at
/// k = 10 for seed 0 (s = 1) and k = 15 for seed 1 (s = 1.1, where 1.1·0.5¹⁰ > 1e-3); `flat`
/// never does (best 1.0). An `at_least` target on the rising accuracy: k = 20 for all. Fails
/// (tried) when the last crossing is taken instead of the first, and when `higher` is ignored
/// (every accuracy record is ≤ 0.87 until k = 20, so the ≤ reading would time k = 0).
#[test]
fn time_to_target_is_the_first_record_at_the_level() {
    use crate::reproduce::experiments::Target;
    let runs = synthetic_runs();
    let target = |metric: &str, level: f64, higher: bool| Target {
        metric: metric.into(),
        level,
        higher,
        variant: None,
    };
    let r = target("grad_norm", 1e-3, false).evaluate(&runs);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].variant.as_str(), r[0].target.as_str()),
        ("main", "grad_norm ≤ 0.001")
    );
    let (decay, flat) = (&r[0].methods[0], &r[0].methods[1]);
    assert_eq!(
        (decay.label.as_str(), decay.seeds, decay.reached),
        ("decay", 2, 2)
    );
    assert_eq!(decay.iterations.as_ref().unwrap().values, [10.0, 15.0]);
    let secs = &decay.seconds.as_ref().unwrap().values;
    assert!(
        (secs[0] - 0.1).abs() < 1e-12 && (secs[1] - 0.165).abs() < 1e-12,
        "{secs:?}"
    );
    assert_eq!((flat.reached, flat.best), (0, Some(1.0)));
    assert!(flat.seconds.is_none() && flat.per_seed == [(0, None), (1, None)]);

    let acc = target("test_accuracy", 0.87, true).evaluate(&runs);
    for m in &acc[0].methods {
        assert_eq!(
            m.iterations.as_ref().unwrap().values,
            [20.0, 20.0],
            "{}",
            m.label
        );
    }
    let md = summary_markdown(&fake_summary(vec![], r, vec![]));
    assert!(md.contains("### main — grad_norm ≤ 0.001"), "{md}");
    assert!(
        md.contains("| decay | 2 / 2 | 0.1325 ± 0.04596 | 12.50 ± 3.536 |"),
        "{md}"
    );
    assert!(md.contains("| flat | 0 / 2 | – | – | 1.000 |"), "{md}");
}
