//! `meta-learning` on tiny synthetic-glyph episodes (16×16, 2–3-way, CNN4 with 2 filters):
//! gradients and exact products against finite differences, task batches touching only their
//! heads, disjoint class splits, a few ITD outer steps, spec handling and missing data sets.

mod problem_checks;

use bilevel_algorithms::itd::{Itd, ItdConfig};
use bilevel_core::sampling::Rng;
use bilevel_core::{
    Batch, BilevelProblem, HypergradientEstimator, MetaLayout, Oracle, OuterLoop, OuterOptimizer,
    Solver, State,
};
use bilevel_data::DataError;
use bilevel_problems::meta_learning::{
    Adapt, BackboneKind, FewShotDataset, MetaLearning, MetaLearningSpec,
};
use bilevel_problems::{Application, ProblemError};
use problem_checks::{
    dev, directional_gradient_error, host, metric, second_order_errors, t, Level, TB,
};

fn tiny() -> MetaLearningSpec {
    MetaLearningSpec {
        n_way: 3,
        k_shot: 2,
        n_query: 2,
        tasks: 4,
        filters: 2,
        image_size: Some(16),
        eval_episodes: 4,
        head_steps: 50,
        glyph_alphabets: 3,
        glyph_characters: 4,
        glyph_instances: 6,
        glyph_test_alphabets: 1,
        ..Default::default()
    }
}

fn build(s: &MetaLearningSpec, seed: u64) -> MetaLearning<TB> {
    s.build::<TB>(seed, None, &dev()).unwrap()
}

/// The seeded backbone and random heads (`scale`), plus noise on the backbone.
fn point(p: &MetaLearning<TB>, seed: u64, scale: f64) -> (Vec<f64>, Vec<f64>) {
    let (x0, _) = p.initial_point(seed).unwrap();
    let mut rng = Rng::seed(seed + 1);
    let x = host(&x0)
        .iter()
        .zip(rng.normal_vec(p.x_dim()))
        .map(|(a, n)| a + 0.05 * n)
        .collect();
    let y = rng
        .normal_vec(p.y_dim())
        .iter()
        .map(|v| scale * v)
        .collect();
    (x, y)
}

#[test]
fn gradients_match_central_differences() {
    let p = build(&tiny(), 1);
    // CNN4, 1 channel, 2 filters: 142 parameters; 16×16 → 1×1, d = 2; heads 3·3.
    assert_eq!((p.x_dim(), p.feature_dim(), p.head_len()), (142, 2, 9));
    assert_eq!((p.y_dim(), p.num_tasks()), (36, 4));
    let (x, y) = point(&p, 3, 0.5);
    for level in [Level::Inner, Level::Outer] {
        for batch in [Batch::Full, Batch::Indices(vec![1, 3, 3])] {
            let err = directional_gradient_error(&p, level, &x, &y, &batch, 1, 1e-6, 5);
            println!("{level:?} {batch:?}: gradient error {err:e}");
            assert!(err < 1e-6, "{level:?} {batch:?}: {err:e}");
        }
    }
}

#[test]
fn exact_products_match_finite_differences() {
    let p = build(&tiny(), 2);
    let (x, y) = point(&p, 4, 0.5);
    let v = Rng::seed(5).normal_vec(p.y_dim());
    for batch in [Batch::Full, Batch::Indices(vec![0, 2])] {
        let (eh, ej) = second_order_errors(&p, &x, &y, &v, &batch);
        println!("{batch:?}: hvp rel err {eh:e}, jvp rel err {ej:e}");
        assert!(eh < 1e-6 && ej < 1e-6, "{batch:?}: hvp {eh:e}, jvp {ej:e}");
    }
}

#[test]
fn a_task_batch_touches_only_its_heads() {
    let p = build(&tiny(), 3);
    let (x, y) = point(&p, 6, 0.5);
    let h = p.head_len();
    let mut oracle = Oracle::new(&p);
    let batch = Batch::Indices(vec![1, 3]);
    let g = oracle.grad_g(&t(&x), &t(&y), &batch).unwrap();
    let f = oracle.grad_f(&t(&x), &t(&y), &batch).unwrap();
    for grad in [host(&g.y), host(&f.y)] {
        for (j, v) in grad.iter().enumerate() {
            let task = j / h;
            if task == 1 || task == 3 {
                assert!(*v != 0.0, "coordinate {j} of task {task}");
            } else {
                assert_eq!(*v, 0.0, "coordinate {j} of task {task}");
            }
        }
    }
    // The inner Hessian is block diagonal over tasks: H v for v on task 0 stays on task 0.
    let mut v = vec![0.0; p.y_dim()];
    v[..h].iter_mut().for_each(|a| *a = 1.0);
    let hv = host(&oracle.hvp(&t(&x), &t(&y), &t(&v), &Batch::Full).unwrap());
    assert!(hv[..h].iter().any(|a| *a != 0.0));
    assert!(hv[h..].iter().all(|a| *a == 0.0));
}

