//! Linear / logistic heads. (in progress)
