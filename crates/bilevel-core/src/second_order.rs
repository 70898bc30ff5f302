//! First- and second-order oracles with counting.
//!
//! Every estimator needs only `∇_x f, ∇_y f, ∇_y g`, the Hessian-vector product
//! `H v = ∇²_yy g · v` and the mixed product `J v = ∇_x∇_y g · v` (a vector in x-space).
//!
//! **Exact products** come from one double backward (`docs/ARCHITECTURE.md`, "Numerics on
//! burn 0.21"): evaluate `g` on `Autodiff<B>` with `x, y` lifted from tracked `B` leaves; the
//! gradient `∇_y g` comes back as a `B` tensor that is still tracked; with `s = ⟨∇_y g, v⟩`, one
//! backward of `s` on `B` gives `∇_y s = H v` and `∇_x s = J v` together. burn has no double
//! backward of its own: this is the only burn-specific module, and a port to a later burn
//! touches only this file and [`crate::lift`].
//!
//! **Finite-difference products** (central, step `ε` along the unit direction `v/‖v‖`):
//! `H v ≈ ‖v‖ (∇_y g(y + εu) − ∇_y g(y − εu)) / 2ε`, and `J v` likewise from `∇_x g`. They are a
//! fallback and the test oracle (error `O(ε²)` plus round-off `O(u_mach/ε)`).
//!
//! **Hand-derived derivatives**: a problem may supply its gradients and products in closed form
//! ([`crate::problem::ClosedForm`]); [`SecondOrder::Exact`] then uses them instead of autodiff
//! (they are exact too, and faster where they apply), [`SecondOrder::Autodiff`] never does.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use crate::error::{BilevelError, Result};
use crate::problem::{Batch, BilevelProblem, ClosedForm};
use crate::tensor::{check_len, norm};

/// How gradients and second-order products are computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum SecondOrder {
    /// Exact derivatives (the default): the problem's hand-derived gradients and products where
    /// it has them ([`BilevelProblem::closed_form`]), otherwise autodiff and exact products by
    /// nested autodiff.
    #[default]
    Exact,
    /// Autodiff gradients and nested-autodiff products only, ignoring any hand-derived
    /// derivatives (the reference path the closed forms are tested against).
    Autodiff,
    /// Central finite differences of gradients with step `eps` along `v/‖v‖`. Each product (an
    /// HVP, a JVP, or both from [`Oracle::hvp_jvp`]) costs two gradients of `g` and is counted
    /// as such in [`OracleCounts::grad_g`] and [`OracleCounts::samples_g`], not as an HVP/JVP.
    FiniteDifference {
        /// Step length (1e-6 suits f64, 1e-3 suits f32).
        eps: f64,
    },
}

/// Oracle calls made so far. One gradient call yields both partial gradients of a loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OracleCounts {
    /// Evaluations of `f` alone (no gradient).
    pub f_values: u64,
    /// Evaluations of `g` alone (no gradient).
    pub g_values: u64,
    /// Gradients of `f` (`∇_x f` and `∇_y f` from one backward).
    pub grad_f: u64,
    /// Gradients of `g` (`∇_y g`, and `∇_x g` where asked, from one backward).
    pub grad_g: u64,
    /// Hessian-vector products `∇²_yy g · v` (exact ones; a finite-difference product counts as
    /// the two gradients of `g` it evaluates).
    pub hvp: u64,
    /// Mixed Jacobian-vector products `∇_x∇_y g · v`.
    pub jvp: u64,
    /// Evaluations of a contraction map `Ψ(y, x)` (problems posed as fixed points).
    pub map_values: u64,
    /// Vector-Jacobian products `(∂_yΨᵀv, ∂_xΨᵀv)` of a contraction map (one backward each).
    pub map_vjps: u64,
    /// Samples drawn by evaluations of `f` (0 for a deterministic `f`).
    pub samples_f: u64,
    /// Samples drawn by evaluations of `g` (0 for a deterministic `g`).
    pub samples_g: u64,
}

