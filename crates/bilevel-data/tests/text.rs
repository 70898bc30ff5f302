//! Tokenizer, vocabulary, bag of words and TF-IDF against hand-computed values.

mod common;

use bilevel_data::text::{bag_of_words, SparseMatrix, TfIdf, Tokenizer, VocabOptions, Vocabulary};
use bilevel_data::DataError;
use common::fixtures;

fn read_fixture(name: &str) -> String {
    std::fs::read_to_string(fixtures().join("text").join(name)).unwrap()
}

/// The three documents of `corpus.txt`, tokenized.
fn corpus() -> Vec<Vec<String>> {
    let tok = Tokenizer::new();
    read_fixture("corpus.txt")
        .lines()
        .map(|l| tok.tokenize(l))
        .collect()
}

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((f64::from(g) - w).abs() < tol, "[{k}] {g} vs {w}");
    }
}

#[test]
fn tokenizer_rules() {
    let tok = Tokenizer::new();
    assert_eq!(
        tok.tokenize("Hello, WORLD! a b2 42 x86_64 e-mail 3D 1999 naïve"),
        ["hello", "world", "b2", "x86", "mail", "3d", "na", "ve"]
    );
    assert!(tok.tokenize("").is_empty());
    assert!(tok.tokenize("1 22 333 a ! ?").is_empty());
}

#[test]
fn email_headers_are_stripped_up_to_the_first_blank_line() {
    let mail = read_fixture("email.eml");
    let body = Tokenizer::for_email().tokenize(&mail);
    // "12:30" is two numbers, "Café" loses its non-ASCII letter.
    assert_eq!(
        body,
        ["hi", "bob", "lunch", "at", "see", "you", "at", "caf"]
    );
    let all = Tokenizer::new().tokenize(&mail);
    assert_eq!(
        all[..9],
        ["from", "alice", "example", "com", "subject", "lunch", "meeting", "mailer", "mutt"]
    );
    assert_eq!(all[9..], body[..]);
    // No blank line: nothing is dropped.
    assert_eq!(
        Tokenizer::for_email().tokenize("Subject: only headers"),
        ["subject", "only", "headers"]
    );
    // A whitespace-only line counts as blank; so does an LF-only file's empty line.
    assert_eq!(
        Tokenizer::for_email().tokenize("To: me\n \t \nbody text"),
        ["body", "text"]
    );
    assert_eq!(Tokenizer::for_email().body("A: b\n\nrest\n"), "rest\n");
}

#[test]
fn vocabulary_orders_by_document_frequency_then_alphabetically() {
    let docs = corpus();
    assert_eq!(
        docs[1],
        ["the", "dog", "ate", "bones", "the", "dog", "slept"]
    );
    assert_eq!(docs[2], ["cat", "and", "dog"]);
    let vocab = Vocabulary::fit(&docs, VocabOptions::default()).unwrap();
    assert_eq!(
        vocab.terms(),
        ["cat", "dog", "the", "and", "ate", "bones", "mat", "on", "sat", "slept"]
    );
    assert_eq!(vocab.document_frequencies(), [2, 2, 2, 1, 1, 1, 1, 1, 1, 1]);
    assert_eq!(vocab.len(), 10);
    assert!(!vocab.is_empty());
    assert_eq!(vocab.index_of("the"), Some(2));
    assert_eq!(vocab.index_of("slept"), Some(9));
    assert_eq!(vocab.index_of("a"), None);

    // Filters: min_df 2 keeps the three shared terms; max_df 0.5 (df <= 1.5) drops them.
    let opts = VocabOptions {
        min_df: 2,
        ..VocabOptions::default()
    };
    assert_eq!(
        Vocabulary::fit(&docs, opts).unwrap().terms(),
        ["cat", "dog", "the"]
    );
    let opts = VocabOptions {
        max_df_fraction: 0.5,
        max_features: Some(3),
        ..VocabOptions::default()
    };
    assert_eq!(
        Vocabulary::fit(&docs, opts).unwrap().terms(),
        ["and", "ate", "bones"]
    );
    // Refitting gives the same vocabulary (no hash-order dependence).
    for _ in 0..5 {
        assert_eq!(
            Vocabulary::fit(&docs, VocabOptions::default()).unwrap(),
            vocab
        );
    }
}

#[test]
fn vocabulary_rejects_bad_options() {
    let docs = corpus();
    let bad = |opts: VocabOptions, name: &str| {
        let err = Vocabulary::fit(&docs, opts).unwrap_err();
        assert!(
            matches!(&err, DataError::InvalidParameter { name: n, .. } if n == name),
            "{err:?}"
        );
    };
    for f in [0.0, -0.1, 1.5, f64::NAN] {
        bad(
            VocabOptions {
                max_df_fraction: f,
                ..VocabOptions::default()
            },
            "max_df_fraction",
        );
    }
    bad(
        VocabOptions {
            max_features: Some(0),
            ..VocabOptions::default()
        },
        "max_features",
    );
    bad(
        VocabOptions {
            min_df: 4,
            ..VocabOptions::default()
        },
        "options",
    );
    let err = Vocabulary::fit(&[], VocabOptions::default()).unwrap_err();
    assert!(
        matches!(&err, DataError::InvalidParameter { name, .. } if name == "docs"),
        "{err:?}"
    );
}

