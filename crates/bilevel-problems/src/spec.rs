//! Serde specs that build the applications: `[problem]` tables of a TOML config, one variant per
//! experiment id of `docs/REPRODUCTION.md`. Unknown keys are errors.
//!
//! Building is by visitor, because every application is its own type: the caller passes an
//! [`ApplicationVisitor`] whose `visit` is generic over the problem type and receives the built
//! problem, e.g. to run an algorithm on it.

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;

use crate::adversarial_ls::AdversarialLsSpec;
use crate::application::Application;
use crate::equilibrium::EquilibriumSpec;
use crate::error::Result;
use crate::ho_l2::HoL2MnistSpec;
use crate::ho_logreg_text::HoLogregTextSpec;
use crate::hr_deep::HrDeepSpec;
use crate::hr_shallow::HrShallowSpec;
use crate::hyper_cleaning::HyperCleaningSpec;
use crate::hyper_cleaning_cnn::HyperCleaningCnnSpec;
use crate::liu_hard::LiuHardSpec;
use crate::meta_learning::MetaLearningSpec;
use crate::poisoning::PoisoningSpec;
use crate::quadratic::QuadraticSpec;

/// Everything a spec needs besides its own fields to build a problem.
#[derive(Clone, Debug)]
pub struct BuildContext<B: AutodiffBackend> {
    /// Where tensors live.
    pub device: B::Device,
    /// Directory of fetched data sets (`data/` by default); bundled MNIST needs none.
    pub data_dir: Option<PathBuf>,
    /// Seed of data splits, label corruption and generated instances.
    pub seed: u64,
}

/// Receives a built application.
pub trait ApplicationVisitor<B: AutodiffBackend> {
    /// What the visit returns.
    type Output;
    /// Called once with the problem the spec built.
    fn visit<P: Application<B>>(self, problem: P) -> Result<Self::Output>;
}

/// The `[problem]` table: `kind = "<experiment id>"` plus that problem's fields.
///
/// Every variant's struct has `deny_unknown_fields` and per-field defaults, so a table needs only
/// `kind` and the keys it changes; a misspelt key is an error (checked by the tests:
/// serde's internally tagged enums hand the variant struct the table minus `kind`, so its
/// `deny_unknown_fields` applies).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ProblemSpec {
    /// FSLA's synthetic least squares (`kind = "quadratic"`).
    #[serde(rename = "quadratic")]
    Quadratic(QuadraticSpec),
    /// Liu et al.'s instance without lower-level strong convexity (`kind = "liu-hard"`).
    #[serde(rename = "liu-hard")]
    LiuHard(LiuHardSpec),
    /// Data hyper-cleaning on MNIST (`kind = "hyper-cleaning"`).
    #[serde(rename = "hyper-cleaning")]
    HyperCleaning(HyperCleaningSpec),
    /// Data hyper-cleaning of a CNN4 on MNIST / Fashion-MNIST (`kind = "hyper-cleaning-cnn"`).
    #[serde(rename = "hyper-cleaning-cnn")]
    HyperCleaningCnn(HyperCleaningCnnSpec),
    /// Few-shot meta-learning, backbone = x, per-task heads = y (`kind = "meta-learning"`).
    #[serde(rename = "meta-learning")]
    MetaLearning(MetaLearningSpec),
    /// Per-feature log-ℓ2 regularisation of a text logistic regression, on SpamAssassin
    /// (substitute for 20 Newsgroups) (`kind = "ho-logreg-text"`).
    #[serde(rename = "ho-logreg-text")]
    HoLogregText(HoLogregTextSpec),
    /// Log-ℓ2 regularisation tuning of logistic regression on MNIST (`kind = "ho-l2-mnist"`).
    #[serde(rename = "ho-l2-mnist")]
    HoL2Mnist(HoL2MnistSpec),
    /// Data poisoning of a linear MNIST classifier (`kind = "poisoning"`).
    #[serde(rename = "poisoning")]
    Poisoning(PoisoningSpec),
    /// Adversarial training with least squares, on wine-quality (substitute for abalone)
    /// (`kind = "adversarial-ls"`).
    #[serde(rename = "adversarial-ls")]
    AdversarialLs(AdversarialLsSpec),
    /// Shallow hyper-representation on generated data (`kind = "hr-shallow"`).
    #[serde(rename = "hr-shallow")]
    HrShallow(HrShallowSpec),
    /// Deep hyper-representation, LeNet-5 on MNIST (`kind = "hr-deep"`).
    #[serde(rename = "hr-deep")]
    HrDeep(HrDeepSpec),
    /// Equilibrium model on MNIST, lower level in contraction form (`kind = "equilibrium"`).
    #[serde(rename = "equilibrium")]
    Equilibrium(EquilibriumSpec),
}

