//! N-way K-shot episode sampling.

use std::collections::HashSet;

use bilevel_data::episodes::{Episode, EpisodeSampler, EpisodeSpec};
use bilevel_data::{DataError, ImageSet};

/// `classes` classes of `per_class` images each, image indices interleaved across classes
/// (class `c` owns `c, c + classes, c + 2 * classes, ...`).
fn classes(classes: usize, per_class: usize) -> Vec<Vec<usize>> {
    (0..classes)
        .map(|c| (0..per_class).map(|i| c + i * classes).collect())
        .collect()
}

fn class_of(index: usize, n_classes: usize) -> usize {
    index % n_classes
}

fn check_episode(e: &Episode, spec: EpisodeSpec, n_classes: usize) {
    let EpisodeSpec {
        n_way,
        k_shot,
        n_query,
    } = spec;
    assert_eq!(e.classes.len(), n_way);
    assert_eq!(
        e.classes.iter().collect::<HashSet<_>>().len(),
        n_way,
        "classes repeat"
    );
    assert_eq!(e.support.len(), n_way * k_shot);
    assert_eq!(e.query.len(), n_way * n_query);
    assert_eq!(e.support_labels.len(), e.support.len());
    assert_eq!(e.query_labels.len(), e.query.len());
    let all: HashSet<_> = e.support.iter().chain(&e.query).collect();
    assert_eq!(
        all.len(),
        e.support.len() + e.query.len(),
        "support and query overlap or repeat"
    );
    for (idx, &l) in e.support.iter().zip(&e.support_labels) {
        assert!((l as usize) < n_way);
        assert_eq!(class_of(*idx, n_classes), e.classes[l as usize]);
    }
    for (idx, &l) in e.query.iter().zip(&e.query_labels) {
        assert!((l as usize) < n_way);
        assert_eq!(class_of(*idx, n_classes), e.classes[l as usize]);
    }
    // Labels come class by class.
    let want: Vec<u32> = (0..n_way as u32)
        .flat_map(|j| std::iter::repeat_n(j, k_shot))
        .collect();
    assert_eq!(e.support_labels, want);
}

#[test]
fn episodes_are_well_formed_and_disjoint() {
    let spec = EpisodeSpec::new(5, 5, 15);
    let mut sampler = EpisodeSampler::new(classes(20, 20), spec, 7).unwrap();
    for _ in 0..200 {
        check_episode(&sampler.sample(), spec, 20);
    }
    assert_eq!(sampler.episodes_drawn(), 200);
    // Exactly k + q = 20 images per class: each drawn class uses all of its images.
    let e = sampler.sample();
    let mut used: Vec<usize> = e.support.iter().chain(&e.query).copied().collect();
    used.sort_unstable();
    let mut want: Vec<usize> = e
        .classes
        .iter()
        .flat_map(|&c| classes(20, 20)[c].clone())
        .collect();
    want.sort_unstable();
    assert_eq!(used, want);
}

#[test]
fn deterministic_per_seed() {
    let spec = EpisodeSpec::new(5, 1, 5);
    let mut a = EpisodeSampler::new(classes(30, 10), spec, 42).unwrap();
    let mut b = EpisodeSampler::new(classes(30, 10), spec, 42).unwrap();
    let mut c = EpisodeSampler::new(classes(30, 10), spec, 43).unwrap();
    let ea = a.sample_batch(10);
    assert_eq!(ea, b.sample_batch(10));
    let ec = c.sample_batch(10);
    assert_ne!(ea, ec);
    // Consecutive episodes differ.
    assert_ne!(ea[0], ea[1]);
    assert_eq!(a.episode(0), ea[0]);
    // Pinned values: the stream must not change silently (ChaCha8 + rand 0.9 shuffling), or
    // resumed runs and recorded results would stop matching.
    let pinned = EpisodeSampler::new(classes(6, 3), EpisodeSpec::new(3, 1, 1), 42)
        .unwrap()
        .episode(0);
    assert_eq!(pinned.classes, [2, 4, 5]);
    assert_eq!(pinned.support, [8, 16, 5]);
    assert_eq!(pinned.query, [14, 4, 17]);
}

#[test]
fn resume_reproduces_the_stream() {
    let spec = EpisodeSpec::new(3, 2, 3);
    let mut full = EpisodeSampler::new(classes(10, 6), spec, 5).unwrap();
    let head = full.sample_batch(7);
    let tail = full.sample_batch(5);
    let mut resumed = EpisodeSampler::resume(classes(10, 6), spec, 5, 7).unwrap();
    assert_eq!(resumed.episodes_drawn(), 7);
    assert_eq!(resumed.sample_batch(5), tail);
    let mut skipped = EpisodeSampler::new(classes(10, 6), spec, 5).unwrap();
    skipped.skip_to(3);
    assert_eq!(skipped.sample(), head[3]);
    skipped.skip_to(0);
    assert_eq!(skipped.sample_batch(7), head);
    assert_eq!(full.episode(8), tail[1]);
    assert_eq!(full.episodes_drawn(), 12);
}

