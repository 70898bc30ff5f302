//! The one place where a concrete burn backend is chosen. Everything downstream is generic over
//! `B: AutodiffBackend`; a GPU arm (issue #8) is one more match arm in [`dispatch`].

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::AutodiffBackend;

use crate::failure::Failure;

/// `--backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// CPU, `burn-ndarray` (deterministic: resumed runs are bit-identical).
    Ndarray,
    /// GPU through wgpu (needs a build with the `wgpu` feature).
    Wgpu,
}

/// `--precision`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats.
    F32,
    /// 64-bit floats (the default on ndarray).
    #[default]
    F64,
}

/// Work to run on the chosen backend.
pub trait BackendTask {
    /// What the task returns.
    type Output;
    /// Runs on backend `B` with `device`; `label` names the backend (e.g. `ndarray-f64`).
    fn run<B: AutodiffBackend>(self, device: B::Device, label: &str) -> Self::Output;
}

/// Fails unless this build can run on `backend` (checked before a run folder is created).
pub fn check_available(backend: BackendKind) -> Result<(), Failure> {
    match backend {
        BackendKind::Ndarray => Ok(()),
        // Issue #8 adds, under `#[cfg(feature = "wgpu")]`, an adapter probe here that fails
        // with "no GPU adapter found" (and the hint to use `--backend ndarray`).
        BackendKind::Wgpu => Err(wgpu_unavailable()),
    }
}

fn wgpu_unavailable() -> Failure {
    Failure::usage(
        "`--backend wgpu` was requested, but this `bilevel` was built without GPU support",
        "rebuild with `cargo build --release -p bilevel-cli --features wgpu` (GPU support is \
         tracked in issue #8), or run on the CPU with `--backend ndarray`",
    )
}

/// Runs `task` on the backend the flags select.
pub fn dispatch<T: BackendTask>(
    backend: BackendKind,
    precision: Precision,
    task: T,
) -> Result<T::Output, Failure> {
    match (backend, precision) {
        (BackendKind::Ndarray, Precision::F64) => {
            Ok(task.run::<Autodiff<NdArray<f64>>>(Default::default(), "ndarray-f64"))
        }
        (BackendKind::Ndarray, Precision::F32) => {
            Ok(task.run::<Autodiff<NdArray<f32>>>(Default::default(), "ndarray-f32"))
        }
        // Issue #8: `(BackendKind::Wgpu, p) => Ok(task.run::<Autodiff<Wgpu<..>>>(device, ..))`.
        (BackendKind::Wgpu, _) => Err(wgpu_unavailable()),
    }
}
