//! `meta-learning` on tiny synthetic-glyph episodes (16×16, 2–3-way, CNN4 with 2 filters):
//! gradients and exact products against finite differences, task batches touching only their
//! heads, disjoint class splits, a few ITD outer steps, spec handling and missing data sets.

mod problem_checks;

use bilevel_algorithms::itd::{Itd, ItdConfig};
use bilevel_core::sampling::Rng;
use bilevel_core::{Batch, BilevelProblem, Oracle, OuterLoop, OuterOptimizer, Solver, State};
use bilevel_data::DataError;
use bilevel_problems::meta_learning::{
    BackboneKind, FewShotDataset, MetaLearning, MetaLearningSpec,
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
