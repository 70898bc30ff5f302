//! Every `…Config` is its `[algorithm]` table: an empty table is the default, a table round-trips
//! through TOML, unknown keys are errors naming the key, batch sizes are numbers or `"full"`,
//! and the configs whose Rust form nests a choice (AID's solver, SID's schedule, stocBiO's
//! Hessian batches, BSA/TTSA's Neumann keys, IGFM's SGM) read the flat keys.

use bilevel_algorithms::aid::{AidBatches, AidConfig, InnerSteps, LinearSolver};
use bilevel_algorithms::bsa::BsaConfig;
use bilevel_algorithms::fsla::FslaConfig;
use bilevel_algorithms::hoag::HoagConfig;
use bilevel_algorithms::hozog::{DirectionDistribution, HozogConfig};
use bilevel_algorithms::igfm::IgfmConfig;
use bilevel_algorithms::itd::ItdConfig;
use bilevel_algorithms::maml::MamlConfig;
use bilevel_algorithms::pzobo::{InnerStart, PzoboConfig};
use bilevel_algorithms::sgm::SgmConfig;
use bilevel_algorithms::sid::{InnerStepSchedule, LowerLevel, SidConfig};
use bilevel_algorithms::stocbio::{HessianBatch, StocBioConfig};
use bilevel_algorithms::ttsa::TtsaConfig;
use bilevel_core::Constraint;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Empty table = default; default → TOML → back is the default; a misspelt key is refused
/// with its name. Fails if a config lost `serde(default)` (the empty table errors),
/// `deny_unknown_fields` (the bogus key passes), or a flat form dropped a key on the way out
/// (the round trip differs).
fn is_a_table<C>(name: &str)
where
    C: Default + Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let empty: C = toml::from_str("").unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(empty, C::default(), "{name}");
    let text = toml::to_string(&C::default()).unwrap();
    assert_eq!(
        toml::from_str::<C>(&text).unwrap(),
        C::default(),
        "{name}: {text}"
    );
    let err = toml::from_str::<C>("bogus_key = 1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("bogus_key"), "{name}: {err}");
}

#[test]
fn every_config_is_a_table() {
    is_a_table::<AidConfig>("aid");
    is_a_table::<BsaConfig>("bsa");
    is_a_table::<FslaConfig>("fsla");
    is_a_table::<HoagConfig>("hoag");
    is_a_table::<HozogConfig>("hozog");
    is_a_table::<IgfmConfig>("igfm");
    is_a_table::<ItdConfig>("itd");
    is_a_table::<MamlConfig>("maml");
    is_a_table::<PzoboConfig>("pzobo");
    is_a_table::<SgmConfig>("sgm");
    is_a_table::<SidConfig>("sid");
    is_a_table::<StocBioConfig>("stocbio");
    is_a_table::<TtsaConfig>("ttsa");
}

/// The flat keys reach the nested Rust form. Fails if a conversion swapped or dropped a key
/// (each value below is distinct from its default), or if AID's solver were not chosen by its
/// keys.
#[test]
fn flat_keys_reach_the_nested_settings() {
    let aid: AidConfig = toml::from_str("inner_steps_growth = 2.5\nlinear_step = 0.3").unwrap();
    assert_eq!(aid.inner_steps, InnerSteps::Increasing { scale: 2.5 });
    assert_eq!(
        aid.linear_solver,
        LinearSolver::FixedPoint {
            step: 0.3,
            steps: 10
        }
    );
    let aid: AidConfig = toml::from_str("cg_steps = 4").unwrap();
    assert_eq!(
        aid.linear_solver,
        LinearSolver::ConjugateGradient { steps: 4, tol: 0.0 }
    );
    // Stochastic AID's four batch keys land in their own fields ("full" is the default).
    let aid: AidConfig =
        toml::from_str("inner_batch = 3\nouter_batch = 5\nhessian_batch = 7\njacobian_batch = 11")
            .unwrap();
    assert_eq!(
        aid.batches,
        AidBatches {
            inner: Some(3),
            outer: Some(5),
            hessian: Some(7),
            jacobian: Some(11),
        }
    );
    let aid: AidConfig = toml::from_str("hessian_batch = \"full\"").unwrap();
    assert_eq!(aid.batches, AidBatches::default());
    let mixed = toml::from_str::<AidConfig>("cg_steps = 4\nlinear_steps = 4").unwrap_err();
    assert!(mixed.to_string().contains("cannot be combined"), "{mixed}");

    let sid: SidConfig = toml::from_str(
        "lower_level_step = 0.2\nfixed_point_step = 0.5\nfixed_point_step_decay = 1.0\n\
         fixed_point_step_offset = 4.0\nbatch_size = \"full\"",
    )
    .unwrap();
    assert_eq!(sid.lower_level, LowerLevel::GradientStep { step: 0.2 });
    assert_eq!(
        sid.inner_step_schedule,
        InnerStepSchedule::Decreasing {
            initial: 0.5,
            offset: 4.0,
            power: 1.0
        }
    );
    assert_eq!(sid.batch_size, None);
    let sid: SidConfig = toml::from_str("lower_level = \"contraction\"").unwrap();
    assert_eq!(sid.lower_level, LowerLevel::Contraction);

    let stocbio: StocBioConfig =
        toml::from_str("hessian_batch = 40\nhessian_batch_ratio = 0.5").unwrap();
    assert_eq!(
        stocbio.hessian_batch,
        HessianBatch::Geometric {
            first: 40,
            ratio: 0.5
        }
    );
    assert!(
        toml::from_str::<StocBioConfig>("hessian_batch = \"full\"\nhessian_batch_ratio = 0.5")
            .is_err()
    );

    let bsa: BsaConfig = toml::from_str("neumann_terms = 7\nhessian_batch = 3").unwrap();
    assert_eq!(
        (
            bsa.hypergradient.neumann_terms,
            bsa.hypergradient.hessian_batch
        ),
        (7, Some(3))
    );
    let ttsa: TtsaConfig = toml::from_str("neumann_step = 0.3\nouter_batch = \"full\"").unwrap();
    assert_eq!(
        (
            ttsa.hypergradient.neumann_step,
            ttsa.hypergradient.outer_batch
        ),
        (0.3, None)
    );

    let igfm: IgfmConfig = toml::from_str(
        "sgm_step = 0.02\nswitching_steps = 7\n[lower_constraint]\nkind = \"box\"\nlower = -1.0\nupper = 2.0",
    )
    .unwrap();
    assert_eq!(
        (igfm.lower_solver.step, igfm.lower_solver.switching_steps),
        (0.02, 7)
    );
    assert_eq!(
        igfm.lower_solver.lower_constraint,
        Constraint::Box {
            lower: -1.0,
            upper: 2.0
        }
    );
    assert_eq!(igfm.step, IgfmConfig::default().step);

    let hozog: HozogConfig =
        toml::from_str("distribution = \"unit-sphere\"\ninner_start = \"warm-start\"").unwrap();
    assert_eq!(
        (hozog.distribution, hozog.inner_start),
        (DirectionDistribution::UnitSphere, InnerStart::WarmStart)
    );
    let pzobo: PzoboConfig = toml::from_str("inner_batch = 8").unwrap();
    assert_eq!((pzobo.inner_batch, pzobo.outer_batch), (Some(8), None));
    for bad in [
        "inner_batch = -1",
        "inner_batch = \"half\"",
        "inner_batch = 1.5",
    ] {
        assert!(toml::from_str::<PzoboConfig>(bad).is_err(), "{bad}");
    }
}
