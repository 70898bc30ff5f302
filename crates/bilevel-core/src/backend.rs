//! The one place in the workspace where a concrete burn backend and float precision are chosen.
//!
//! Everything else is generic over `B: AutodiffBackend`. The CLI (`bilevel run --backend`),
//! `cargo xtask reproduce`, `cargo xtask bench` and the problems' validation path all go through
//! [`dispatch`] (or, for code that needs a device directly, [`flex_device`] /
//! [`ndarray_device`]), so the precision rules below are enforced in one place.
//!
//! | backend | type | precisions | notes |
//! |---|---|---|---|
//! | [`BackendKind::Flex`] (default) | `Autodiff<burn_flex::Flex>` | f32, f64 | pure Rust, `gemm` matmul with SIMD and rayon, strided views without operand copies |
//! | [`BackendKind::Ndarray`] | `Autodiff<NdArray<f32 / f64>>` | f32, f64 | the previous default; single-threaded unless the `ndarray-threads` feature is on |
//! | [`BackendKind::Wgpu`] | `Autodiff<Wgpu<f32>>` | f32 | cargo feature `wgpu`; WGSL has no f64 |
//!
//! # One float precision per process and device type
//!
//! burn 0.21 keeps a default float dtype per *device type* for the whole process
//! (`burn::tensor::get_device_settings`), fixed when the first tensor is created on that device
//! type. Tensors created without data (`zeros`, autodiff's backward seed) and every
//! `Tensor::from_data` take that dtype. On Flex it is the only way to get f64 at all
//! (`Flex::FloatElem` is f32); on ndarray, `NdArray<f32>` and `NdArray<f64>` share
//! `NdArrayDevice`, so after one f32 tensor, "f64" code silently computes in f32.
//! [`dispatch`], [`flex_device`] and [`ndarray_device`] therefore *set* the dtype before the
//! first tensor and, when the process already fixed another one, return
//! [`BilevelError::Backend`] instead of computing in the wrong precision.

use std::fmt;
use std::str::FromStr;

use burn::backend::ndarray::NdArrayDevice;
use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{get_device_settings, DType, FloatDType};

use crate::error::{BilevelError, Result};

pub use burn_flex::{Flex, FlexDevice};

/// First-order autodiff on Flex (the backend solvers run on by default).
pub type FlexAutodiff = Autodiff<Flex>;
/// First-order autodiff on ndarray in f64.
pub type NdArrayF64 = Autodiff<NdArray<f64>>;
/// First-order autodiff on ndarray in f32.
pub type NdArrayF32 = Autodiff<NdArray<f32>>;

/// Which tensor backend runs the work (`--backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// CPU, burn-flex (the default): f32 and f64.
    #[default]
    Flex,
    /// CPU, burn-ndarray: f32 and f64.
    Ndarray,
    /// GPU through wgpu, f32 only (builds with the `wgpu` feature).
    Wgpu,
}

impl BackendKind {
    /// Every kind, in the order `--help` lists them.
    pub const ALL: [BackendKind; 3] = [BackendKind::Flex, BackendKind::Ndarray, BackendKind::Wgpu];

    /// The name used on the command line and in labels.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Ndarray => "ndarray",
            BackendKind::Wgpu => "wgpu",
        }
    }

    /// The precision a fresh run uses when none is asked for: f64 on the CPU backends, f32 on
    /// wgpu (WGSL has no f64).
    pub fn default_precision(self) -> Precision {
        match self {
            BackendKind::Flex | BackendKind::Ndarray => Precision::F64,
            BackendKind::Wgpu => Precision::F32,
        }
    }

    /// The kind a label written by [`label`] (e.g. `"ndarray-f64"`) names, if any.
    pub fn from_label(label: &str) -> Option<BackendKind> {
        let name = label.split('-').next()?;
        name.parse().ok()
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        BackendKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown backend `{s}`: expected one of flex, ndarray, wgpu"))
    }
}

/// Float precision (`--precision`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats.
    F32,
    /// 64-bit floats (the default on the CPU backends).
    #[default]
    F64,
}

impl Precision {
    /// `"f32"` or `"f64"`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        }
    }

    fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F64 => FloatDType::F64,
        }
    }

    /// The precision of tensors created on `device` in this process (its default float dtype):
    /// what a generic function actually computes in, whatever `B::FloatElem` says.
    pub fn of_device<B: Backend>(device: &B::Device) -> Option<Precision> {
        match DType::from(get_device_settings::<B>(device).float_dtype) {
            DType::F64 => Some(Precision::F64),
            DType::F32 | DType::Flex32 => Some(Precision::F32),
            _ => None,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "f64" => Ok(Precision::F64),
            _ => Err(format!("unknown precision `{s}`: expected f32 or f64")),
        }
    }
}

/// The label of a backend and precision, e.g. `"flex-f64"` (status files, reports, benches).
pub fn label(kind: BackendKind, precision: Precision) -> String {
    format!("{kind}-{precision}")
}

