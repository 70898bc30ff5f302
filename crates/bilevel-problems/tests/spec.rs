//! `ProblemSpec`: TOML round trips, defaults, unknown keys, validation and building.

use std::path::PathBuf;

use bilevel_problems::adversarial_ls::{AdversarialLsData, AdversarialLsSpec};
use bilevel_problems::ho_l2::HoL2MnistSpec;
use bilevel_problems::hyper_cleaning::HyperCleaningSpec;
use bilevel_problems::liu_hard::LiuHardSpec;
use bilevel_problems::poisoning::PoisoningSpec;
use bilevel_problems::quadratic::QuadraticSpec;
use bilevel_problems::spec::{ApplicationVisitor, BuildContext, ProblemSpec};
use bilevel_problems::{Application, ProblemError, Result};
use burn::backend::{Autodiff, NdArray};

type TB = Autodiff<NdArray<f64>>;

#[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
struct Config {
    problem: ProblemSpec,
}

fn parse(text: &str) -> std::result::Result<ProblemSpec, toml::de::Error> {
    toml::from_str::<Config>(text).map(|c| c.problem)
}

fn round_trip(spec: ProblemSpec) {
    let config = Config { problem: spec };
    let text = toml::to_string(&config).unwrap();
    let back: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, config, "{text}");
}

fn all_specs() -> Vec<ProblemSpec> {
    vec![
        ProblemSpec::Quadratic(QuadraticSpec {
            x_dim: 3,
            noise: 0.5,
            ..Default::default()
        }),
        ProblemSpec::LiuHard(LiuHardSpec {
            x0: -2.0,
            y0: [1.0, 3.5],
        }),
        ProblemSpec::HyperCleaning(HyperCleaningSpec {
            train: 1000,
            corruption: 0.2,
            mnist_dir: Some(PathBuf::from("/somewhere/mnist")),
            ..Default::default()
        }),
        ProblemSpec::HyperCleaning(HyperCleaningSpec::default()),
        ProblemSpec::HoL2Mnist(HoL2MnistSpec {
            corruption: 0.5,
            x0: -3.0,
            ..Default::default()
        }),
        ProblemSpec::Poisoning(PoisoningSpec {
            radius: 0.1,
            bias: true,
            ..Default::default()
        }),
        ProblemSpec::AdversarialLs(AdversarialLsSpec::default()),
        ProblemSpec::AdversarialLs(AdversarialLsSpec {
            data: AdversarialLsData::Synthetic,
            wine_dir: Some(PathBuf::from("/data/wine")),
            sigma_min: 1e-6,
            ..Default::default()
        }),
    ]
}

#[test]
fn every_variant_round_trips_through_toml() {
    for spec in all_specs() {
        round_trip(spec);
    }
}

#[test]
fn kinds_are_the_experiment_ids() {
    let text = toml::to_string(&Config {
        problem: ProblemSpec::Quadratic(QuadraticSpec::default()),
    })
    .unwrap();
    assert!(text.contains("kind = \"quadratic\""), "{text}");
    for spec in all_specs() {
        let text = toml::to_string(&Config {
            problem: spec.clone(),
        })
        .unwrap();
        assert!(
            text.contains(&format!("kind = \"{}\"", spec.id())),
            "{text}"
        );
    }
}

