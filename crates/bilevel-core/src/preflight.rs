//! Checks of a method's settings against the problem, once, before a run.
//!
//! A setting can be valid on its own (`inner_batch = 10⁶ ≥ 1`, `inner_step = 0.5 > 0`) and still
//! wrong for the problem it meets. A method lists what it asks of the problem in its
//! [`Demands`] ([`crate::Solver::demands`]); [`check`] compares them with the problem:
//!
//! - **Batch sizes** against the data: a batch larger than the data set it samples from is
//!   refused (it would draw the same rows over and over; `"full"` is the whole set), and a
//!   batch size given for a deterministic objective is reported as ignored.
//! - **Stored vectors** against memory: a setting that keeps `n` vectors of the lower-level
//!   size (ITD's and MAML's inner trajectories, FSLA's unrolled states) is refused when they
//!   would not fit in the memory available ([`available_memory`]), instead of aborting the
//!   process on a failed allocation.
//! - **Steps** against the curvature of the inner objective: gradient descent on `g` (step
//!   `α`), the Neumann series `Σ (I − ηH)^j` (step `η`) and the fixed-point linear solver
//!   (step `γ`) converge only for steps below `2/L`, `L` the largest eigenvalue of
//!   `H = ∇²_yy g`. [`estimate_curvature`] estimates `L` where the run starts (or resumes) by
//!   power iteration (a few Hessian-vector products on an oracle of its own, so the run's
//!   counts and random stream are untouched), and a step at or above `2/L` is reported. A
//!   method that solves `H v = b` by conjugate gradients also gets the smallest eigenvalue (a
//!   second power iteration on `L·I − H`): CG's answer is the implicit-function hypergradient
//!   only when `H` is positive definite.
//!
//! Findings of the last two kinds are heuristics at one point (the curvature changes along the
//! run), so they are warnings; with `strict` (config `run.strict = true`) every warning is an
//! error instead. Batch and memory findings that are certain are errors either way.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use crate::error::{BilevelError, Result};
use crate::problem::{Batch, BilevelProblem};
use crate::second_order::{Oracle, SecondOrder};
use crate::tensor::{dot, vector};

/// Which data set a batch samples from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The inner (training) data `g` averages over.
    Inner,
    /// The outer (validation) data `f` averages over.
    Outer,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Inner => "inner",
            Side::Outer => "outer",
        }
    }
}

/// A step that must stay below `2/L` of the inner Hessian.
#[derive(Clone, Debug, PartialEq)]
pub struct StepDemand {
    /// The setting's key, as the user writes it (e.g. `neumann_step`).
    pub key: &'static str,
    /// Its value.
    pub value: f64,
    /// What it steps (e.g. "the Neumann series"), for the message.
    pub role: &'static str,
}

/// What a method asks of the problem: its batch sizes, the lower-level-sized vectors it keeps
/// at once, and its steps on the inner curvature. Built by chaining; empty by default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Demands {
    /// `(key, side, size)` of every batch-size setting (`None`: the full set).
    pub batches: Vec<(&'static str, Side, Option<usize>)>,
    /// `(key, count)`: the setting makes the method keep `count` vectors of length `y_dim`.
    pub stored: Vec<(&'static str, usize)>,
    /// Steps that must stay below `2/L`.
    pub steps: Vec<StepDemand>,
    /// The key of a conjugate-gradient solve of `H v = b`, if the method does one.
    pub conjugate_gradient: Option<&'static str>,
}

impl Demands {
    /// Nothing demanded.
    pub fn new() -> Self {
        Self::default()
    }

    /// A batch-size setting (`None`: the full set, nothing to check).
    pub fn batch(mut self, key: &'static str, side: Side, size: Option<usize>) -> Self {
        self.batches.push((key, side, size));
        self
    }

    /// A setting that makes the method keep `count` lower-level-sized vectors at once.
    pub fn stored(mut self, key: &'static str, count: usize) -> Self {
        self.stored.push((key, count));
        self
    }

    /// A step on the inner curvature that must stay below `2/L`.
    pub fn step(mut self, key: &'static str, value: f64, role: &'static str) -> Self {
        self.steps.push(StepDemand { key, value, role });
        self
    }

    /// A conjugate-gradient solve of `H v = b`, configured by `key`.
    pub fn conjugate_gradient(mut self, key: &'static str) -> Self {
        self.conjugate_gradient = Some(key);
        self
    }

    /// These demands followed by `other`'s (a method built from parts).
    pub fn and(mut self, other: Demands) -> Self {
        self.batches.extend(other.batches);
        self.stored.extend(other.stored);
        self.steps.extend(other.steps);
        self.conjugate_gradient = self.conjugate_gradient.or(other.conjugate_gradient);
        self
    }
}

/// How [`check`] treats findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreflightConfig {
    /// Hessian-vector products of each power iteration of [`estimate_curvature`] (0: no
    /// curvature check). Default 20.
    pub curvature_products: usize,
    /// Every warning is an error (config `run.strict`). Default false.
    pub strict: bool,
}

