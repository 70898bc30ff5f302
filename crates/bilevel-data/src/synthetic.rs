//! A synthetic few-shot glyph set in the Omniglot folder layout. (in progress)
