//! CIFAR-100 binary format and the FC100 superclass split. (in progress)
