//! Bag-of-words and TF-IDF features for text classification (e.g. the SpamAssassin corpus).
//!
//! The pipeline: text → [`Tokenizer`] → tokens → [`Vocabulary::fit`] → [`bag_of_words`]
//! (sparse counts) → [`TfIdf`] (weighted, l2-normalised rows). Everything is deterministic:
//! vocabulary order does not depend on hash-map iteration.
//!
//! TF-IDF follows scikit-learn's `TfidfTransformer` defaults (`smooth_idf=True`,
//! `sublinear_tf=False`, `norm="l2"`): for `n` documents and a term in `df` of them,
//!
//! ```text
//! idf = ln((1 + n) / (1 + df)) + 1,   tfidf(d, t) = count(d, t) * idf(t),   rows / ‖row‖₂
//! ```
//!
//! Two deliberate differences from scikit-learn's `CountVectorizer`: the token pattern is
//! "maximal runs of ASCII alphanumerics, at least two long, not all digits" (scikit-learn's
//! default `\b\w\w+\b` is Unicode-aware and keeps numbers), and [`VocabOptions::max_features`]
//! keeps the terms with the highest *document* frequency (scikit-learn ranks by total count);
//! vocabulary indices follow that ranking rather than alphabetical order.

use std::collections::HashMap;

use crate::error::{DataError, Result};

/// Splits text into lowercase word tokens.
///
/// A token is a maximal run of ASCII letters and digits; runs shorter than two characters and
/// runs made only of digits are dropped. Every other character (punctuation, whitespace,
/// non-ASCII letters) separates tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokenizer {
    /// Drop everything before the first blank line (an e-mail's header block). A blank line is
    /// one that is empty or only whitespace; text without a blank line is kept whole.
    pub strip_email_headers: bool,
}

impl Tokenizer {
    /// A tokenizer that keeps the whole text.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tokenizer that drops e-mail headers (see [`Tokenizer::strip_email_headers`]).
    pub fn for_email() -> Self {
        Self {
            strip_email_headers: true,
        }
    }

    /// The part of `text` that is tokenized: after the first blank line if headers are
    /// stripped (and there is one), else all of it.
    pub fn body<'a>(&self, text: &'a str) -> &'a str {
        if !self.strip_email_headers {
            return text;
        }
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            offset += line.len();
            if line.trim().is_empty() {
                return &text[offset..];
            }
        }
        text
    }

    /// The tokens of `text`, in order, lowercased.
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        self.body(text)
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|t| t.len() >= 2 && !t.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_ascii_lowercase)
            .collect()
    }
}

/// Which terms [`Vocabulary::fit`] keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VocabOptions {
    /// Keep only terms occurring in at least this many documents (0 and 1 keep all).
    pub min_df: usize,
    /// Keep only terms occurring in at most this fraction of the documents, in `(0, 1]`
    /// (scikit-learn's `max_df` as a float: `df <= max_df_fraction * n_docs`).
    pub max_df_fraction: f64,
    /// Keep at most this many terms, those with the highest document frequency (ties broken
    /// alphabetically); `None` keeps all.
    pub max_features: Option<usize>,
}

impl Default for VocabOptions {
    /// Keep every term: `min_df = 1`, `max_df_fraction = 1`, no cap.
    fn default() -> Self {
        Self {
            min_df: 1,
            max_df_fraction: 1.0,
            max_features: None,
        }
    }
}

/// A fitted mapping from terms to column indices.
///
/// Terms are ordered by descending document frequency in the fitting corpus, then
/// alphabetically; the index of a term is its position in that order.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocabulary {
    terms: Vec<String>,
    document_frequencies: Vec<usize>,
    index: HashMap<String, usize>,
}

