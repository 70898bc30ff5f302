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

/// One line of `bilevel list problems`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProblemInfo {
    /// The `kind` of the `[problem]` table (the experiment id).
    pub id: &'static str,
    /// What it is, in one line.
    pub description: &'static str,
}

/// Declares the registry of problems: one line per application, from which [`ProblemSpec`],
/// [`PROBLEMS`], [`ProblemSpec::id`], [`ProblemSpec::default_for`],
/// [`ProblemSpec::validate`] and [`ProblemSpec::build_with`] are derived.
///
/// `Variant = "kind", Spec, |spec, ctx| build, "description";` — `build` makes the application
/// from the spec and the [`BuildContext`] (inside a function generic over the backend `B`).
/// **Adding a problem** = its file (the application and its serde `…Spec` with
/// `deny_unknown_fields`, `Default` and `validate()`) + one line here.
macro_rules! problems {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $id:literal, $spec:ty, |$s:ident, $ctx:ident| $build:expr,
        $description:literal;
    )*) => {
        /// The `[problem]` table: `kind = "<experiment id>"` plus that problem's fields.
        ///
        /// Every variant's struct has `deny_unknown_fields` and per-field defaults, so a table
        /// needs only `kind` and the keys it changes; a misspelt key is an error (checked by
        /// the tests: serde's internally tagged enums hand the variant struct the table minus
        /// `kind`, so its `deny_unknown_fields` applies).
        #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "kind")]
        pub enum ProblemSpec {
            $( $(#[$doc])* #[serde(rename = $id)] $variant($spec), )*
        }

        /// Every problem a config can name, in registry order.
        pub const PROBLEMS: &[ProblemInfo] = &[
            $( ProblemInfo { id: $id, description: $description }, )*
        ];

        impl ProblemSpec {
            /// The experiment id.
            pub fn id(&self) -> &'static str {
                match self {
                    $( ProblemSpec::$variant(_) => $id, )*
                }
            }

            /// The problem with every field at its default, for each id in [`PROBLEMS`].
            pub fn default_for(id: &str) -> Option<Self> {
                match id {
                    $( $id => Some(ProblemSpec::$variant(<$spec>::default())), )*
                    _ => None,
                }
            }

            /// Checks every field's range without loading data.
            pub fn validate(&self) -> Result<()> {
                match self {
                    $( ProblemSpec::$variant(s) => s.validate(), )*
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
                    $( ProblemSpec::$variant($s) => {
                        let $ctx = ctx;
                        visitor.visit($build?)
                    } )*
                }
            }
        }
    };
}

problems! {
    /// FSLA's synthetic least squares.
    Quadratic = "quadratic", QuadraticSpec, |s, ctx| s.build::<B>(ctx.seed, &ctx.device),
        "FSLA's synthetic least squares with an exact hypergradient (generated)";
    /// Liu et al.'s instance without lower-level strong convexity.
    LiuHard = "liu-hard", LiuHardSpec, |s, ctx| s.build::<B>(&ctx.device),
        "Liu et al.'s 2-D instance where AID/ITD stall (no lower-level strong convexity)";
    /// Data hyper-cleaning on MNIST.
    HyperCleaning = "hyper-cleaning", HyperCleaningSpec,
        |s, ctx| s.build::<B>(ctx.seed, &ctx.device),
        "data hyper-cleaning of a linear classifier on MNIST";
    /// Data hyper-cleaning of a CNN4 on MNIST / Fashion-MNIST.
    HyperCleaningCnn = "hyper-cleaning-cnn", HyperCleaningCnnSpec,
        |s, ctx| s.build::<B>(ctx.seed, ctx.data_dir.as_deref(), &ctx.device),
        "data hyper-cleaning of a 4-layer CNN on MNIST or Fashion-MNIST";
    /// Few-shot meta-learning, backbone = x, per-task heads = y.
    MetaLearning = "meta-learning", MetaLearningSpec,
        |s, ctx| s.build::<B>(ctx.seed, ctx.data_dir.as_deref(), &ctx.device),
        "few-shot meta-learning: shared backbone, per-task heads (or the ANIL / MAML layouts)";
    /// Per-feature log-ℓ2 regularisation of a text logistic regression, on SpamAssassin
    /// (substitute for 20 Newsgroups).
    HoLogregText = "ho-logreg-text", HoLogregTextSpec,
        |s, ctx| s.build::<B>(ctx.seed, ctx.data_dir.as_deref(), &ctx.device),
        "per-feature ℓ2 tuning of text logistic regression (SpamAssassin for 20 Newsgroups)";
    /// Log-ℓ2 regularisation tuning of logistic regression on MNIST.
    HoL2Mnist = "ho-l2-mnist", HoL2MnistSpec, |s, ctx| s.build::<B>(ctx.seed, &ctx.device),
        "ℓ2 regularisation tuning of logistic regression on MNIST";
    /// Data poisoning of a linear MNIST classifier.
    Poisoning = "poisoning", PoisoningSpec, |s, ctx| s.build::<B>(ctx.seed, &ctx.device),
        "data poisoning of a linear MNIST classifier";
    /// Adversarial training with least squares, on wine-quality (substitute for abalone).
    AdversarialLs = "adversarial-ls", AdversarialLsSpec,
        |s, ctx| s.with_data_dir(ctx.data_dir.as_deref()).build::<B>(ctx.seed, &ctx.device),
        "adversarial training of least squares (wine-quality for abalone)";
    /// Shallow hyper-representation on generated data.
    HrShallow = "hr-shallow", HrShallowSpec, |s, ctx| s.build::<B>(ctx.seed, &ctx.device),
        "shallow hyper-representation: linear or 2-layer embedding (generated data)";
    /// Deep hyper-representation, LeNet-5 on MNIST.
    HrDeep = "hr-deep", HrDeepSpec, |s, ctx| s.build::<B>(ctx.seed, &ctx.device),
        "deep hyper-representation: LeNet-5 on MNIST";
    /// Equilibrium model on MNIST, lower level in contraction form.
    Equilibrium = "equilibrium", EquilibriumSpec, |s, ctx| s.build::<B>(ctx.seed, &ctx.device),
        "equilibrium model on MNIST, lower level as a contraction";
}
