//! The one place where a concrete burn backend is chosen. Everything downstream is generic over
//! `B: AutodiffBackend`. The GPU arm (`Autodiff<Wgpu>`, f32) exists in builds with the `wgpu`
//! feature; [`check_available`] probes for an adapter first, so a machine without one gets an
//! error instead of burn's panic.

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::AutodiffBackend;

use crate::failure::Failure;

/// `--backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// CPU, `burn-ndarray` (deterministic: resumed runs are bit-identical).
    Ndarray,
    /// GPU through wgpu, f32 only (needs a build with the `wgpu` feature).
    Wgpu,
}

impl BackendKind {
    /// The precision a fresh run uses when `--precision` is not given: f64 on the CPU, f32 on
    /// wgpu (WGSL has no f64).
    pub fn default_precision(self) -> Precision {
        match self {
            BackendKind::Ndarray => Precision::F64,
            BackendKind::Wgpu => Precision::F32,
        }
    }
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

/// Fails unless this build can run on `backend` (checked before a run folder is created);
/// for wgpu, returns the adapter's description.
pub fn check_available(backend: BackendKind) -> Result<Option<String>, Failure> {
    match backend {
        BackendKind::Ndarray => Ok(None),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => bilevel_core::gpu::probe_adapter().map(Some).map_err(|e| {
            Failure::usage(
                format!("`--backend wgpu` was requested, but no GPU adapter was found: {e}"),
                "install the GPU's Vulkan driver (or Mesa's software driver lavapipe: \
                     `apt-get install mesa-vulkan-drivers libvulkan1`), or run on the CPU with \
                     `--backend ndarray`",
            )
        }),
        #[cfg(not(feature = "wgpu"))]
        BackendKind::Wgpu => Err(wgpu_unavailable()),
    }
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_unavailable() -> Failure {
    Failure::usage(
        "`--backend wgpu` was requested, but this `bilevel` was built without GPU support",
        "rebuild with `cargo build --release -p bilevel-cli --features wgpu`, or run on the CPU \
         with `--backend ndarray`",
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
        #[cfg(feature = "wgpu")]
        (BackendKind::Wgpu, Precision::F32) => {
            Ok(task.run::<bilevel_core::gpu::WgpuAutodiff>(Default::default(), "wgpu-f32"))
        }
        #[cfg(feature = "wgpu")]
        (BackendKind::Wgpu, Precision::F64) => Err(Failure::usage(
            "`--backend wgpu` runs in f32 only (WGSL has no 64-bit floats)",
            "drop `--precision f64` (wgpu defaults to f32), or use `--backend ndarray` for f64",
        )),
        #[cfg(not(feature = "wgpu"))]
        (BackendKind::Wgpu, _) => Err(wgpu_unavailable()),
    }
}
