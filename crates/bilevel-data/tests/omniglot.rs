//! The Omniglot folder layout loader and the rotation augmentation.

mod common;

use std::path::{Path, PathBuf};

use bilevel_data::image::encode_png_grey;
use bilevel_data::omniglot::{rotate_classes, Omniglot, OmniglotOptions};
use bilevel_data::{DataError, ImageSet};

fn root() -> PathBuf {
    common::fixtures().join("omniglot")
}

fn opts(h: usize, w: usize, invert: bool) -> OmniglotOptions {
    OmniglotOptions {
        size: (h, w),
        invert,
    }
}

/// A 6x6 image with ones at `ink`.
fn glyph(ink: &[(usize, usize)]) -> Vec<f32> {
    let mut v = vec![0.0; 36];
    for &(r, c) in ink {
        v[r * 6 + c] = 1.0;
    }
    v
}

fn row0() -> Vec<(usize, usize)> {
    (0..6).map(|c| (0, c)).collect()
}

#[test]
fn loads_one_part_with_sorted_classes_and_exact_pixels() {
    let set = Omniglot::load(&root().join("images_background"), opts(6, 6, true)).unwrap();
    assert_eq!(
        set.class_names,
        ["Alpha/character01", "Alpha/character02", "Beta/character01"]
    );
    assert_eq!((set.len, set.channels, set.height, set.width), (6, 1, 6, 6));
    assert_eq!(set.labels, [0, 0, 1, 1, 2, 2]);
    // 1-bit PNGs, black strokes on white, inverted: strokes exactly 1, background exactly 0.
    assert_eq!(set.image(0).unwrap(), glyph(&row0()));
    let mut ink = row0();
    ink.push((1, 0));
    assert_eq!(set.image(1).unwrap(), glyph(&ink));
    let col0: Vec<_> = (0..6).map(|r| (r, 0)).collect();
    assert_eq!(set.image(2).unwrap(), glyph(&col0));
    let diag: Vec<_> = (0..6).map(|i| (i, i)).collect();
    assert_eq!(set.image(4).unwrap(), glyph(&diag));
}

#[test]
fn parent_folder_reads_background_then_evaluation() {
    let set = Omniglot::load(&root(), opts(6, 6, true)).unwrap();
    assert_eq!(set.num_classes(), 4);
    assert_eq!(set.class_names[3], "Gamma/character01");
    assert_eq!(set.len, 8);
    assert_eq!(set.labels, [0, 0, 1, 1, 2, 2, 3, 3]);
    assert_eq!(set.image(6).unwrap(), glyph(&[]));
    assert_eq!(set.image(7).unwrap(), glyph(&[(2, 3)]));
    let listed = Omniglot::list(&root()).unwrap();
    assert_eq!(listed.len(), 4);
    assert!(listed[0].1[1].ends_with("images_background/Alpha/character01/0001_02.png"));
}

#[test]
fn without_invert_values_are_as_stored() {
    let set = Omniglot::load(&root().join("images_background"), opts(6, 6, false)).unwrap();
    let want: Vec<f32> = glyph(&row0()).iter().map(|v| 1.0 - v).collect();
    assert_eq!(set.image(0).unwrap(), want);
}

#[test]
fn resizes_with_the_triangle_filter() {
    let set = Omniglot::load(&root().join("images_background"), opts(3, 3, true)).unwrap();
    assert_eq!((set.height, set.width), (3, 3));
    // Row 0 ink, factor 2: output row 0 weighs source rows 0,1,2 by 0.75,0.75,0.25.
    let a = 0.75 / 1.75;
    let img = set.image(0).unwrap();
    for (i, &v) in img.iter().enumerate() {
        let want = if i < 3 { a } else { 0.0 };
        assert!((v - want).abs() < 1e-6, "pixel {i}: {v} vs {want}");
    }
    let d = OmniglotOptions::default();
    assert_eq!((d.size, d.invert), ((28, 28), true));
}

/// Builds a valid scratch tree: A/c1 with two images, B/c1 with one.
fn scratch_tree(name: &str) -> PathBuf {
    let dir = common::scratch(name);
    for (alphabet, character, n) in [("A", "c1", 2), ("B", "c1", 1)] {
        let d = dir.join(alphabet).join(character);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..n {
            encode_png_grey(&d.join(format!("{i:02}.png")), &[1.0, 0.0, 0.5, 1.0], 2, 2).unwrap();
        }
    }
    dir
}

fn assert_format_error(root: &Path, offending: &Path) {
    match Omniglot::load(root, opts(2, 2, true)) {
        Err(e @ DataError::Format { .. }) => {
            let DataError::Format { path, format, .. } = &e else {
                unreachable!()
            };
            assert_eq!(path, &offending.display().to_string());
            assert_eq!(format, "Omniglot folder");
            assert!(e.to_string().contains(&offending.display().to_string()));
        }
        other => panic!(
            "expected a Format error on {}, got {other:?}",
            offending.display()
        ),
    }
}

