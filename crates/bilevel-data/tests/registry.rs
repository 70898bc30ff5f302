//! The data-set registry: well-formedness of every entry, and `verify_dataset` / manifests on a
//! tiny fixture data set (`tests/fixtures/registry/tiny`, see its README).

mod common;

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use bilevel_data::checksum::sha256_bytes;
use bilevel_data::registry::{
    self, data_dir_from, find, manifest_lines, manifest_of, verify_dataset, verify_dataset_at,
    workspace_data_dir, DatasetInfo, FetchMethod, Manifest, DATASETS,
};
use bilevel_data::{mnist, DataError, VerifyReport};
use common::{fixtures, scratch};

const TINY_A: &str = "8ab93f6fddf66f122c11ed60dfdd03e33d48ad87098e87b73ca63f582e17794f";
const TINY_TREE: &str = "c6a97fb2e0575fc1d2363dffea20637753682ed0b918dc4d4a8eef5c913e7fa2";
const TINY_TREE_LINES: [&str; 4] = [
    "B.txt\te83189db38554920ea572093f9ad32facf682f28ccecdac085c1511735a2b492\n",
    "a.txt\tb908e4daaf9d57fe9cb551a689a35c9a9e0fac85fdf11faaa0a1ba0e5efc06fd\n",
    "x.txt\t5ddbce254c08372e429a250112c6f4593868687ab01e9a126193e5a83560362b\n",
    "x/1.txt\t2c8b08da5ce60398e1f19af0e5dccc744df274b826abe585eaba68c525434806\n",
];

/// A test-only registry entry matching the fixture folder.
const TINY: DatasetInfo = DatasetInfo {
    name: "tiny",
    description: "test fixture",
    source: "the test suite",
    license: "CC0",
    dir: "tiny",
    files: &[("a.txt", TINY_A)],
    manifest: Some(Manifest {
        dir: "tree",
        files: 4,
        sha256: TINY_TREE,
    }),
    fetch: FetchMethod::Npm {
        package: "tiny-fixture",
        version: "0.0.0",
        sha256: "0000000000000000000000000000000000000000000000000000000000000000",
        extract: &[],
    },
};

