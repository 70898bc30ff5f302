//! MAML and first-order MAML (Finn, Abbeel & Levine 2017, "Model-agnostic meta-learning for
//! fast adaptation of deep networks", Alg. 1 and §5.2 "first-order approximation").
//!
//! The problem must be posed as meta-learning ([`BilevelProblem::meta_layout`]) with the whole
//! of `θ = x` adapted (`adapted = 0..x_dim`; for a strict part, the head, use
//! [`crate::anil::Anil`]). At outer iteration `k`, with `α` = [`MamlConfig::inner_step`] (the
//! per-task step of Finn et al.) and `T` = [`MamlConfig::inner_steps`]:
//!
//! 1. **Tasks**: `𝒯_k` = all tasks ([`Batch::Full`]) or, with
//!    [`MamlConfig::tasks_per_batch`] `= Some(b)`, `b` distinct tasks drawn without replacement
//!    from [`State::rng`]; the same `𝒯_k` is used by every `g` and `f` evaluation of the
//!    iteration.
//! 2. **Inner loop** from `y_0 = S(x_k) = (θ, …, θ)`: `y_{t+1} = y_t − α|𝒯_k| ∇_y g(x_k, y_t; 𝒯_k)`,
//!    `t < T`. Since `g` is the *mean* support loss over `𝒯_k`, `∇_{y_i} g = ∇L_s,i(y_i)/|𝒯_k|`,
//!    so each selected task takes the step `y_i ← y_i − α∇L_s,i(y_i)` of the paper (the other
//!    blocks stay at `θ` and do not enter `f`).
//! 3. **Meta-gradient** of `F(x) = f(x, y_T(x))`, `y_T` depending on `x` through `y_0 = S(x)`
//!    and through `g`. Second order (exact): ITD's reverse accumulation
//!    ([`crate::itd`]) with `α' = α|𝒯_k|`: `a = ∇_y f(x, y_T)`, `ĝ = ∇_x f(x, y_T)`; for
//!    `t = T−1, …, 0`: `ĝ ← ĝ − α' J(y_t) a`, `a ← a − α' H(y_t) a` (one [`Oracle::hvp_jvp`]);
//!    then `ĝ ← ĝ + Sᵀa_0` (`Sᵀ` sums the task blocks, [`Oracle::meta_start_transpose`]). For
//!    MAML `J = 0` and `∇_x f = 0` (`g`, `f` see `θ` only through `y`), so
//!    `ĝ = (1/|𝒯|) Σ_i Π_t (I − αH_i(y_{i,t})) ∇L_q,i(y_{i,T})`. First order
//!    ([`MamlConfig::first_order`], "FOMAML"): `ĝ = ∇_x f(x, y_T) + Sᵀ∇_y f(x, y_T)`, every `H` and
//!    `J` term dropped.
//!
//! `y_T` goes to [`State::y`] (it is an output only: the next iteration restarts from `S(x)`)
//! and `f(x_k, y_T; 𝒯_k)` to [`State::outer_loss`]; [`State::v`] is not used.
//!
//! # Oracle calls per iteration
//!
//! Second order: `grad_g`: `T`; `grad_f`: 1; `hvp`: `T`; `jvp`: `T` (one `hvp_jvp` per step,
//! as in ITD). First order: `grad_g`: `T`; `grad_f`: 1; no products. `S(x)` and `Sᵀa` are
//! reshapes and are not counted; no bare function values. Each call sees `|𝒯_k|` tasks
//! (`samples_g += T·|𝒯_k|`, `samples_f += |𝒯_k|`).

use crate::validate::GRADIENT_DESCENT;
use bilevel_core::inner::{gradient_descent, gradient_descent_trajectory, InnerGd};
use bilevel_core::preflight::{Demands, Side};

use crate::itd::reverse_accumulate;
use crate::validate::{check_batch, check_count, check_step};
use bilevel_core::tensor::scalar;
use bilevel_core::{
    Batch, BilevelError, BilevelProblem, HypergradientEstimator, MetaLayout, Oracle, Result, State,
};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

