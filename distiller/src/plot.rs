//! Line charts for `bns eval` (PSNR against NFE, one line per solver family), drawn with plotters
//! into a PNG (saved through [`picture::save_png`](crate::picture::save_png)) and an SVG, both
//! written atomically. The legend sits in its own panel to the right of the plot, so that it
//! never hides a line however many there are.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use web_sampler::sample::Picture;

use crate::files::write_atomically;
use crate::picture::save_png;

/// Size of the charts in pixels.
pub const WIDTH: u32 = 1200;
pub const HEIGHT: u32 = 720;
/// Width of the legend panel on the right.
const LEGEND_WIDTH: u32 = 300;
const FONT: &str = "sans-serif";

/// One line of a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub label: String,
    /// `(x, y)` points, in the order they are joined; non-finite ones are left out.
    pub points: Vec<(f64, f64)>,
    pub color: (u8, u8, u8),
    pub dashed: bool,
    /// Drawn thicker, with bigger markers, on top of the others.
    pub emphasis: bool,
}

/// A line chart with a title and axis names.
#[derive(Clone, Debug, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub lines: Vec<Line>,
}

/// Draws `chart` and writes it to `png` and `svg`.
pub fn save_line_chart(chart: &LineChart, png: &Path, svg: &Path) -> Result<()> {
    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, chart)
            .and_then(|()| root.present().map_err(|e| e.to_string()))
            .map_err(|e| {
                anyhow!(
                    "{}: cannot draw the chart: {e} (plotters needs a TrueType font such as \
                     DejaVu Sans: apt-get install fonts-dejavu-core)",
                    png.display()
                )
            })?;
    }
    let picture = Picture {
        width: WIDTH as usize,
        height: HEIGHT as usize,
        rgba: rgb
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
    };
    save_png(png, &picture)?;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, chart)
            .and_then(|()| root.present().map_err(|e| e.to_string()))
            .map_err(|e| anyhow!("{}: cannot draw the chart: {e}", svg.display()))?;
    }
    write_atomically(svg, text.as_bytes())
}

/// The finite points of a line.
fn finite(line: &Line) -> Vec<(f64, f64)> {
    line.points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect()
}

/// `[lo − pad, hi + pad]` of some values, never empty.
fn range(values: impl Iterator<Item = f64>, pad_fraction: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * pad_fraction).max(0.5);
    (lo - pad, hi + pad)
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &LineChart,
) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let (plot_area, legend_area) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
    let all: Vec<(f64, f64)> = chart.lines.iter().flat_map(finite).collect();
    let (x0, x1) = range(all.iter().map(|p| p.0), 0.04);
    let (y0, y1) = range(all.iter().map(|p| p.1), 0.06);
    let mut plot = ChartBuilder::on(&plot_area)
        .caption(&chart.title, (FONT, 28))
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(80)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| fail(&e))?;
    plot.configure_mesh()
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .axis_desc_style((FONT, 22))
        .label_style((FONT, 18))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(210, 210, 210))
        .draw()
        .map_err(|e| fail(&e))?;
    // Emphasised lines last, so that they are on top.
    let mut order: Vec<&Line> = chart.lines.iter().filter(|l| !l.emphasis).collect();
    order.extend(chart.lines.iter().filter(|l| l.emphasis));
    for line in order {
        let points = finite(line);
        let (r, g, b) = line.color;
        let color = RGBColor(r, g, b);
        let style = color.stroke_width(if line.emphasis { 4 } else { 2 });
        if line.dashed {
            plot.draw_series(DashedLineSeries::new(points.clone(), 10, 6, style))
                .map_err(|e| fail(&e))?;
        } else {
            plot.draw_series(LineSeries::new(points.clone(), style))
                .map_err(|e| fail(&e))?;
        }
        let radius = if line.emphasis { 6 } else { 4 };
        plot.draw_series(
            points
                .iter()
                .map(|&p| Circle::new(p, radius, color.filled())),
        )
        .map_err(|e| fail(&e))?;
    }
    // The legend: one row per line, in the order given.
    let row = 30;
    let top = 80;
    legend_area
        .draw(&Text::new(
            "Solver",
            (10, top - 40),
            (FONT, 20).into_font().style(FontStyle::Bold),
        ))
        .map_err(|e| fail(&e))?;
    for (i, line) in chart.lines.iter().enumerate() {
        let y = top + i as i32 * row;
        let (r, g, b) = line.color;
        let color = RGBColor(r, g, b);
        let style = color.stroke_width(if line.emphasis { 4 } else { 2 });
        let segment = vec![(10, y), (50, y)];
        if line.dashed {
            for x in [10, 26, 42] {
                legend_area
                    .draw(&PathElement::new(vec![(x, y), (x + 8, y)], style))
                    .map_err(|e| fail(&e))?;
            }
        } else {
            legend_area
                .draw(&PathElement::new(segment, style))
                .map_err(|e| fail(&e))?;
        }
        legend_area
            .draw(&Circle::new(
                (30, y),
                if line.emphasis { 6 } else { 4 },
                color.filled(),
            ))
            .map_err(|e| fail(&e))?;
        legend_area
            .draw(&Text::new(
                line.label.clone(),
                (60, y - 9),
                (FONT, 18).into_font().color(&BLACK),
            ))
            .map_err(|e| fail(&e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use web_sampler::scratch::ScratchDir;

    #[test]
    fn writes_a_png_and_an_svg_and_skips_non_finite_points() {
        let scratch = ScratchDir::new("plot");
        let dir = scratch.path();
        let chart = LineChart {
            title: "PSNR vs NFE".into(),
            x_label: "NFE".into(),
            y_label: "PSNR (dB)".into(),
            lines: vec![
                Line {
                    label: "euler (uniform)".into(),
                    points: vec![(4.0, 12.0), (8.0, 16.0), (16.0, f64::NAN)],
                    color: (31, 119, 180),
                    dashed: false,
                    emphasis: false,
                },
                Line {
                    label: "bns".into(),
                    points: vec![(4.0, 25.0), (8.0, 33.0)],
                    color: (214, 39, 40),
                    dashed: true,
                    emphasis: true,
                },
            ],
        };
        let (png, svg) = (dir.join("c.png"), dir.join("c.svg"));
        save_line_chart(&chart, &png, &svg).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("<svg") && text.contains("euler (uniform)"));
        // An empty chart still draws (axes only).
        let empty = LineChart {
            lines: Vec::new(),
            ..chart
        };
        save_line_chart(&empty, &png, &svg).unwrap();
    }
}
