//! Batch normalisation with batch statistics, usable under nested autodiff. (in progress)
