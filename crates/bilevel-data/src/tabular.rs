//! Named tabular data sets in the locations `cargo xtask data fetch <name>` puts them.
//!
//! | loader | fetch name | files in `dir` | shape | source |
//! |---|---|---|---|---|
//! | [`wine_quality`] | `wine-quality` | `winequality-red.csv.gz` | 1599 × 11 → quality | crate `linfa-datasets` 0.8.1 (UCI, Cortez et al. 2009) |
//! | [`diabetes`] | `diabetes` | `diabetes_data.csv.gz`, `diabetes_target.csv.gz` | 442 × 10 → progression | crate `linfa-datasets` 0.8.1 (Efron et al. 2004) |
//! | [`digits`] | `digits` | `digits.csv.gz` | 1797 × 8×8, 10 classes | scikit-learn wheel (UCI optical digits test set) |
//!
//! Each file may also be present uncompressed (without `.gz`). A missing file is a
//! [`DataError::MissingFile`] naming the fetch command. The loaders check the column layout of
//! each file but not the row counts, so that subsets (and the tests' tiny fixtures) load too;
//! the expected full sizes are [`WINE_QUALITY_LEN`], [`DIABETES_LEN`] and [`DIGITS_LEN`].

use std::path::{Path, PathBuf};

use crate::csv::{read_csv, CsvOptions, CsvTable};
use crate::dataset::Dataset;
use crate::error::{DataError, Result};

/// Fetch name of the red wine quality data set.
pub const WINE_QUALITY: &str = "wine-quality";
/// Fetch name of the diabetes data set.
pub const DIABETES: &str = "diabetes";
/// Fetch name of scikit-learn's 8×8 digits.
pub const DIGITS: &str = "digits";

/// Samples in the full red wine quality file.
pub const WINE_QUALITY_LEN: usize = 1599;
/// Samples in the full diabetes files.
pub const DIABETES_LEN: usize = 442;
/// Samples in the full digits file.
pub const DIGITS_LEN: usize = 1797;

/// Feature names of the diabetes data, as scikit-learn names them.
pub const DIABETES_FEATURES: [&str; 10] = [
    "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6",
];

/// A regression data set: a row-major feature matrix and one target per row.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressionSet {
    /// `len * dim` feature values, row-major.
    pub features: Vec<f64>,
    /// One target per row.
    pub targets: Vec<f64>,
    /// Number of samples.
    pub len: usize,
    /// Features per sample.
    pub dim: usize,
    /// Name of each feature.
    pub feature_names: Vec<String>,
}

/// Per-feature mean and divisor fitted by [`RegressionSet::standardize`], to apply the same
/// transformation to other splits.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureScaling {
    /// Mean of each feature.
    pub mean: Vec<f64>,
    /// Population standard deviation of each feature, or 1 for a constant feature.
    pub std: Vec<f64>,
}

impl FeatureScaling {
    /// Standardises the row-major `features` in place: `x_j ← (x_j − mean_j) / std_j`.
    ///
    /// # Errors
    /// [`DataError::ShapeMismatch`] if the length is not a multiple of the number of features.
    pub fn apply(&self, features: &mut [f64]) -> Result<()> {
        let dim = self.mean.len();
        if dim == 0 || features.len() % dim != 0 {
            return Err(DataError::ShapeMismatch {
                what: format!("rows of {dim} features to standardise"),
                expected: features.len().div_ceil(dim.max(1)) * dim,
                got: features.len(),
            });
        }
        for row in features.chunks_exact_mut(dim) {
            for ((x, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *x = (*x - m) / s;
            }
        }
        Ok(())
    }
}

impl RegressionSet {
    /// Builds a set, checking that there are `dim` features per target and `dim` names.
    pub fn new(
        features: Vec<f64>,
        targets: Vec<f64>,
        dim: usize,
        feature_names: Vec<String>,
    ) -> Result<Self> {
        let len = targets.len();
        if features.len() != len * dim {
            return Err(DataError::ShapeMismatch {
                what: format!("features of {len} samples of dimension {dim}"),
                expected: len * dim,
                got: features.len(),
            });
        }
        if feature_names.len() != dim {
            return Err(DataError::ShapeMismatch {
                what: "feature names".to_string(),
                expected: dim,
                got: feature_names.len(),
            });
        }
        Ok(Self {
            features,
            targets,
            len,
            dim,
            feature_names,
        })
    }

