//! The hand-derived derivatives of the linear problems on the GPU backend
//! (`Autodiff<Wgpu<f32>>`, issue #8): the default oracle path of hyper-cleaning, ho-l2-mnist,
//! ho-logreg-text (logistic output, per-feature ridge) and poisoning (noisy rows, negated outer
//! loss) against autodiff / nested autodiff on the same device, and against the same
//! hand-derived path on ndarray f64.
//!
//! Runs only with `--features wgpu` and needs a Vulkan/Metal/DX12 adapter (CI installs Mesa's
//! lavapipe); a missing adapter fails the test with [`probe_adapter`]'s message.
#![cfg(feature = "wgpu")]

use std::sync::OnceLock;

use bilevel_core::gpu::{probe_adapter, WgpuAutodiff};
use bilevel_core::sampling::Rng;
use bilevel_core::tensor::{rel_err_host, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, Oracle, SecondOrder};
use bilevel_data::Mnist;
use std::path::Path;

use bilevel_problems::ho_l2::{HoL2Mnist, HoL2MnistSpec};
use bilevel_problems::ho_logreg_text::HoLogregTextSpec;
use bilevel_problems::hyper_cleaning::{HyperCleaning, HyperCleaningSpec};
use bilevel_problems::poisoning::{Poisoning, PoisoningSpec};
use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

type Gpu = WgpuAutodiff;
type Cpu = Autodiff<NdArray<f64>>;

fn mnist() -> &'static Mnist {
    static MNIST: OnceLock<Mnist> = OnceLock::new();
    MNIST.get_or_init(|| Mnist::load_bundled().unwrap())
}

fn adapter() {
    if let Err(e) = probe_adapter() {
        panic!("the wgpu tests need a GPU adapter (CI installs lavapipe): {e}");
    }
}

/// All outputs of one oracle mode at `(x, y, v)`: `g, ∇_x g, ∇_y g, f, ∇_y f, Hv, Jv`.
fn outputs<B: AutodiffBackend, P: BilevelProblem<B>>(
    p: &P,
    mode: SecondOrder,
    point: [&[f64]; 3],
    batch: &Batch,
) -> Vec<Vec<f64>> {
    let device = p.device();
    let [x, y, v] = point.map(|a| vector::<B>(a, &device));
    let mut oracle = Oracle::with_mode(p, mode);
    let g = oracle.grad_g(&x, &y, batch).unwrap();
    let f = oracle.grad_f(&x, &y, batch).unwrap();
    let (hv, jv) = oracle.hvp_jvp(&x, &y, &v, batch).unwrap();
    let host = |t: Tensor<B, 1>| to_vec(t).unwrap();
    vec![
        host(g.value),
        host(g.x),
        host(g.y),
        host(f.value),
        host(f.y),
        host(hv),
        host(jv),
    ]
}

/// Largest relative difference over the outputs (zero vectors compare as equal).
fn worst(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(a, b)| rel_err_host(a, b))
        .fold(0.0, f64::max)
}

fn point(x_dim: usize, y_dim: usize, seed: u64) -> [Vec<f64>; 3] {
    let mut rng = Rng::seed(seed);
    let x = rng.normal_vec(x_dim);
    let y = rng.normal_vec(y_dim).iter().map(|a| 0.05 * a).collect();
    [x, y, rng.normal_vec(y_dim)]
}

/// Closed form vs autodiff on the GPU and vs the closed form on ndarray f64, for each batch.
fn compare<P: BilevelProblem<Gpu>, Q: BilevelProblem<Cpu>>(
    name: &str,
    gpu: &P,
    cpu: &Q,
    at: [&[f64]; 3],
    batches: &[Batch],
) {
    for batch in batches {
        let closed = outputs(gpu, SecondOrder::Exact, at, batch);
        let auto = outputs(gpu, SecondOrder::Autodiff, at, batch);
        let reference = outputs(cpu, SecondOrder::Exact, at, batch);
        let (e_auto, e_ref) = (worst(&closed, &auto), worst(&closed, &reference));
        println!("{name} {batch:?}: closed vs autodiff {e_auto:.2e}, vs ndarray f64 {e_ref:.2e}");
        assert!(
            e_auto < 1e-5 && e_ref < 1e-5,
            "{name} {batch:?}: {e_auto:e}, {e_ref:e}"
        );
    }
}