impl Vocabulary {
    /// Fits a vocabulary on tokenized documents.
    ///
    /// # Errors
    /// [`DataError::InvalidParameter`] if there are no documents, if `max_df_fraction` is not in
    /// `(0, 1]`, if `max_features` is `Some(0)`, or if no term survives the filters.
    pub fn fit(docs: &[Vec<String>], options: VocabOptions) -> Result<Self> {
        if docs.is_empty() {
            return Err(DataError::invalid(
                "docs",
                "at least one document is needed",
            ));
        }
        let max_df = options.max_df_fraction;
        if !(max_df > 0.0 && max_df <= 1.0) {
            return Err(DataError::invalid(
                "max_df_fraction",
                format!("a fraction in (0, 1], got {max_df}"),
            ));
        }
        if options.max_features == Some(0) {
            return Err(DataError::invalid(
                "max_features",
                "at least 1 (or None for no cap)",
            ));
        }
        let mut df: HashMap<&str, usize> = HashMap::new();
        let mut seen: Vec<&str> = Vec::new();
        for doc in docs {
            seen.clear();
            seen.extend(doc.iter().map(String::as_str));
            seen.sort_unstable();
            seen.dedup();
            for &term in &seen {
                *df.entry(term).or_default() += 1;
            }
        }
        let max_count = max_df * docs.len() as f64;
        let mut kept: Vec<(&str, usize)> = df
            .into_iter()
            .filter(|&(_, n)| n >= options.min_df && n as f64 <= max_count)
            .collect();
        kept.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        if let Some(cap) = options.max_features {
            kept.truncate(cap);
        }
        if kept.is_empty() {
            return Err(DataError::invalid(
                "options",
                format!(
                    "no term of {} documents is left after pruning with min_df = {}, \
                     max_df_fraction = {max_df}",
                    docs.len(),
                    options.min_df
                ),
            ));
        }
        let terms: Vec<String> = kept.iter().map(|(t, _)| t.to_string()).collect();
        let document_frequencies = kept.iter().map(|&(_, n)| n).collect();
        let index = terms
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i))
            .collect();
        Ok(Self {
            terms,
            document_frequencies,
            index,
        })
    }

    /// Number of terms.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    /// Whether there are no terms (never true for a fitted vocabulary).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Column index of `term`, if it is in the vocabulary.
    pub fn index_of(&self, term: &str) -> Option<usize> {
        self.index.get(term).copied()
    }

    /// The terms, in index order.
    pub fn terms(&self) -> &[String] {
        &self.terms
    }

    /// Document frequency of each term in the corpus the vocabulary was fitted on, in index
    /// order.
    pub fn document_frequencies(&self) -> &[usize] {
        &self.document_frequencies
    }
}

/// A sparse matrix in compressed sparse row (CSR) layout.
///
/// Row `i` holds columns `indices[indptr[i]..indptr[i + 1]]` (strictly increasing) with values
/// `values[indptr[i]..indptr[i + 1]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseMatrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Row offsets, `rows + 1` entries from 0 to `indices.len()`.
    pub indptr: Vec<usize>,
    /// Column indices, row by row.
    pub indices: Vec<u32>,
    /// Values matching `indices`.
    pub values: Vec<f32>,
}

impl SparseMatrix {
    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// The column indices and values of row `i`.
    ///
    /// # Panics
    /// If `i >= self.rows`, like slice indexing.
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let range = self.indptr[i]..self.indptr[i + 1];
        (&self.indices[range.clone()], &self.values[range])
    }

    /// The matrix as a dense row-major `rows * cols` buffer.
    pub fn to_dense(&self) -> Vec<f32> {
        let mut dense = vec![0f32; self.rows * self.cols];
        if self.cols == 0 {
            return dense;
        }
        for (i, row) in dense.chunks_exact_mut(self.cols).enumerate() {
            let (indices, values) = self.row(i);
            for (&j, &v) in indices.iter().zip(values) {
                row[j as usize] = v;
            }
        }
        dense
    }
}