    /// Whether the set has no samples.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The features of sample `i`, or `None` past the end.
    pub fn row(&self, i: usize) -> Option<&[f64]> {
        (i < self.len).then(|| &self.features[i * self.dim..(i + 1) * self.dim])
    }

    /// The samples at `indices`, in that order (repeats allowed).
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        let mut features = Vec::with_capacity(indices.len() * self.dim);
        let mut targets = Vec::with_capacity(indices.len());
        for &i in indices {
            let row = self.row(i).ok_or_else(|| {
                DataError::invalid("indices", format!("index {i} out of range 0..{}", self.len))
            })?;
            features.extend_from_slice(row);
            targets.push(self.targets[i]);
        }
        Self::new(features, targets, self.dim, self.feature_names.clone())
    }

    /// Standardises every feature to mean 0 and (population) standard deviation 1 in place and
    /// returns the means and deviations used, to apply to other splits. A constant feature
    /// (deviation below 1e-12 times its scale) is only centred. Targets are left alone.
    ///
    /// # Errors
    /// [`DataError::InvalidParameter`] if the set is empty.
    pub fn standardize(&mut self) -> Result<FeatureScaling> {
        if self.len == 0 || self.dim == 0 {
            return Err(DataError::invalid(
                "self",
                "cannot standardise an empty data set",
            ));
        }
        let n = self.len as f64;
        let mut mean = vec![0f64; self.dim];
        for row in self.features.chunks_exact(self.dim) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += x;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f64; self.dim];
        for row in self.features.chunks_exact(self.dim) {
            for ((v, &m), &x) in var.iter_mut().zip(&mean).zip(row) {
                *v += (x - m) * (x - m);
            }
        }
        let std = var
            .iter()
            .zip(&mean)
            .map(|(&v, &m)| {
                let s = (v / n).sqrt();
                if s <= 1e-12 * m.abs().max(1.0) {
                    1.0
                } else {
                    s
                }
            })
            .collect();
        let scaling = FeatureScaling { mean, std };
        scaling.apply(&mut self.features)?;
        Ok(scaling)
    }
}

/// `dir/name`, else `dir/name` without `.gz`, else a [`DataError::MissingFile`] naming
/// `cargo xtask data fetch <fetch_name>`.
fn locate(dir: &Path, name: &str, fetch_name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if path.is_file() {
        return Ok(path);
    }
    if let Some(plain) = name.strip_suffix(".gz").map(|n| dir.join(n)) {
        if plain.is_file() {
            return Ok(plain);
        }
    }
    Err(DataError::MissingFile {
        path: path.display().to_string(),
        hint: format!("run `cargo xtask data fetch {fetch_name}` to download it"),
    })
}

/// Errors with [`DataError::Format`] unless `table` has `cols` columns.
fn expect_cols(table: &CsvTable, cols: usize, path: &Path, what: &str) -> Result<()> {
    if table.cols != cols {
        return Err(DataError::format(
            path,
            "CSV",
            format!("{what}: expected {cols} columns, found {}", table.cols),
        ));
    }
    Ok(())
}