impl ProblemSpec {
    /// The experiment id.
    pub fn id(&self) -> &'static str {
        match self {
            ProblemSpec::Quadratic(_) => "quadratic",
            ProblemSpec::LiuHard(_) => "liu-hard",
            ProblemSpec::HyperCleaning(_) => "hyper-cleaning",
            ProblemSpec::HyperCleaningCnn(_) => "hyper-cleaning-cnn",
            ProblemSpec::MetaLearning(_) => "meta-learning",
            ProblemSpec::HoLogregText(_) => "ho-logreg-text",
            ProblemSpec::HoL2Mnist(_) => "ho-l2-mnist",
            ProblemSpec::Poisoning(_) => "poisoning",
            ProblemSpec::AdversarialLs(_) => "adversarial-ls",
            ProblemSpec::HrShallow(_) => "hr-shallow",
            ProblemSpec::HrDeep(_) => "hr-deep",
            ProblemSpec::Equilibrium(_) => "equilibrium",
        }
    }

    /// Checks every field's range without loading data.
    pub fn validate(&self) -> Result<()> {
        match self {
            ProblemSpec::Quadratic(s) => s.validate(),
            ProblemSpec::LiuHard(s) => s.validate(),
            ProblemSpec::HyperCleaning(s) => s.validate(),
            ProblemSpec::HyperCleaningCnn(s) => s.validate(),
            ProblemSpec::MetaLearning(s) => s.validate(),
            ProblemSpec::HoLogregText(s) => s.validate(),
            ProblemSpec::HoL2Mnist(s) => s.validate(),
            ProblemSpec::Poisoning(s) => s.validate(),
            ProblemSpec::AdversarialLs(s) => s.validate(),
            ProblemSpec::HrShallow(s) => s.validate(),
            ProblemSpec::HrDeep(s) => s.validate(),
            ProblemSpec::Equilibrium(s) => s.validate(),
        }
    }

    /// Builds the problem and hands it to `visitor`.
    pub fn build_with<B: AutodiffBackend, V: ApplicationVisitor<B>>(
        &self,
        ctx: &BuildContext<B>,
        visitor: V,
    ) -> Result<V::Output> {
        self.validate()?;
        match self {
            ProblemSpec::Quadratic(s) => visitor.visit(s.build::<B>(ctx.seed, &ctx.device)?),
            ProblemSpec::LiuHard(s) => visitor.visit(s.build::<B>(&ctx.device)?),
            ProblemSpec::HyperCleaning(s) => visitor.visit(s.build::<B>(ctx.seed, &ctx.device)?),
            ProblemSpec::HyperCleaningCnn(s) => {
                visitor.visit(s.build::<B>(ctx.seed, ctx.data_dir.as_deref(), &ctx.device)?)
            }
            ProblemSpec::MetaLearning(s) => {
                visitor.visit(s.build::<B>(ctx.seed, ctx.data_dir.as_deref(), &ctx.device)?)
            }
            ProblemSpec::HoLogregText(s) => {
                visitor.visit(s.build::<B>(ctx.seed, ctx.data_dir.as_deref(), &ctx.device)?)
            }
            ProblemSpec::HoL2Mnist(s) => visitor.visit(s.build::<B>(ctx.seed, &ctx.device)?),
            ProblemSpec::Poisoning(s) => visitor.visit(s.build::<B>(ctx.seed, &ctx.device)?),
            ProblemSpec::HrShallow(s) => visitor.visit(s.build::<B>(ctx.seed, &ctx.device)?),
            ProblemSpec::HrDeep(s) => visitor.visit(s.build::<B>(ctx.seed, &ctx.device)?),
            ProblemSpec::Equilibrium(s) => visitor.visit(s.build::<B>(ctx.seed, &ctx.device)?),
            ProblemSpec::AdversarialLs(s) => {
                let s = match (&s.wine_dir, &ctx.data_dir) {
                    (None, Some(dir)) => AdversarialLsSpec {
                        wine_dir: Some(dir.join(bilevel_data::tabular::WINE_QUALITY)),
                        ..s.clone()
                    },
                    _ => s.clone(),
                };
                visitor.visit(s.build::<B>(ctx.seed, &ctx.device)?)
            }
        }
    }
}
