//! `X` in row blocks, each with its transpose stored contiguous ([`RowBlocks`]).

use std::ops::Range;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Elements of `X` per row block: `2²¹` (8 MiB in f32, 16 MiB in f64), under glibc's largest
/// dynamic mmap threshold (32 MiB). burn-ndarray 0.21's matmul copies each operand
/// (`reshape` → `CowArray::into_shared`); a copy above the threshold is a fresh `mmap` whose
/// pages fault in on every product and go back to the kernel after it, a copy below it is
/// reused heap memory (docs/PERFORMANCE.md).
pub const BLOCK_ELEMENTS: usize = 1 << 21;

/// `X` (`[m, d]`) as row blocks, with each block's transpose stored contiguous: the products
/// `X A` and `Xᵀ G` without copying all of `X` per matmul.
#[derive(Clone, Debug)]
pub struct RowBlocks<B: Backend> {
    /// `X_b`, `[m_b, d]`.
    pub(super) rows: Vec<Tensor<B, 2>>,
    /// `X_bᵀ`, `[d, m_b]`, standard layout.
    cols: Vec<Tensor<B, 2>>,
    /// Row range of each block in `X`.
    pub(super) ranges: Vec<Range<usize>>,
}

impl<B: Backend> RowBlocks<B> {
    /// `x` in blocks of at most `block_elements` elements (at least one row each), transposes
    /// through the host (so they are standard layout on every backend).
    pub fn new(x: &Tensor<B, 2>, block_elements: usize) -> Self {
        let [m, d] = x.dims();
        let mut ranges = row_ranges(m, d, block_elements);
        // At least one (possibly empty) block.
        if ranges.is_empty() {
            ranges.push(0..0);
        }
        let rows: Vec<_> = match ranges.len() {
            0 | 1 => vec![x.clone()],
            _ => ranges
                .iter()
                .map(|r| x.clone().slice([r.clone(), 0..d]))
                .collect(),
        };
        let device = x.device();
        let cols = rows
            .iter()
            .map(|b| Tensor::from_data(b.clone().transpose().into_data(), &device))
            .collect();
        Self { rows, cols, ranges }
    }

    /// One block: a mini-batch's rows, with its transpose as a view.
    pub fn single(x: Tensor<B, 2>) -> Self {
        let [m, _] = x.dims();
        Self {
            cols: vec![x.clone().transpose()],
            rows: vec![x],
            ranges: std::iter::once(0..m).collect(),
        }
    }

    /// `X A`.
    pub fn times(&self, a: Tensor<B, 2>) -> Tensor<B, 2> {
        match self.rows.as_slice() {
            [x] => x.clone().matmul(a),
            rows => Tensor::cat(
                rows.iter().map(|x| x.clone().matmul(a.clone())).collect(),
                0,
            ),
        }
    }

    /// `Xᵀ G` for `G` of `[m, k]`: `Σ_b X_bᵀ G_b`.
    pub fn t_times(&self, g: Tensor<B, 2>) -> Tensor<B, 2> {
        match self.cols.as_slice() {
            [x_t] => x_t.clone().matmul(g),
            cols => {
                let [_, k] = g.dims();
                cols.iter()
                    .zip(&self.ranges)
                    .map(|(x_t, r)| x_t.clone().matmul(g.clone().slice([r.clone(), 0..k])))
                    .reduce(|a, b| a.add(b))
                    .expect("at least two blocks")
            }
        }
    }

    /// No rows (the blocks of a batch without clean rows).
    pub(super) fn empty() -> Self {
        Self {
            rows: Vec::new(),
            cols: Vec::new(),
            ranges: Vec::new(),
        }
    }

    /// Rows in all blocks.
    pub(super) fn len(&self) -> usize {
        self.ranges.last().map_or(0, |r| r.end)
    }

    /// These blocks followed by `x`'s rows, in blocks of at most `block_elements` elements whose
    /// transposes are views (`x` changes per call: no host transpose).
    pub(super) fn followed_by(mut self, x: Tensor<B, 2>, block_elements: usize) -> Self {
        let [m, d] = x.dims();
        let start = self.len();
        for r in row_ranges(m, d, block_elements) {
            let block = x.clone().slice([r.clone(), 0..d]);
            self.cols.push(block.clone().transpose());
            self.rows.push(block);
            self.ranges.push(start + r.start..start + r.end);
        }
        self
    }
}

/// The row ranges of `m` rows of `d` elements in blocks of at most `block_elements` elements
/// (at least one row each; none for `m = 0`).
fn row_ranges(m: usize, d: usize, block_elements: usize) -> Vec<Range<usize>> {
    let step = (block_elements / d.max(1)).max(1);
    (0..m.div_ceil(step))
        .map(|k| k * step..((k + 1) * step).min(m))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bilevel_core::sampling::Rng;
    use bilevel_core::tensor::{matrix, rel_err};
    use burn::backend::NdArray;

    type B = NdArray<f64>;

    #[test]
    fn blocks_split_rows_and_match_whole_products() {
        let mut rng = Rng::seed(3);
        let device = Default::default();
        let (n, d, k) = (23, 4, 3);
        let x = matrix::<B>(&rng.normal_vec(n * d), n, d, &device).expect("sizes match");
        let a = matrix::<B>(&rng.normal_vec(d * k), d, k, &device).expect("sizes match");
        let g = matrix::<B>(&rng.normal_vec(n * k), n, k, &device).expect("sizes match");
        let flat = |t: Tensor<B, 2>| {
            let len: usize = t.dims().iter().product();
            t.reshape([len])
        };
        let whole = RowBlocks::new(&x, n * d);
        assert_eq!(whole.rows.len(), 1);
        // 5 rows per block: 5, 5, 5, 5, 3.
        let split = RowBlocks::new(&x, 5 * d + 1);
        assert_eq!(split.ranges, vec![0..5, 5..10, 10..15, 15..20, 20..23]);
        assert_eq!(split.cols[4].dims(), [d, 3]);
        let xa = x.clone().matmul(a.clone());
        let xtg = x.clone().transpose().matmul(g.clone());
        for blocks in [&whole, &split] {
            assert!(rel_err(&flat(blocks.times(a.clone())), &flat(xa.clone())) < 1e-15);
            assert!(rel_err(&flat(blocks.t_times(g.clone())), &flat(xtg.clone())) < 1e-14);
        }
        // A block budget below one row still makes one-row blocks.
        assert_eq!(RowBlocks::new(&x, 1).rows.len(), n);
    }
}