impl OracleCounts {
    /// The counters' names, in the order of [`OracleCounts::values`] (the columns of every CSV
    /// and report that lists them).
    pub const COLUMNS: [&'static str; 10] = [
        "f_values",
        "g_values",
        "grad_f",
        "grad_g",
        "hvp",
        "jvp",
        "map_values",
        "map_vjps",
        "samples_f",
        "samples_g",
    ];

    /// The counters, in the order of [`OracleCounts::COLUMNS`].
    pub fn values(&self) -> [u64; 10] {
        [
            self.f_values,
            self.g_values,
            self.grad_f,
            self.grad_g,
            self.hvp,
            self.jvp,
            self.map_values,
            self.map_vjps,
            self.samples_f,
            self.samples_g,
        ]
    }
}

impl std::ops::Sub for OracleCounts {
    type Output = OracleCounts;
    fn sub(self, o: OracleCounts) -> OracleCounts {
        OracleCounts {
            f_values: self.f_values - o.f_values,
            g_values: self.g_values - o.g_values,
            grad_f: self.grad_f - o.grad_f,
            grad_g: self.grad_g - o.grad_g,
            hvp: self.hvp - o.hvp,
            jvp: self.jvp - o.jvp,
            map_values: self.map_values - o.map_values,
            map_vjps: self.map_vjps - o.map_vjps,
            samples_f: self.samples_f - o.samples_f,
            samples_g: self.samples_g - o.samples_g,
        }
    }
}

/// Both partial gradients of a loss, and its value (still on the device: reading it syncs).
#[derive(Clone, Debug)]
pub struct Gradient<B: AutodiffBackend> {
    /// Loss value, a one-element tensor.
    pub value: Tensor<B, 1>,
    /// Gradient with respect to `x`.
    pub x: Tensor<B, 1>,
    /// Gradient with respect to `y`.
    pub y: Tensor<B, 1>,
}

/// A problem wrapped with oracle counters and a second-order mode.
///
/// All inputs and outputs are detached (untracked) tensors on `B`. Lengths of `x`, `y` and `v`
/// are checked against the problem on every call, so a mismatch is an error, never a panic
/// inside a matmul.
pub struct Oracle<'p, B: AutodiffBackend, P: BilevelProblem<B>> {
    problem: &'p P,
    counts: OracleCounts,
    mode: SecondOrder,
    interrupt: Option<Arc<AtomicBool>>,
    _backend: PhantomData<B>,
}

impl<'p, B: AutodiffBackend, P: BilevelProblem<B>> Oracle<'p, B, P> {
    /// Wraps `problem` with exact second-order products.
    pub fn new(problem: &'p P) -> Self {
        Self::with_mode(problem, SecondOrder::Exact)
    }

    /// Wraps `problem` with the given second-order mode.
    pub fn with_mode(problem: &'p P, mode: SecondOrder) -> Self {
        Self {
            problem,
            counts: OracleCounts::default(),
            mode,
            interrupt: None,
            _backend: PhantomData,
        }
    }

    /// Validates the second-order mode.
    pub fn validate(&self) -> Result<()> {
        if let SecondOrder::FiniteDifference { eps } = self.mode {
            if !(eps > 0.0 && eps.is_finite()) {
                return Err(BilevelError::invalid(
                    "eps",
                    format!("finite-difference step must be positive and finite, got {eps}"),
                ));
            }
        }
        Ok(())
    }

