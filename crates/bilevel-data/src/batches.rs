//! Seeded, resumable mini-batch index samplers.
//!
//! - [`BatchSampler`]: epochs without replacement. Each epoch is a fresh random permutation of
//!   `0..len` cut into batches of `batch_size`; the last, shorter batch of an epoch is either
//!   kept or, with `drop_last`, skipped (its indices then wait for a later epoch's
//!   permutation).
//! - [`ReplacementSampler`] / [`sample_with_replacement`]: independent uniform draws, the
//!   sampling model of stochastic bilevel analyses (stocBiO, BSA, SID).
//!
//! # Reproducibility and resuming
//! Epoch `e` of a [`BatchSampler`] (batch `b` of a [`ReplacementSampler`]) is drawn from a
//! `ChaCha8Rng` seeded with `seed` and set to stream `e` (`b`), so a sampler is fully described
//! by its arguments and the number of batches it has handed out: `resume(…, batches_drawn)`
//! and `skip_to(n)` continue the exact stream, with no RNG state to store.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{DataError, Result};

fn stream_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Epoch-wise shuffled batches of indices into `0..len` (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSampler {
    len: usize,
    batch_size: usize,
    drop_last: bool,
    seed: u64,
    drawn: u64,
    /// Permutation of the epoch `order_epoch`, cached.
    order: Vec<usize>,
    order_epoch: Option<u64>,
}

impl BatchSampler {
    /// Batches of `batch_size` from `0..len`, keeping each epoch's last partial batch.
    ///
    /// Errors ([`DataError::InvalidParameter`]) if `len` or `batch_size` is 0.
    pub fn new(len: usize, batch_size: usize, seed: u64) -> Result<Self> {
        Self::with_drop_last(len, batch_size, false, seed)
    }

    /// Like [`BatchSampler::new`], choosing what happens to an epoch's last partial batch:
    /// kept (`drop_last = false`, so every index appears exactly once per epoch) or skipped
    /// (`true`, so every batch has exactly `batch_size` indices, all distinct within an
    /// epoch). With `drop_last`, `batch_size` must not exceed `len`.
    pub fn with_drop_last(
        len: usize,
        batch_size: usize,
        drop_last: bool,
        seed: u64,
    ) -> Result<Self> {
        Self::resume(len, batch_size, drop_last, seed, 0)
    }

    /// A sampler that continues, exactly, the stream of one built with the same arguments
    /// after it has handed out `batches_drawn` batches.
    pub fn resume(
        len: usize,
        batch_size: usize,
        drop_last: bool,
        seed: u64,
        batches_drawn: u64,
    ) -> Result<Self> {
        if len == 0 {
            return Err(DataError::invalid("len", "at least one sample to batch"));
        }
        if batch_size == 0 {
            return Err(DataError::invalid("batch_size", "at least 1"));
        }
        if drop_last && batch_size > len {
            return Err(DataError::invalid(
                "batch_size",
                format!(
                    "{batch_size} exceeds the {len} samples, so with drop_last every batch would \
                     be dropped"
                ),
            ));
        }
        Ok(Self {
            len,
            batch_size,
            drop_last,
            seed,
            drawn: batches_drawn,
            order: Vec::new(),
            order_epoch: None,
        })
    }

    /// Number of indices sampled from.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (a sampler has at least one index); for symmetry with [`Self::len`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Indices per (full) batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Whether each epoch's last partial batch is skipped.
    pub fn drop_last(&self) -> bool {
        self.drop_last
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Batches per epoch: `ceil(len / batch_size)`, or `floor` with `drop_last`.
    pub fn batches_per_epoch(&self) -> u64 {
        let n = if self.drop_last {
            self.len / self.batch_size
        } else {
            self.len.div_ceil(self.batch_size)
        };
        n as u64
    }

    /// Batches handed out so far.
    pub fn batches_drawn(&self) -> u64 {
        self.drawn
    }

    /// The epoch (from 0) the next batch belongs to.
    pub fn epoch(&self) -> u64 {
        self.drawn / self.batches_per_epoch()
    }

    /// Moves the stream so that the next batch is batch `n` (forwards or backwards).
    pub fn skip_to(&mut self, n: u64) {
        self.drawn = n;
    }

    /// The permutation of `0..len` used in `epoch`.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len).collect();
        order.shuffle(&mut stream_rng(self.seed, epoch));
        order
    }

    /// The next batch of indices.
    pub fn next_batch(&mut self) -> Vec<usize> {
        let per_epoch = self.batches_per_epoch();
        let (epoch, pos) = (self.drawn / per_epoch, (self.drawn % per_epoch) as usize);
        if self.order_epoch != Some(epoch) {
            self.order = self.epoch_order(epoch);
            self.order_epoch = Some(epoch);
        }
        let start = pos * self.batch_size;
        let end = (start + self.batch_size).min(self.len);
        self.drawn = self.drawn.wrapping_add(1);
        self.order[start..end].to_vec()
    }

    /// The batches that remain in the current epoch (all of them at an epoch boundary).
    pub fn rest_of_epoch(&mut self) -> Vec<Vec<usize>> {
        let per_epoch = self.batches_per_epoch();
        let left = per_epoch - self.drawn % per_epoch;
        (0..left).map(|_| self.next_batch()).collect()
    }
}

impl Iterator for BatchSampler {
    type Item = Vec<usize>;

    /// Never ends: epochs follow one another.
    fn next(&mut self) -> Option<Vec<usize>> {
        Some(self.next_batch())
    }
}

/// `batch` indices drawn independently and uniformly from `0..len` with `rng`.
///
/// Errors ([`DataError::InvalidParameter`]) if `len` is 0 and `batch` is not.
pub fn sample_with_replacement<R: Rng + ?Sized>(
    len: usize,
    batch: usize,
    rng: &mut R,
) -> Result<Vec<usize>> {
    if len == 0 && batch > 0 {
        return Err(DataError::invalid(
            "len",
            "cannot draw from an empty index range",
        ));
    }
    Ok((0..batch).map(|_| rng.random_range(0..len)).collect())
}

/// Batches of independent uniform draws from `0..len`, resumable by count (see the module
/// docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacementSampler {
    len: usize,
    batch_size: usize,
    seed: u64,
    drawn: u64,
}

