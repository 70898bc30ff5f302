//! The `[algorithm]` table of a config and the registry of algorithms.
//!
//! ```toml
//! [algorithm]
//! name = "aid-cg"
//! inner_step = 0.1     # α
//! inner_steps = 10     # T
//! cg_steps = 10        # N
//! outer_step = 0.5     # β
//! optimizer = "sgd"    # or "adam"
//! ```
//!
//! `name` picks a line of the registry below; every other key belongs to that algorithm's
//! `…Config` in `bilevel-algorithms`, which *is* the table (serde, `deny_unknown_fields`, keys
//! documented on the config), plus, for methods that run inside [`OuterLoop`], the outer-step
//! keys of [`OuterTable`] (`outer_step`, `optimizer`, `outer_step_decay`). Every key is
//! optional: omitted keys take the registry line's defaults (`bilevel list algorithms
//! --defaults` prints them all); unknown keys are errors naming the key. Batch sizes are a
//! number of samples or `"full"`.
//!
//! Settings are checked once, when the solver is built ([`MethodSpec::build_with`]; the config
//! parser calls [`MethodSpec::validate`]): by the algorithm's constructor (`Aid::new`, …) and
//! by [`OuterTable::check`], whose errors name the key as the table writes it.
//!
//! **Adding an algorithm** = its file in `bilevel-algorithms` (the update rule, its `…Config`
//! with serde and `validate()`) + one line in [`registry!`] below.

use bilevel_algorithms::aid::{Aid, AidConfig};
use bilevel_algorithms::anil::Anil;
use bilevel_algorithms::bsa::{Bsa, BsaConfig};
use bilevel_algorithms::fsla::{Fsla, FslaConfig};
use bilevel_algorithms::hoag::{Hoag, HoagConfig};
use bilevel_algorithms::hozog::{Hozog, HozogConfig};
use bilevel_algorithms::igfm::{igfm, IgfmConfig};
use bilevel_algorithms::itd::{Itd, ItdConfig};
use bilevel_algorithms::maml::{Maml, MamlConfig};
use bilevel_algorithms::pzobo::{Pzobo, PzoboConfig};
use bilevel_algorithms::sgm::{SgmAtFixedX, SgmConfig};
use bilevel_algorithms::sid::{Sid, SidConfig};
use bilevel_algorithms::stocbio::{StocBio, StocBioConfig};
use bilevel_algorithms::table::OuterTable;
use bilevel_algorithms::ttsa::{Ttsa, TtsaConfig, OUTER_STEP_DECAY};
use bilevel_core::{BilevelError, OuterLoop, Solver};
use burn::tensor::backend::AutodiffBackend;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Serialize};

use bilevel_problems::Result;

/// One line of `bilevel list`: name, description, source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodInfo {
    /// The `name` of the `[algorithm]` table.
    pub name: &'static str,
    /// What it does, in one line.
    pub description: &'static str,
    /// Where it comes from.
    pub paper: &'static str,
}

/// Receives the solver a [`MethodSpec`] configures.
pub trait SolverVisitor<B: AutodiffBackend> {
    /// What the visit returns.
    type Output;
    /// Called once with the configured, validated solver.
    fn visit<S: Solver<B>>(self, solver: S) -> Result<Self::Output>;
}

/// One algorithm's `[algorithm]` table: its config and, for an [`OuterLoop`] method, the
/// outer-step keys.
#[derive(Clone, Debug, PartialEq)]
pub struct Table<C> {
    /// The algorithm's own keys.
    pub config: C,
    /// `outer_step`, `optimizer`, `outer_step_decay` (`None`: the method owns its step).
    pub outer: Option<OuterTable>,
}

impl<C> Table<C> {
    /// The checked outer update.
    fn outer(&self) -> Result<bilevel_core::OuterOptimizer> {
        let outer = self.outer.as_ref().ok_or_else(|| {
            BilevelError::invalid(
                "outer_step",
                "this method owns its step and has no outer step",
            )
        })?;
        Ok(outer.check()?)
    }
}

