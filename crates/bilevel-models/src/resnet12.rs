//! ResNet-12. (in progress)