fn fixture_dir() -> PathBuf {
    fixtures().join("registry").join("tiny")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// A fresh copy of the fixture as `<scratch>/tiny`; returns the scratch (data) folder.
fn tiny_data_dir(name: &str) -> PathBuf {
    let data = scratch(name);
    copy_tree(&fixture_dir(), &data.join("tiny"));
    data
}

fn is_sha256(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_relative_clean(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path
            .trim_end_matches('/')
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[test]
fn registry_entries_are_well_formed() {
    let names: HashSet<_> = DATASETS.iter().map(|d| d.name).collect();
    assert_eq!(names.len(), DATASETS.len(), "duplicate names");
    let dirs: HashSet<_> = DATASETS.iter().map(|d| d.dir).collect();
    assert_eq!(dirs.len(), DATASETS.len(), "duplicate folders");
    assert_eq!(
        registry::all().iter().map(|d| d.name).collect::<Vec<_>>(),
        [
            "mnist",
            "fashion-mnist",
            "spam-assassin",
            "wine-quality",
            "diabetes",
            "digits"
        ]
    );

    for d in DATASETS {
        let ctx = d.name;
        assert!(
            d.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{ctx}"
        );
        assert!(is_relative_clean(d.dir), "{ctx}: {}", d.dir);
        for text in [d.description, d.source, d.license] {
            assert!(!text.trim().is_empty(), "{ctx}");
        }
        assert!(!d.files.is_empty(), "{ctx}");

        let paths: HashSet<_> = d.files.iter().map(|(p, _)| *p).collect();
        assert_eq!(paths.len(), d.files.len(), "{ctx}: duplicate file paths");
        for (path, sha) in d.files {
            assert!(
                is_relative_clean(path) && !path.ends_with('/'),
                "{ctx}: {path}"
            );
            assert!(is_sha256(sha), "{ctx}: {path}: {sha}");
        }
        if let Some(m) = d.manifest {
            assert!(is_relative_clean(m.dir), "{ctx}: {}", m.dir);
            assert!(is_sha256(m.sha256), "{ctx}");
            assert!(m.files > 0, "{ctx}");
            for (path, _) in d.files {
                assert!(
                    !path.starts_with(&format!("{}/", m.dir)),
                    "{ctx}: {path} is also under the manifest folder"
                );
            }
        }
        assert_eq!(
            d.file_count(),
            d.files.len() + d.manifest.map_or(0, |m| m.files)
        );

        match d.fetch {
            FetchMethod::Bundled { .. } => {
                assert!(d.fetch.archive_sha256().is_none() && d.fetch.extracts().is_empty());
            }
            _ => {
                assert!(is_sha256(d.fetch.archive_sha256().unwrap()), "{ctx}");
                // Every registered file, and the manifest folder, is produced by one extract.
                let extracts = d.fetch.extracts();
                let dests: HashSet<_> = extracts.iter().map(|e| e.to).collect();
                assert_eq!(dests.len(), extracts.len(), "{ctx}: duplicate destinations");
                for e in extracts {
                    assert!(is_relative_clean(e.from), "{ctx}: {}", e.from);
                    assert!(is_relative_clean(e.to), "{ctx}: {}", e.to);
                    assert_eq!(e.from.ends_with('/'), e.to.ends_with('/'), "{ctx}");
                }
                for (path, _) in d.files {
                    assert!(dests.contains(path), "{ctx}: nothing extracts {path}");
                }
                if let Some(m) = d.manifest {
                    assert!(dests.contains(format!("{}/", m.dir).as_str()), "{ctx}");
                }
                assert!(d
                    .fetch_hint()
                    .contains(&format!("cargo xtask data fetch {ctx}")));
            }
        }
    }
}

#[test]
fn registry_records_the_pinned_sources() {
    let archive = |name: &str| find(name).unwrap().fetch.archive_sha256().unwrap();
    assert_eq!(
        archive("fashion-mnist"),
        "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0"
    );
    assert_eq!(
        archive("spam-assassin"),
        "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb"
    );
    assert_eq!(
        archive("wine-quality"),
        "84ee65c17bcdd784ce5c094d4e383409e2e6e6d9f83c73cb38285ae79a11b26b"
    );
    assert_eq!(archive("wine-quality"), archive("diabetes"));
    assert_eq!(
        archive("digits"),
        "394397841449853c2290a32050382edaec3da89e35b3e03d6cc966aebc6a8ae6"
    );
    assert!(matches!(
        find("fashion-mnist").unwrap().fetch,
        FetchMethod::Debian {
            package: "dataset-fashion-mnist",
            version: "0.0~git20200523.55506a9-1",
            ..
        }
    ));
    let spam = find("spam-assassin").unwrap();
    assert_eq!(spam.manifest.unwrap().files, 12_094);

    // MNIST's entry is the bundled .gz files, with the hashes mnist.rs checks.
    let m = find("mnist").unwrap();
    assert!(m.fetch.is_bundled());
    let expected: Vec<(String, &str)> = mnist::FILES
        .iter()
        .map(|f| (format!("{}.gz", f.name), f.sha256_gz))
        .collect();
    let got: Vec<(String, &str)> = m.files.iter().map(|(p, h)| (p.to_string(), *h)).collect();
    assert_eq!(got, expected);
}

#[test]
fn find_returns_entries_and_rejects_unknown_names() {
    assert_eq!(find("digits").unwrap().dir, "digits");
    match find("cifar-100").unwrap_err() {
        DataError::InvalidParameter { name, reason } => {
            assert_eq!(name, "name");
            assert!(reason.contains("\"cifar-100\""), "{reason}");
            assert!(reason.contains("fashion-mnist"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn data_dir_honours_the_override() {
    assert_eq!(
        data_dir_from(Some(OsString::from("/somewhere/data"))),
        PathBuf::from("/somewhere/data")
    );
    assert_eq!(data_dir_from(Some(OsString::new())), workspace_data_dir());
    assert_eq!(data_dir_from(None), workspace_data_dir());
    assert!(workspace_data_dir().ends_with("data"));
    assert_eq!(registry::DATA_ENV, "BILEVEL_DATA");
}

#[test]
fn bundled_mnist_verifies_wherever_the_data_folder_is() {
    let report = verify_dataset(Path::new("/nonexistent"), find("mnist").unwrap()).unwrap();
    assert_eq!(
        report,
        VerifyReport {
            name: "mnist",
            files_checked: 4,
            ok: true
        }
    );
}

#[test]
fn manifest_is_sorted_by_path_bytes_and_deterministic() {
    let tree = fixture_dir().join("tree");
    let lines = manifest_lines(&tree).unwrap();
    assert_eq!(lines, TINY_TREE_LINES);
    let digest = manifest_of(&tree).unwrap();
    assert_eq!(digest.files, 4);
    assert_eq!(digest.sha256, TINY_TREE);
    assert_eq!(
        digest.sha256,
        sha256_bytes(TINY_TREE_LINES.concat().as_bytes())
    );
    // Same content elsewhere, created in another order: same manifest.
    let copy = scratch("registry-manifest-copy");
    for (rel, text) in [
        ("x/1.txt", "one\n"),
        ("x.txt", "dot\n"),
        ("a.txt", "lower\n"),
        ("B.txt", "upper\n"),
    ] {
        let path = copy.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    assert_eq!(manifest_of(&copy).unwrap(), digest);
    // An empty folder has the hash of the empty text.
    let empty = scratch("registry-manifest-empty");
    let d = manifest_of(&empty).unwrap();
    assert_eq!(d.files, 0);
    assert_eq!(
        d.sha256,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn verify_accepts_the_intact_fixture() {
    let data = tiny_data_dir("registry-ok");
    let expected = VerifyReport {
        name: "tiny",
        files_checked: 5,
        ok: true,
    };
    assert_eq!(verify_dataset(&data, &TINY).unwrap(), expected);
    assert_eq!(verify_dataset_at(&fixture_dir(), &TINY).unwrap(), expected);
    assert_eq!(TINY.path_in(&data), data.join("tiny"));
}

fn assert_missing(err: DataError, path: &Path) {
    match err {
        DataError::MissingFile { path: p, hint } => {
            assert_eq!(p, path.display().to_string());
            assert!(hint.contains("run `cargo xtask data fetch tiny`"), "{hint}");
        }
        other => panic!("expected MissingFile, got {other:?}"),
    }
}

#[test]
fn verify_reports_missing_files_folders_and_data_sets() {
    // No folder at all.
    let data = scratch("registry-missing-all");
    assert_missing(
        verify_dataset(&data, &TINY).unwrap_err(),
        &data.join("tiny").join("a.txt"),
    );
    // A listed file gone.
    let data = tiny_data_dir("registry-missing-file");
    std::fs::remove_file(data.join("tiny/a.txt")).unwrap();
    assert_missing(
        verify_dataset(&data, &TINY).unwrap_err(),
        &data.join("tiny").join("a.txt"),
    );
    // The manifest folder gone.
    let data = tiny_data_dir("registry-missing-tree");
    std::fs::remove_dir_all(data.join("tiny/tree")).unwrap();
    assert_missing(
        verify_dataset(&data, &TINY).unwrap_err(),
        &data.join("tiny").join("tree"),
    );
}

#[test]
fn verify_reports_tampered_files_with_both_hashes() {
    let data = tiny_data_dir("registry-tampered-file");
    let path = data.join("tiny").join("a.txt");
    std::fs::write(&path, "tiny fixture data set!\n").unwrap();
    assert_eq!(
        verify_dataset(&data, &TINY).unwrap_err(),
        DataError::ChecksumMismatch {
            path: path.display().to_string(),
            expected: TINY_A.to_string(),
            got: sha256_bytes(b"tiny fixture data set!\n"),
        }
    );
}

#[test]
fn verify_reports_a_changed_manifest_folder() {
    let tree_err = |data: &Path, note: &str, lines: &[String]| DataError::ChecksumMismatch {
        path: format!("{} ({note})", data.join("tiny").join("tree").display()),
        expected: TINY_TREE.to_string(),
        got: sha256_bytes(lines.concat().as_bytes()),
    };

    // One file's content changed.
    let data = tiny_data_dir("registry-tampered-tree");
    std::fs::write(data.join("tiny/tree/x/1.txt"), "two\n").unwrap();
    let mut lines: Vec<String> = TINY_TREE_LINES.iter().map(|s| s.to_string()).collect();
    lines[3] = format!("x/1.txt\t{}\n", sha256_bytes(b"two\n"));
    assert_eq!(
        verify_dataset(&data, &TINY).unwrap_err(),
        tree_err(&data, "manifest of its 4 files", &lines)
    );

    // An extra file.
    let data = tiny_data_dir("registry-extra-file");
    std::fs::write(data.join("tiny/tree/x/2.txt"), "").unwrap();
    let mut lines: Vec<String> = TINY_TREE_LINES.iter().map(|s| s.to_string()).collect();
    lines.push(format!("x/2.txt\t{}\n", sha256_bytes(b"")));
    assert_eq!(
        verify_dataset(&data, &TINY).unwrap_err(),
        tree_err(&data, "manifest of 5 files, expected 4", &lines)
    );

    // A file removed from the tree: the folder is there, so this is corruption, not absence.
    let data = tiny_data_dir("registry-removed-file");
    std::fs::remove_file(data.join("tiny/tree/B.txt")).unwrap();
    let lines: Vec<String> = TINY_TREE_LINES[1..].iter().map(|s| s.to_string()).collect();
    assert_eq!(
        verify_dataset(&data, &TINY).unwrap_err(),
        tree_err(&data, "manifest of 3 files, expected 4", &lines)
    );
}

#[test]
fn verify_rejects_a_malformed_recorded_hash() {
    const BAD: DatasetInfo = DatasetInfo {
        files: &[("a.txt", "not-a-hash")],
        ..TINY
    };
    let err = verify_dataset_at(&fixture_dir(), &BAD).unwrap_err();
    assert!(
        matches!(err, DataError::InvalidParameter { ref name, .. } if name == "expected_hex"),
        "{err:?}"
    );
}

/// Extra: whatever `cargo xtask data fetch` has put in the workspace's data folder verifies.
#[test]
fn fetched_data_sets_verify_when_present() {
    let data = registry::data_dir();
    for d in DATASETS.iter().filter(|d| !d.fetch.is_bundled()) {
        if !d.path_in(&data).exists() {
            eprintln!(
                "skipping {}: not fetched (cargo xtask data fetch {})",
                d.name, d.name
            );
            continue;
        }
        let report = verify_dataset(&data, d).unwrap();
        assert_eq!(report.files_checked, d.file_count());
    }
}
