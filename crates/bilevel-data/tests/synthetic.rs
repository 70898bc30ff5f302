//! The synthetic-glyphs few-shot set.

mod common;

use bilevel_data::episodes::{EpisodeSampler, EpisodeSpec};
use bilevel_data::omniglot::{Omniglot, OmniglotOptions};
use bilevel_data::synthetic::{generate, write_omniglot_layout, SyntheticGlyphsSpec, README_NAME};
use bilevel_data::{DataError, ImageSet};

fn spec(alphabets: usize, chars: usize, instances: usize, seed: u64) -> SyntheticGlyphsSpec {
    SyntheticGlyphsSpec {
        alphabets,
        characters_per_alphabet: chars,
        instances_per_character: instances,
        size: 28,
        seed,
    }
}

fn distance(set: &ImageSet, a: usize, b: usize) -> f32 {
    let (x, y) = (set.image(a).unwrap(), set.image(b).unwrap());
    x.iter()
        .zip(y)
        .map(|(p, q)| (p - q) * (p - q))
        .sum::<f32>()
        .sqrt()
}

#[test]
fn defaults_and_naming() {
    let d = SyntheticGlyphsSpec::default();
    assert_eq!(
        (
            d.alphabets,
            d.characters_per_alphabet,
            d.instances_per_character,
            d.size,
            d.seed
        ),
        (10, 20, 20, 28, 0)
    );
    assert_eq!((d.num_classes(), d.len()), (200, 4000));
    assert_eq!(d.class_name(0, 0), "synthetic-alphabet-01/character-01");
    assert_eq!(d.class_name(9, 19), "synthetic-alphabet-10/character-20");
    assert_eq!(d.file_name(0, 0), "0001_01.png");
    assert_eq!(d.file_name(199, 19), "0200_20.png");

    let s = spec(2, 3, 4, 0);
    let set = generate(&s).unwrap();
    assert_eq!(
        (set.len, set.channels, set.height, set.width),
        (24, 1, 28, 28)
    );
    assert_eq!(set.num_classes(), 6);
    assert_eq!(set.class_names[4], "synthetic-alphabet-02/character-02");
    let want: Vec<u32> = (0..6).flat_map(|k| [k; 4]).collect();
    assert_eq!(set.labels, want);
}

#[test]
fn deterministic_by_seed_and_classes_independent_of_counts() {
    let a = generate(&spec(2, 3, 4, 7)).unwrap();
    let b = generate(&spec(2, 3, 4, 7)).unwrap();
    assert_eq!(a, b);
    let c = generate(&spec(2, 3, 4, 8)).unwrap();
    assert_ne!(a.pixels, c.pixels);
    // Class k only depends on (seed, k): a larger set starts with the same images.
    let more = generate(&spec(2, 3, 6, 7)).unwrap();
    for k in 0..6 {
        for i in 0..4 {
            assert_eq!(a.image(k * 4 + i).unwrap(), more.image(k * 6 + i).unwrap());
        }
    }
    // Instances of a class are not copies of each other.
    assert_ne!(a.image(0).unwrap(), a.image(1).unwrap());
}

#[test]
fn ink_is_present_and_anti_aliased() {
    let set = generate(&spec(3, 10, 5, 1)).unwrap();
    let n = set.image_len() as f32;
    let mut total = 0.0;
    for i in 0..set.len {
        let img = set.image(i).unwrap();
        let ink: f32 = img.iter().sum::<f32>() / n;
        assert!((0.02..0.45).contains(&ink), "image {i}: ink fraction {ink}");
        assert!(img.iter().all(|v| (0.0..=1.0).contains(v)));
        // The pen core is fully inked, and edges are grey (anti-aliasing).
        assert_eq!(img.iter().copied().fold(0.0, f32::max), 1.0, "image {i}");
        assert!(img.iter().any(|&v| v > 0.05 && v < 0.95), "image {i}");
        // Background dominates, as in Omniglot.
        let blank = img.iter().filter(|&&v| v == 0.0).count() as f32 / n;
        assert!(blank > 0.5, "image {i}: only {blank} blank");
        total += ink;
    }
    let mean = total / set.len as f32;
    assert!((0.08..0.25).contains(&mean), "mean ink fraction {mean}");
}