#[test]
fn omitted_fields_take_the_documented_defaults() {
    assert_eq!(
        parse("[problem]\nkind = \"quadratic\"\n").unwrap(),
        ProblemSpec::Quadratic(QuadraticSpec {
            x_dim: 5,
            y_dim: 5,
            inner_rows: 10_000,
            outer_rows: 10_000,
            noise: 0.1,
        })
    );
    assert_eq!(
        parse("[problem]\nkind = \"liu-hard\"\nx0 = 2.0\n").unwrap(),
        ProblemSpec::LiuHard(LiuHardSpec {
            x0: 2.0,
            y0: [0.0, 0.0]
        })
    );
    let ProblemSpec::HyperCleaning(h) =
        parse("[problem]\nkind = \"hyper-cleaning\"\ncorruption = 0.2\n").unwrap()
    else {
        panic!("wrong variant")
    };
    assert_eq!(
        (
            h.train,
            h.val,
            h.test,
            h.corruption,
            h.reg,
            h.bias,
            h.standardize
        ),
        (20_000, 5_000, 10_000, 0.2, 1e-3, false, false)
    );
    assert_eq!(h.mnist_dir, None);
    assert_eq!(
        parse("[problem]\nkind = \"ho-l2-mnist\"\n").unwrap(),
        ProblemSpec::HoL2Mnist(HoL2MnistSpec {
            train: 40_000,
            val: 20_000,
            test: 10_000,
            corruption: 0.1,
            x0: 0.0,
            mnist_dir: None,
        })
    );
    assert_eq!(
        parse("[problem]\nkind = \"poisoning\"\n").unwrap(),
        ProblemSpec::Poisoning(PoisoningSpec {
            train: 45_000,
            val: 15_000,
            test: 10_000,
            poisoned: 9_000,
            radius: 0.2,
            reg: 0.1,
            bias: false,
            retrain_steps: 500,
            mnist_dir: None,
        })
    );
    let ProblemSpec::AdversarialLs(a) =
        parse("[problem]\nkind = \"adversarial-ls\"\ndata = \"synthetic\"\n").unwrap()
    else {
        panic!("wrong variant")
    };
    assert_eq!(a.data, AdversarialLsData::Synthetic);
    assert_eq!(
        (
            a.lambda,
            a.sigma_min,
            a.sigma_max,
            a.weighted_fraction,
            a.test_fraction
        ),
        (1.0, 1e-9, 1.0, 0.5, 0.2)
    );
    assert!(a.intercept);
}

#[test]
fn unknown_keys_and_kinds_are_rejected() {
    let err = parse("[problem]\nkind = \"quadratic\"\nx_dimm = 3\n").unwrap_err();
    assert!(err.to_string().contains("x_dimm"), "{err}");
    let err = parse("[problem]\nkind = \"hyper-cleaning\"\ncorrupt = 0.3\n").unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
    let err = parse("[problem]\nkind = \"liu-hard\"\ny = [1.0, 2.0]\n").unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    let err = parse("[problem]\nkind = \"poisoning\"\nepsilon = 0.1\n").unwrap_err();
    assert!(err.to_string().contains("epsilon"), "{err}");
    let err = parse("[problem]\nkind = \"adversarial-ls\"\ndata = \"abalone\"\n").unwrap_err();
    assert!(err.to_string().contains("abalone"), "{err}");
    let err = parse("[problem]\nkind = \"ho-l2-mnist\"\nlambda = 1.0\n").unwrap_err();
    assert!(err.to_string().contains("lambda"), "{err}");
    let err = parse("[problem]\nkind = \"no-such-problem\"\n").unwrap_err();
    assert!(err.to_string().contains("no-such-problem"), "{err}");
    assert!(parse("[problem]\nx_dim = 3\n").is_err(), "kind is required");
    // Wrong types are errors too.
    assert!(parse("[problem]\nkind = \"quadratic\"\nx_dim = \"five\"\n").is_err());
}

