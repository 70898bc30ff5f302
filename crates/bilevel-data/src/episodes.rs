//! N-way K-shot episode sampling for few-shot learning (Vinyals et al. 2016, Finn et al.
//! 2017), the task distribution of the meta-learning experiments.
//!
//! An [`EpisodeSampler`] holds the image indices of each class (e.g. from
//! [`crate::imageset::ImageSet::indices_by_class`]). Each episode draws `n_way` distinct
//! classes among those with at least `k_shot + n_query` images, then, per class, `k_shot +
//! n_query` distinct images: the first `k_shot` form the support set, the rest the query set,
//! so support and query never share an image. The `j`-th drawn class gets episode label `j`
//! (class order is random, so a class has no fixed label).
//!
//! # Reproducibility and resuming
//! Episode `i` (counting from 0) is drawn from a `ChaCha8Rng` seeded with `seed` and set to
//! stream `i`: it depends only on `(classes, spec, seed, i)`. A sampler that has drawn `n`
//! episodes is therefore fully described by `(seed, n)`:
//! [`EpisodeSampler::resume`] / [`EpisodeSampler::skip_to`] continue the exact stream in O(1),
//! and [`EpisodeSampler::episode`] gives random access. Draws use `rand` 0.9's slice shuffling,
//! so the stream is the same on every platform for this major version.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{DataError, Result};
use crate::imageset::ImageSet;

/// Shape of an episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EpisodeSpec {
    /// Classes per episode (N).
    pub n_way: usize,
    /// Support images per class (K).
    pub k_shot: usize,
    /// Query images per class (may be 0).
    pub n_query: usize,
}

impl EpisodeSpec {
    /// `n_way`-way `k_shot`-shot episodes with `n_query` query images per class.
    pub fn new(n_way: usize, k_shot: usize, n_query: usize) -> Self {
        Self {
            n_way,
            k_shot,
            n_query,
        }
    }

    /// Images a class needs to take part (`k_shot + n_query`).
    pub fn per_class(&self) -> usize {
        self.k_shot + self.n_query
    }
}

/// One few-shot task.
///
/// Support and query are listed class by class: `support[j * k_shot..(j + 1) * k_shot]` are
/// the images of `classes[j]`, all with label `j`; likewise the query with `n_query` per class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    /// The drawn classes (indices into the sampler's class list); position = episode label.
    pub classes: Vec<usize>,
    /// Image indices of the support set, `n_way * k_shot`.
    pub support: Vec<usize>,
    /// Episode label (`0..n_way`) of each support image.
    pub support_labels: Vec<u32>,
    /// Image indices of the query set, `n_way * n_query`.
    pub query: Vec<usize>,
    /// Episode label (`0..n_way`) of each query image.
    pub query_labels: Vec<u32>,
}