#[test]
fn hyper_cleaning_closed_form_matches_autodiff_on_wgpu() {
    adapter();
    let spec = HyperCleaningSpec {
        train: 64,
        val: 32,
        test: 16,
        ..Default::default()
    };
    let gpu = HyperCleaning::<Gpu>::from_mnist(&spec, mnist(), 3, &Default::default()).unwrap();
    let cpu = HyperCleaning::<Cpu>::from_mnist(&spec, mnist(), 3, &Default::default()).unwrap();
    let [x, y, v] = point(64, gpu.y_dim(), 9);
    let at = [x.as_slice(), y.as_slice(), v.as_slice()];
    let batches = [Batch::Full, Batch::Indices(vec![5, 5, 31, 0, 17])];
    compare("hyper-cleaning", &gpu, &cpu, at, &batches);
}

#[test]
fn ho_l2_closed_form_matches_autodiff_on_wgpu() {
    adapter();
    let spec = HoL2MnistSpec {
        train: 48,
        val: 24,
        test: 16,
        ..Default::default()
    };
    let gpu = HoL2Mnist::<Gpu>::from_mnist(&spec, mnist(), 4, &Default::default()).unwrap();
    let cpu = HoL2Mnist::<Cpu>::from_mnist(&spec, mnist(), 4, &Default::default()).unwrap();
    let [_, y, v] = point(1, gpu.y_dim(), 10);
    let x = [-0.7];
    let at = [x.as_slice(), y.as_slice(), v.as_slice()];
    compare("ho-l2", &gpu, &cpu, at, &[Batch::Full]);
}

#[test]
fn ho_logreg_text_closed_form_matches_autodiff_on_wgpu() {
    adapter();
    let spec = HoLogregTextSpec {
        train: 5,
        val: 3,
        test: 2,
        min_df: 1,
        bias: true,
        corpus_dir: Some(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../bilevel-data/tests/fixtures/spam/ok"),
        ),
        ..Default::default()
    };
    let gpu = spec.build::<Gpu>(5, None, &Default::default()).unwrap();
    let cpu = spec.build::<Cpu>(5, None, &Default::default()).unwrap();
    let [x, y, v] = point(gpu.x_dim(), gpu.y_dim(), 11);
    // Logits of order 1 and more: y scaled up from `point`'s 0.05.
    let y: Vec<f64> = y.iter().map(|a| 40.0 * a).collect();
    let at = [x.as_slice(), y.as_slice(), v.as_slice()];
    let batches = [Batch::Full, Batch::Indices(vec![2, 0, 2])];
    compare("ho-logreg-text", &gpu, &cpu, at, &batches);
}

#[test]
fn poisoning_closed_form_matches_autodiff_on_wgpu() {
    adapter();
    let spec = PoisoningSpec {
        train: 40,
        poisoned: 12,
        val: 40,
        test: 10,
        ..Default::default()
    };
    let gpu = Poisoning::<Gpu>::from_mnist(&spec, mnist(), 6, &Default::default()).unwrap();
    let cpu = Poisoning::<Cpu>::from_mnist(&spec, mnist(), 6, &Default::default()).unwrap();
    let [x, y, v] = point(gpu.x_dim(), gpu.y_dim(), 12);
    let x: Vec<f64> = x.iter().map(|a| 0.1 * a).collect();
    let at = [x.as_slice(), y.as_slice(), v.as_slice()];
    // Rows ≥ 28 are poisoned: the full batch, and clean and poisoned rows with repeats.
    let batches = [Batch::Full, Batch::Indices(vec![5, 5, 39, 0, 30, 30])];
    compare("poisoning", &gpu, &cpu, at, &batches);
}
