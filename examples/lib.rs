//! Shared helpers of the examples (`cargo run --release --example <name>`).

use bilevel_core::OracleCounts;

/// One table row: method, final `‖∇Φ‖`, iterations and oracle counts.
pub fn row(method: &str, grad_norm: f64, iters: u64, c: &OracleCounts) -> String {
    format!(
        "{method:<16} {grad_norm:>10.3e} {iters:>6} {:>7} {:>7} {:>7} {:>7} {:>9}",
        c.grad_g, c.grad_f, c.hvp, c.jvp, c.samples_g
    )
}

/// The header matching [`row`].
pub fn header() -> String {
    format!(
        "{:<16} {:>10} {:>6} {:>7} {:>7} {:>7} {:>7} {:>9}",
        "method", "‖∇Φ(x)‖", "iters", "grad_g", "grad_f", "hvp", "jvp", "samples_g"
    )
}

/// The README's Rust code, compiled and run as a doctest of this crate (which sees the
/// algorithms as well as the core), so the documentation cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