#[test]
fn classes_are_disjoint_and_the_data_is_labelled_honestly() {
    let s = tiny();
    let (train, test, source) = s.load_sets(0, None).unwrap();
    assert_eq!((train.num_classes(), test.num_classes()), (8, 4));
    assert!(train
        .class_names
        .iter()
        .all(|n| !test.class_names.contains(n)));
    assert!(source.contains("synthetic glyphs (substitute for Omniglot / miniImageNet"));
    let p = build(&s, 0);
    assert_eq!(p.id(), "meta-learning");
    assert!(
        p.describe().contains("substitute for Omniglot"),
        "{}",
        p.describe()
    );
    assert_eq!(
        p.metric_names(),
        vec![
            "test_accuracy",
            "test_query_loss",
            "train_query_loss",
            "train_query_accuracy"
        ]
    );
    // Zero heads: uniform predictions, query CE = ln N.
    let (x0, y0) = p.initial_point(0).unwrap();
    let m = p.evaluate(&x0, &y0).unwrap();
    assert!(
        (metric(&m, "train_query_loss") - 3f64.ln()).abs() < 1e-12,
        "{m:?}"
    );
}

#[test]
fn resnet12_backbone_has_exact_gradients() {
    let s = MetaLearningSpec {
        backbone: BackboneKind::Resnet12,
        channels: [2, 2, 2, 2],
        tasks: 2,
        ..tiny()
    };
    let p = build(&s, 1);
    assert_eq!(p.feature_dim(), 2);
    let (x, y) = point(&p, 2, 0.5);
    let err = directional_gradient_error(&p, Level::Outer, &x, &y, &Batch::Full, 1, 1e-6, 3);
    println!("ResNet-12 outer gradient error {err:e}");
    assert!(err < 1e-6, "{err:e}");
}

#[test]
fn itd_outer_steps_lower_the_query_loss() {
    let s = MetaLearningSpec { tasks: 3, ..tiny() };
    let p = build(&s, 7);
    let (x0, y0) = p.initial_point(7).unwrap();
    let mut oracle = Oracle::new(&p);
    let itd = Itd::new(ItdConfig {
        inner_step: 0.5,
        inner_steps: 10,
        warm_start: false,
        truncation: None,
    })
    .unwrap();
    let mut solver = OuterLoop::new(itd, OuterOptimizer::sgd(0.2));
    let mut state = State::new(x0, y0, 7);
    let mut losses = Vec::new();
    for _ in 0..6 {
        state = solver.next_iter(&mut oracle, state).unwrap();
        losses.push(state.outer_loss.unwrap());
    }
    let m = p.evaluate(&state.x, &state.y).unwrap();
    println!("ITD (T = 10, α = 0.5), SGD 0.2, 6 outer steps: f = {losses:?}; {m:?}");
    // f(x_k, y_T(x_k)) before the k-th update: the last is below the first.
    assert!(losses[5] < losses[0], "{losses:?}");
}

