//! PNG / JPEG decoding to float buffers, channel conversion, resizing and 8-bit PNG output.
//!
//! - [`decode_image`] reads a PNG (any bit depth and colour type: 1-bit greyscale as in
//!   Omniglot, 8/16-bit grey, grey + alpha, RGB, RGBA, palette) or a baseline/progressive JPEG
//!   (greyscale or RGB), chosen by the file's magic bytes, never by its extension.
//! - [`to_channels`] converts between greyscale and RGB (ITU-R BT.601 luminance
//!   `0.299 R + 0.587 G + 0.114 B`).
//! - [`resize_bilinear`] resamples with a triangle filter (bilinear interpolation when
//!   enlarging, widened to cover every source pixel when shrinking, as PIL's `BILINEAR` does).
//! - [`encode_png_grey`] writes an 8-bit greyscale PNG.
//!
//! # Layout
//! [`DecodedImage::pixels`] holds `channels * height * width` values in `[0, 1]`,
//! channel-major then row-major (`[channels, height, width]`), the layout of
//! [`crate::imageset::ImageSet`].
//!
//! # Conventions
//! - An alpha channel is dropped (the stored colour is kept, as PIL's `convert("RGB")` does);
//!   images are never composited onto a background.
//! - 16-bit samples are reduced to their high byte, so every decoded value is a multiple of
//!   1/255 (16-bit greyscale JPEGs, which only lossless JPEG has, are scaled by 1/65535).
//! - CMYK JPEGs are reported as [`DataError::Image`]: converting them needs the colour
//!   profile, which this crate does not interpret.

use std::io::{BufWriter, Cursor};
use std::path::Path;

use crate::error::{DataError, Result};

/// The 8-byte signature every PNG file starts with.
pub const PNG_MAGIC: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
/// The start-of-image marker every JPEG file starts with (followed by another marker).
pub const JPEG_MAGIC: [u8; 3] = [0xff, 0xd8, 0xff];

/// Luminance weights of red, green and blue (ITU-R BT.601, as PIL's `convert("L")`).
pub const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// Image container formats [`decode_image`] understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// Portable Network Graphics.
    Png,
    /// JPEG (JFIF / Exif).
    Jpeg,
}

/// The format announced by the first bytes of a file, or `None` if neither PNG nor JPEG.
pub fn sniff_format(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(&PNG_MAGIC) {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(&JPEG_MAGIC) {
        Some(ImageFormat::Jpeg)
    } else {
        None
    }
}

/// A decoded image with values in `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedImage {
    /// `channels * height * width` values, `[channels, height, width]` row-major.
    pub pixels: Vec<f32>,
    /// 1 (greyscale) or 3 (RGB).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl DecodedImage {
    /// Builds an image, checking that `pixels` holds `channels * height * width` values, that
    /// `channels` is 1 or 3 and that the image is not empty.
    pub fn new(pixels: Vec<f32>, channels: usize, height: usize, width: usize) -> Result<Self> {
        validate_shape(channels, height, width, pixels.len())?;
        Ok(Self {
            pixels,
            channels,
            height,
            width,
        })
    }

    /// Values per channel (`height * width`).
    pub fn plane_len(&self) -> usize {
        self.height * self.width
    }

    /// The value of channel `c` at row `y`, column `x`, if inside the image.
    pub fn get(&self, c: usize, y: usize, x: usize) -> Option<f32> {
        (c < self.channels && y < self.height && x < self.width)
            .then(|| self.pixels[(c * self.height + y) * self.width + x])
    }
}

/// Reads and decodes the PNG or JPEG file at `path` (see the module docs for what is
/// supported). Errors: [`DataError::Io`] if it cannot be read, [`DataError::Image`] naming the
/// file if it is neither PNG nor JPEG, cut short, corrupt or of an unsupported kind.
pub fn decode_image(path: &Path) -> Result<DecodedImage> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_image_bytes(&bytes, path)
}

