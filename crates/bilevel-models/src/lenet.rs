//! LeNet-5. (in progress)