/// Red wine quality (Cortez et al. 2009): 11 physico-chemical features, target the quality
/// score (0–10), from `dir/winequality-red.csv.gz`.
///
/// The file is comma-separated with a header of 12 quoted names, the last being `quality`.
///
/// # Errors
/// [`DataError::MissingFile`] naming `cargo xtask data fetch wine-quality`; the errors of
/// [`read_csv`]; [`DataError::Format`] if the header is not 12 columns ending in `quality`.
pub fn wine_quality(dir: &Path) -> Result<RegressionSet> {
    let path = locate(dir, "winequality-red.csv.gz", WINE_QUALITY)?;
    let table = read_csv(&path, &CsvOptions::default())?;
    expect_cols(&table, 12, &path, "red wine quality")?;
    let header = table.header.clone().unwrap_or_default();
    if header.last().map(String::as_str) != Some("quality") {
        return Err(DataError::format(
            &path,
            "CSV",
            format!(
                "the last column must be \"quality\", found {:?}",
                header.last()
            ),
        ));
    }
    let mut features = Vec::with_capacity(table.rows * 11);
    let mut targets = Vec::with_capacity(table.rows);
    for row in table.values.chunks_exact(12) {
        features.extend_from_slice(&row[..11]);
        targets.push(row[11]);
    }
    RegressionSet::new(features, targets, 11, header[..11].to_vec())
}

/// Diabetes (Efron, Hastie, Johnstone, Tibshirani 2004, as in scikit-learn): 10 centred and
/// scaled baseline variables ([`DIABETES_FEATURES`]), target the disease progression one year
/// later, from `dir/diabetes_data.csv.gz` (10 columns) and `dir/diabetes_target.csv.gz`
/// (1 column), both comma-separated without header.
///
/// # Errors
/// [`DataError::MissingFile`] naming `cargo xtask data fetch diabetes`; the errors of
/// [`read_csv`]; [`DataError::Format`] for a wrong column count; [`DataError::CountMismatch`] if
/// the two files have different numbers of rows.
pub fn diabetes(dir: &Path) -> Result<RegressionSet> {
    let data_path = locate(dir, "diabetes_data.csv.gz", DIABETES)?;
    let target_path = locate(dir, "diabetes_target.csv.gz", DIABETES)?;
    let data = read_csv(&data_path, &CsvOptions::headerless())?;
    expect_cols(&data, 10, &data_path, "diabetes features")?;
    let target = read_csv(&target_path, &CsvOptions::headerless())?;
    expect_cols(&target, 1, &target_path, "diabetes targets")?;
    if data.rows != target.rows {
        return Err(DataError::CountMismatch {
            images_path: data_path.display().to_string(),
            labels_path: target_path.display().to_string(),
            images: data.rows,
            labels: target.rows,
        });
    }
    RegressionSet::new(
        data.values,
        target.values,
        10,
        DIABETES_FEATURES.iter().map(|s| s.to_string()).collect(),
    )
}

/// scikit-learn's 8×8 handwritten digits, from `dir/digits.csv.gz`: 65 comma-separated
/// columns without header, 64 pixel counts `0..=16` (row-major) then the digit `0..=9`.
/// Pixels are scaled to `[0, 1]` (divided by 16).
///
/// # Errors
/// [`DataError::MissingFile`] naming `cargo xtask data fetch digits`; the errors of
/// [`read_csv`]; [`DataError::Format`] for a wrong column count; [`DataError::Parse`] (with the
/// line) for a pixel that is not an integer in `0..=16` or a label not in `0..=9`.
pub fn digits(dir: &Path) -> Result<Dataset> {
    let path = locate(dir, "digits.csv.gz", DIGITS)?;
    let table = read_csv(&path, &CsvOptions::headerless())?;
    expect_cols(&table, 65, &path, "digits")?;
    let mut images = Vec::with_capacity(table.rows * 64);
    let mut labels = Vec::with_capacity(table.rows);
    for (r, row) in table.values.chunks_exact(65).enumerate() {
        let line = table.line_of_row(r);
        for (j, &p) in row[..64].iter().enumerate() {
            if p.fract() != 0.0 || !(0.0..=16.0).contains(&p) {
                return Err(DataError::parse(
                    &path,
                    line,
                    format!("pixel {} is {p}, expected an integer in 0..=16", j + 1),
                ));
            }
            images.push((p / 16.0) as f32);
        }
        let label = row[64];
        if label.fract() != 0.0 || !(0.0..=9.0).contains(&label) {
            return Err(DataError::parse(
                &path,
                line,
                format!("label is {label}, expected a digit 0..=9"),
            ));
        }
        labels.push(label as u8);
    }
    Dataset::new(images, labels, 8, 8)
}