/// The user's keys over a registry line's defaults: the outer keys go to the outer table, the
/// rest to the config (whose `deny_unknown_fields` refuses a key it does not know).
fn parse_table<C: Serialize + DeserializeOwned>(
    defaults: &C,
    outer: Option<OuterTable>,
    mut keys: toml::Table,
) -> std::result::Result<Table<C>, String> {
    let outer = match outer {
        Some(outer) => {
            let mut table = to_table(&outer)?;
            for key in OuterTable::KEYS {
                if let Some(value) = keys.remove(key) {
                    table.insert(key.to_string(), value);
                }
            }
            Some(from_table(table)?)
        }
        None => None,
    };
    let mut table = to_table(defaults)?;
    table.extend(keys);
    Ok(Table {
        config: from_table(table)?,
        outer,
    })
}

fn to_table<T: Serialize>(value: &T) -> std::result::Result<toml::Table, String> {
    match toml::Value::try_from(value).map_err(|e| e.to_string())? {
        toml::Value::Table(table) => Ok(table),
        other => Err(format!("expected a table, got {other}")),
    }
}

fn from_table<T: DeserializeOwned>(table: toml::Table) -> std::result::Result<T, String> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_string())
}

/// Declares the registry: one line per algorithm, from which [`MethodSpec`], [`METHODS`],
/// [`MethodSpec::default_for`], the parser, the printer and [`MethodSpec::build_with`] are
/// derived.
///
/// `Variant = "name", Config, defaults, outer-step defaults (None: the method owns its step),
/// |config, table| constructor, "description", "paper";` — the constructor returns a
/// [`Solver`]; `table.outer()?` is the checked outer update.
macro_rules! registry {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $name:literal, $config:ty, $defaults:expr, $outer:expr,
        |$c:ident, $t:ident| $build:expr,
        $description:literal, $paper:literal;
    )*) => {
        /// The `[algorithm]` table: `name = "<algorithm>"` plus that algorithm's keys.
        #[derive(Clone, Debug, PartialEq)]
        pub enum MethodSpec {
            $( $(#[$doc])* $variant(Table<$config>), )*
        }

        /// Every algorithm a config can name, in registry order.
        pub const METHODS: &[MethodInfo] = &[
            $( MethodInfo { name: $name, description: $description, paper: $paper }, )*
        ];

        impl MethodSpec {
            /// The `name` of the table (kebab-case).
            pub fn name(&self) -> &'static str {
                match self {
                    $( MethodSpec::$variant(_) => $name, )*
                }
            }

            /// The method with every key at its default, for each name in [`METHODS`].
            pub fn default_for(name: &str) -> Option<Self> {
                match name {
                    $( $name => Some(MethodSpec::$variant(Table {
                        config: $defaults,
                        outer: $outer,
                    })), )*
                    _ => None,
                }
            }

            /// Parses the keys of the table named `name` over its defaults.
            fn parse(name: &str, keys: toml::Table) -> std::result::Result<Self, String> {
                match name {
                    $( $name => parse_table(&$defaults, $outer, keys)
                        .map(MethodSpec::$variant)
                        .map_err(|e| format!("[algorithm] {name}: {e}")), )*
                    other => Err(format!(
                        "unknown algorithm `{other}`; known: {}",
                        METHODS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
                    )),
                }
            }

            /// The table's keys (without `name`).
            fn keys(&self) -> std::result::Result<toml::Table, String> {
                match self {
                    $( MethodSpec::$variant(table) => {
                        let mut keys = to_table(&table.config)?;
                        if let Some(outer) = &table.outer {
                            keys.extend(to_table(outer)?);
                        }
                        Ok(keys)
                    } )*
                }
            }

            /// Configures the solver, checking every key once, and hands it to `visitor`.
            pub fn build_with<B: AutodiffBackend, V: SolverVisitor<B>>(
                &self,
                visitor: V,
            ) -> Result<V::Output> {
                match self {
                    $( MethodSpec::$variant($t) => {
                        let $c: $config = $t.config.clone();
                        let solver = $build;
                        Solver::<B>::validate(&solver)?;
                        visitor.visit(solver)
                    } )*
                }
            }
        }
    };
}

