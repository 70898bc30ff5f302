//! Two-layer MLP embedding. (in progress)