#[test]
fn classes_differ_more_than_instances() {
    let set = generate(&spec(4, 10, 10, 3)).unwrap();
    let (mut within, mut nw, mut between, mut nb) = (0.0f64, 0usize, 0.0f64, 0usize);
    for i in 0..set.len {
        for j in (i + 1..set.len).step_by(3) {
            let d = f64::from(distance(&set, i, j));
            if set.labels[i] == set.labels[j] {
                within += d;
                nw += 1;
            } else {
                between += d;
                nb += 1;
            }
        }
    }
    let (within, between) = (within / nw as f64, between / nb as f64);
    assert!(
        within < 0.95 * between,
        "mean within-class distance {within:.3} vs between-class {between:.3}"
    );
    // Learnable: nearest neighbour in pixel space solves 5-way 1-shot tasks far above chance
    // (0.2). Tasks come from the crate's episode sampler.
    let mut sampler =
        EpisodeSampler::new(set.indices_by_class(), EpisodeSpec::new(5, 1, 1), 0).unwrap();
    let tasks = 400;
    let mut correct = 0;
    for _ in 0..tasks {
        let e = sampler.sample();
        for (&q, &label) in e.query.iter().zip(&e.query_labels) {
            let best = (0..5)
                .min_by(|&a, &b| {
                    distance(&set, q, e.support[a]).total_cmp(&distance(&set, q, e.support[b]))
                })
                .unwrap();
            correct += usize::from(best as u32 == label);
        }
    }
    let acc = correct as f64 / (5 * tasks) as f64;
    assert!(acc > 0.35, "1-NN 5-way 1-shot accuracy {acc}");
}

#[test]
fn omniglot_layout_round_trip() {
    let s = spec(2, 3, 4, 5);
    let root = common::scratch("synthetic-layout");
    write_omniglot_layout(&s, &root).unwrap();
    assert!(root.join(README_NAME).is_file());
    let readme = std::fs::read_to_string(root.join(README_NAME)).unwrap();
    assert!(readme.contains("synthetic-glyphs") && readme.contains("NOT Omniglot"));
    let file = root
        .join("synthetic-alphabet-02")
        .join("character-01")
        .join("0004_03.png");
    assert!(file.is_file(), "{} missing", file.display());
    // Stored as Omniglot is: dark strokes on white.
    let stored = bilevel_data::image::decode_image(&file).unwrap();
    assert_eq!(stored.channels, 1);
    let white = stored.pixels.iter().filter(|&&v| v == 1.0).count();
    assert!(white > stored.pixels.len() / 2);

    let loaded = Omniglot::load(
        &root,
        OmniglotOptions {
            size: (28, 28),
            invert: true,
        },
    )
    .unwrap();
    let generated = generate(&s).unwrap();
    assert_eq!(loaded.class_names, generated.class_names);
    assert_eq!(loaded.labels, generated.labels);
    assert_eq!(loaded.len, generated.len);
    let max_err = loaded
        .pixels
        .iter()
        .zip(&generated.pixels)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(max_err <= 1.0 / 255.0, "max round-trip error {max_err}");
    // Writing again is idempotent.
    write_omniglot_layout(&s, &root).unwrap();
    assert_eq!(
        Omniglot::load(
            &root,
            OmniglotOptions {
                size: (28, 28),
                invert: true
            }
        )
        .unwrap(),
        loaded
    );
}

#[test]
fn invalid_specs_are_rejected() {
    let cases = [
        (spec(0, 3, 4, 0), "alphabets"),
        (spec(1, 0, 4, 0), "characters_per_alphabet"),
        (spec(1, 3, 0, 0), "instances_per_character"),
        (
            SyntheticGlyphsSpec {
                size: 4,
                ..SyntheticGlyphsSpec::default()
            },
            "size",
        ),
    ];
    for (s, name) in cases {
        match generate(&s) {
            Err(DataError::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}: {other:?}"),
        }
        let root = common::scratch("synthetic-invalid");
        assert!(matches!(
            write_omniglot_layout(&s, &root),
            Err(DataError::InvalidParameter { .. })
        ));
    }
    // Larger images scale the pen: still a sane ink fraction at 84x84.
    let big = generate(&SyntheticGlyphsSpec {
        size: 84,
        ..spec(1, 2, 2, 0)
    })
    .unwrap();
    let ink = big.pixels.iter().sum::<f32>() / big.pixels.len() as f32;
    assert!((0.03..0.3).contains(&ink), "{ink}");
}
