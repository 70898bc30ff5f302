//! Tokenisation, vocabulary, bag-of-words and TF-IDF for raw text. (in progress)