/// Work to run on the chosen backend.
pub trait BackendTask {
    /// What the task returns.
    type Output;
    /// Runs on backend `B` with `device`; `label` names the backend (e.g. `flex-f64`).
    fn run<B: AutodiffBackend>(self, device: B::Device, label: &str) -> Self::Output;
}

/// Fixes the default float dtype of `device`'s type to `precision` for this process, or fails
/// if the process already created tensors of that type in another precision.
fn fix_precision<B: Backend>(device: &B::Device, precision: Precision, what: &str) -> Result<()> {
    // `set_default_float_dtype` fails once settings exist (a tensor was created, or an earlier
    // call set them); what matters is whether the settings in force are the ones asked for.
    let _ = burn::tensor::backend::set_default_float_dtype::<B>(device, precision.dtype());
    match Precision::of_device::<B>(device) {
        Some(p) if p == precision => Ok(()),
        other => Err(BilevelError::Backend(format!(
            "{what} was asked to compute in {precision}, but this process already created \
             {what} tensors in {}; burn fixes one float precision per device type and process, \
             so run {precision} work in a separate process (or set the precision before any \
             tensor is created)",
            other.map_or("another precision", Precision::name),
        ))),
    }
}

/// The Flex device, with the process's float precision fixed to `precision` (call it before
/// creating any Flex tensor; see the module docs).
pub fn flex_device(precision: Precision) -> Result<FlexDevice> {
    let device = FlexDevice;
    fix_precision::<Flex>(&device, precision, "flex")?;
    Ok(device)
}

/// The ndarray device, with the process's float precision fixed to `precision`. Use it with
/// `NdArray<f64>` for f64 and `NdArray<f32>` for f32.
pub fn ndarray_device(precision: Precision) -> Result<NdArrayDevice> {
    let device = NdArrayDevice::default();
    match precision {
        Precision::F64 => fix_precision::<NdArray<f64>>(&device, precision, "ndarray")?,
        Precision::F32 => fix_precision::<NdArray<f32>>(&device, precision, "ndarray")?,
    }
    Ok(device)
}

/// Fails unless this build can run on `kind` (checked before anything is written); for wgpu,
/// returns the adapter's description.
pub fn check_available(kind: BackendKind) -> Result<Option<String>> {
    match kind {
        BackendKind::Flex | BackendKind::Ndarray => Ok(None),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => crate::gpu::probe_adapter().map(Some),
        #[cfg(not(feature = "wgpu"))]
        BackendKind::Wgpu => Err(wgpu_unavailable()),
    }
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_unavailable() -> BilevelError {
    BilevelError::Backend(
        "the wgpu backend was requested, but this binary was built without the `wgpu` cargo \
         feature (rebuild with `--features wgpu`, or use `--backend flex`)"
            .into(),
    )
}

/// Runs `task` on the backend and precision asked for, after fixing the process's precision
/// for that backend (an error if it cannot be honoured: f64 on wgpu, a build without wgpu, a
/// process that already computed in the other precision).
pub fn dispatch<T: BackendTask>(
    kind: BackendKind,
    precision: Precision,
    task: T,
) -> Result<T::Output> {
    let name = label(kind, precision);
    match (kind, precision) {
        (BackendKind::Flex, _) => {
            let device = flex_device(precision)?;
            Ok(task.run::<FlexAutodiff>(device, &name))
        }
        (BackendKind::Ndarray, Precision::F64) => {
            let device = ndarray_device(precision)?;
            Ok(task.run::<NdArrayF64>(device, &name))
        }
        (BackendKind::Ndarray, Precision::F32) => {
            let device = ndarray_device(precision)?;
            Ok(task.run::<NdArrayF32>(device, &name))
        }
        (BackendKind::Wgpu, Precision::F64) => Err(BilevelError::Backend(
            "the wgpu backend runs in f32 only (WGSL has no 64-bit floats): drop the f64 \
             request (wgpu defaults to f32), or use `--backend flex` for f64"
                .into(),
        )),
        #[cfg(feature = "wgpu")]
        (BackendKind::Wgpu, Precision::F32) => {
            let device = crate::gpu::WgpuDevice::default();
            Ok(task.run::<crate::gpu::WgpuAutodiff>(device, &name))
        }
        #[cfg(not(feature = "wgpu"))]
        (BackendKind::Wgpu, Precision::F32) => Err(wgpu_unavailable()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for kind in BackendKind::ALL {
            assert_eq!(kind.name().parse::<BackendKind>(), Ok(kind));
            for p in [Precision::F32, Precision::F64] {
                assert_eq!(BackendKind::from_label(&label(kind, p)), Some(kind));
                assert_eq!(p.name().parse::<Precision>(), Ok(p));
            }
        }
        assert_eq!(BackendKind::default(), BackendKind::Flex);
        assert!("cuda".parse::<BackendKind>().unwrap_err().contains("flex"));
        assert!("f16".parse::<Precision>().is_err());
    }
}