impl Default for PreflightConfig {
    fn default() -> Self {
        Self {
            curvature_products: 20,
            strict: false,
        }
    }
}

/// A finding that does not stop the run (unless [`PreflightConfig::strict`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Warning {
    /// The setting it is about, as the user writes it.
    pub key: String,
    /// What was found, and what to do.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

/// Collects warnings, or turns them into errors under `strict`.
struct Findings {
    strict: bool,
    warnings: Vec<Warning>,
}

impl Findings {
    fn warn(&mut self, key: &str, message: String) -> Result<()> {
        if self.strict {
            return Err(BilevelError::invalid(
                key,
                format!("{message} (refused because run.strict = true)"),
            ));
        }
        self.warnings.push(Warning {
            key: key.to_string(),
            message,
        });
        Ok(())
    }
}

/// The memory the operating system reports as available to a new allocation (Linux:
/// `MemAvailable` of `/proc/meminfo`), in bytes; `None` where it cannot be read.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Checks `demands` against `problem` at the starting point `(x, y)`; returns the warnings
/// (each also an error under [`PreflightConfig::strict`]). Errors name the setting's key.
pub fn check<B: AutodiffBackend, P: BilevelProblem<B>>(
    problem: &P,
    demands: &Demands,
    x: &Tensor<B, 1>,
    y: &Tensor<B, 1>,
    config: PreflightConfig,
) -> Result<Vec<Warning>> {
    let mut findings = Findings {
        strict: config.strict,
        warnings: Vec::new(),
    };
    for &(key, side, size) in &demands.batches {
        let Some(size) = size else { continue };
        let len = match side {
            Side::Inner => problem.inner_len(),
            Side::Outer => problem.outer_len(),
        };
        match len {
            Some(n) if size > n => {
                return Err(BilevelError::invalid(
                    key,
                    format!(
                        "a batch of {size} exceeds the {n} samples of the {} data it is drawn \
                         from (with replacement, so it would repeat rows); use at most {n}, or \
                         \"full\" for the whole set",
                        side.name()
                    ),
                ))
            }
            Some(_) => {}
            None => findings.warn(
                key,
                format!(
                    "the problem's {} objective is deterministic, so this batch size of {size} \
                     is ignored (every evaluation uses the whole objective)",
                    side.name()
                ),
            )?,
        }
    }
    check_memory(problem.y_dim(), &demands.stored, available_memory())?;
    if config.curvature_products > 0
        && (!demands.steps.is_empty() || demands.conjugate_gradient.is_some())
    {
        check_steps(problem, demands, x, y, config, &mut findings)?;
    }
    Ok(findings.warnings)
}

/// Bytes of one stored element: vectors are counted at f64, the widest precision we run.
const ELEMENT_BYTES: u128 = 8;

