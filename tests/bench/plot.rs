//! The storm drawn: HAProxy processes alive and their summed memory over the storm's time, one line per side, as
//! an SVG that BENCHMARKS.md shows (plotters, SVG backend only: no font or image library).

use std::path::Path;

use plotters::prelude::*;

use crate::scenarios::Census;

/// One side's census and how it is drawn.
pub struct Line<'a> {
    pub label: &'a str,
    pub census: &'a [Census],
    pub color: RGBColor,
}

pub const PROXYMGR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
pub const BASELINE: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// One of the two charts: what it shows of a census, up to `high`, with a `target` line if any.
struct Panel {
    what: &'static str,
    high: f64,
    value: fn(&Census) -> f64,
    target: Option<f64>,
}

/// Draws `lines` into `path`: processes alive above (with the `target` most, if any), their summed RSS (MiB)
/// below, on one time axis.
pub fn storm(path: &Path, title: &str, lines: &[Line], target: Option<f64>) -> Result<(), String> {
    let error = |e: DrawingAreaErrorKind<std::io::Error>| e.to_string();
    let points = || lines.iter().flat_map(|line| line.census.iter());
    let (start, end) = points().fold((0.0f64, 1.0f64), |(a, b), c| (a.min(c.at), b.max(c.at)));
    let most = points().map(|c| c.processes).max().unwrap_or(1) as f64;
    let most_mib = points().map(|c| c.rss_kb).max().unwrap_or(1) as f64 / 1024.0;

    let root = SVGBackend::new(path, (900, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(error)?;
    let root = root.titled(title, ("sans-serif", 18)).map_err(error)?;
    let (top, bottom) = root.split_vertically(290);
    let panels = [
        (
            &top,
            Panel {
                what: "HAProxy processes alive",
                high: most + 1.0,
                value: |c| c.processes as f64,
                target,
            },
        ),
        (
            &bottom,
            Panel {
                what: "their summed RSS (MiB)",
                high: most_mib * 1.1,
                value: |c| c.rss_kb as f64 / 1024.0,
                target: None,
            },
        ),
    ];
    for (area, Panel { what, high, value, target }) in panels {
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(start..end, 0.0..high)
            .map_err(error)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the storm's first new service")
            .y_desc(what)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .light_line_style(WHITE.mix(0.0))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(error)?;
        if let Some(limit) = target {
            let gray = BLACK.mix(0.5);
            chart
                .draw_series(LineSeries::new([(start, limit), (end, limit)], gray.stroke_width(1)))
                .map_err(error)?
                .label(format!("target: at most {limit}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], gray.stroke_width(1)));
        }
        for line in lines {
            let color = line.color;
            chart
                .draw_series(LineSeries::new(
                    line.census.iter().map(|c| (c.at, value(c))),
                    color.stroke_width(2),
                ))
                .map_err(error)?
                .label(line.label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(error)?;
    }
    root.present().map_err(error)
}
