//! The GPU backend (cargo feature `wgpu`): burn's wgpu backend in f32, and an adapter probe.
//!
//! burn 0.21's wgpu runtime (cubecl) panics on the first tensor operation when no adapter is
//! found. Binaries call [`probe_adapter`] first, so that a machine without a Vulkan/Metal/DX12
//! driver gets an error naming the fix instead of a panic. On Linux without a GPU, Mesa's
//! software Vulkan driver (lavapipe: `apt-get install mesa-vulkan-drivers libvulkan1`) provides
//! an adapter; CI runs the wgpu tests on it.
//!
//! Only f32: WGSL has no f64, so exact second-order products on this backend are f32-accurate
//! (tests compare them with f64 results from burn-ndarray).
//!
//! The backend is built without burn's `fusion` and `autotune` features: fusion reorders the
//! lazy operation stream of nested autodiff graphs for no gain at the sizes we run, and
//! autotuning benchmarks kernels on first use (minutes on a software driver).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crate::error::{BilevelError, Result};

/// burn's wgpu backend, f32 floats (`CubeBackend<WgpuRuntime, f32, i32, u32>`).
pub type Wgpu = burn::backend::Wgpu<f32, i32, u32>;
/// First-order autodiff on [`Wgpu`] (the backend solvers run on).
pub type WgpuAutodiff = burn::backend::Autodiff<Wgpu>;
/// The device type of [`Wgpu`].
pub type WgpuDevice = burn::backend::wgpu::WgpuDevice;

/// The graphics APIs burn's default wgpu device picks from on this platform.
fn backends() -> wgpu::Backends {
    if cfg!(target_os = "macos") {
        wgpu::Backends::METAL
    } else if cfg!(target_os = "windows") {
        wgpu::Backends::DX12
    } else {
        wgpu::Backends::VULKAN
    }
}

/// Polls a future to completion on this thread (wgpu's native futures are ready at once).
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}

/// A description of the adapter burn's default wgpu device would use (e.g. `"NVIDIA H100 80GB
/// HBM3 (Vulkan, DiscreteGpu, driver 550.54)"` or `"llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan,
/// Cpu, ...)"`), or [`BilevelError::Backend`] when there is none.
pub fn probe_adapter() -> Result<String> {
    let backends = backends();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapters = block_on(instance.enumerate_adapters(backends));
    // burn's default device is the first discrete GPU, else integrated, else virtual, else CPU.
    let rank = |t: wgpu::DeviceType| match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let best = adapters
        .iter()
        .map(|a| a.get_info())
        .min_by_key(|info| rank(info.device_type));
    match best {
        Some(info) => Ok(format!(
            "{} ({:?}, {:?}, driver {} {})",
            info.name, info.backend, info.device_type, info.driver, info.driver_info
        )),
        None => Err(BilevelError::Backend(format!(
            "no GPU adapter found for {backends:?}: install a Vulkan driver (on Debian/Ubuntu \
             without a GPU, Mesa's software driver: `apt-get install mesa-vulkan-drivers \
             libvulkan1`), or run on the CPU with the ndarray backend"
        ))),
    }
}
