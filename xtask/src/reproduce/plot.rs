//! PNG line plots with plotters' bitmap backend: one line per method (the mean over seeds) and a
//! shaded mean ± std band where more than one seed is present. Text uses the bundled DejaVu Sans
//! (`assets/fonts/`), registered with plotters so no system font is needed.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::report::BandPoint;

/// The bundled font's family name.
pub(crate) const FONT: &str = "DejaVu Sans";
static FONT_BYTES: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

/// Registers the bundled font under its own name and as `sans-serif` (plotters' default
/// family for labels it draws by itself).
fn register_fonts() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut ok = true;
    ONCE.call_once(|| {
        for name in [FONT, "sans-serif"] {
            ok &= plotters::style::register_font(name, FontStyle::Normal, FONT_BYTES).is_ok();
        }
    });
    if ok {
        Ok(())
    } else {
        Err(anyhow!(
            "the bundled font assets/fonts/DejaVuSans.ttf is not a valid TTF"
        ))
    }
}

/// One method's curve.
pub(crate) struct Line {
    pub label: String,
    pub points: Vec<BandPoint>,
}

/// What to draw.
pub(crate) struct Figure<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub log_y: bool,
    pub lines: &'a [Line],
    pub legend: Legend,
}

/// Corner of the legend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Legend {
    UpperRight,
    LowerRight,
}

/// Where the legend goes: lower right for metrics that rise (accuracies), else upper right.
pub(crate) fn legend_position(metric: &str) -> Legend {
    if metric.contains("accuracy") {
        Legend::LowerRight
    } else {
        Legend::UpperRight
    }
}

/// Short tick labels: `0.25`, `1500`, `1e-4`, `2.5e-7`.
pub(crate) fn tick_label(v: f64) -> String {
    fn trim(s: &str) -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    }
    if v == 0.0 || !v.is_finite() {
        return if v == 0.0 { "0".into() } else { v.to_string() };
    }
    let a = v.abs();
    if (1e-3..1e5).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        trim(&format!("{v:.decimals$}"))
    } else {
        let s = format!("{v:.2e}");
        let (mantissa, exp) = s.split_once('e').expect("scientific notation");
        format!("{}e{exp}", trim(mantissa))
    }
}

/// Image size in pixels.
const SIZE: (u32, u32) = (960, 600);

const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Whether a metric is drawn on a log scale (norms, gaps, errors, distances).
pub(crate) fn wants_log_scale(metric: &str) -> bool {
    ["norm", "gap", "error", "distance"]
        .iter()
        .any(|k| metric.contains(k))
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("plotting: {e}")
}

/// Draws `figure` into a PNG at `path`.
pub(crate) fn draw(path: &Path, figure: &Figure<'_>) -> Result<()> {
    register_fonts()?;
    let finite = |p: &&BandPoint| p.x.is_finite() && p.mean.is_finite() && p.std.is_finite();
    let pts: Vec<&BandPoint> = figure
        .lines
        .iter()
        .flat_map(|l| l.points.iter())
        .filter(finite)
        .filter(|p| !figure.log_y || p.mean > 0.0)
        .collect();
    if pts.is_empty() {
        return Err(anyhow!("plotting {}: no finite points", figure.title));
    }
    let (mut x0, mut x1) = min_max(pts.iter().map(|p| p.x));
    if x1 <= x0 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let (lo, hi) = min_max(pts.iter().flat_map(|p| [p.mean - p.std, p.mean + p.std]));
    let (mean_lo, _) = min_max(pts.iter().map(|p| p.mean));

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    if figure.log_y {
        // Bands may reach below zero; clip them at a decade under the smallest mean.
        let floor = mean_lo / 10.0;
        let (y0, y1) = (lo.max(floor), hi.max(mean_lo * 10.0));
        let y = (y0 / 1.5..y1 * 1.5).log_scale();
        render(&root, figure, x0..x1, y, floor)?;
    } else {
        let pad = if hi > lo {
            0.05 * (hi - lo)
        } else {
            0.05 * hi.abs().max(1.0)
        };
        render(&root, figure, x0..x1, lo - pad..hi + pad, f64::NEG_INFINITY)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn min_max(it: impl Iterator<Item = f64>) -> (f64, f64) {
    it.filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        })
}