    /// The wrapped problem.
    pub fn problem(&self) -> &'p P {
        self.problem
    }

    /// Calls made so far.
    pub fn counts(&self) -> OracleCounts {
        self.counts
    }

    /// Restores counters (resuming from a checkpoint).
    pub fn set_counts(&mut self, counts: OracleCounts) {
        self.counts = counts;
    }

    /// Makes every later call fail with [`BilevelError::Interrupted`] once `flag` is raised,
    /// so that an iteration with many oracle calls (10⁶ Neumann terms or directions) stops
    /// between two of them instead of running to its end.
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = Some(flag);
    }

    /// The second-order mode.
    pub fn mode(&self) -> SecondOrder {
        self.mode
    }

    /// Checks of every product with `v` in y-space on an inner batch.
    fn check_product(
        &mut self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        v: &Tensor<B, 1>,
        batch: &Batch,
    ) -> Result<()> {
        self.check_xy(x, y)?;
        check_len("v", v, self.problem.y_dim())?;
        self.check_inner_batch(batch)
    }

    fn check_xy(&self, x: &Tensor<B, 1>, y: &Tensor<B, 1>) -> Result<()> {
        if self
            .interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst))
        {
            return Err(BilevelError::Interrupted);
        }
        check_len("x", x, self.problem.x_dim())?;
        check_len("y", y, self.problem.y_dim())
    }

    fn check_inner_batch(&mut self, batch: &Batch) -> Result<()> {
        let len = self.problem.inner_len();
        if let Some(n) = len {
            batch.validate(n)?;
        } else if batch != &Batch::Full {
            return Err(BilevelError::invalid(
                "batch",
                "the inner objective is deterministic: only Batch::Full applies",
            ));
        }
        self.counts.samples_g += batch.len(len) as u64;
        Ok(())
    }

    fn check_outer_batch(&mut self, batch: &Batch) -> Result<()> {
        let len = self.problem.outer_len();
        if let Some(n) = len {
            batch.validate(n)?;
        } else if batch != &Batch::Full {
            return Err(BilevelError::invalid(
                "batch",
                "the outer objective is deterministic: only Batch::Full applies",
            ));
        }
        self.counts.samples_f += batch.len(len) as u64;
        Ok(())
    }

    /// `f(x, y; batch)`.
    pub fn f_value(
        &mut self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        batch: &Batch,
    ) -> Result<Tensor<B, 1>> {
        self.check_xy(x, y)?;
        self.check_outer_batch(batch)?;
        self.counts.f_values += 1;
        Ok(self
            .problem
            .outer_loss::<B>(x.clone().detach(), y.clone().detach(), batch)
            .detach())
    }

    /// `g(x, y; batch)`.
    pub fn g_value(
        &mut self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        batch: &Batch,
    ) -> Result<Tensor<B, 1>> {
        self.check_xy(x, y)?;
        self.check_inner_batch(batch)?;
        self.counts.g_values += 1;
        Ok(self
            .problem
            .inner_loss::<B>(x.clone().detach(), y.clone().detach(), batch)
            .detach())
    }

    /// `f`, `∇_x f` and `∇_y f` from one backward.
    pub fn grad_f(
        &mut self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        batch: &Batch,
    ) -> Result<Gradient<B>> {
        self.check_xy(x, y)?;
        self.check_outer_batch(batch)?;
        self.counts.grad_f += 1;
        if let Some(cf) = self.closed_form() {
            let (value, gx, gy) = cf.outer_gradient(x, y, batch);
            return self.checked_gradient("closed-form ∇f", value, gx, gy);
        }
        let (xr, yr) = leaves(x, y, true);
        let loss = self.problem.outer_loss::<B>(xr.clone(), yr.clone(), batch);
        Ok(gradient_of(loss, &xr, &yr))
    }

    /// `g`, `∇_x g` and `∇_y g` from one backward.
    pub fn grad_g(
        &mut self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        batch: &Batch,
    ) -> Result<Gradient<B>> {
        self.check_xy(x, y)?;
        self.check_inner_batch(batch)?;
        self.counts.grad_g += 1;
        if let Some(cf) = self.closed_form() {
            let (value, gx, gy) = cf.inner_gradient(x, y, batch, true);
            let gx = gx.ok_or_else(|| missing("closed-form ∇_x g", self.problem.x_dim()))?;
            return self.checked_gradient("closed-form ∇g", value, gx, gy);
        }
        let (xr, yr) = leaves(x, y, true);
        let loss = self.problem.inner_loss::<B>(xr.clone(), yr.clone(), batch);
        Ok(gradient_of(loss, &xr, &yr))
    }

    /// `∇_y g` alone (`x` untracked, which saves the `x` part of the backward).
    pub fn grad_g_y(
        &mut self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        batch: &Batch,
    ) -> Result<Tensor<B, 1>> {
        self.check_xy(x, y)?;
        self.check_inner_batch(batch)?;
        self.counts.grad_g += 1;
        if let Some(cf) = self.closed_form() {
            let (_, _, gy) = cf.inner_gradient(x, y, batch, false);
            check_len("closed-form ∇_y g", &gy, self.problem.y_dim())?;
            return Ok(gy);
        }
        let (xr, yr) = leaves(x, y, false);
        let loss = self.problem.inner_loss::<B>(xr.clone(), yr.clone(), batch);
        Ok(gradient_of(loss, &xr, &yr).y)
    }

    /// `H v = ∇²_yy g(x, y; batch) · v`.
    pub fn hvp(
        &mut self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        v: &Tensor<B, 1>,
        batch: &Batch,
    ) -> Result<Tensor<B, 1>> {
        self.check_product(x, y, v, batch)?;
        Ok(self.products(x, y, v, batch, (true, false))?.0)
    }

    /// `J v = ∇_x∇_y g(x, y; batch) · v`, a vector in x-space.
    pub fn jvp(
        &mut self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        v: &Tensor<B, 1>,
        batch: &Batch,
    ) -> Result<Tensor<B, 1>> {
        self.check_product(x, y, v, batch)?;
        let (_, jv) = self.products(x, y, v, batch, (false, true))?;
        jv.ok_or_else(|| missing("J v", self.problem.x_dim()))
    }

    /// `(H v, J v)` from a single double backward (counted as one of each; under finite
    /// differences, as the two gradients both come from).
    pub fn hvp_jvp(
        &mut self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        v: &Tensor<B, 1>,
        batch: &Batch,
    ) -> Result<(Tensor<B, 1>, Tensor<B, 1>)> {
        self.check_product(x, y, v, batch)?;
        let (hv, jv) = self.products(x, y, v, batch, (true, true))?;
        Ok((hv, jv.ok_or_else(|| missing("J v", self.problem.x_dim()))?))
    }

    /// `Ψ(y, x; batch)` of a problem posed as a contraction (error if it is not).
    pub fn map_value(
        &mut self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        batch: &Batch,
    ) -> Result<Tensor<B, 1>> {
        self.check_xy(x, y)?;
        self.check_inner_batch(batch)?;
        self.counts.map_values += 1;
        let value = self
            .problem
            .contraction_map::<B>(x.clone().detach(), y.clone().detach(), batch)
            .ok_or_else(no_map)?;
        check_len("Ψ(y, x)", &value, self.problem.y_dim())?;
        Ok(value.detach())
    }

    /// `(∂_yΨ(y, x)ᵀ v, ∂_xΨ(y, x)ᵀ v)` from one backward of `⟨Ψ(y, x; batch), v⟩`.
    pub fn map_vjp(
        &mut self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        v: &Tensor<B, 1>,
        batch: &Batch,
    ) -> Result<(Tensor<B, 1>, Tensor<B, 1>)> {
        self.check_product(x, y, v, batch)?;
        self.counts.map_vjps += 1;
        let (xr, yr) = leaves(x, y, true);
        let value = self
            .problem
            .contraction_map::<B>(xr.clone(), yr.clone(), batch)
            .ok_or_else(no_map)?;
        check_len("Ψ(y, x)", &value, self.problem.y_dim())?;
        let g = gradient_of(value.mul(v.clone().detach()).sum(), &xr, &yr);
        Ok((g.y, g.x))
    }

    /// The problem's hand-derived derivatives, when the mode uses them.
    fn closed_form(&self) -> Option<&'p dyn ClosedForm<B>> {
        match self.mode {
            SecondOrder::Exact => self.problem.closed_form(),
            SecondOrder::Autodiff | SecondOrder::FiniteDifference { .. } => None,
        }
    }

    /// A hand-derived gradient, its lengths checked (a wrong implementation is an error, not a
    /// panic later inside a matmul).
    fn checked_gradient(
        &self,
        what: &str,
        value: Tensor<B, 1>,
        x: Tensor<B, 1>,
        y: Tensor<B, 1>,
    ) -> Result<Gradient<B>> {
        check_len(&format!("{what} value"), &value, 1)?;
        check_len(&format!("{what} (x part)"), &x, self.problem.x_dim())?;
        check_len(&format!("{what} (y part)"), &y, self.problem.y_dim())?;
        Ok(Gradient { value, x, y })
    }

    /// `(H v, J v if asked)`, counted as what they cost: one HVP and/or one JVP (`asked`) from
    /// exact products; under [`SecondOrder::FiniteDifference`], the two gradients of `g` the
    /// central difference evaluates (`grad_g += 2` and a second batch of samples; none for
    /// `v = 0`, which costs nothing), and no HVP or JVP, since none was computed.
    fn products(
        &mut self,
        x: &Tensor<B, 1>,
        y: &Tensor<B, 1>,
        v: &Tensor<B, 1>,
        batch: &Batch,
        asked: (bool, bool),
    ) -> Result<(Tensor<B, 1>, Option<Tensor<B, 1>>)> {
        let want_jvp = asked.1;
        if let SecondOrder::FiniteDifference { eps } = self.mode {
            if !(eps > 0.0 && eps.is_finite()) {
                return Err(BilevelError::invalid("eps", "must be positive and finite"));
            }
            let len = batch.len(self.problem.inner_len()) as u64;
            let scale = norm(v);
            if scale == 0.0 {
                // check_product counted one batch of samples; nothing was evaluated.
                self.counts.samples_g -= len;
            } else {
                self.counts.grad_g += 2;
                self.counts.samples_g += len;
            }
            return Ok(fd_products(
                self.problem,
                x,
                y,
                (v, scale),
                batch,
                eps,
                want_jvp,
            ));
        }
        self.counts.hvp += u64::from(asked.0);
        self.counts.jvp += u64::from(asked.1);
        if let Some(cf) = self.closed_form() {
            let (hv, jv) = cf.inner_products(x, y, v, batch, want_jvp);
            check_len("closed-form H v", &hv, self.problem.y_dim())?;
            if let Some(jv) = &jv {
                check_len("closed-form J v", jv, self.problem.x_dim())?;
            }
            return Ok((hv, jv));
        }
        Ok(exact_products(self.problem, x, y, v, batch, want_jvp))
    }
}