impl ReplacementSampler {
    /// Batches of `batch_size` draws from `0..len`; errors if either is 0.
    pub fn new(len: usize, batch_size: usize, seed: u64) -> Result<Self> {
        Self::resume(len, batch_size, seed, 0)
    }

    /// Continues the stream of [`ReplacementSampler::new`] after `batches_drawn` batches.
    pub fn resume(len: usize, batch_size: usize, seed: u64, batches_drawn: u64) -> Result<Self> {
        if len == 0 {
            return Err(DataError::invalid(
                "len",
                "at least one sample to draw from",
            ));
        }
        if batch_size == 0 {
            return Err(DataError::invalid("batch_size", "at least 1"));
        }
        Ok(Self {
            len,
            batch_size,
            seed,
            drawn: batches_drawn,
        })
    }

    /// Batches handed out so far.
    pub fn batches_drawn(&self) -> u64 {
        self.drawn
    }

    /// Moves the stream so that the next batch is batch `n`.
    pub fn skip_to(&mut self, n: u64) {
        self.drawn = n;
    }

    /// Batch number `index` of the stream, without moving it.
    pub fn batch(&self, index: u64) -> Vec<usize> {
        let mut rng = stream_rng(self.seed, index);
        (0..self.batch_size)
            .map(|_| rng.random_range(0..self.len))
            .collect()
    }

    /// The next batch.
    pub fn next_batch(&mut self) -> Vec<usize> {
        let batch = self.batch(self.drawn);
        self.drawn = self.drawn.wrapping_add(1);
        batch
    }
}
