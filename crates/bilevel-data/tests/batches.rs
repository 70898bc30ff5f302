//! Seeded batch samplers.

use bilevel_data::batches::{sample_with_replacement, BatchSampler, ReplacementSampler};
use bilevel_data::DataError;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn every_index_once_per_epoch_with_partial_batch() {
    let mut s = BatchSampler::new(10, 4, 11).unwrap();
    assert_eq!(s.batches_per_epoch(), 3);
    let mut previous: Option<Vec<usize>> = None;
    for epoch in 0..5 {
        assert_eq!(s.epoch(), epoch);
        let batches = s.rest_of_epoch();
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [4, 4, 2],
            "last batch is the partial one"
        );
        let mut all: Vec<usize> = batches.concat();
        let order = all.clone();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        // Reshuffled every epoch.
        if let Some(p) = &previous {
            assert_ne!(p, &order);
        }
        previous = Some(order);
    }
    assert_eq!(s.batches_drawn(), 15);
}

#[test]
fn drop_last_gives_full_distinct_batches() {
    let mut s = BatchSampler::with_drop_last(10, 4, true, 11).unwrap();
    assert!(s.drop_last());
    assert_eq!(s.batches_per_epoch(), 2);
    for _ in 0..20 {
        let a = s.next_batch();
        let b = s.next_batch();
        assert_eq!((a.len(), b.len()), (4, 4));
        let mut both = [a, b].concat();
        both.sort_unstable();
        both.dedup();
        assert_eq!(both.len(), 8, "indices repeat within an epoch");
        assert!(both.iter().all(|&i| i < 10));
    }
    // Same seed, same permutations: the kept batches are the first 8 of each epoch's order.
    let keep = BatchSampler::new(10, 4, 11).unwrap();
    let mut s = BatchSampler::with_drop_last(10, 4, true, 11).unwrap();
    for epoch in 0..3 {
        let order = keep.epoch_order(epoch);
        assert_eq!(s.next_batch(), order[..4]);
        assert_eq!(s.next_batch(), order[4..8]);
    }
    // Exact division: drop_last changes nothing.
    let a: Vec<_> = BatchSampler::new(12, 4, 2).unwrap().take(9).collect();
    let b: Vec<_> = BatchSampler::with_drop_last(12, 4, true, 2)
        .unwrap()
        .take(9)
        .collect();
    assert_eq!(a, b);
}

#[test]
fn deterministic_and_resumable() {
    let a: Vec<_> = BatchSampler::new(37, 5, 3).unwrap().take(30).collect();
    let b: Vec<_> = BatchSampler::new(37, 5, 3).unwrap().take(30).collect();
    let c: Vec<_> = BatchSampler::new(37, 5, 4).unwrap().take(30).collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
    for n in [0u64, 1, 7, 8, 13, 29] {
        let mut r = BatchSampler::resume(37, 5, false, 3, n).unwrap();
        assert_eq!(r.batches_drawn(), n);
        let rest: Vec<_> = (&mut r).take(30 - n as usize).collect();
        assert_eq!(rest, a[n as usize..], "resume at {n}");
    }
    let mut s = BatchSampler::new(37, 5, 3).unwrap();
    s.skip_to(16);
    assert_eq!(s.next_batch(), a[16]);
    s.skip_to(2);
    assert_eq!(s.next_batch(), a[2]);
    // Pinned values (ChaCha8 stream 0 + rand 0.9 shuffling must not change silently).
    assert_eq!(
        BatchSampler::new(8, 3, 0).unwrap().epoch_order(0),
        [2, 0, 6, 1, 3, 5, 7, 4]
    );
    assert_eq!(
        ReplacementSampler::new(10, 5, 0).unwrap().batch(0),
        [6, 7, 7, 4, 5]
    );
    // A batch larger than the data: one batch per epoch holding a whole permutation.
    let mut big = BatchSampler::new(3, 10, 0).unwrap();
    let mut batch = big.next_batch();
    batch.sort_unstable();
    assert_eq!(batch, [0, 1, 2]);
}

#[test]
fn invalid_arguments() {
    for (r, name) in [
        (BatchSampler::new(0, 4, 0), "len"),
        (BatchSampler::new(4, 0, 0), "batch_size"),
        (BatchSampler::with_drop_last(3, 4, true, 0), "batch_size"),
    ] {
        match r {
            Err(DataError::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        ReplacementSampler::new(0, 1, 0),
        Err(DataError::InvalidParameter { .. })
    ));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    assert!(matches!(
        sample_with_replacement(0, 1, &mut rng),
        Err(DataError::InvalidParameter { .. })
    ));
    assert_eq!(
        sample_with_replacement(0, 0, &mut rng).unwrap(),
        Vec::<usize>::new()
    );
}

#[test]
fn with_replacement_is_uniform_and_resumable() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let draws = sample_with_replacement(4, 8000, &mut rng).unwrap();
    let mut counts = [0usize; 4];
    draws.iter().for_each(|&i| counts[i] += 1);
    // Expected 2000 each, sd ≈ 39.
    assert!(
        counts.iter().all(|&c| (1840..=2160).contains(&c)),
        "{counts:?}"
    );
    // Repeats happen (it is with replacement).
    let small = sample_with_replacement(3, 10, &mut rng).unwrap();
    assert_eq!(small.len(), 10);
    assert!(small.iter().all(|&i| i < 3));

    let mut s = ReplacementSampler::new(100, 16, 9).unwrap();
    let first: Vec<_> = (0..6).map(|_| s.next_batch()).collect();
    assert!(first
        .iter()
        .all(|b| b.len() == 16 && b.iter().all(|&i| i < 100)));
    assert_ne!(first[0], first[1]);
    let mut r = ReplacementSampler::resume(100, 16, 9, 4).unwrap();
    assert_eq!(r.next_batch(), first[4]);
    assert_eq!(r.batches_drawn(), 5);
    r.skip_to(1);
    assert_eq!(r.next_batch(), first[1]);
    assert_eq!(s.batch(2), first[2]);
}