registry! {
    /// AID-BiO with CG (paper 004).
    AidCg = "aid-cg", AidConfig, AidConfig::default(), Some(OuterTable::default()),
        |c, t| OuterLoop::new(Aid::new(c)?, t.outer()?),
        "implicit differentiation, warm-started inner GD + conjugate gradient",
        "Ji, Yang & Liang 2021 (paper 004), Alg. 1";
    /// AID-BiO with the fixed-point solver (Grazzi et al. 2020).
    AidFp = "aid-fp", AidConfig, AidConfig::fixed_point(), Some(OuterTable::default()),
        |c, t| OuterLoop::new(Aid::new(c)?, t.outer()?),
        "implicit differentiation, inner GD + fixed-point linear solver",
        "Grazzi et al. 2020; paper 004";
    /// ITD-BiO (paper 004).
    Itd = "itd", ItdConfig, ItdConfig::default(), Some(OuterTable::default()),
        |c, t| OuterLoop::new(Itd::new(c)?, t.outer()?),
        "iterative differentiation (reverse mode) through T inner GD steps",
        "Ji, Yang & Liang 2021 (paper 004), Prop. 2";
    /// HOAG (Pedregosa 2016), with its own backtracking outer step.
    Hoag = "hoag", HoagConfig, HoagConfig::default(), None,
        |c, _t| Hoag::new(c)?,
        "inexact implicit gradient with decreasing tolerances and backtracking",
        "Pedregosa 2016";
    /// stocBiO (paper 004).
    Stocbio = "stocbio", StocBioConfig, StocBioConfig::default(), Some(OuterTable::default()),
        |c, t| OuterLoop::new(StocBio::new(c)?, t.outer()?),
        "stochastic AID: inner SGD + Neumann series with mini-batch HVPs",
        "Ji, Yang & Liang 2021 (paper 004), Alg. 2-3";
    /// BSA (Ghadimi & Wang 2018).
    Bsa = "bsa", BsaConfig, BsaConfig::default(), Some(OuterTable::default()),
        |c, t| OuterLoop::new(Bsa::new(c)?, t.outer()?),
        "inner SGD + randomized truncated Neumann estimator",
        "Ghadimi & Wang 2018";
    /// TTSA (Hong et al. 2020): the outer step decays as `(k+1)^{−3/5}`.
    Ttsa = "ttsa", TtsaConfig, TtsaConfig::default(),
        Some(OuterTable::sgd(0.1, OUTER_STEP_DECAY)),
        |c, t| OuterLoop::new(Ttsa::new(c)?, t.outer()?),
        "two time scales: one inner SGD step per outer step",
        "Hong, Wai, Wang & Yang 2020";
    /// PZOBO (paper 000), deterministic: full batches only.
    Pzobo = "pzobo", PzoboConfig, PzoboConfig::default(), Some(OuterTable::default()),
        |c, t| OuterLoop::new(Pzobo::new(deterministic(c)?)?, t.outer()?),
        "Hessian-free: zeroth-order Jacobian of the inner GD map",
        "Sow, Ji & Liang 2022 (paper 000), Alg. 1";
    /// PZOBO-S (paper 000), the stochastic variant.
    PzoboS = "pzobo-s", PzoboConfig, PzoboConfig::stochastic(50), Some(OuterTable::default()),
        |c, t| OuterLoop::new(Pzobo::new(c)?, t.outer()?),
        "stochastic PZOBO: all runs share one SGD batch sequence",
        "Sow, Ji & Liang 2022 (paper 000), §2.3";
    /// HOZOG (Gu et al. 2021).
    Hozog = "hozog", HozogConfig, HozogConfig::default(), Some(OuterTable::default()),
        |c, t| OuterLoop::new(Hozog::new(c)?, t.outer()?),
        "zeroth-order gradient of the unrolled hyper-objective",
        "Gu et al. 2021";
    /// FSLA (paper 001), which owns its step.
    Fsla = "fsla", FslaConfig, FslaConfig::default(), None,
        |c, _t| Fsla::new(c)?,
        "fully single loop with a v recursion and STORM momentum",
        "Li, Gu & Huang 2022 (paper 001), Alg. 1";
    /// SID + BSGM (paper 002), no warm start by default.
    SidBsgm = "sid-bsgm", SidConfig, SidConfig::default(), Some(OuterTable::default()),
        |c, t| OuterLoop::new(Sid::new(c)?, t.outer()?),
        "stochastic implicit differentiation without warm start, projected SGD",
        "Grazzi, Pontil & Salzo 2023 (paper 002), Alg. 1-2";
    /// AmIGO (Arbel & Mairal 2021) = SID with warm starts on LL and LS.
    Amigo = "amigo", SidConfig, SidConfig::default().amigo(), Some(OuterTable::default()),
        |c, t| OuterLoop::new(Sid::new(sid_variant(c, "amigo")?)?, t.outer()?),
        "SID with warm starts on the lower level and the linear system",
        "Arbel & Mairal 2021";
    /// ALSET (Chen, Sun & Yin 2021; LL warm start only, `t = 1`, paper 002's Tables 3-4).
    Alset = "alset", SidConfig, SidConfig::default().alset(), Some(OuterTable::default()),
        |c, t| OuterLoop::new(Sid::new(alset(c)?)?, t.outer()?),
        "SID with one warm-started LL step and a cold k-step linear solve per outer step",
        "Chen, Sun & Yin 2021, as run in paper 002 §7.3 (Tables 3-4)";
    /// ALSET† (paper 002 §7.3; warm starts on LL and LS, `t = k = 1`).
    AlsetDagger = "alset-dagger", SidConfig, SidConfig::default().alset_dagger(),
        Some(OuterTable::default()),
        |c, t| OuterLoop::new(Sid::new(alset_dagger(c)?)?, t.outer()?),
        "ALSET†: SID with one warm-started LL step and one warm-started LS step",
        "Grazzi, Pontil & Salzo 2023 (paper 002), §7.3";
    /// MAML / first-order MAML (Finn et al. 2017).
    Maml = "maml", MamlConfig, MamlConfig::default(), Some(OuterTable::default()),
        |c, t| OuterLoop::new(Maml::new(c)?, t.outer()?),
        "MAML: differentiate T inner steps of every task's copy of θ from θ \
         (meta-learning, adapt = \"maml\")",
        "Finn, Abbeel & Levine 2017, Alg. 1 (first_order: §5.2)";
    /// ANIL (Raghu et al. 2020): MAML's keys, head-only inner loop.
    Anil = "anil", MamlConfig, MamlConfig::default(), Some(OuterTable::default()),
        |c, t| OuterLoop::new(Anil::new(c)?, t.outer()?),
        "ANIL: MAML with the inner loop on the head only (meta-learning, adapt = \"anil\")",
        "Raghu, Raghu, Bengio & Vinyals 2020";
    /// SGM at a fixed `x` (paper 003, Alg. 1).
    Sgm = "sgm", SgmConfig, SgmConfig::default(), None,
        |c, _t| SgmAtFixedX::new(c)?,
        "switching gradient method on the lower level at a fixed x (evaluates φ(x))",
        "Chen, Xu & Zhang 2023 (paper 003), Alg. 1";
    /// IGFM (paper 003, Alg. 2), plain step `x ← x − η∇̂` (`step`).
    Igfm = "igfm", IgfmConfig, IgfmConfig::default(), None,
        |c, _t| igfm(c)?,
        "inexact gradient-free method on φ with SGM as sub-routine",
        "Chen, Xu & Zhang 2023 (paper 003), Alg. 2";
}