#[test]
fn spec_defaults_toml_and_validation() {
    let d = MetaLearningSpec::default();
    assert_eq!(
        (
            d.dataset,
            d.n_way,
            d.k_shot,
            d.n_query,
            d.backbone,
            d.side()
        ),
        (
            FewShotDataset::SyntheticGlyphs,
            5,
            5,
            15,
            BackboneKind::Cnn4,
            28
        )
    );
    let s: MetaLearningSpec = toml::from_str(
        "dataset = \"miniimagenet\"\nbackbone = \"resnet12\"\nchannels = [8, 8, 16, 16]",
    )
    .unwrap();
    assert_eq!(
        (s.dataset, s.backbone, s.side()),
        (FewShotDataset::MiniImageNet, BackboneKind::Resnet12, 84)
    );
    for spec in [d.clone(), s, tiny()] {
        let text = toml::to_string(&spec).unwrap();
        assert_eq!(
            toml::from_str::<MetaLearningSpec>(&text).unwrap(),
            spec,
            "{text}"
        );
    }
    assert!(toml::from_str::<MetaLearningSpec>("ways = 5").is_err());
    assert!(toml::from_str::<MetaLearningSpec>("dataset = \"cifar\"").is_err());
    let bad = |s: MetaLearningSpec, key: &str| match s.validate() {
        Err(ProblemError::Config { name, .. }) => assert_eq!(name, key),
        other => panic!("{key}: {other:?}"),
    };
    bad(
        MetaLearningSpec {
            n_way: 1,
            ..d.clone()
        },
        "n_way",
    );
    bad(
        MetaLearningSpec {
            k_shot: 0,
            ..d.clone()
        },
        "k_shot",
    );
    bad(
        MetaLearningSpec {
            tasks: 0,
            ..d.clone()
        },
        "tasks",
    );
    bad(
        MetaLearningSpec {
            reg: 0.0,
            ..d.clone()
        },
        "reg",
    );
    bad(
        MetaLearningSpec {
            image_size: Some(12),
            ..d.clone()
        },
        "image_size",
    );
    bad(
        MetaLearningSpec {
            dataset: FewShotDataset::Fc100,
            image_size: Some(28),
            ..d.clone()
        },
        "image_size",
    );
    bad(
        MetaLearningSpec {
            channels: [64, 0, 8, 8],
            ..d.clone()
        },
        "channels",
    );
    bad(
        MetaLearningSpec {
            glyph_test_alphabets: 10,
            ..d.clone()
        },
        "glyph_test_alphabets",
    );
    bad(MetaLearningSpec { head_steps: 0, ..d }, "head_steps");
    // Too few classes for the episode shape: a data error from the sampler.
    let err = MetaLearningSpec { n_way: 9, ..tiny() }
        .build::<TB>(0, None, &dev())
        .unwrap_err();
    assert!(matches!(err, ProblemError::Data(_)), "{err}");
}

#[test]
fn real_data_sets_missing_are_clear_data_errors() {
    let dir = std::path::Path::new("/nonexistent/bilevel-data");
    for (dataset, folder) in [
        (FewShotDataset::Omniglot, "omniglot"),
        (FewShotDataset::MiniImageNet, "miniimagenet"),
        (FewShotDataset::Fc100, "cifar-100-binary"),
    ] {
        let s = MetaLearningSpec {
            dataset,
            image_size: None,
            ..tiny()
        };
        let err = s.build::<TB>(0, Some(dir), &dev()).unwrap_err();
        match &err {
            ProblemError::Data(DataError::MissingFile { path, hint }) => {
                assert!(path.contains(folder), "{path}");
                assert!(hint.contains("cannot be obtained offline"), "{hint}");
                assert!(hint.contains("synthetic-glyphs"), "{hint}");
            }
            other => panic!("{dataset:?}: {other}"),
        }
    }
}

#[test]
fn problem_spec_variant_round_trips() {
    use bilevel_problems::spec::ProblemSpec;
    #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
    struct Config {
        problem: ProblemSpec,
    }
    let c: Config =
        toml::from_str("[problem]\nkind = \"meta-learning\"\ntasks = 7\nbackbone = \"resnet12\"")
            .unwrap();
    assert_eq!(c.problem.id(), "meta-learning");
    assert_eq!(
        c.problem,
        ProblemSpec::MetaLearning(MetaLearningSpec {
            tasks: 7,
            backbone: BackboneKind::Resnet12,
            ..Default::default()
        })
    );
    let text = toml::to_string(&c).unwrap();
    assert_eq!(toml::from_str::<Config>(&text).unwrap(), c, "{text}");
    assert!(toml::from_str::<Config>("[problem]\nkind = \"meta-learning\"\nway = 5").is_err());
}

fn with_adapt(adapt: Adapt) -> MetaLearningSpec {
    MetaLearningSpec { adapt, ..tiny() }
}