#[test]
fn hidden_and_foreign_entries_are_skipped() {
    let dir = scratch_tree("omniglot-hidden");
    common::write(&dir, ".DS_Store", b"junk");
    common::write(&dir, "README.txt", b"not an alphabet");
    common::write(&dir.join("A"), "notes.txt", b"not a character");
    common::write(&dir.join("A").join("c1"), "Thumbs.db", b"junk");
    common::write(&dir.join("A").join("c1"), ".hidden.png", b"junk");
    std::fs::create_dir_all(dir.join(".git").join("x")).unwrap();
    let set = Omniglot::load(&dir, opts(2, 2, true)).unwrap();
    assert_eq!(set.class_names, ["A/c1", "B/c1"]);
    assert_eq!(set.labels, [0, 0, 1]);
    // Stored 255, 0, 128, 255 -> inverted 0, 1, 127/255, 0.
    assert_eq!(set.image(2).unwrap(), [0.0, 1.0, 1.0 - 128.0 / 255.0, 0.0]);
}

#[test]
fn structural_errors_name_the_directory() {
    // Missing root.
    let missing = common::fixtures().join("omniglot-nope");
    match Omniglot::load(&missing, OmniglotOptions::default()) {
        Err(DataError::MissingFile { path, hint }) => {
            assert_eq!(path, missing.display().to_string());
            assert!(hint.contains("synthetic"));
        }
        other => panic!("{other:?}"),
    }
    // Root without alphabets.
    let empty = common::scratch("omniglot-empty");
    assert_format_error(&empty, &empty);
    // An alphabet without characters.
    let dir = scratch_tree("omniglot-no-chars");
    std::fs::create_dir_all(dir.join("C")).unwrap();
    assert_format_error(&dir, &dir.join("C"));
    // A character without images (a text file does not count).
    let dir = scratch_tree("omniglot-no-images");
    std::fs::create_dir_all(dir.join("B").join("c2")).unwrap();
    common::write(&dir.join("B").join("c2"), "readme.txt", b"x");
    assert_format_error(&dir, &dir.join("B").join("c2"));
    // The same alphabet in both parts.
    let dir = common::scratch("omniglot-dup");
    for part in ["images_background", "images_evaluation"] {
        let d = dir.join(part).join("A").join("c1");
        std::fs::create_dir_all(&d).unwrap();
        encode_png_grey(&d.join("0.png"), &[0.0; 4], 2, 2).unwrap();
    }
    assert_format_error(&dir, &dir.join("images_evaluation"));
}

#[test]
fn undecodable_image_names_the_file() {
    let dir = scratch_tree("omniglot-bad-image");
    let bad = common::write(
        &dir.join("B").join("c1"),
        "01.png",
        b"\x89PNG\r\n\x1a\nshort",
    );
    match Omniglot::load(&dir, opts(2, 2, true)) {
        Err(e @ DataError::Image { .. }) => {
            assert!(e.to_string().contains(&bad.display().to_string()), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Omniglot::load(&dir, opts(0, 2, true)),
        Err(DataError::InvalidParameter { .. })
    ));
}

#[test]
fn rotations_add_classes() {
    let set = Omniglot::load(&root().join("images_background"), opts(6, 6, true)).unwrap();
    let rot = rotate_classes(&set, &[90, 180, 270]).unwrap();
    assert_eq!(rot.num_classes(), 12);
    assert_eq!(rot.len, 24);
    assert_eq!(rot.class_names[3], "Alpha/character01/rot90");
    assert_eq!(rot.class_names[11], "Beta/character01/rot270");
    assert_eq!(&rot.labels[..6], &set.labels[..]);
    assert_eq!(&rot.labels[6..12], &[3, 3, 4, 4, 5, 5]);
    assert_eq!(&rot.labels[18..], &[9, 9, 10, 10, 11, 11]);
    assert_eq!(&rot.pixels[..set.pixels.len()], &set.pixels[..]);
    // Top row rotated counter-clockwise: 90 -> left column, 180 -> bottom row, 270 -> right.
    let col = |c: usize| -> Vec<(usize, usize)> { (0..6).map(|r| (r, c)).collect() };
    let row = |r: usize| -> Vec<(usize, usize)> { (0..6).map(|c| (r, c)).collect() };
    assert_eq!(rot.image(6).unwrap(), glyph(&col(0)));
    assert_eq!(rot.image(12).unwrap(), glyph(&row(5)));
    assert_eq!(rot.image(18).unwrap(), glyph(&col(5)));
    // Image 1 has an extra dot at (1, 0): at 90° CCW it moves to (5, 1).
    let mut ink = col(0);
    ink.push((5, 1));
    assert_eq!(rot.image(7).unwrap(), glyph(&ink));
    // Per-class counts stay equal.
    assert!(rot.indices_by_class().iter().all(|c| c.len() == 2));
}

#[test]
fn rotation_errors() {
    let set = ImageSet::new(vec![0.0; 6], vec![0], vec!["a".into()], 1, 2, 3).unwrap();
    assert!(matches!(
        rotate_classes(&set, &[45]),
        Err(DataError::InvalidParameter { .. })
    ));
    assert!(matches!(
        rotate_classes(&set, &[180, 180]),
        Err(DataError::InvalidParameter { .. })
    ));
    assert!(matches!(
        rotate_classes(&set, &[90]),
        Err(DataError::InvalidParameter { .. })
    ));
    let r = rotate_classes(&set, &[180]).unwrap();
    assert_eq!(r.num_classes(), 2);
    assert_eq!(rotate_classes(&set, &[]).unwrap(), set);
}