/// `pzobo` is the deterministic method: a batch key belongs to `pzobo-s`.
fn deterministic(c: PzoboConfig) -> Result<PzoboConfig> {
    for (key, batch) in [
        ("inner_batch", c.inner_batch),
        ("outer_batch", c.outer_batch),
    ] {
        if batch.is_some() {
            return Err(BilevelError::invalid(
                key,
                "pzobo is deterministic (full batches); use name = \"pzobo-s\" for mini-batches",
            )
            .into());
        }
    }
    Ok(c)
}

/// The keys that make a SID config the variant `name`; an error names the first key that
/// does not (a table that changes them is another variant: use `sid-bsgm`).
fn sid_variant(c: SidConfig, name: &str) -> Result<SidConfig> {
    let want = match name {
        "amigo" => SidConfig::default().amigo(),
        "alset" => SidConfig::default().alset(),
        _ => SidConfig::default().alset_dagger(),
    };
    let fixed = [
        (
            "warm_start_inner",
            c.warm_start_inner == want.warm_start_inner,
        ),
        (
            "warm_start_linear",
            c.warm_start_linear == want.warm_start_linear,
        ),
        (
            "inner_steps",
            name == "amigo" || c.inner_steps == want.inner_steps,
        ),
        (
            "linear_steps",
            name != "alset-dagger" || c.linear_steps == 1,
        ),
    ];
    match fixed.iter().find(|(_, ok)| !ok) {
        None => Ok(c),
        Some((key, _)) => Err(BilevelError::invalid(
            key,
            format!(
                "{name} fixes it (warm starts: LL {}, LS {}{}); use name = \"sid-bsgm\" to \
                 choose it freely",
                want.warm_start_inner,
                want.warm_start_linear,
                match name {
                    "alset" => ", t = 1",
                    "alset-dagger" => ", t = k = 1",
                    _ => "",
                }
            ),
        )
        .into()),
    }
}