fn render<Y>(
    root: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    figure: &Figure<'_>,
    x: std::ops::Range<f64>,
    y: Y,
    floor: f64,
) -> Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(figure.title, (FONT, 26))
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(96)
        .build_cartesian_2d(RangedCoordf64::from(x), y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(figure.x_label)
        .y_desc(figure.y_label)
        .axis_desc_style((FONT, 20))
        .label_style((FONT, 16))
        .y_label_formatter(&|v| tick_label(*v))
        .x_label_formatter(&|v| tick_label(*v))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    for (i, line) in figure.lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<&BandPoint> = line
            .points
            .iter()
            .filter(|p| p.x.is_finite() && p.mean.is_finite() && p.std.is_finite())
            .filter(|p| p.mean > floor)
            .collect();
        let banded: Vec<&&BandPoint> = pts.iter().filter(|p| p.n > 1).collect();
        if banded.len() > 1 {
            let upper = banded.iter().map(|p| (p.x, p.mean + p.std));
            let lower = banded
                .iter()
                .rev()
                .map(|p| (p.x, (p.mean - p.std).max(floor)));
            chart
                .draw_series(std::iter::once(Polygon::new(
                    upper.chain(lower).collect::<Vec<_>>(),
                    color.mix(0.18).filled(),
                )))
                .map_err(err)?;
        }
        let style = ShapeStyle::from(&color).stroke_width(2);
        let series = pts.iter().map(|p| (p.x, p.mean)).collect::<Vec<_>>();
        let drawn = if series.len() == 1 {
            chart.draw_series(std::iter::once(Circle::new(series[0], 4, style.filled())))
        } else {
            chart.draw_series(LineSeries::new(series, style))
        }
        .map_err(err)?;
        drawn
            .label(line.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(match figure.legend {
            Legend::UpperRight => SeriesLabelPosition::UpperRight,
            Legend::LowerRight => SeriesLabelPosition::LowerRight,
        })
        .draw()
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reproduce::report::tests::synthetic_runs;
    use crate::reproduce::report::{aggregate_by_iter, aggregate_by_time, SeedRun};

    /// The PNG signature and the IHDR width and height.
    pub(crate) fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
        const SIG: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
        if bytes.len() < 24 || bytes[..8] != SIG || &bytes[12..16] != b"IHDR" {
            return None;
        }
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        Some((be(&bytes[16..20]), be(&bytes[20..24])))
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(1500.0), "1500");
        assert_eq!(tick_label(1e-4), "1e-4");
        assert_eq!(tick_label(2.5e-7), "2.5e-7");
        assert_eq!(tick_label(0.1), "0.1");
        assert_eq!(tick_label(0.0), "0");
    }

    #[test]
    fn draws_log_and_linear_plots_with_bands() {
        let runs = synthetic_runs();
        let dir = std::env::temp_dir().join(format!("xtask-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (metric, log_y) in [("grad_norm", true), ("test_accuracy", false)] {
            assert_eq!(wants_log_scale(metric), log_y);
            for by_time in [false, true] {
                let lines: Vec<Line> = ["decay", "flat"]
                    .iter()
                    .map(|m| {
                        let mine: Vec<&SeedRun> = runs.iter().filter(|r| r.method == *m).collect();
                        Line {
                            label: m.to_string(),
                            points: if by_time {
                                aggregate_by_time(&mine, metric, 50, log_y)
                            } else {
                                aggregate_by_iter(&mine, metric)
                            },
                        }
                    })
                    .collect();
                let path = dir.join(format!("{metric}_{by_time}.png"));
                draw(
                    &path,
                    &Figure {
                        title: metric,
                        x_label: if by_time {
                            "wall time (s)"
                        } else {
                            "iteration"
                        },
                        y_label: metric,
                        log_y,
                        lines: &lines,
                        legend: legend_position(metric),
                    },
                )
                .unwrap();
                let bytes = std::fs::read(&path).unwrap();
                assert_eq!(png_size(&bytes), Some(SIZE), "{}", path.display());
            }
        }
        // A single point and a constant line still draw.
        let one = [Line {
            label: "one".into(),
            points: vec![BandPoint {
                x: 0.0,
                mean: 1.0,
                std: 0.0,
                n: 1,
            }],
        }];
        let path = dir.join("single.png");
        draw(
            &path,
            &Figure {
                title: "single",
                x_label: "x",
                y_label: "y",
                log_y: true,
                lines: &one,
                legend: legend_position("y"),
            },
        )
        .unwrap();
        assert!(png_size(&std::fs::read(&path).unwrap()).is_some());
        // XTASK_KEEP_PLOTS=1 keeps the images for a look.
        if std::env::var_os("XTASK_KEEP_PLOTS").is_none() {
            std::fs::remove_dir_all(&dir).unwrap();
        } else {
            eprintln!("plots kept in {}", dir.display());
        }
    }
}