impl Episode {
    /// The support and query images of this episode taken from `set`, with episode labels
    /// (`0..n_way`) and class names `set.class_names[classes[j]]`.
    ///
    /// Errors if an index is out of range for `set` or a class has no name there.
    pub fn gather(&self, set: &ImageSet) -> Result<(ImageSet, ImageSet)> {
        let names = self
            .classes
            .iter()
            .map(|&c| {
                set.class_names.get(c).cloned().ok_or_else(|| {
                    DataError::invalid(
                        "set",
                        format!(
                            "episode class {c} has no name among the {} classes of the set",
                            set.num_classes()
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let part = |indices: &[usize], labels: &[u32]| -> Result<ImageSet> {
            let sub = set.subset(indices)?;
            ImageSet::new(
                sub.pixels,
                labels.to_vec(),
                names.clone(),
                set.channels,
                set.height,
                set.width,
            )
        };
        Ok((
            part(&self.support, &self.support_labels)?,
            part(&self.query, &self.query_labels)?,
        ))
    }
}

/// Seeded, resumable N-way K-shot episode sampler (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpisodeSampler {
    labels_by_class: Vec<Vec<usize>>,
    eligible: Vec<usize>,
    spec: EpisodeSpec,
    seed: u64,
    drawn: u64,
}

impl EpisodeSampler {
    /// A sampler over `labels_by_class[c]` = the image indices of class `c`.
    ///
    /// Errors ([`DataError::InvalidParameter`]): `n_way` or `k_shot` is 0; an image index
    /// appears twice (in one class or two, which would let support and query overlap); fewer
    /// than `n_way` classes have `k_shot + n_query` images (the message says how many do).
    pub fn new(labels_by_class: Vec<Vec<usize>>, spec: EpisodeSpec, seed: u64) -> Result<Self> {
        Self::resume(labels_by_class, spec, seed, 0)
    }

    /// A sampler that continues, exactly, the stream of one built with the same arguments by
    /// [`EpisodeSampler::new`] after it has drawn `episodes_drawn` episodes.
    pub fn resume(
        labels_by_class: Vec<Vec<usize>>,
        spec: EpisodeSpec,
        seed: u64,
        episodes_drawn: u64,
    ) -> Result<Self> {
        if spec.n_way == 0 {
            return Err(DataError::invalid("n_way", "at least 1 class per episode"));
        }
        if spec.k_shot == 0 {
            return Err(DataError::invalid(
                "k_shot",
                "at least 1 support image per class",
            ));
        }
        let per_class = spec
            .k_shot
            .checked_add(spec.n_query)
            .ok_or_else(|| DataError::invalid("n_query", "k_shot + n_query overflows"))?;
        let mut all: Vec<(usize, usize)> = labels_by_class
            .iter()
            .enumerate()
            .flat_map(|(c, v)| v.iter().map(move |&i| (i, c)))
            .collect();
        all.sort_unstable();
        if let Some(w) = all.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(DataError::invalid(
                "labels_by_class",
                format!(
                    "image index {} is listed more than once (classes {} and {}); support and \
                     query must be disjoint",
                    w[0].0, w[0].1, w[1].1
                ),
            ));
        }
        let eligible: Vec<usize> = labels_by_class
            .iter()
            .enumerate()
            .filter(|(_, v)| v.len() >= per_class)
            .map(|(c, _)| c)
            .collect();
        if eligible.len() < spec.n_way {
            return Err(DataError::invalid(
                "n_way",
                format!(
                    "{}-way episodes need {} classes with at least k_shot + n_query = {} + {} = \
                     {per_class} images each, but only {} of the {} classes have that many",
                    spec.n_way,
                    spec.n_way,
                    spec.k_shot,
                    spec.n_query,
                    eligible.len(),
                    labels_by_class.len()
                ),
            ));
        }
        Ok(Self {
            labels_by_class,
            eligible,
            spec,
            seed,
            drawn: episodes_drawn,
        })
    }

    /// The episode shape.
    pub fn spec(&self) -> EpisodeSpec {
        self.spec
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Classes with enough images to be drawn, ascending.
    pub fn eligible_classes(&self) -> &[usize] {
        &self.eligible
    }

    /// Episodes drawn so far (the index of the next one).
    pub fn episodes_drawn(&self) -> u64 {
        self.drawn
    }

    /// Moves the stream so that the next episode is episode `n` (forwards or backwards).
    pub fn skip_to(&mut self, n: u64) {
        self.drawn = n;
    }

    /// Episode number `index` of the stream, without moving it.
    pub fn episode(&self, index: u64) -> Episode {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(index);
        let EpisodeSpec {
            n_way,
            k_shot,
            n_query,
        } = self.spec;
        let mut pool = self.eligible.clone();
        let (classes, _) = pool.partial_shuffle(&mut rng, n_way);
        let classes = classes.to_vec();
        let mut episode = Episode {
            support: Vec::with_capacity(n_way * k_shot),
            support_labels: Vec::with_capacity(n_way * k_shot),
            query: Vec::with_capacity(n_way * n_query),
            query_labels: Vec::with_capacity(n_way * n_query),
            classes,
        };
        let mut images = Vec::new();
        for (label, &class) in episode.classes.iter().enumerate() {
            images.clear();
            images.extend_from_slice(&self.labels_by_class[class]);
            let (chosen, _) = images.partial_shuffle(&mut rng, k_shot + n_query);
            let (support, query) = chosen.split_at(k_shot);
            episode.support.extend_from_slice(support);
            episode.query.extend_from_slice(query);
            episode
                .support_labels
                .extend(std::iter::repeat_n(label as u32, k_shot));
            episode
                .query_labels
                .extend(std::iter::repeat_n(label as u32, n_query));
        }
        episode
    }

    /// The next episode.
    pub fn sample(&mut self) -> Episode {
        let episode = self.episode(self.drawn);
        self.drawn = self.drawn.wrapping_add(1);
        episode
    }

    /// The next `tasks` episodes (a meta-batch).
    pub fn sample_batch(&mut self, tasks: usize) -> Vec<Episode> {
        (0..tasks).map(|_| self.sample()).collect()
    }
}