/// Decodes an in-memory PNG or JPEG file; `path` is only used in error messages.
pub fn decode_image_bytes(bytes: &[u8], path: &Path) -> Result<DecodedImage> {
    match sniff_format(bytes) {
        Some(ImageFormat::Png) => decode_png(bytes, path),
        Some(ImageFormat::Jpeg) => decode_jpeg(bytes, path),
        None => {
            let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            Err(image_error(
                path,
                format!(
                    "unrecognised format: the file starts with [{}], which is neither the PNG \
                     signature (89 50 4e 47 0d 0a 1a 0a) nor a JPEG start marker (ff d8 ff)",
                    head.join(" ")
                ),
            ))
        }
    }
}

fn image_error(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Image {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Converts interleaved 8-bit samples (`stride` per pixel, the first `channels` used) into a
/// channel-major float image.
fn from_interleaved_u8(
    data: &[u8],
    stride: usize,
    channels: usize,
    height: usize,
    width: usize,
    path: &Path,
) -> Result<DecodedImage> {
    let plane = height * width;
    if data.len() < plane * stride {
        return Err(image_error(
            path,
            format!(
                "decoder returned {} bytes for a {height}x{width} image with {stride} bytes \
                 per pixel",
                data.len()
            ),
        ));
    }
    let mut pixels = vec![0f32; channels * plane];
    for (i, px) in data.chunks_exact(stride).take(plane).enumerate() {
        for c in 0..channels {
            pixels[c * plane + i] = f32::from(px[c]) / 255.0;
        }
    }
    DecodedImage::new(pixels, channels, height, width).map_err(|e| image_error(path, e.to_string()))
}

fn decode_png(bytes: &[u8], path: &Path) -> Result<DecodedImage> {
    let png_error = |e: png::DecodingError| image_error(path, format!("PNG: {e}"));
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    // EXPAND: palette -> RGB(A), low bit depths -> 8 bits (scaled to 0..255), tRNS -> alpha.
    // STRIP_16: 16-bit samples -> their high byte.
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(png_error)?;
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(png_error)?;
    let (height, width) = (info.height as usize, info.width as usize);
    if info.bit_depth != png::BitDepth::Eight {
        return Err(image_error(
            path,
            format!(
                "PNG: unexpected output bit depth {:?} after expansion",
                info.bit_depth
            ),
        ));
    }
    let (stride, channels) = match info.color_type {
        png::ColorType::Grayscale => (1, 1),
        png::ColorType::GrayscaleAlpha => (2, 1),
        png::ColorType::Rgb => (3, 3),
        png::ColorType::Rgba => (4, 3),
        png::ColorType::Indexed => {
            return Err(image_error(path, "PNG: palette was not expanded"));
        }
    };
    // Rows are packed without padding at 8 bits per sample, so the frame is `height` rows of
    // `width * stride` bytes.
    if info.line_size != width * stride {
        return Err(image_error(
            path,
            format!(
                "PNG: line size {} does not match {width} pixels of {stride} bytes",
                info.line_size
            ),
        ));
    }
    from_interleaved_u8(
        &buf[..info.buffer_size()],
        stride,
        channels,
        height,
        width,
        path,
    )
}

fn decode_jpeg(bytes: &[u8], path: &Path) -> Result<DecodedImage> {
    // jpeg-decoder is written to return errors, but a few internal invariants are asserted;
    // a corrupt file must still come back as an error, never abort the caller.
    let decoded = std::panic::catch_unwind(|| {
        let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
        let data = decoder.decode()?;
        Ok::<_, jpeg_decoder::Error>((data, decoder.info()))
    });
    let (data, info) = match decoded {
        Ok(Ok((data, Some(info)))) => (data, info),
        Ok(Ok((_, None))) => return Err(image_error(path, "JPEG: no frame header")),
        Ok(Err(e)) => return Err(image_error(path, format!("JPEG: {e}"))),
        Err(_) => {
            return Err(image_error(
                path,
                "JPEG: the decoder failed on corrupt data",
            ))
        }
    };
    let (height, width) = (usize::from(info.height), usize::from(info.width));
    match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => from_interleaved_u8(&data, 1, 1, height, width, path),
        jpeg_decoder::PixelFormat::RGB24 => from_interleaved_u8(&data, 3, 3, height, width, path),
        jpeg_decoder::PixelFormat::L16 => {
            let plane = height * width;
            if data.len() < 2 * plane {
                return Err(image_error(path, "JPEG: short 16-bit sample buffer"));
            }
            let pixels = data
                .chunks_exact(2)
                .take(plane)
                .map(|b| f32::from(u16::from_ne_bytes([b[0], b[1]])) / 65535.0)
                .collect();
            DecodedImage::new(pixels, 1, height, width)
                .map_err(|e| image_error(path, e.to_string()))
        }
        jpeg_decoder::PixelFormat::CMYK32 => Err(image_error(
            path,
            "JPEG: CMYK images are not supported (convert the file to RGB first)",
        )),
    }
}

/// Converts `img` to `channels` channels: 1 → 3 repeats the grey plane, 3 → 1 takes the
/// luminance `0.299 R + 0.587 G + 0.114 B` ([`LUMA`]), equal counts copy. Errors if
/// `channels` is not 1 or 3, or if `img` is inconsistent.
pub fn to_channels(img: &DecodedImage, channels: usize) -> Result<DecodedImage> {
    check_image(img)?;
    let plane = img.plane_len();
    match (img.channels, channels) {
        (a, b) if a == b => Ok(img.clone()),
        (1, 3) => {
            let mut pixels = Vec::with_capacity(3 * plane);
            for _ in 0..3 {
                pixels.extend_from_slice(&img.pixels);
            }
            DecodedImage::new(pixels, 3, img.height, img.width)
        }
        (3, 1) => {
            let (r, rest) = img.pixels.split_at(plane);
            let (g, b) = rest.split_at(plane);
            let pixels = r
                .iter()
                .zip(g)
                .zip(b)
                .map(|((&r, &g), &b)| (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).clamp(0.0, 1.0))
                .collect();
            DecodedImage::new(pixels, 1, img.height, img.width)
        }
        (_, c) => Err(DataError::invalid(
            "channels",
            format!("1 (greyscale) or 3 (RGB), got {c}"),
        )),
    }
}

fn check_image(img: &DecodedImage) -> Result<()> {
    validate_shape(img.channels, img.height, img.width, img.pixels.len())
}

fn validate_shape(channels: usize, height: usize, width: usize, len: usize) -> Result<()> {
    if channels != 1 && channels != 3 {
        return Err(DataError::invalid(
            "channels",
            format!("1 (greyscale) or 3 (RGB), got {channels}"),
        ));
    }
    if height == 0 || width == 0 {
        return Err(DataError::invalid(
            "image size",
            format!("height and width must be positive, got {height}x{width}"),
        ));
    }
    let expected = channels
        .checked_mul(height)
        .and_then(|n| n.checked_mul(width))
        .unwrap_or(usize::MAX);
    if len != expected {
        return Err(DataError::ShapeMismatch {
            what: format!("pixels of a {channels}x{height}x{width} image"),
            expected,
            got: len,
        });
    }
    Ok(())
}

/// Triangle-filter taps of one output coordinate: the first source index and the weights.
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// Precomputes, for each of `out_len` output positions, the source taps of a triangle filter
/// that maps `in_len` samples onto `out_len` (pixel centres aligned, edges renormalised).
fn triangle_taps(in_len: usize, out_len: usize) -> Vec<Taps> {
    let scale = in_len as f64 / out_len as f64;
    // Shrinking widens the filter so every source pixel contributes (anti-aliasing).
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle has radius 1 in filter units
    (0..out_len)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let lo = ((center - support).floor().max(0.0)) as usize;
            let hi = ((center + support).ceil() as usize).min(in_len);
            let mut weights: Vec<f64> = (lo..hi)
                .map(|j| {
                    let x = ((j as f64 + 0.5 - center) / filter_scale).abs();
                    (1.0 - x).max(0.0)
                })
                .collect();
            let total: f64 = weights.iter().sum();
            if total > 0.0 {
                weights.iter_mut().for_each(|w| *w /= total);
            }
            // Trim zero taps at both ends so the inner loop only touches contributing pixels.
            let first = weights.iter().position(|&w| w > 0.0).unwrap_or(0);
            let last = weights.iter().rposition(|&w| w > 0.0).map_or(0, |p| p + 1);
            Taps {
                start: lo + first,
                weights: weights[first..last.max(first)]
                    .iter()
                    .map(|&w| w as f32)
                    .collect(),
            }
        })
        .collect()
}

