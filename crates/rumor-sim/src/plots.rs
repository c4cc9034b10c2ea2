//! PNG figures with `plotters`' bitmap backend: the infection curve of an
//! update with the theoretical logistic curve over it, and a histogram of
//! crash detection times.
//!
//! Text is drawn with plotters' pure-Rust `ab_glyph` renderer, so no
//! system font library is needed. It needs a TrueType file at run time: the
//! first of [`FONT_PATHS`] that exists (or the file `RUMOR_SIM_FONT` names) is
//! registered. Without one, the figures are drawn without text.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::report::RunResult;
use crate::scenario::Scenario;

/// Where a TrueType font is looked for.
pub const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Register a font once; whether text can be drawn.
pub fn text_available() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        let env = std::env::var("RUMOR_SIM_FONT").ok();
        let candidates = env.iter().map(String::as_str).chain(FONT_PATHS);
        for path in candidates {
            if let Ok(bytes) = std::fs::read(path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// The SI-model (logistic) fraction informed after `t` seconds when each
/// informed node contacts `rate` random nodes per second: 1 / (1 + (N-1) e^(-rate t)).
pub fn logistic(n: usize, rate: f64, t: f64) -> f64 {
    1.0 / (1.0 + (n.max(2) as f64 - 1.0) * (-rate * t).exp())
}

/// Contacts per second of one node under `scenario`'s configuration:
/// gossip fan-out per gossip interval plus the probe's ping and ack.
pub fn contact_rate(scenario: &Scenario) -> f64 {
    let c = &scenario.config;
    c.gossip_nodes as f64 / c.gossip_interval.as_secs_f64() + 2.0 / c.probe_interval.as_secs_f64()
}

fn plot_err<E: std::fmt::Display>(e: E) -> String {
    format!("plot failed: {e}")
}

/// Draw `infection.png` and `detection.png` into `dir`. Returns the files written.
pub fn write_plots(
    result: &RunResult,
    scenario: &Scenario,
    dir: &Path,
) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(dir).map_err(plot_err)?;
    let text = text_available();
    let mut written = Vec::new();
    // The first non-death update with arrivals, else the first with arrivals.
    let pick = result
        .series
        .iter()
        .find(|(l, d, _)| !l.starts_with("death") && !d.is_empty())
        .or_else(|| result.series.iter().find(|(_, d, _)| !d.is_empty()));
    if let Some((label, delays, target)) = pick {
        let path = dir.join("infection.png");
        infection(&path, label, delays, *target, scenario, text)?;
        written.push(path.display().to_string());
    }
    if !result.detection_delays.is_empty() {
        let path = dir.join("detection.png");
        histogram(&path, &result.detection_delays, text)?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

fn infection(
    path: &Path,
    label: &str,
    delays: &[f64],
    target: usize,
    scenario: &Scenario,
    text: bool,
) -> Result<(), String> {
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    // The news starts spreading at the first arrival (a death only once
    // some node declares it): the theory curve starts there too.
    let first = delays.first().copied().unwrap_or(0.0);
    let last = delays.last().copied().unwrap_or(1.0);
    let span = (last - first).max(1e-2);
    let t_min = (first - 0.1 * span).max(0.0);
    let t_max = last + 0.1 * span;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if text {
        builder
            .caption(format!("infection curve: {label}"), ("sans-serif", 22))
            .x_label_area_size(40)
            .y_label_area_size(50);
    }
    let mut chart = builder
        .build_cartesian_2d(t_min..t_max, 0.0..1.02)
        .map_err(plot_err)?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("seconds since the update")
            .y_desc("fraction of live nodes");
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(plot_err)?;
    let t = target.max(1) as f64;
    let mut pts = vec![(t_min, 0.0)];
    for (k, &d) in delays.iter().enumerate() {
        pts.push((d, k as f64 / t));
        pts.push((d, (k + 1) as f64 / t));
    }
    let measured = chart
        .draw_series(LineSeries::new(pts, BLUE.stroke_width(2)))
        .map_err(plot_err)?;
    if text {
        measured
            .label("simulated")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
    }
    let rate = contact_rate(scenario);
    let n = target + 1;
    let theory = (0..=400).map(|i| {
        let x = first + (t_max - first) * i as f64 / 400.0;
        (x, logistic(n, rate, x - first))
    });
    let logi = chart
        .draw_series(LineSeries::new(theory, RED.stroke_width(2)))
        .map_err(plot_err)?;
    if text {
        logi.label(format!("logistic, {rate:.1} contacts/s"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)
}

fn histogram(path: &Path, delays: &[f64], text: bool) -> Result<(), String> {
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let max = delays.iter().copied().fold(0.0, f64::max);
    let min = delays
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(max);
    const BINS: usize = 40;
    let lo = (min - 0.05 * (max - min)).max(0.0);
    let width = ((max - lo) / BINS as f64).max(1e-3);
    let mut counts = [0u32; BINS + 1];
    for &d in delays {
        counts[(((d - lo) / width) as usize).min(BINS)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1);
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if text {
        builder
            .caption(
                "crash detection: time until each live node marked it dead",
                ("sans-serif", 22),
            )
            .x_label_area_size(40)
            .y_label_area_size(50);
    }
    let mut chart = builder
        .build_cartesian_2d(lo..lo + width * (BINS + 1) as f64, 0u32..top + top / 10 + 1)
        .map_err(plot_err)?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("seconds since the crash").y_desc("nodes");
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(plot_err)?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, &c)| {
            let x0 = lo + i as f64 * width;
            Rectangle::new([(x0, 0), (x0 + width, c)], BLUE.mix(0.6).filled())
        }))
        .map_err(plot_err)?;
    root.present().map_err(plot_err)
}

const PALETTE: [RGBColor; 6] = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];

/// One named curve of [`lines`]; `dashed` draws it as points only (a theory line).
pub struct Series {
    /// Legend label.
    pub label: String,
    /// (x, y) points.
    pub points: Vec<(f64, f64)>,
    /// Draw as markers instead of a line.
    pub markers: bool,
}

/// Draw `series` as lines into a PNG at `path` (900 x 560).
pub fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<(), String> {
    let text = text_available();
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let pts = series.iter().flat_map(|s| s.points.iter().copied());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if text {
        builder
            .caption(title, ("sans-serif", 22))
            .x_label_area_size(40)
            .y_label_area_size(60);
    }
    let mut chart = builder
        .build_cartesian_2d(x0..x1.max(x0 + 1e-9), (y0 - pad)..(y1 + pad))
        .map_err(plot_err)?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc(x_desc).y_desc(y_desc);
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(plot_err)?;
    for (k, s) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let finite: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let drawn = if s.markers {
            chart
                .draw_series(
                    finite
                        .into_iter()
                        .map(|p| Circle::new(p, 5, color.filled())),
                )
                .map_err(plot_err)?
        } else {
            chart
                .draw_series(LineSeries::new(finite, color.stroke_width(2)))
                .map_err(plot_err)?
        };
        if text {
            drawn
                .label(s.label.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        }
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_shape() {
        assert!(logistic(1000, 10.0, 0.0) < 0.01);
        assert!(logistic(1000, 10.0, 5.0) > 0.99);
    }
}