/// Term counts of each document over `vocab`: a `docs.len() × vocab.len()` CSR matrix.
///
/// Tokens not in the vocabulary are ignored, so a document may have an empty row.
pub fn bag_of_words(vocab: &Vocabulary, docs: &[Vec<String>]) -> SparseMatrix {
    let mut indptr = Vec::with_capacity(docs.len() + 1);
    indptr.push(0);
    let mut indices = Vec::new();
    let mut values = Vec::new();
    let mut row: Vec<u32> = Vec::new();
    for doc in docs {
        row.clear();
        // The vocabulary holds fewer than 2^32 distinct terms in any realistic corpus.
        row.extend(
            doc.iter()
                .filter_map(|t| vocab.index_of(t))
                .map(|j| j as u32),
        );
        row.sort_unstable();
        for group in row.chunk_by(|a, b| a == b) {
            indices.push(group[0]);
            values.push(group.len() as f32);
        }
        indptr.push(indices.len());
    }
    SparseMatrix {
        rows: docs.len(),
        cols: vocab.len(),
        indptr,
        indices,
        values,
    }
}

/// Fitted inverse document frequencies (smooth idf, as scikit-learn's default).
#[derive(Debug, Clone, PartialEq)]
pub struct TfIdf {
    idf: Vec<f64>,
}

impl TfIdf {
    /// Fits `idf_j = ln((1 + n) / (1 + df_j)) + 1` on a count matrix (`n` = rows, `df_j` = rows
    /// with a nonzero count in column `j`).
    ///
    /// # Errors
    /// [`DataError::InvalidParameter`] if the matrix has no rows or no columns.
    pub fn fit(counts: &SparseMatrix) -> Result<Self> {
        if counts.rows == 0 || counts.cols == 0 {
            return Err(DataError::invalid(
                "counts",
                format!(
                    "a non-empty count matrix, got {} x {}",
                    counts.rows, counts.cols
                ),
            ));
        }
        let mut df = vec![0usize; counts.cols];
        for (&j, &v) in counts.indices.iter().zip(&counts.values) {
            if v != 0.0 {
                df[j as usize] += 1;
            }
        }
        let n = counts.rows as f64;
        let idf = df
            .iter()
            .map(|&d| ((1.0 + n) / (1.0 + d as f64)).ln() + 1.0)
            .collect();
        Ok(Self { idf })
    }

    /// The inverse document frequency of each column.
    pub fn idf(&self) -> &[f64] {
        &self.idf
    }

    /// Weights `counts` by idf and scales each row to unit l2 norm (all-zero rows stay zero).
    ///
    /// # Errors
    /// [`DataError::ShapeMismatch`] if `counts` has another number of columns than the fitted
    /// matrix.
    pub fn transform(&self, counts: &SparseMatrix) -> Result<SparseMatrix> {
        if counts.cols != self.idf.len() {
            return Err(DataError::ShapeMismatch {
                what: "columns of the count matrix (vocabulary size) for TF-IDF".to_string(),
                expected: self.idf.len(),
                got: counts.cols,
            });
        }
        let mut values = Vec::with_capacity(counts.nnz());
        for i in 0..counts.rows {
            let (indices, row) = counts.row(i);
            let weighted: Vec<f64> = indices
                .iter()
                .zip(row)
                .map(|(&j, &c)| f64::from(c) * self.idf[j as usize])
                .collect();
            let norm = weighted.iter().map(|w| w * w).sum::<f64>().sqrt();
            let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
            values.extend(weighted.iter().map(|w| (w * scale) as f32));
        }
        Ok(SparseMatrix {
            rows: counts.rows,
            cols: counts.cols,
            indptr: counts.indptr.clone(),
            indices: counts.indices.clone(),
            values,
        })
    }

    /// [`TfIdf::transform`] as a dense row-major `rows * cols` buffer.
    pub fn transform_dense(&self, counts: &SparseMatrix) -> Result<Vec<f32>> {
        Ok(self.transform(counts)?.to_dense())
    }

    /// Fits on `counts` and transforms them.
    pub fn fit_transform(counts: &SparseMatrix) -> Result<(Self, SparseMatrix)> {
        let model = Self::fit(counts)?;
        let out = model.transform(counts)?;
        Ok((model, out))
    }
}
