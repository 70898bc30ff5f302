//! Seeded splits, label corruption and standardisation.

use bilevel_data::{
    corrupt_labels, split_indices, train_val_test_split, DataError, Dataset, SplitSizes,
    Standardizer,
};

/// `len` samples of 2×2 images whose pixels encode the sample index, labels `i % 10`.
fn indexed(len: usize) -> Dataset {
    let images = (0..len)
        .flat_map(|i| [i as f32, 2.0 * i as f32, -(i as f32), 7.0])
        .collect();
    let labels = (0..len).map(|i| (i % 10) as u8).collect();
    Dataset::new(images, labels, 2, 2).unwrap()
}

#[test]
fn split_has_requested_sizes_and_disjoint_parts() {
    let data = indexed(1000);
    let split = train_val_test_split(&data, SplitSizes::new(500, 200, 100), 7).unwrap();
    assert_eq!(
        (split.train.len, split.val.len, split.test.len),
        (500, 200, 100)
    );
    assert_eq!(split.train.images.len(), 500 * 4);
    let mut all: Vec<usize> = [
        &split.indices.train,
        &split.indices.val,
        &split.indices.test,
    ]
    .into_iter()
    .flatten()
    .copied()
    .collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 800, "parts overlap");
    assert!(all.iter().all(|&i| i < 1000));
    // Each sample carries its source index in pixel 0 and its label: the parts are the
    // samples the indices say.
    for (k, &i) in split.indices.val.iter().enumerate() {
        assert_eq!(split.val.image(k).unwrap()[0], i as f32);
        assert_eq!(split.val.labels[k], (i % 10) as u8);
    }
    // Not just the identity order.
    assert_ne!(split.indices.train[..10], (0..10).collect::<Vec<_>>()[..]);
}

#[test]
fn split_is_deterministic_in_the_seed() {
    let sizes = SplitSizes::new(300, 100, 50);
    let a = split_indices(1000, sizes, 42).unwrap();
    let b = split_indices(1000, sizes, 42).unwrap();
    let c = split_indices(1000, sizes, 43).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.train, c.train);
    assert_ne!(a.val, c.val);
}

#[test]
fn split_larger_than_data_is_an_error() {
    let err = split_indices(100, SplitSizes::new(60, 30, 11), 0).unwrap_err();
    assert_eq!(
        err,
        DataError::SplitTooLarge {
            train: 60,
            val: 30,
            test: 11,
            len: 100
        }
    );
    assert!(err.to_string().contains("101"), "{err}");
    assert!(split_indices(100, SplitSizes::new(usize::MAX, 1, 0), 0).is_err());
    // Exactly the whole data set is fine.
    let all = split_indices(100, SplitSizes::new(60, 30, 10), 0).unwrap();
    assert_eq!(all.test.len(), 10);
}

#[test]
fn corruption_rate_is_close_to_p_and_every_flip_changes_the_label() {
    let labels: Vec<u8> = (0..10_000).map(|i| (i % 10) as u8).collect();
    for p in [0.1, 0.2, 0.5] {
        let out = corrupt_labels(&labels, 10, p, 2024).unwrap();
        // Binomial(10 000, p): standard deviation ≤ 0.005 in the rate; allow 4 of them.
        assert!(
            (out.rate() - p).abs() < 0.02,
            "rate {} for p = {p}",
            out.rate()
        );
        assert_eq!(out.labels.len(), labels.len());
        assert!(out.flipped.windows(2).all(|w| w[0] < w[1]));
        for (i, (&new, &old)) in out.labels.iter().zip(&labels).enumerate() {
            let is_flipped = out.flipped.binary_search(&i).is_ok();
            assert_eq!(new != old, is_flipped, "index {i}");
            assert!(new < 10);
        }
    }
}

#[test]
fn corrupted_labels_are_uniform_over_the_other_classes() {
    let labels = vec![3u8; 9_000];
    let out = corrupt_labels(&labels, 10, 1.0, 5).unwrap();
    assert_eq!(out.flipped.len(), 9_000);
    let mut counts = [0usize; 10];
    out.labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts[3], 0);
    // 1000 expected per other class, standard deviation ≈ 30.
    for (class, &c) in counts.iter().enumerate().filter(|&(k, _)| k != 3) {
        assert!((850..1150).contains(&c), "class {class}: {c}");
    }
}

