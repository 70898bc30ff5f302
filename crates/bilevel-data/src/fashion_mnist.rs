//! Fashion-MNIST (IDX .gz) as fetched from Debian. (in progress)
