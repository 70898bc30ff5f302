//! Seeded randomness carried in solver state, and batch draws.

use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::problem::Batch;

/// The one random source of a run: seeded, serialisable (checkpoints restore it exactly).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    /// A generator from a seed.
    pub fn seed(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// The underlying generator, for distributions.
    pub fn inner(&mut self) -> &mut ChaCha8Rng {
        &mut self.0
    }

    /// `size` indices drawn uniformly with replacement from `0..len`; [`Batch::Full`] when the
    /// data set is deterministic (`len = None`) or `size` is `None`.
    pub fn batch(&mut self, len: Option<usize>, size: Option<usize>) -> Batch {
        match (len, size) {
            (Some(n), Some(s)) if n > 0 => {
                Batch::Indices((0..s).map(|_| self.0.random_range(0..n)).collect())
            }
            _ => Batch::Full,
        }
    }

    /// A standard normal vector of length `n`.
    pub fn normal_vec(&mut self, n: usize) -> Vec<f64> {
        use rand_distr::{Distribution, StandardNormal};
        (0..n).map(|_| StandardNormal.sample(&mut self.0)).collect()
    }

    /// A uniform draw from `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        self.0.random::<f64>()
    }

    /// A uniform integer in `0..n`.
    pub fn index(&mut self, n: usize) -> usize {
        self.0.random_range(0..n)
    }
}