/// Resizes `img` to `height` × `width` with a separable triangle filter.
///
/// Enlarging is plain bilinear interpolation between pixel centres (half-pixel aligned, edges
/// clamped); shrinking by a factor `s` widens the triangle to `s` source pixels so that thin
/// strokes are averaged rather than skipped — the behaviour of PIL's `BILINEAR` resampling,
/// which torchvision's `Resize` uses on PIL images. The same size returns a copy. Values stay
/// in `[0, 1]` (the weights are non-negative and sum to one).
pub fn resize_bilinear(img: &DecodedImage, height: usize, width: usize) -> Result<DecodedImage> {
    check_image(img)?;
    if height == 0 || width == 0 {
        return Err(DataError::invalid(
            "size",
            format!("height and width must be positive, got {height}x{width}"),
        ));
    }
    if (height, width) == (img.height, img.width) {
        return Ok(img.clone());
    }
    let xs = triangle_taps(img.width, width);
    let ys = triangle_taps(img.height, height);
    let mut out = Vec::with_capacity(img.channels * height * width);
    let mut rows = vec![0f32; img.height * width];
    for plane in img.pixels.chunks_exact(img.plane_len()) {
        // Horizontal pass: img.height rows of `width` values.
        for (src, dst) in plane
            .chunks_exact(img.width)
            .zip(rows.chunks_exact_mut(width))
        {
            for (d, taps) in dst.iter_mut().zip(&xs) {
                *d = src[taps.start..taps.start + taps.weights.len()]
                    .iter()
                    .zip(&taps.weights)
                    .map(|(&v, &w)| v * w)
                    .sum();
            }
        }
        // Vertical pass.
        for taps in &ys {
            let mut acc = vec![0f32; width];
            for (k, &w) in taps.weights.iter().enumerate() {
                let row = &rows[(taps.start + k) * width..(taps.start + k + 1) * width];
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += w * v;
                }
            }
            out.extend(acc.into_iter().map(|v| v.clamp(0.0, 1.0)));
        }
    }
    DecodedImage::new(out, img.channels, height, width)
}