/// A product that was asked for and not returned (a closed form that breaks its contract).
fn missing(what: &str, len: usize) -> BilevelError {
    BilevelError::ShapeMismatch {
        what: what.to_string(),
        expected: vec![len],
        got: Vec::new(),
    }
}

fn no_map() -> BilevelError {
    BilevelError::invalid(
        "lower_level",
        "this problem has no contraction map Ψ(y, x); use the minimisation form Ψ = y − γ∇_y g",
    )
}

/// Fresh leaves for one backward: `y` always tracked, `x` when asked.
fn leaves<B: AutodiffBackend>(
    x: &Tensor<B, 1>,
    y: &Tensor<B, 1>,
    track_x: bool,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let xr = x.clone().detach();
    let xr = if track_x { xr.require_grad() } else { xr };
    (xr, y.clone().detach().require_grad())
}

/// Value and both gradients of `loss` with respect to the leaves `x`, `y` (zeros where the
/// loss does not depend on a leaf).
fn gradient_of<B: AutodiffBackend>(
    loss: Tensor<B, 1>,
    x: &Tensor<B, 1>,
    y: &Tensor<B, 1>,
) -> Gradient<B> {
    let value = loss.clone().detach();
    let grads = loss.backward();
    let gx = x
        .grad(&grads)
        .map(Tensor::from_inner)
        .unwrap_or_else(|| x.zeros_like().detach());
    let gy = y
        .grad(&grads)
        .map(Tensor::from_inner)
        .unwrap_or_else(|| y.zeros_like().detach());
    Gradient {
        value,
        x: gx,
        y: gy,
    }
}