#[test]
fn classes_and_images_are_balanced() {
    let spec = EpisodeSpec::new(5, 1, 1);
    let n_classes = 10;
    let per_class = 8;
    let mut sampler = EpisodeSampler::new(classes(n_classes, per_class), spec, 1).unwrap();
    let episodes = 4000;
    let mut class_counts = vec![0usize; n_classes];
    let mut image_counts = vec![0usize; n_classes * per_class];
    let mut label0_counts = vec![0usize; n_classes];
    for _ in 0..episodes {
        let e = sampler.sample();
        for &c in &e.classes {
            class_counts[c] += 1;
        }
        label0_counts[e.classes[0]] += 1;
        for &i in &e.support {
            image_counts[i] += 1;
        }
    }
    // Each class: expected 4000 * 5 / 10 = 2000 draws (sd ≈ 32); within ±8%.
    for &n in &class_counts {
        assert!((1840..=2160).contains(&n), "class counts {class_counts:?}");
    }
    // Label 0 is not tied to a class: expected 400 each (sd ≈ 19).
    for &n in &label0_counts {
        assert!((320..=480).contains(&n), "label-0 counts {label0_counts:?}");
    }
    // Support images within a class: expected 2000 / 8 = 250 each (sd ≈ 15).
    for &n in &image_counts {
        assert!((190..=310).contains(&n), "image counts {image_counts:?}");
    }
}

#[test]
fn small_classes_are_never_drawn() {
    let mut by_class = classes(8, 4);
    by_class[2].truncate(2);
    by_class[5].clear();
    let spec = EpisodeSpec::new(6, 2, 1);
    let mut sampler = EpisodeSampler::new(by_class, spec, 3).unwrap();
    assert_eq!(sampler.eligible_classes(), &[0, 1, 3, 4, 6, 7]);
    for _ in 0..100 {
        let e = sampler.sample();
        assert!(!e.classes.contains(&2) && !e.classes.contains(&5));
        check_episode(&e, spec, 8);
    }
}

fn invalid(result: Result<EpisodeSampler, DataError>, name: &str, needle: &str) {
    match result {
        Err(DataError::InvalidParameter { name: n, reason }) => {
            assert_eq!(n, name);
            assert!(reason.contains(needle), "{reason}");
        }
        other => panic!("expected InvalidParameter({name}), got {other:?}"),
    }
}

#[test]
fn invalid_specs() {
    invalid(
        EpisodeSampler::new(classes(5, 5), EpisodeSpec::new(0, 1, 1), 0),
        "n_way",
        "at least 1",
    );
    invalid(
        EpisodeSampler::new(classes(5, 5), EpisodeSpec::new(2, 0, 1), 0),
        "k_shot",
        "at least 1",
    );
    let mut by_class = classes(6, 5);
    by_class[0].push(100);
    by_class[1].push(101);
    invalid(
        EpisodeSampler::new(by_class, EpisodeSpec::new(5, 3, 3), 0),
        "n_way",
        "only 2 of the 6 classes",
    );
    let mut dup = classes(3, 3);
    dup[1].push(0);
    invalid(
        EpisodeSampler::new(dup, EpisodeSpec::new(2, 1, 1), 0),
        "labels_by_class",
        "image index 0",
    );
}

#[test]
fn gather_relabels_images() {
    // 4 classes x 3 images of 1x1x2, pixel = [index, class].
    let labels: Vec<u32> = (0..12).map(|i| (i % 4) as u32).collect();
    let pixels: Vec<f32> = (0..12).flat_map(|i| [i as f32, (i % 4) as f32]).collect();
    let names = ["a", "b", "c", "d"].map(String::from).to_vec();
    let set = ImageSet::new(pixels, labels, names, 1, 1, 2).unwrap();
    let spec = EpisodeSpec::new(2, 2, 1);
    let mut sampler = EpisodeSampler::new(set.indices_by_class(), spec, 9).unwrap();
    let e = sampler.sample();
    let (support, query) = e.gather(&set).unwrap();
    assert_eq!(support.len, 4);
    assert_eq!(query.len, 2);
    assert_eq!(support.labels, e.support_labels);
    assert_eq!(query.labels, e.query_labels);
    let want_names: Vec<String> = e
        .classes
        .iter()
        .map(|&c| set.class_names[c].clone())
        .collect();
    assert_eq!(support.class_names, want_names);
    for (k, &i) in e.support.iter().enumerate() {
        assert_eq!(support.image(k).unwrap(), set.image(i).unwrap());
    }
    for (k, &i) in e.query.iter().enumerate() {
        assert_eq!(query.image(k).unwrap(), set.image(i).unwrap());
    }
}
