//! SVG charts with plotters (no font library needed for SVG: text stays `<text>`).

use plotters::prelude::*;

use crate::report::Chart;

const COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// Draw a line chart (one line per series, log axes when asked) as an SVG document.
pub fn render_svg(chart: &Chart) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let pts = || chart.series.iter().flat_map(|s| s.points.iter().copied());
        let positive = |v: f64, log: bool| if log { v > 0.0 } else { v.is_finite() };
        let xs: Vec<f64> = pts()
            .map(|p| p.0)
            .filter(|&x| positive(x, chart.x_log))
            .collect();
        let ys: Vec<f64> = pts()
            .map(|p| p.1)
            .filter(|&y| positive(y, chart.y_log))
            .collect();
        let range = |v: &[f64], log: bool| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            match (lo.is_finite(), hi.is_finite()) {
                (true, true) if hi > lo => {
                    if log {
                        (lo / 1.5, hi * 1.5)
                    } else {
                        let pad = (hi - lo) * 0.05;
                        (
                            (lo - pad).min(if lo >= 0.0 { 0.0 } else { lo - pad }),
                            hi + pad,
                        )
                    }
                }
                (true, true) => (if log { lo / 2.0 } else { lo - 1.0 }, hi * 2.0 + 1.0),
                _ => (if log { 1.0 } else { 0.0 }, 10.0),
            }
        };
        let (x0, x1) = range(&xs, chart.x_log);
        let (y0, y1) = range(&ys, chart.y_log);
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(&chart.title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64);
        // Four axis combinations have four types in plotters; one macro keeps them in step.
        macro_rules! draw {
            ($x:expr, $y:expr) => {{
                let mut c = builder
                    .build_cartesian_2d($x, $y)
                    .map_err(|e| e.to_string())?;
                c.configure_mesh()
                    .x_desc(&chart.x_label)
                    .y_desc(&chart.y_label)
                    .draw()
                    .map_err(|e| e.to_string())?;
                for (i, s) in chart.series.iter().enumerate() {
                    let color = COLORS[i % COLORS.len()];
                    let points: Vec<(f64, f64)> = s
                        .points
                        .iter()
                        .copied()
                        .filter(|&(x, y)| positive(x, chart.x_log) && positive(y, chart.y_log))
                        .collect();
                    c.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                        .map_err(|e| e.to_string())?
                        .label(s.name.clone())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                        });
                    if points.len() <= 60 {
                        c.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                            .map_err(|e| e.to_string())?;
                    }
                }
                c.configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .position(SeriesLabelPosition::UpperLeft)
                    .draw()
                    .map_err(|e| e.to_string())?;
            }};
        }
        match (chart.x_log, chart.y_log) {
            (false, false) => draw!(x0..x1, y0..y1),
            (true, false) => draw!((x0..x1).log_scale(), y0..y1),
            (false, true) => draw!(x0..x1, (y0..y1).log_scale()),
            (true, true) => draw!((x0..x1).log_scale(), (y0..y1).log_scale()),
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_log_log_chart() {
        let c = Chart::new("depth", "Latency by depth", "page", "ms")
            .log_x()
            .log_y()
            .series("offset", vec![(1.0, 0.2), (100.0, 5.0), (10000.0, 300.0)])
            .series("keyset", vec![(1.0, 0.2), (100.0, 0.2), (10000.0, 0.25)]);
        let svg = render_svg(&c).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("offset") && svg.contains("keyset"));
    }
}