#[test]
fn bag_of_words_counts() {
    let docs = corpus();
    let vocab = Vocabulary::fit(&docs, VocabOptions::default()).unwrap();
    let counts = bag_of_words(&vocab, &docs);
    assert_eq!((counts.rows, counts.cols, counts.nnz()), (3, 10, 13));
    // cat dog the and ate bones mat on sat slept
    #[rustfmt::skip]
    let dense = [
        1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0,
        0.0, 2.0, 2.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0,
        1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    ];
    assert_eq!(counts.to_dense(), dense);
    assert_eq!(counts.row(2), (&[0u32, 1, 3][..], &[1.0f32, 1.0, 1.0][..]));
    // Unknown tokens are ignored; an empty document is an empty row.
    let other = vec![vec!["zebra".to_string()], vec!["dog".into(), "dog".into()]];
    let c = bag_of_words(&vocab, &other);
    assert_eq!(c.indptr, [0, 0, 1]);
    assert_eq!(
        (c.indices.as_slice(), c.values.as_slice()),
        (&[1u32][..], &[2.0f32][..])
    );
}

#[test]
fn tfidf_matches_hand_computed_values() {
    let docs = corpus();
    let vocab = Vocabulary::fit(&docs, VocabOptions::default()).unwrap();
    let counts = bag_of_words(&vocab, &docs);
    let tfidf = TfIdf::fit(&counts).unwrap();
    // n = 3: idf = ln(4/3) + 1 for df = 2, ln(4/2) + 1 = ln 2 + 1 for df = 1.
    let idf2 = 1.287_682_072_451_780_8;
    let idf1 = 1.693_147_180_559_945_4;
    let mut want_idf = vec![idf1; 10];
    want_idf[..3].fill(idf2);
    for (g, w) in tfidf.idf().iter().zip(&want_idf) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }

    let dense = tfidf.transform_dense(&counts).unwrap();
    // d0 = cat 1, the 2, mat 1, on 1, sat 1: weights (idf2, 2 idf2, idf1, idf1, idf1), norm
    // sqrt(5 idf2² + 3 idf1²) = 4.109850085305161.
    let (a, b) = (0.313_316_068_889_205_93, 0.411_972_978_433_890_3);
    #[rustfmt::skip]
    let d0 = [a, 0.0, 2.0 * a, 0.0, 0.0, 0.0, b, b, b, 0.0];
    // d1 = dog 2, the 2, ate 1, bones 1, slept 1: norm sqrt(8 idf2² + 3 idf1²) = 4.676028558811845.
    let (c, d) = (0.550_758_857_118_261_1, 0.362_090_855_362_561_2);
    let d1 = [0.0, c, c, 0.0, d, d, 0.0, 0.0, 0.0, d];
    // d2 = cat 1, dog 1, and 1: norm sqrt(2 idf2² + idf1²).
    let (e, f) = (0.517_856_116_167_697_4, 0.680_918_560_398_684);
    let d2 = [e, e, 0.0, f, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    assert_close(&dense[..10], &d0, 1e-6);
    assert_close(&dense[10..20], &d1, 1e-6);
    assert_close(&dense[20..], &d2, 1e-6);
    for row in dense.chunks(10) {
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6, "{norm}");
    }
    // The sparse result has the count matrix's pattern.
    let (model, sparse) = TfIdf::fit_transform(&counts).unwrap();
    assert_eq!(model, tfidf);
    assert_eq!(
        (&sparse.indptr, &sparse.indices),
        (&counts.indptr, &counts.indices)
    );
    assert_eq!(sparse.to_dense(), dense);
}

#[test]
fn tfidf_edge_cases() {
    let docs = corpus();
    let vocab = Vocabulary::fit(&docs, VocabOptions::default()).unwrap();
    let tfidf = TfIdf::fit(&bag_of_words(&vocab, &docs)).unwrap();
    // An all-unknown document stays a zero row, no NaN.
    let empty = bag_of_words(&vocab, &[vec!["zebra".to_string()]]);
    assert_eq!(tfidf.transform_dense(&empty).unwrap(), vec![0.0; 10]);
    // Width must match the fitted vocabulary.
    let narrow = SparseMatrix {
        rows: 1,
        cols: 3,
        indptr: vec![0, 0],
        indices: vec![],
        values: vec![],
    };
    let err = tfidf.transform(&narrow).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::ShapeMismatch {
                expected: 10,
                got: 3,
                ..
            }
        ),
        "{err:?}"
    );
    let err = TfIdf::fit(&SparseMatrix {
        rows: 0,
        cols: 3,
        indptr: vec![0],
        indices: vec![],
        values: vec![],
    })
    .unwrap_err();
    assert!(matches!(err, DataError::InvalidParameter { .. }), "{err:?}");
}