#[test]
fn validate_reports_the_offending_key() {
    let cases: Vec<(&str, &str)> = vec![
        ("[problem]\nkind = \"quadratic\"\ny_dim = 0\n", "y_dim"),
        (
            "[problem]\nkind = \"hyper-cleaning\"\ncorruption = 1.5\n",
            "corruption",
        ),
        (
            "[problem]\nkind = \"hyper-cleaning\"\ncorruption = -0.1\n",
            "corruption",
        ),
        ("[problem]\nkind = \"hyper-cleaning\"\ntrain = 0\n", "train"),
        (
            "[problem]\nkind = \"hyper-cleaning\"\ntrain = 70000\n",
            "train",
        ),
        (
            "[problem]\nkind = \"hyper-cleaning\"\ntrain = 58000\n",
            "train",
        ),
        (
            "[problem]\nkind = \"hyper-cleaning\"\ntest = 10001\n",
            "test",
        ),
        ("[problem]\nkind = \"hyper-cleaning\"\nval = 0\n", "val"),
        ("[problem]\nkind = \"hyper-cleaning\"\nreg = -1.0\n", "reg"),
        (
            "[problem]\nkind = \"ho-l2-mnist\"\ncorruption = 2.0\n",
            "corruption",
        ),
        ("[problem]\nkind = \"ho-l2-mnist\"\nval = 30000\n", "train"),
        (
            "[problem]\nkind = \"poisoning\"\npoisoned = 50000\n",
            "poisoned",
        ),
        ("[problem]\nkind = \"poisoning\"\nradius = -0.2\n", "radius"),
        (
            "[problem]\nkind = \"adversarial-ls\"\nlambda = 0.0\n",
            "lambda",
        ),
        (
            "[problem]\nkind = \"adversarial-ls\"\nsigma_max = 1e-12\n",
            "sigma_min",
        ),
    ];
    for (text, key) in cases {
        let spec = parse(text).unwrap();
        match spec.validate() {
            Err(ProblemError::Config { name, reason }) => {
                assert_eq!(name, key, "{text}");
                assert!(
                    reason.contains("default") || reason.contains("lower"),
                    "{reason}"
                );
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    for spec in all_specs() {
        spec.validate().unwrap();
    }
}

/// A visitor that reports what it was given.
struct Describe;

impl ApplicationVisitor<TB> for Describe {
    type Output = (String, usize, usize, Vec<&'static str>);
    fn visit<P: Application<TB>>(self, p: P) -> Result<Self::Output> {
        Ok((p.id().to_string(), p.x_dim(), p.y_dim(), p.metric_names()))
    }
}

fn ctx() -> BuildContext<TB> {
    BuildContext {
        device: Default::default(),
        data_dir: None,
        seed: 4,
    }
}

#[test]
fn build_with_hands_the_problem_to_the_visitor() {
    let spec = parse(
        "[problem]\nkind = \"quadratic\"\nx_dim = 3\ny_dim = 4\ninner_rows = 50\nouter_rows = 20\n",
    )
    .unwrap();
    let (id, xd, yd, names) = spec.build_with(&ctx(), Describe).unwrap();
    assert_eq!((id.as_str(), xd, yd), ("quadratic", 3, 4));
    assert_eq!(names, vec!["grad_norm", "phi_gap", "y_error"]);
    let spec = parse("[problem]\nkind = \"liu-hard\"\n").unwrap();
    let (id, xd, yd, _) = spec.build_with(&ctx(), Describe).unwrap();
    assert_eq!((id.as_str(), xd, yd), ("liu-hard", 1, 2));
    let spec = parse(
        "[problem]\nkind = \"adversarial-ls\"\ndata = \"synthetic\"\nsynthetic_samples = 40\n",
    )
    .unwrap();
    let (id, xd, yd, names) = spec.build_with(&ctx(), Describe).unwrap();
    assert_eq!((id.as_str(), xd, yd), ("adversarial-ls", 12, 32));
    assert_eq!(names, vec!["mse", "test_mse", "ll_gap"]);
    // The run's data folder locates wine-quality.
    let spec = parse("[problem]\nkind = \"adversarial-ls\"\n").unwrap();
    let missing = BuildContext {
        data_dir: Some(PathBuf::from("/nonexistent/data")),
        ..ctx()
    };
    match spec.build_with(&missing, Describe) {
        Err(ProblemError::Data(e)) => {
            assert!(
                e.to_string().contains("/nonexistent/data/wine-quality"),
                "{e}"
            )
        }
        other => panic!("{:?}", other.map(|o| o.0)),
    }
    // Invalid specs fail before anything is built.
    let spec = parse("[problem]\nkind = \"quadratic\"\nx_dim = 0\n").unwrap();
    assert!(matches!(
        spec.build_with(&ctx(), Describe),
        Err(ProblemError::Config { .. })
    ));
}

#[test]
fn missing_mnist_dir_is_a_data_error() {
    let dir = Some(PathBuf::from("/nonexistent/mnist-folder"));
    let specs = [
        ProblemSpec::HyperCleaning(HyperCleaningSpec {
            train: 10,
            val: 10,
            test: 10,
            mnist_dir: dir.clone(),
            ..Default::default()
        }),
        ProblemSpec::HoL2Mnist(HoL2MnistSpec {
            mnist_dir: dir.clone(),
            ..Default::default()
        }),
        ProblemSpec::Poisoning(PoisoningSpec {
            mnist_dir: dir.clone(),
            ..Default::default()
        }),
    ];
    for spec in specs {
        match spec.build_with(&ctx(), Describe) {
            Err(ProblemError::Data(e)) => assert!(e.to_string().contains("not found"), "{e}"),
            other => panic!("{:?}", other.map(|o| o.0)),
        }
    }
}