#[test]
fn corruption_is_seeded_and_validated() {
    let labels: Vec<u8> = (0..1000).map(|i| (i % 4) as u8).collect();
    let a = corrupt_labels(&labels, 4, 0.3, 1).unwrap();
    assert_eq!(a, corrupt_labels(&labels, 4, 0.3, 1).unwrap());
    assert_ne!(
        a.flipped,
        corrupt_labels(&labels, 4, 0.3, 2).unwrap().flipped
    );
    assert!(corrupt_labels(&labels, 4, 0.0, 1)
        .unwrap()
        .flipped
        .is_empty());
    assert!(matches!(
        corrupt_labels(&labels, 4, 1.5, 1),
        Err(DataError::InvalidParameter { .. })
    ));
    assert!(matches!(
        corrupt_labels(&labels, 4, f64::NAN, 1),
        Err(DataError::InvalidParameter { .. })
    ));
    assert!(matches!(
        corrupt_labels(&labels, 1, 0.1, 1),
        Err(DataError::InvalidParameter { .. })
    ));
    assert_eq!(
        corrupt_labels(&labels, 3, 0.1, 1).unwrap_err(),
        DataError::LabelOutOfRange {
            index: 3,
            label: 3,
            num_classes: 3
        }
    );
}

#[test]
fn standardizer_fits_population_mean_and_std() {
    // Three rows, three features: [1, 10, 5], [2, 20, 5], [3, 60, 5].
    let data = [1.0, 10.0, 5.0, 2.0, 20.0, 5.0, 3.0, 60.0, 5.0];
    let s = Standardizer::fit(&data, 3).unwrap();
    assert_eq!(s.mean, vec![2.0, 30.0, 5.0]);
    let std1 = (2.0f32 / 3.0).sqrt();
    let std2 = ((400.0f32 + 100.0 + 900.0) / 3.0).sqrt();
    assert!((s.std[0] - std1).abs() < 1e-6);
    assert!((s.std[1] - std2).abs() < 1e-4);
    assert_eq!(s.std[2], 1.0, "constant feature is only centred");

    let mut other = [4.0, 30.0, 6.0];
    s.apply(&mut other).unwrap();
    assert!((other[0] - 2.0 / std1).abs() < 1e-5);
    assert!(other[1].abs() < 1e-6);
    assert_eq!(other[2], 1.0);

    assert!(Standardizer::fit(&data, 2).is_err());
    assert!(Standardizer::fit(&[], 3).is_err());
    assert!(s.apply(&mut [1.0, 2.0]).is_err());
}

#[test]
fn split_standardisation_uses_training_statistics_only() {
    let data = indexed(1000);
    let mut split = train_val_test_split(&data, SplitSizes::new(600, 200, 200), 3).unwrap();
    let raw_val = split.val.clone();
    let s = split.standardize().unwrap();
    // Training part: mean 0, std 1 for the varying features; the constant one is centred.
    for j in 0..3 {
        let col: Vec<f64> = split
            .train
            .images
            .chunks_exact(4)
            .map(|r| f64::from(r[j]))
            .collect();
        let mean = col.iter().sum::<f64>() / col.len() as f64;
        let var = col.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / col.len() as f64;
        assert!(mean.abs() < 1e-5, "feature {j} mean {mean}");
        assert!(
            (var.sqrt() - 1.0).abs() < 1e-5,
            "feature {j} std {}",
            var.sqrt()
        );
    }
    assert!(split.train.images.chunks_exact(4).all(|r| r[3] == 0.0));
    // The statistics are those of the training indices (pixel 0 of sample i is i)...
    let n = split.indices.train.len() as f64;
    let mean0 = split.indices.train.iter().sum::<usize>() as f64 / n;
    let var0 = split
        .indices
        .train
        .iter()
        .map(|&i| (i as f64 - mean0).powi(2))
        .sum::<f64>()
        / n;
    assert!((f64::from(s.mean[0]) - mean0).abs() < 1e-3);
    assert!((f64::from(s.std[0]) - var0.sqrt()).abs() < 1e-3);
    // ...and the validation part is transformed with them, not with its own.
    for (row, raw) in split
        .val
        .images
        .chunks_exact(4)
        .zip(raw_val.images.chunks_exact(4))
    {
        for j in 0..4 {
            let want = (raw[j] - s.mean[j]) / s.std[j];
            assert!((row[j] - want).abs() < 1e-5);
        }
    }
}
