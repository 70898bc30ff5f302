//! PNG / JPEG decoding, channel conversion, resizing and PNG output.

mod common;

use std::path::PathBuf;

use bilevel_data::image::{
    decode_image, decode_image_bytes, encode_png_grey, resize_bilinear, sniff_format, to_channels,
    DecodedImage, ImageFormat,
};
use bilevel_data::DataError;

fn fixture(name: &str) -> PathBuf {
    common::fixtures().join("images").join(name)
}

fn bytes_of(img: &DecodedImage) -> Vec<u8> {
    img.pixels
        .iter()
        .map(|&v| (v * 255.0).round() as u8)
        .collect()
}

fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "lengths differ: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "value {i}: got {g}, want {w} (±{tol})"
        );
    }
}

#[test]
fn png_grey8_values() {
    let img = decode_image(&fixture("grey8_3x2.png")).unwrap();
    assert_eq!((img.channels, img.height, img.width), (1, 2, 3));
    assert_eq!(bytes_of(&img), vec![0, 64, 128, 192, 255, 1]);
    assert_eq!(img.pixels[1], 64.0 / 255.0);
    assert_eq!(img.get(0, 1, 2), Some(1.0 / 255.0));
    assert_eq!(img.get(0, 2, 0), None);
}

#[test]
fn png_one_bit_like_omniglot() {
    let img = decode_image(&fixture("grey1_10x2.png")).unwrap();
    assert_eq!((img.channels, img.height, img.width), (1, 2, 10));
    let want: Vec<f32> = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]
        .iter()
        .map(|&b| b as f32)
        .collect();
    assert_eq!(img.pixels, want);
}

#[test]
fn png_sixteen_bit_is_stripped_to_high_byte() {
    let img = decode_image(&fixture("grey16_3x1.png")).unwrap();
    assert_eq!(bytes_of(&img), vec![0, 255, 128]);
}

#[test]
fn png_alpha_is_dropped() {
    let ga = decode_image(&fixture("grey_alpha_2x2.png")).unwrap();
    assert_eq!((ga.channels, ga.height, ga.width), (1, 2, 2));
    assert_eq!(bytes_of(&ga), vec![10, 20, 30, 40]);
    let rgba = decode_image(&fixture("rgba8_2x1.png")).unwrap();
    assert_eq!((rgba.channels, rgba.height, rgba.width), (3, 1, 2));
    // Channel-major: R plane, G plane, B plane.
    assert_eq!(bytes_of(&rgba), vec![1, 250, 2, 251, 3, 252]);
}

#[test]
fn png_rgb_is_channel_major() {
    let img = decode_image(&fixture("rgb8_2x2.png")).unwrap();
    assert_eq!((img.channels, img.height, img.width), (3, 2, 2));
    assert_eq!(
        bytes_of(&img),
        vec![255, 0, 0, 10, 0, 255, 0, 20, 0, 0, 255, 30]
    );
    assert_eq!(img.get(2, 1, 0), Some(1.0));
}

#[test]
fn png_palette_is_expanded() {
    let img = decode_image(&fixture("palette2_3x1.png")).unwrap();
    assert_eq!((img.channels, img.height, img.width), (3, 1, 3));
    // Indices 2, 0, 1 into [(255,0,0), (0,128,255), (7,7,7)].
    assert_eq!(bytes_of(&img), vec![7, 255, 0, 7, 0, 128, 7, 0, 255]);
}