/// ALSET: SID's `alset` keys, a fixed-point step in `(0, 1]` and `k ≥ 2` (a cold solve of one
/// step is `v = η∇_w F`, no inverse at all).
fn alset(c: SidConfig) -> Result<SidConfig> {
    let c = sid_variant(c, "alset")?;
    if c.linear_steps < 2 {
        return Err(BilevelError::invalid(
            "linear_steps",
            format!(
                "ALSET solves the linear system afresh each step: k = {} leaves v = η∇_w F \
                 with no inverse; use k ≥ 2 (or alset-dagger, which warm-starts it)",
                c.linear_steps
            ),
        )
        .into());
    }
    Ok(c)
}

/// ALSET†: `t = k = 1`, both warm starts, a constant fixed-point step.
fn alset_dagger(c: SidConfig) -> Result<SidConfig> {
    let c = sid_variant(c, "alset-dagger")?;
    if let bilevel_algorithms::sid::InnerStepSchedule::Decreasing { .. } = c.inner_step_schedule {
        return Err(BilevelError::invalid(
            "fixed_point_step_decay",
            "ALSET† takes one step of each solver per outer step: a schedule over steps has \
             nothing to decay; remove it",
        )
        .into());
    }
    Ok(c)
}

impl MethodSpec {
    /// Checks every key with the algorithm's own validation; the error names the key.
    pub fn validate(&self) -> Result<()> {
        self.build_with(Validate)
    }
}

impl Serialize for MethodSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut table = toml::Table::new();
        table.insert("name".into(), toml::Value::String(self.name().into()));
        table.extend(self.keys().map_err(serde::ser::Error::custom)?);
        table.serialize(s)
    }
}

impl<'de> Deserialize<'de> for MethodSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let mut keys = toml::Table::deserialize(d)?;
        let name = match keys.remove("name") {
            Some(toml::Value::String(name)) => name,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "`name` must be an algorithm name (a string), got {other}"
                )))
            }
            None => return Err(D::Error::custom("missing field `name`")),
        };
        MethodSpec::parse(&name, keys).map_err(D::Error::custom)
    }
}

/// A visitor that only validates (the backend is irrelevant: no tensor is created, so the
/// process's precision is not fixed by it).
struct Validate;

type ValidationBackend = bilevel_core::backend::FlexAutodiff;

impl SolverVisitor<ValidationBackend> for Validate {
    type Output = ();
    fn visit<S: Solver<ValidationBackend>>(self, _solver: S) -> Result<()> {
        Ok(())
    }
}
