//! LIBSVM / svmlight sparse format. (in progress)
