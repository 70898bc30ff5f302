//! N-way K-shot episode sampler with query sets. (in progress)
