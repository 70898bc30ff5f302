//! Equilibrium (fixed-point tanh) layer. (in progress)
