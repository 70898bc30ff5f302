//! The command line's side of backend selection: the choice itself (types, precision rules,
//! dispatch) lives in [`bilevel_core::backend`]; this module turns its errors into [`Failure`]s
//! with a hint naming the fix.

pub use bilevel_core::backend::{BackendKind, BackendTask, Precision};

use crate::failure::Failure;

/// Fails unless this build can run on `backend` (checked before a run folder is created);
/// for wgpu, returns the adapter's description.
pub fn check_available(backend: BackendKind) -> Result<Option<String>, Failure> {
    bilevel_core::backend::check_available(backend).map_err(|e| match backend {
        BackendKind::Wgpu if cfg!(feature = "wgpu") => Failure::usage(
            format!("`--backend wgpu` was requested, but no GPU adapter was found: {e}"),
            "install the GPU's Vulkan driver (or Mesa's software driver lavapipe: \
             `apt-get install mesa-vulkan-drivers libvulkan1`), or run on the CPU with \
             `--backend flex`",
        ),
        _ => Failure::usage(
            format!(
                "`--backend {backend}` was requested, but this `bilevel` was built without GPU \
                 support: {e}"
            ),
            "rebuild with `cargo build --release -p bilevel-cli --features wgpu`, or run on the \
             CPU with `--backend flex` (the default)",
        ),
    })
}

/// Runs `task` on the backend and precision the flags select.
pub fn dispatch<T: BackendTask>(
    backend: BackendKind,
    precision: Precision,
    task: T,
) -> Result<T::Output, Failure> {
    bilevel_core::backend::dispatch(backend, precision, task).map_err(|e| {
        Failure::usage(
            format!("cannot run on `--backend {backend} --precision {precision}`: {e}"),
            "pick a combination the backend supports: flex and ndarray run f32 and f64, wgpu \
             only f32",
        )
    })
}