#[test]
fn jpeg_rgb_and_grey() {
    let rgb = decode_image(&fixture("rgb_16x8.jpg")).unwrap();
    assert_eq!((rgb.channels, rgb.height, rgb.width), (3, 8, 16));
    let plane = 8 * 16;
    for (c, (left, right)) in [(200.0, 20.0), (100.0, 40.0), (50.0, 220.0)]
        .iter()
        .enumerate()
    {
        for y in 0..8 {
            for x in 0..16 {
                let want = if x < 8 { *left } else { *right } / 255.0;
                let got = rgb.pixels[c * plane + y * 16 + x];
                assert!((got - want).abs() <= 3.0 / 255.0, "c{c} y{y} x{x}: {got}");
            }
        }
    }
    let grey = decode_image(&fixture("grey_8x16.jpg")).unwrap();
    assert_eq!((grey.channels, grey.height, grey.width), (1, 16, 8));
    let top = &grey.pixels[..64];
    let bottom = &grey.pixels[64..];
    assert_close(top, &[30.0 / 255.0; 64], 2.0 / 255.0);
    assert_close(bottom, &[220.0 / 255.0; 64], 2.0 / 255.0);
}

#[test]
fn dispatch_is_by_magic_not_extension() {
    let named_jpg = decode_image(&fixture("png_named.jpg")).unwrap();
    let real_png = decode_image(&fixture("grey8_3x2.png")).unwrap();
    assert_eq!(named_jpg, real_png);
    let png_bytes = std::fs::read(fixture("png_named.jpg")).unwrap();
    assert_eq!(sniff_format(&png_bytes), Some(ImageFormat::Png));
    let jpg_bytes = std::fs::read(fixture("rgb_16x8.jpg")).unwrap();
    assert_eq!(sniff_format(&jpg_bytes), Some(ImageFormat::Jpeg));
    assert_eq!(sniff_format(b"GIF89a"), None);
    let from_bytes = decode_image_bytes(&png_bytes, std::path::Path::new("mem")).unwrap();
    assert_eq!(from_bytes, real_png);
}

fn assert_image_error(path: &std::path::Path, needle: &str) {
    match decode_image(path) {
        Err(DataError::Image { path: p, reason }) => {
            assert_eq!(p, path.display().to_string());
            assert!(
                reason.contains(needle),
                "reason {reason:?} lacks {needle:?}"
            );
            let msg = DataError::Image { path: p, reason }.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
        }
        other => panic!(
            "expected an Image error for {}, got {other:?}",
            path.display()
        ),
    }
}

#[test]
fn bad_files_are_image_errors_naming_the_file() {
    assert_image_error(&fixture("truncated.png"), "PNG");
    assert_image_error(&fixture("not_an_image.png"), "unrecognised format");
    assert_image_error(&fixture("cmyk_8x8.jpg"), "CMYK");
    let dir = common::scratch("image-bad");
    let empty = common::write(&dir, "empty.png", b"");
    assert_image_error(&empty, "unrecognised format");
    // A JPEG cut after its first segments.
    let jpg = std::fs::read(fixture("rgb_16x8.jpg")).unwrap();
    let cut = common::write(&dir, "cut.jpg", &jpg[..jpg.len() / 3]);
    assert_image_error(&cut, "JPEG");
    // A PNG whose IDAT checksum is corrupted.
    let mut png = std::fs::read(fixture("grey8_3x2.png")).unwrap();
    let n = png.len();
    png[n - 20] ^= 0xff;
    let corrupt = common::write(&dir, "corrupt.png", &png);
    assert!(matches!(
        decode_image(&corrupt),
        Err(DataError::Image { .. })
    ));
}