/// `(H v, J v)` by one double backward through `Autodiff<B>` (`J v` only when asked).
fn exact_products<B: AutodiffBackend, P: BilevelProblem<B>>(
    problem: &P,
    x: &Tensor<B, 1>,
    y: &Tensor<B, 1>,
    v: &Tensor<B, 1>,
    batch: &Batch,
    want_jvp: bool,
) -> (Tensor<B, 1>, Option<Tensor<B, 1>>) {
    // Level-1 leaves: tracked on B, so that the backward of level 2 is recorded on B.
    let (x1, y1) = leaves(x, y, want_jvp);
    // Level 2: only y needs a gradient there; x enters as a (level-1-tracked) constant.
    let x2 = Tensor::<Autodiff<B>, 1>::from_inner(x1.clone());
    let y2 = Tensor::<Autodiff<B>, 1>::from_inner(y1.clone()).require_grad();
    let g = problem.inner_loss::<Autodiff<B>>(x2, y2.clone(), batch);
    let zeros = || {
        let jv = want_jvp.then(|| x.zeros_like().detach());
        (y.zeros_like().detach(), jv)
    };
    // (`is_require_grad` is true for leaves only, so a loss that ignores y shows up below as a
    // missing gradient, not here.)
    let grads2 = g.backward();
    // ∇_y g as a B tensor whose graph still reaches x1 and y1.
    let Some(grad_y) = y2.grad(&grads2) else {
        return zeros();
    };
    // If ∇_y g depends on neither x nor y, s is untracked and both gradients below are None.
    let s = grad_y.mul(v.clone().detach()).sum();
    let grads1 = s.backward();
    let hv = y1
        .grad(&grads1)
        .map(Tensor::from_inner)
        .unwrap_or_else(|| y.zeros_like().detach());
    let jv = want_jvp.then(|| {
        x1.grad(&grads1)
            .map(Tensor::from_inner)
            .unwrap_or_else(|| x.zeros_like().detach())
    });
    (hv, jv)
}

