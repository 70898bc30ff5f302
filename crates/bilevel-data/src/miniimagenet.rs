//! miniImageNet in the Ravi CSV-split + image-folder layout. (in progress)