#[test]
fn missing_file_is_io_error() {
    let path = fixture("does-not-exist.png");
    match decode_image(&path) {
        Err(DataError::Io { path: p, .. }) => assert!(p.ends_with("does-not-exist.png")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn channel_conversion() {
    let rgb = decode_image(&fixture("rgb8_2x2.png")).unwrap();
    let grey = to_channels(&rgb, 1).unwrap();
    assert_eq!((grey.channels, grey.height, grey.width), (1, 2, 2));
    let want = [
        0.299,
        0.587,
        0.114,
        (0.299 * 10.0 + 0.587 * 20.0 + 0.114 * 30.0) / 255.0,
    ];
    assert_close(&grey.pixels, &want, 1e-6);
    let back = to_channels(&grey, 3).unwrap();
    assert_eq!(back.channels, 3);
    for c in 0..3 {
        assert_eq!(&back.pixels[c * 4..(c + 1) * 4], &grey.pixels[..]);
    }
    assert_eq!(to_channels(&rgb, 3).unwrap(), rgb);
    assert!(matches!(
        to_channels(&rgb, 2),
        Err(DataError::InvalidParameter { .. })
    ));
    let bad = DecodedImage {
        pixels: vec![0.0; 5],
        channels: 1,
        height: 2,
        width: 2,
    };
    assert!(matches!(
        to_channels(&bad, 3),
        Err(DataError::ShapeMismatch {
            expected: 4,
            got: 5,
            ..
        })
    ));
}

#[test]
fn resize_upsamples_bilinearly_and_downsamples_with_antialiasing() {
    // 1x2 -> 1x4: half-pixel centres at 0.25, 0.75, 1.25, 1.75 of the source, edges clamped.
    let img = DecodedImage::new(vec![0.0, 1.0], 1, 1, 2).unwrap();
    let up = resize_bilinear(&img, 1, 4).unwrap();
    assert_close(&up.pixels, &[0.0, 0.25, 0.75, 1.0], 1e-6);
    // 1x4 -> 1x2 (factor 2): the triangle spans 2 source pixels on each side, weights
    // 0.75, 0.75, 0.25 (renormalised at the edge) -> (0.75*a + 0.75*b + 0.25*c) / 1.75.
    let img = DecodedImage::new(vec![1.0, 0.0, 0.0, 0.0], 1, 1, 4).unwrap();
    let down = resize_bilinear(&img, 1, 2).unwrap();
    assert_close(&down.pixels, &[0.75 / 1.75, 0.0], 1e-6);
    // A one-pixel line is not lost when shrinking 6 -> 2 (plain bilinear would skip it).
    let mut line = vec![0.0; 36];
    line[2 * 6..3 * 6].iter_mut().for_each(|v| *v = 1.0);
    let img = DecodedImage::new(line, 1, 6, 6).unwrap();
    let small = resize_bilinear(&img, 2, 2).unwrap();
    assert!(small.pixels.iter().all(|&v| v > 0.1), "{:?}", small.pixels);
    // Constant images stay constant, per channel; identity size is an exact copy.
    let rgb = DecodedImage::new(
        [vec![0.2; 35], vec![0.5; 35], vec![0.9; 35]].concat(),
        3,
        5,
        7,
    )
    .unwrap();
    let r = resize_bilinear(&rgb, 3, 11).unwrap();
    assert_eq!((r.channels, r.height, r.width), (3, 3, 11));
    assert_close(&r.pixels[..33], &[0.2; 33], 1e-6);
    assert_close(&r.pixels[33..66], &[0.5; 33], 1e-6);
    assert_close(&r.pixels[66..], &[0.9; 33], 1e-6);
    assert_eq!(resize_bilinear(&rgb, 5, 7).unwrap(), rgb);
    assert!(matches!(
        resize_bilinear(&rgb, 0, 7),
        Err(DataError::InvalidParameter { .. })
    ));
}

#[test]
fn png_grey_round_trip() {
    let dir = common::scratch("image-encode");
    let path = dir.join("out.png");
    let pixels = vec![0.0, 0.5, 1.0, 2.0, -1.0, f32::NAN, 0.25, 0.999];
    encode_png_grey(&path, &pixels, 2, 4).unwrap();
    let img = decode_image(&path).unwrap();
    assert_eq!((img.channels, img.height, img.width), (1, 2, 4));
    assert_eq!(bytes_of(&img), vec![0, 128, 255, 255, 0, 0, 64, 255]);
    assert!(matches!(
        encode_png_grey(&path, &pixels, 3, 3),
        Err(DataError::ShapeMismatch {
            expected: 9,
            got: 8,
            ..
        })
    ));
    let bad_dir = dir.join("no-such-dir").join("x.png");
    match encode_png_grey(&bad_dir, &pixels, 2, 4) {
        Err(DataError::Io { path, .. }) => assert!(path.contains("no-such-dir")),
        other => panic!("{other:?}"),
    }
}
