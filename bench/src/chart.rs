//! The SVG chart: throughput bars (broker and baseline per transport and direction) above the
//! setup-latency distributions (CDF, log scale).

use std::path::Path;

use plotters::prelude::*;

use crate::results::{Results, SetupResult, ThroughputResult};
use crate::stats::format_ratio;

const BROKER: RGBColor = RGBColor(31, 119, 180);
const BASELINE: RGBColor = RGBColor(255, 127, 14);
const WIDTH: u32 = 1100;

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Draws `results` into an SVG file at `path`.
pub fn draw(results: &Results, path: &Path) -> anyhow::Result<()> {
    let bars = results.throughput.len().max(1);
    let top_height = 120 + 34 * bars as u32;
    let root = SVGBackend::new(path, (WIDTH, top_height + 420)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (top, bottom) = root.split_vertically(top_height);
    throughput(&top, &results.throughput)?;
    setup(&bottom, &results.setup)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn plot_error<E: std::error::Error + Send + Sync + 'static>(error: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {error}")
}

fn placeholder(area: &Area, text: &str) -> anyhow::Result<()> {
    area.draw(&Text::new(text.to_string(), (20, 20), ("sans-serif", 18).into_font())).map_err(plot_error)
}

/// Horizontal bars, one pair per result, first result at the top.
fn throughput(area: &Area, results: &[ThroughputResult]) -> anyhow::Result<()> {
    if results.is_empty() {
        return placeholder(area, "throughput: no results");
    }
    let n = results.len();
    let names: Vec<String> = results.iter().map(|r| format!("{} {}", r.transport, r.direction)).collect();
    let max = results.iter().map(|r| r.broker.mb_per_s.max(r.baseline.mb_per_s)).fold(1.0, f64::max) * 1.18;
    // Category k sits at y = n-1-k, so that the first result is drawn at the top.
    let row = |k: usize| (n - 1 - k) as f64;
    let label = |y: &f64| {
        let k = n as f64 - 1.0 - y.round();
        if (y - y.round()).abs() < 1e-6 && k >= 0.0 && (k as usize) < n {
            names[k as usize].clone()
        } else {
            String::new()
        }
    };
    let mut chart = ChartBuilder::on(area)
        .caption("Throughput through one tunnel (MB/s, median of rounds)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(230)
        .build_cartesian_2d(0f64..max, -0.5f64..(n as f64 - 0.5))
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n + 1)
        .y_label_formatter(&label)
        .x_desc("MB/s (10^6 bytes per second)")
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(results.iter().enumerate().map(|(k, r)| {
            Rectangle::new([(0.0, row(k) + 0.04), (r.broker.mb_per_s, row(k) + 0.38)], BROKER.filled())
        }))
        .map_err(plot_error)?
        .label("broker")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], BROKER.filled()));
    chart
        .draw_series(results.iter().enumerate().map(|(k, r)| {
            Rectangle::new([(0.0, row(k) - 0.38), (r.baseline.mb_per_s, row(k) - 0.04)], BASELINE.filled())
        }))
        .map_err(plot_error)?
        .label("baseline")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], BASELINE.filled()));
    chart
        .draw_series(results.iter().enumerate().map(|(k, r)| {
            let end = r.broker.mb_per_s.max(r.baseline.mb_per_s);
            let text = format!("{}×", format_ratio(r.ratio));
            EmptyElement::at((end, row(k)))
                + Text::new(text, (6, -7), ("sans-serif", 14).into_font().color(&BLACK))
        }))
        .map_err(plot_error)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// One CDF line per side and setup result, on a logarithmic latency axis, with the 50 ms p99
/// target marked.
fn setup(area: &Area, results: &[SetupResult]) -> anyhow::Result<()> {
    let curves: Vec<(String, RGBColor, &Vec<f64>)> = results
        .iter()
        .flat_map(|r| {
            let tag = format!("{} N={} C={}", r.transport, r.tunnels, r.concurrency);
            [
                (format!("broker, {tag}"), BROKER, &r.broker.latency_cdf_ms),
                (format!("baseline, {tag}"), BASELINE, &r.baseline.latency_cdf_ms),
            ]
        })
        .filter(|(_, _, cdf)| !cdf.is_empty())
        .collect();
    if curves.is_empty() {
        return placeholder(area, "setup latency: no results");
    }
    let values = curves.iter().flat_map(|(_, _, cdf)| cdf.iter().copied()).filter(|v| *v > 0.0);
    let (low, high) = values.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (low, high) = (low.min(high) * 0.8, high.max(60.0) * 1.2);
    let mut chart = ChartBuilder::on(area)
        .caption("Tunnel setup latency: first connect to the byte through (CDF)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((low..high).log_scale(), 0f64..100f64)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("milliseconds (log scale)")
        .y_desc("percent of tunnels")
        .draw()
        .map_err(plot_error)?;
    for (index, (name, color, cdf)) in curves.iter().enumerate() {
        // Several setup results: later ones dashed-looking by thinner strokes.
        let width = if index < 2 { 2 } else { 1 };
        let style = color.stroke_width(width);
        let points = cdf.iter().enumerate().map(|(p, v)| (v.max(low), p as f64));
        chart
            .draw_series(LineSeries::new(points, style))
            .map_err(plot_error)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
    }
    let red = RGBColor(200, 30, 30);
    chart
        .draw_series(LineSeries::new([(50.0, 0.0), (50.0, 100.0)], red.stroke_width(1)))
        .map_err(plot_error)?
        .label("p99 target: 50 ms")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], red.stroke_width(1)));
    chart
        .draw_series(LineSeries::new([(low, 99.0), (high, 99.0)], BLACK.mix(0.3).stroke_width(1)))
        .map_err(plot_error)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{SetupSide, ThroughputSide};

    #[test]
    fn draws_bars_and_curves() {
        let mut results = Results::default();
        for (transport, broker) in [("tls-tcp", 800.0), ("wss", 300.0)] {
            results.throughput.push(ThroughputResult {
                transport: transport.into(),
                direction: "one-way".into(),
                bytes: 1 << 20,
                broker: ThroughputSide { mb_per_s: broker, ..Default::default() },
                baseline: ThroughputSide { mb_per_s: 1000.0, ..Default::default() },
                ratio: Some(broker / 1000.0),
                checks: Vec::new(),
            });
        }
        let cdf: Vec<f64> = (0..=100).map(|p| 1.0 + p as f64 / 10.0).collect();
        results.setup.push(SetupResult {
            transport: "tls-tcp".into(),
            tunnels: 10,
            concurrency: 8,
            broker: SetupSide { latency_cdf_ms: cdf.clone(), ..Default::default() },
            baseline: SetupSide { latency_cdf_ms: cdf, ..Default::default() },
            ratio: Some(1.0),
            checks: Vec::new(),
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.svg");
        draw(&results, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("tls-tcp one-way") && svg.contains("wss one-way"), "category labels");
        assert!(svg.contains("0.80×") && svg.contains("p99 target"));
        let empty = dir.path().join("empty.svg");
        draw(&Results::default(), &empty).unwrap();
        assert!(std::fs::read_to_string(&empty).unwrap().contains("no results"));
    }
}
