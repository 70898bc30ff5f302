//! Omniglot folder layout. (in progress)