/// Settings of [`Maml`] (and of [`crate::anil::Anil`]).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MamlConfig {
    /// Per-task inner GD step `α > 0` (Finn et al.'s `α`).
    pub inner_step: f64,
    /// Inner steps `T ≥ 1`.
    pub inner_steps: usize,
    /// First-order approximation (drop every second-order term).
    pub first_order: bool,
    /// Tasks per meta-batch, drawn without replacement each iteration (`1 ≤ b ≤ m`); `None` =
    /// all tasks every iteration.
    #[serde(with = "crate::table::batch")]
    pub tasks_per_batch: Option<usize>,
}

impl Default for MamlConfig {
    /// Finn et al.'s miniImageNet training setting: `α = 0.01`, `T = 5`, second order, all tasks
    /// (their Omniglot setting is `α = 0.4`, `T = 1`; sine regression `α = 0.01`, `T = 1`).
    fn default() -> Self {
        Self {
            inner_step: 0.01,
            inner_steps: 5,
            first_order: false,
            tasks_per_batch: None,
        }
    }
}

impl MamlConfig {
    /// Checks every field; errors are [`BilevelError::InvalidParameter`].
    pub fn validate(&self) -> Result<()> {
        check_step("inner_step", self.inner_step)?;
        check_count("inner_steps", self.inner_steps)?;
        check_batch("tasks_per_batch", self.tasks_per_batch)?;
        Ok(())
    }
}

/// Which layouts an estimator accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Adapted {
    /// All of `x` (MAML).
    All,
    /// A strict part of `x` (ANIL).
    Part,
}

/// The problem's layout, checked against what the estimator accepts.
pub(crate) fn checked_layout<B: AutodiffBackend, P: BilevelProblem<B>>(
    oracle: &Oracle<'_, B, P>,
    want: Adapted,
) -> Result<MetaLayout> {
    let layout = oracle.meta_layout()?;
    let x_dim = oracle.problem().x_dim();
    match (want, layout.adapts_all(x_dim)) {
        (Adapted::All, false) => Err(BilevelError::invalid(
            "meta_layout",
            format!(
                "MAML adapts all of θ (0..{x_dim}) but the problem adapts only {:?}: use ANIL",
                layout.adapted
            ),
        )),
        (Adapted::Part, true) => Err(BilevelError::invalid(
            "meta_layout",
            format!(
                "ANIL adapts a strict part of θ (the head) but the problem adapts all of it \
                 (0..{x_dim}): use MAML"
            ),
        )),
        _ => Ok(layout),
    }
}

/// The iteration's task batch: all tasks, or `b` distinct tasks from `state.rng`.
pub(crate) fn task_batch<B: AutodiffBackend, P: BilevelProblem<B>>(
    oracle: &Oracle<'_, B, P>,
    layout: &MetaLayout,
    tasks_per_batch: Option<usize>,
    state: &mut State<B>,
) -> Result<(Batch, usize)> {
    let Some(b) = tasks_per_batch else {
        return Ok((Batch::Full, layout.tasks));
    };
    let p = oracle.problem();
    let m = layout.tasks;
    if p.inner_len() != Some(m) || p.outer_len() != Some(m) {
        return Err(BilevelError::invalid(
            "tasks_per_batch",
            format!(
                "task batches need a problem whose samples are its {m} tasks \
                 (inner_len = outer_len = Some({m})), got {:?} and {:?}",
                p.inner_len(),
                p.outer_len()
            ),
        ));
    }
    if b > m {
        return Err(BilevelError::invalid(
            "tasks_per_batch",
            format!("must be ≤ the number of tasks {m}, got {b}"),
        ));
    }
    // Partial Fisher–Yates: b distinct tasks.
    let mut pool: Vec<usize> = (0..m).collect();
    for i in 0..b {
        let j = i + state.rng.index(m - i);
        pool.swap(i, j);
    }
    pool.truncate(b);
    Ok((Batch::Indices(pool), b))
}