/// The ANIL and MAML layouts pose the same losses as the heads layout: with `x = (φ, w₀)` and
/// the same heads (ANIL), or every task's copy `θ_i = (φ, w_i)` (MAML), `g` and `f` equal the
/// heads layout's on any task batch (`w₀` enters only through the start of the inner loop), and
/// in the MAML layout task `i`'s own backbone enters only task `i`'s loss. The meta layouts
/// adapt `x[|φ|..]` (ANIL) and all of `x` (MAML). Fails (tried) with the MAML layout's tasks
/// reading the shared `φ` of `x` instead of their own, and with the MAML head read from the
/// start of its task's block.
#[test]
fn anil_and_maml_layouts_pose_the_heads_layouts_losses() {
    let heads = build(&tiny(), 11);
    let anil = build(&with_adapt(Adapt::Anil), 11);
    let maml = build(&with_adapt(Adapt::Maml), 11);
    let (phi, h, m) = (heads.x_dim(), heads.head_len(), heads.num_tasks());
    assert_eq!((anil.x_dim(), anil.y_dim()), (phi + h, m * h));
    assert_eq!((maml.x_dim(), maml.y_dim()), (phi + h, m * (phi + h)));
    assert_eq!(heads.meta_layout(), None);
    let layout = |tasks, adapted| Some(MetaLayout { tasks, adapted });
    assert_eq!(anil.meta_layout(), layout(m, phi..phi + h));
    assert_eq!(maml.meta_layout(), layout(m, 0..phi + h));

    let (x, y) = point(&heads, 12, 0.5);
    let w0 = Rng::seed(13).normal_vec(h);
    let x_meta: Vec<f64> = x.iter().chain(&w0).copied().collect();
    let y_maml: Vec<f64> = (0..m)
        .flat_map(|i| x.iter().chain(&y[i * h..(i + 1) * h]).copied())
        .collect();
    let value = |p: &MetaLearning<TB>, x: &[f64], y: &[f64], batch: &Batch, inner: bool| {
        let mut oracle = Oracle::new(p);
        let v = if inner {
            oracle.g_value(&t(x), &t(y), batch)
        } else {
            oracle.f_value(&t(x), &t(y), batch)
        };
        host(&v.unwrap())[0]
    };
    for batch in [Batch::Full, Batch::Indices(vec![2, 0, 2])] {
        for inner in [true, false] {
            let want = value(&heads, &x, &y, &batch, inner);
            let a = value(&anil, &x_meta, &y, &batch, inner);
            let b = value(&maml, &x_meta, &y_maml, &batch, inner);
            assert!((a - want).abs() <= 1e-12 * want.abs(), "ANIL {a} vs {want}");
            assert!((b - want).abs() <= 1e-12 * want.abs(), "MAML {b} vs {want}");
        }
    }
    // Task 1's own backbone moves task 1's loss only.
    let mut moved = y_maml.clone();
    let block = phi + h;
    moved[block..block + phi].iter_mut().for_each(|v| *v *= 1.5);
    let others = Batch::Indices(vec![0, 2, 3]);
    let task1 = Batch::Indices(vec![1]);
    assert_eq!(
        value(&maml, &x_meta, &moved, &others, true),
        value(&maml, &x_meta, &y_maml, &others, true)
    );
    let (a, b) = (
        value(&maml, &x_meta, &moved, &task1, true),
        value(&maml, &x_meta, &y_maml, &task1, true),
    );
    assert!((a - b).abs() > 1e-6 * b.abs(), "{a} vs {b}");
}

/// Gradients of both levels against central differences in the ANIL and MAML layouts (the
/// MAML layout differentiates through every task's own backbone).
#[test]
fn anil_and_maml_layouts_have_exact_gradients() {
    for adapt in [Adapt::Anil, Adapt::Maml] {
        let p = build(&with_adapt(adapt), 14);
        let (x, y) = point(&p, 15, 0.5);
        for level in [Level::Inner, Level::Outer] {
            let batch = Batch::Indices(vec![1, 3]);
            let err = directional_gradient_error(&p, level, &x, &y, &batch, 1, 1e-6, 16);
            println!("{adapt:?} {level:?}: gradient error {err:e}");
            assert!(err < 1e-6, "{adapt:?} {level:?}: {err:e}");
        }
    }
}