/// `(H v, J v)` by central differences of `∇g` along `v/‖v‖` (`scale = ‖v‖`, computed once
/// by the caller, which also counts the two gradients).
fn fd_products<B: AutodiffBackend, P: BilevelProblem<B>>(
    problem: &P,
    x: &Tensor<B, 1>,
    y: &Tensor<B, 1>,
    (v, scale): (&Tensor<B, 1>, f64),
    batch: &Batch,
    eps: f64,
    want_jvp: bool,
) -> (Tensor<B, 1>, Option<Tensor<B, 1>>) {
    if scale == 0.0 {
        let jv = want_jvp.then(|| x.zeros_like().detach());
        return (y.zeros_like().detach(), jv);
    }
    let step = v.clone().detach().mul_scalar(eps / scale);
    let grad_at = |y_shift: Tensor<B, 1>| {
        let (xr, yr) = leaves(x, &y_shift, want_jvp);
        let loss = problem.inner_loss::<B>(xr.clone(), yr.clone(), batch);
        gradient_of(loss, &xr, &yr)
    };
    let plus = grad_at(y.clone().add(step.clone()));
    let minus = grad_at(y.clone().sub(step));
    let factor = scale / (2.0 * eps);
    let hv = plus.y.sub(minus.y).mul_scalar(factor);
    let jv = want_jvp.then(|| plus.x.sub(minus.x).mul_scalar(factor));
    (hv, jv)
}