/// Refuses a stored-vector demand that cannot fit: more bytes than `available` (when known),
/// or more than the address space can hold.
fn check_memory(
    y_dim: usize,
    stored: &[(&'static str, usize)],
    available: Option<u64>,
) -> Result<()> {
    for &(key, count) in stored {
        let bytes = (count as u128) * (y_dim.max(1) as u128) * ELEMENT_BYTES;
        let limit = available.map_or(isize::MAX as u128, |a| a as u128);
        if bytes > limit {
            let gib = |b: u128| b as f64 / f64::from(1u32 << 30);
            let what = match available {
                Some(a) => format!("the {:.1} GiB of memory available", gib(a as u128)),
                None => "what this machine can address".to_string(),
            };
            return Err(BilevelError::invalid(
                key,
                format!(
                    "this setting makes the method keep {count} vectors of the lower-level \
                     size {y_dim} at once ({:.1} GiB), more than {what}",
                    gib(bytes)
                ),
            ));
        }
    }
    Ok(())
}

/// The batch the curvature is estimated on: the whole inner objective. (A sample would not do:
/// where each sample has lower-level variables of its own — adversarial-ls's reported labels —
/// the curvature of an average over `s` of `n` samples is `n/s` times the full one, and drawing
/// with replacement adds the multiplicity of repeated rows.)
const CURVATURE_BATCH: Batch = Batch::Full;

/// Estimates of the extreme eigenvalues of `H = ∇²_yy g(x, y)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Curvature {
    /// Largest eigenvalue `L` (power iteration on `H`).
    pub largest: f64,
    /// Smallest eigenvalue (power iteration on `L·I − H`), when asked for.
    pub smallest: Option<f64>,
    /// Hessian-vector products each power iteration took.
    pub products: usize,
}

/// Estimates `L = λ_max(∇²_yy g(x, y))` (and, with `smallest`, `λ_min`) by `products` steps of
/// power iteration each, on the whole inner objective, from a fixed start vector. Uses an
/// oracle of its own: the caller's counts and random stream are untouched. The estimate of
/// the largest eigenvalue in magnitude approaches it from below; `L` is the Rayleigh quotient
/// of the last iterate.
pub fn estimate_curvature<B: AutodiffBackend, P: BilevelProblem<B>>(
    problem: &P,
    x: &Tensor<B, 1>,
    y: &Tensor<B, 1>,
    products: usize,
    smallest: bool,
) -> Result<Curvature> {
    let mut oracle = Oracle::with_mode(problem, SecondOrder::Exact);
    let batch = CURVATURE_BATCH;
    let device = problem.device();
    let n = problem.y_dim();
    // A fixed start with components of both signs and unequal sizes, so that it is not
    // orthogonal to the top eigenvector of a structured Hessian.
    let start: Vec<f64> = (0..n)
        .map(|i| 1.0 + 0.5 * ((i as f64) * 0.754_877_666).sin())
        .collect();
    let mut hvp = |v: &Tensor<B, 1>| oracle.hvp(x, y, v, &batch);
    let largest = power_iteration(&mut hvp, vector::<B>(&start, &device), products, 0.0)?;
    let smallest = if smallest {
        // λ_max(L·I − H) = L − λ_min(H); shift by |L| so that the shifted matrix is PSD.
        let shift = largest.abs();
        let top = power_iteration(&mut hvp, vector::<B>(&start, &device), products, shift)?;
        Some(shift - top)
    } else {
        None
    };
    Ok(Curvature {
        largest,
        smallest,
        products,
    })
}

/// The Rayleigh quotient after `steps` power iterations on `shift·I − H` (`shift = 0`: on `H`,
/// returning the eigenvalue of largest magnitude with its sign).
fn power_iteration<B: AutodiffBackend>(
    hvp: &mut impl FnMut(&Tensor<B, 1>) -> Result<Tensor<B, 1>>,
    start: Tensor<B, 1>,
    steps: usize,
    shift: f64,
) -> Result<f64> {
    let mut v = start.clone().mul_scalar(1.0 / dot(&start, &start).sqrt());
    let mut rayleigh = 0.0;
    for _ in 0..steps.max(1) {
        let hv = hvp(&v)?;
        let w = if shift == 0.0 {
            hv
        } else {
            v.clone().mul_scalar(shift).sub(hv)
        };
        rayleigh = dot(&v, &w);
        let norm = dot(&w, &w).sqrt();
        if !norm.is_finite() {
            return Err(BilevelError::NonFinite {
                what: "a Hessian-vector product of the curvature estimate".into(),
            });
        }
        if norm == 0.0 {
            break;
        }
        v = w.div_scalar(norm);
    }
    Ok(rayleigh)
}

fn check_steps<B: AutodiffBackend, P: BilevelProblem<B>>(
    problem: &P,
    demands: &Demands,
    x: &Tensor<B, 1>,
    y: &Tensor<B, 1>,
    config: PreflightConfig,
    findings: &mut Findings,
) -> Result<()> {
    // A lower level posed as a contraction has no inner Hessian to bound the steps with.
    let batch = CURVATURE_BATCH;
    if problem
        .contraction_map::<B>(x.clone().detach(), y.clone().detach(), &batch)
        .is_some()
    {
        return Ok(());
    }
    let k = config.curvature_products;
    let curvature = estimate_curvature(problem, x, y, k, demands.conjugate_gradient.is_some())?;
    let l = curvature.largest;
    let at = format!(
        "L ≈ {l:.4e}, the largest eigenvalue of ∇²_yy g where the run starts or resumes, \
         estimated by {k} Hessian-vector products"
    );
    for step in &demands.steps {
        if l > 0.0 && step.value * l >= 2.0 {
            findings.warn(
                step.key,
                format!(
                    "{} exceeds 2/L = {:.4e} ({at}), where {} diverges; use a step below \
                     {:.4e}",
                    step.value,
                    2.0 / l,
                    step.role,
                    1.0 / l
                ),
            )?;
        }
    }
    if let (Some(key), Some(min)) = (demands.conjugate_gradient, curvature.smallest) {
        let scale = l.abs().max(f64::MIN_POSITIVE);
        if min <= 1e-12 * scale {
            findings.warn(
                key,
                format!(
                    "the inner Hessian ∇²_yy g where the run starts or resumes is not positive \
                     definite (smallest eigenvalue ≈ {min:.4e}, largest ≈ {l:.4e}, estimated by {k} \
                     Hessian-vector products each), so conjugate gradients need not solve \
                     H v = ∇_y f; the inner problem may not be strongly convex there"
                ),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_demands_beyond_what_is_available_are_refused_naming_the_key() {
        // 10⁶ vectors of 1 000 f64 = 8 GB against 1 GiB available: refused. Fails when the
        // check is dropped or compares the count instead of the bytes.
        let err = check_memory(1000, &[("inner_steps", 1_000_000)], Some(1 << 30)).unwrap_err();
        assert!(err.to_string().contains("inner_steps"), "{err}");
        assert!(err.to_string().contains("GiB"), "{err}");
        assert!(check_memory(1000, &[("inner_steps", 100)], Some(1 << 30)).is_ok());
        // Without a reading, only what cannot be addressed is refused.
        assert!(check_memory(1000, &[("k", usize::MAX)], None).is_err());
        assert!(check_memory(1000, &[("k", 1_000_000)], None).is_ok());
    }
}