/// A few outer steps of MAML (second order through every task's copy of the CNN4) and of ANIL
/// on their layouts lower the post-adaptation query loss `f(θ, y_T(θ))`, and the metrics
/// evaluate; each estimator refuses the other's layout and the heads layout.
#[test]
fn maml_and_anil_outer_steps_lower_the_query_loss() {
    use bilevel_algorithms::anil::Anil;
    use bilevel_algorithms::maml::{Maml, MamlConfig};
    let cfg = MamlConfig {
        inner_step: 0.5,
        inner_steps: 2,
        first_order: false,
        tasks_per_batch: None,
    };
    for adapt in [Adapt::Anil, Adapt::Maml] {
        let s = MetaLearningSpec {
            tasks: 3,
            ..with_adapt(adapt)
        };
        let p = build(&s, 17);
        let (x0, y0) = p.initial_point(17).unwrap();
        let mut oracle = Oracle::new(&p);
        let mut state = State::new(x0, y0, 17);
        let mut losses = Vec::new();
        for _ in 0..5 {
            state = match adapt {
                Adapt::Maml => OuterLoop::new(Maml::new(cfg).unwrap(), OuterOptimizer::sgd(0.2))
                    .next_iter(&mut oracle, state),
                _ => OuterLoop::new(Anil::new(cfg).unwrap(), OuterOptimizer::sgd(0.2))
                    .next_iter(&mut oracle, state),
            }
            .unwrap();
            losses.push(state.outer_loss.unwrap());
        }
        let m = p.evaluate(&state.x, &state.y).unwrap();
        println!("{adapt:?}: f = {losses:?}; {m:?}");
        assert!(losses[4] < losses[0], "{adapt:?}: {losses:?}");
        assert!(metric(&m, "test_accuracy").is_finite());
    }
    for (adapt, maml) in [
        (Adapt::Anil, true),
        (Adapt::Maml, false),
        (Adapt::Heads, true),
    ] {
        let p = build(
            &MetaLearningSpec {
                tasks: 3,
                ..with_adapt(adapt)
            },
            18,
        );
        let (x0, y0) = p.initial_point(18).unwrap();
        let mut oracle = Oracle::new(&p);
        let mut state = State::new(x0, y0, 18);
        let err = if maml {
            Maml::new(cfg).unwrap().estimate(&mut oracle, &mut state)
        } else {
            Anil::new(cfg).unwrap().estimate(&mut oracle, &mut state)
        }
        .unwrap_err();
        assert!(err.to_string().contains("meta_layout"), "{adapt:?}: {err}");
    }
}

/// `dataset = "digits"`: scikit-learn's 8×8 digits, upsampled to 16×16, digits 0–4 meta-train
/// and 5–9 meta-test with labels renumbered from 0. On a written file where every image of
/// digit `l` is the constant `(l + 1)/16`, the meta-train image of label `c` is the constant
/// `(c + 1)/16` and the meta-test one `(c + 6)/16` (bilinear upsampling keeps constants), each
/// class has its 12 images, and a 6-way episode is refused. Fails (tried) with the split at
/// another digit and with the meta-test labels not renumbered (the set is then refused).
#[test]
fn digits_are_a_real_few_shot_set_split_by_class() {
    let dir = std::env::temp_dir().join(format!("bilevel-digits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::new();
    for l in 0..10u32 {
        for _ in 0..12 {
            let row: Vec<String> = std::iter::repeat_n((l + 1).to_string(), 64)
                .chain([l.to_string()])
                .collect();
            csv.push_str(&row.join(","));
            csv.push('\n');
        }
    }
    std::fs::write(dir.join("digits.csv"), csv).unwrap();
    let spec = MetaLearningSpec {
        dataset: FewShotDataset::Digits,
        dataset_dir: Some(dir.clone()),
        n_way: 5,
        ..tiny()
    };
    assert_eq!(
        MetaLearningSpec {
            image_size: None,
            ..spec.clone()
        }
        .side(),
        16
    );
    let (train, test, source) = spec.load_sets(0, None).unwrap();
    assert!(source.contains("digits"), "{source}");
    for (set, offset) in [(&train, 1.0), (&test, 6.0)] {
        assert_eq!(
            (set.len, set.num_classes(), set.height, set.width),
            (60, 5, 16, 16)
        );
        for (i, &c) in set.labels.iter().enumerate() {
            let want = (c as f32 + offset) / 16.0;
            let image = set.image(i).unwrap();
            assert!(
                image.iter().all(|&p| (p - want).abs() < 1e-6),
                "label {c}: {}",
                image[0]
            );
        }
        let counts: Vec<usize> = set.indices_by_class().iter().map(Vec::len).collect();
        assert_eq!(counts, [12; 5]);
    }
    let p = spec.build::<TB>(0, None, &dev()).unwrap();
    let (x0, y0) = p.initial_point(0).unwrap();
    let m = p.evaluate(&x0, &y0).unwrap();
    assert!(metric(&m, "test_accuracy").is_finite());
    match (MetaLearningSpec { n_way: 6, ..spec }).validate() {
        Err(ProblemError::Config { name, .. }) => assert_eq!(name, "n_way"),
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&dir).ok();
}