/// The MAML / ANIL meta-gradient at `x` on the task batch `batch` of `tasks` tasks (see the
/// module documentation); returns `(ĝ, y_T, f(x, y_T))`.
pub(crate) fn meta_gradient<B: AutodiffBackend, P: BilevelProblem<B>>(
    oracle: &mut Oracle<'_, B, P>,
    x: &Tensor<B, 1>,
    cfg: &MamlConfig,
    batch: &Batch,
    tasks: usize,
) -> Result<(Tensor<B, 1>, Tensor<B, 1>, f64)> {
    let y0 = oracle.meta_start(x)?;
    // g averages over the batch: the step on y that moves each task by α∇L_s,i.
    let step = cfg.inner_step * tasks as f64;
    let gd = InnerGd {
        step,
        steps: cfg.inner_steps,
    };
    if cfg.first_order {
        let y = gradient_descent(oracle, x, y0, &gd, |_| batch.clone())?;
        let gf = oracle.grad_f(x, &y, batch)?;
        let grad = gf.x.add(oracle.meta_start_transpose(&gf.y)?);
        return Ok((grad, y, scalar(gf.value)));
    }
    let (y, trajectory) = gradient_descent_trajectory(oracle, x, y0, &gd, |_| batch.clone())?;
    let gf = oracle.grad_f(x, &y, batch)?;
    let (grad, adjoint) = reverse_accumulate(oracle, x, &trajectory, gf.x, gf.y, step)?;
    let grad = grad.add(oracle.meta_start_transpose(&adjoint)?);
    Ok((grad, y, scalar(gf.value)))
}

/// One MAML / ANIL estimate (shared by [`Maml`] and [`crate::anil::Anil`]): checks the layout
/// against `want`, draws the task batch, and writes `y_T` and `f(x, y_T)` to the state.
pub(crate) fn estimate_meta<B: AutodiffBackend, P: BilevelProblem<B>>(
    oracle: &mut Oracle<'_, B, P>,
    state: &mut State<B>,
    cfg: &MamlConfig,
    want: Adapted,
) -> Result<Tensor<B, 1>> {
    let layout = checked_layout(oracle, want)?;
    let (batch, tasks) = task_batch(oracle, &layout, cfg.tasks_per_batch, state)?;
    let x = state.x.clone();
    let (grad, y, f) = meta_gradient(oracle, &x, cfg, &batch, tasks)?;
    state.y = y;
    state.outer_loss = Some(f);
    Ok(grad)
}

/// The MAML (or, with [`MamlConfig::first_order`], FOMAML) meta-gradient estimator (see the
/// module documentation for the rule and its oracle counts).
#[derive(Clone, Debug, PartialEq)]
pub struct Maml {
    config: MamlConfig,
}

/// What MAML and ANIL ask of the problem: the per-task step on the support loss, the task
/// batch, and (second order) the inner trajectory they keep.
pub(crate) fn maml_demands(c: &MamlConfig) -> Demands {
    let d = Demands::new()
        .step("inner_step", c.inner_step, GRADIENT_DESCENT)
        .batch("tasks_per_batch", Side::Inner, c.tasks_per_batch);
    if c.first_order {
        d
    } else {
        d.stored("inner_steps", c.inner_steps.saturating_add(1))
    }
}

impl Maml {
    /// An estimator with a validated configuration.
    pub fn new(config: MamlConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &MamlConfig {
        &self.config
    }
}

impl<B: AutodiffBackend> HypergradientEstimator<B> for Maml {
    fn name(&self) -> String {
        if self.config.first_order {
            "fomaml".into()
        } else {
            "maml".into()
        }
    }

    fn demands(&self) -> Demands {
        maml_demands(&self.config)
    }

    fn validate(&self) -> Result<()> {
        self.config.validate()
    }

    fn estimate<P: BilevelProblem<B>>(
        &mut self,
        oracle: &mut Oracle<'_, B, P>,
        state: &mut State<B>,
    ) -> Result<Tensor<B, 1>> {
        estimate_meta(oracle, state, &self.config, Adapted::All)
    }
}