/// Writes `pixels` (`height * width` values in `[0, 1]`, row-major; values outside are
/// clamped, NaN is written as 0) as an 8-bit greyscale PNG, each value rounded to the nearest
/// of the 256 levels. Errors: shape mismatch, or [`DataError::Io`] naming `path`.
pub fn encode_png_grey(path: &Path, pixels: &[f32], height: usize, width: usize) -> Result<()> {
    if height == 0 || width == 0 || height > u32::MAX as usize || width > u32::MAX as usize {
        return Err(DataError::invalid(
            "size",
            format!("height and width must be in 1..=2^32-1, got {height}x{width}"),
        ));
    }
    let expected = height.saturating_mul(width);
    if pixels.len() != expected {
        return Err(DataError::ShapeMismatch {
            what: format!("pixels of a {height}x{width} greyscale PNG"),
            expected,
            got: pixels.len(),
        });
    }
    let bytes: Vec<u8> = pixels.iter().map(|&v| quantize_u8(v)).collect();
    let file = std::fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width as u32, height as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| DataError::io(path, e))?;
    writer
        .write_image_data(&bytes)
        .map_err(|e| DataError::io(path, e))?;
    writer.finish().map_err(|e| DataError::io(path, e))
}

/// The 8-bit level nearest to `v` (clamped to `[0, 1]`, NaN → 0).
pub fn quantize_u8(v: f32) -> u8 {
    if v.is_nan() {
        0
    } else {
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}
