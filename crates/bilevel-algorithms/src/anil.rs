//! ANIL, "almost no inner loop" (Raghu, Raghu, Bengio & Vinyals 2020, "Rapid learning or
//! feature reuse? Towards understanding the effectiveness of MAML", §4): MAML whose inner loop
//! adapts only the head.
//!
//! The problem's layout ([`BilevelProblem::meta_layout`]) must adapt a strict part of
//! `θ = x = (φ, w)`, the head `w` (for all of `θ` use [`crate::maml::Maml`]). Each iteration is
//! MAML's ([`crate::maml`], same [`MamlConfig`], shared code): task batch `𝒯_k`;
//! `y_0 = S(x) = (w, …, w)`; the head steps `y_{t+1} = y_t − α|𝒯_k| ∇_y g(x, y_t; 𝒯_k)`, i.e.
//! `w_i ← w_i − α∇_w L_s,i(φ, w_i)` per task with the body `φ` fixed; then the meta-gradient
//! over the body and the head initialisation. Second order: `a = ∇_y f(x, y_T)`,
//! `ĝ = ∇_x f(x, y_T)`; for `t = T−1, …, 0`: `ĝ ← ĝ − α' J(y_t) a`, `a ← a − α' H(y_t) a`
//! (`α' = α|𝒯_k|`); `ĝ ← ĝ + Sᵀa_0`. Unlike MAML, `∇_x f` (the body's query gradient) and the
//! `J` terms (`∇_φ∇_w L_s,i`, how the body moves the adapted head) are non-zero. First order
//! ([`MamlConfig::first_order`]): `ĝ = ∇_x f(x, y_T) + Sᵀ∇_y f(x, y_T)`.
//!
//! `y_T` (the adapted heads) goes to [`State::y`], `f(x_k, y_T; 𝒯_k)` to [`State::outer_loss`].
//!
//! # Oracle calls per iteration
//!
//! As MAML: second order `grad_g`: `T`, `grad_f`: 1, `hvp`: `T`, `jvp`: `T`; first order
//! `grad_g`: `T`, `grad_f`: 1. Since `y` holds only heads, each call differentiates the full
//! network but the products live in the (small) head space.

use bilevel_core::preflight::Demands;
use bilevel_core::{BilevelProblem, HypergradientEstimator, Oracle, Result, State};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

pub use crate::maml::MamlConfig;
use crate::maml::{estimate_meta, Adapted};

/// Settings of [`Anil`]: MAML's ([`MamlConfig`], same defaults).
pub type AnilConfig = MamlConfig;

/// The ANIL meta-gradient estimator (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct Anil {
    config: AnilConfig,
}

impl Anil {
    /// An estimator with a validated configuration.
    pub fn new(config: AnilConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &AnilConfig {
        &self.config
    }
}

impl<B: AutodiffBackend> HypergradientEstimator<B> for Anil {
    fn name(&self) -> String {
        if self.config.first_order {
            "foanil".into()
        } else {
            "anil".into()
        }
    }

    fn demands(&self) -> Demands {
        crate::maml::maml_demands(&self.config)
    }

    fn validate(&self) -> Result<()> {
        self.config.validate()
    }

    fn estimate<P: BilevelProblem<B>>(
        &mut self,
        oracle: &mut Oracle<'_, B, P>,
        state: &mut State<B>,
    ) -> Result<Tensor<B, 1>> {
        estimate_meta(oracle, state, &self.config, Adapted::Part)
    }
}
