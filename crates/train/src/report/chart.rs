//! The backtest chart: price on top, then long and short margin rates per arm with the
//! exceptions marked where the loss broke through.

use std::path::Path;
use std::sync::OnceLock;

use foresight_core::backtest::Backtest;
use foresight_core::features::Side;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::data::Values;
use crate::error::{DataError, Result};

/// Where a TrueType font is looked for (`FORESIGHT_FONT` first). The bootstrap installs
/// Debian's `fonts-dejavu-core` when none is there.
const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Registers a font for plotters once per process; the error says how to get one.
fn ensure_font() -> std::result::Result<(), String> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let candidates = std::env::var("FORESIGHT_FONT").into_iter().chain(FONT_PATHS.iter().map(|s| s.to_string()));
            for path in candidates {
                if let Ok(bytes) = std::fs::read(&path) {
                    // plotters keeps fonts for the life of the process.
                    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                    if register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                        return Ok(());
                    }
                }
            }
            Err("no TrueType font found: run ./scripts/bootstrap.sh (installs fonts-dejavu-core) or set FORESIGHT_FONT=/path/to/font.ttf".into())
        })
        .clone()
}

/// Draws `chart.png`-style output for `backtest` into `path`.
pub fn draw_backtest_chart(path: &Path, prices: &Values, backtest: &Backtest) -> Result<()> {
    let fail = |message: String| DataError::Chart { file: path.to_path_buf(), message };
    ensure_font().map_err(fail)?;
    draw(path, prices, backtest).map_err(|e| fail(e.to_string()))
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// The series legend every chart draws: a framed, lightly filled box at `position`.
fn legend<'a, CT: plotters::coord::CoordTranslate>(chart: &mut ChartContext<'a, BitMapBackend<'a>, CT>, position: SeriesLabelPosition, font_size: u32) -> DrawResult {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", font_size))
        .draw()?;
    Ok(())
}

fn draw(path: &Path, prices: &Values, bt: &Backtest) -> DrawResult {
    let root = BitMapBackend::new(path, (1400, 1050)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, rest) = root.split_vertically(330);
    let (middle, bottom) = rest.split_vertically(360);
    let x_range = bt.start as f64..bt.end as f64;
    let date_label = |x: &f64| {
        let i = (x.round() as usize).clamp(bt.start, bt.end);
        prices.timestamps[i].format("%Y-%m").to_string()
    };

    let closes = &prices.values[bt.start..=bt.end];
    let lo = closes.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = closes.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let file = prices.source.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
    let mut chart = ChartBuilder::on(&top)
        .caption(format!("{file}: {} (log scale)", prices.name), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range.clone(), (lo * 0.95..hi * 1.05).log_scale())?;
    chart
        .configure_mesh()
        .x_label_formatter(&date_label)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_labels(12)
        .y_labels(8)
        .light_line_style(WHITE)
        .draw()?;
    chart.draw_series(LineSeries::new(
        (bt.start..=bt.end).map(|i| (i as f64, prices.values[i])),
        BLACK.stroke_width(1),
    ))?;

    for (area, side) in [(middle, Side::Long), (bottom, Side::Short)] {
        let max_margin = bt
            .arms
            .iter()
            .flat_map(|a| a.rows.iter().map(move |r| r.margin.get(side)))
            .fold(0.0f64, f64::max);
        let y_max = (max_margin * 1.25).max(0.01);
        let mut chart = ChartBuilder::on(&area)
            .caption(
                format!(
                    "{} margin rate at {:.1}%, {}-day horizon (dots: exceptions, at the loss, clipped)",
                    side.as_str(),
                    100.0 * bt.config.params.confidence(),
                    bt.config.params.horizon()
                ),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(80)
            .build_cartesian_2d(x_range.clone(), 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_label_formatter(&date_label)
            .y_label_formatter(&|y| format!("{:.0}%", 100.0 * y))
            .x_labels(12)
            .light_line_style(WHITE)
            .draw()?;
        for (k, arm) in bt.arms.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    arm.rows.iter().map(|r| (r.index as f64, r.margin.get(side))),
                    color.stroke_width(2),
                ))?
                .label(format!("{} ({} exc.)", arm.arm, arm.side(side).exceptions))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
            chart.draw_series(
                arm.rows
                    .iter()
                    .filter(|r| r.exception(side))
                    .map(|r| Circle::new((r.index as f64, r.loss.get(side).min(y_max)), 4, color.filled())),
            )?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft, 15)?;
    }
    root.present()?;
    Ok(())
}

/// Draws realized daily volatility against each forecaster's one-day-ahead forecast (both as
/// daily volatility in percent, log scale) from day `from` on: `forecasts[k].1[t]` is the
/// variance forecast made at `t` for `t+1`, drawn at `t+1` beside what was realized.
pub fn draw_forecast_chart(
    path: &Path,
    dates: &[chrono::NaiveDate],
    realized: &[Option<f64>],
    forecasts: &[(String, Vec<Option<f64>>)],
    from: usize,
) -> Result<()> {
    let fail = |message: String| DataError::Chart { file: path.to_path_buf(), message };
    ensure_font().map_err(fail)?;
    draw_forecasts(path, dates, realized, forecasts, from).map_err(|e| fail(e.to_string()))
}

fn draw_forecasts(path: &Path, dates: &[chrono::NaiveDate], realized: &[Option<f64>], forecasts: &[(String, Vec<Option<f64>>)], from: usize) -> DrawResult {
    let n = dates.len();
    let vol = |v: f64| 100.0 * v.sqrt();
    let points = |t: usize| realized.get(t).copied().flatten().filter(|v| *v > 0.0);
    let all: Vec<f64> = (from + 1..n)
        .filter_map(points)
        .chain(forecasts.iter().flat_map(|(_, f)| f[from..n.saturating_sub(1)].iter().flatten().copied()))
        .filter(|v| *v > 0.0)
        .map(vol)
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).max(0.01);
    let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max).max(lo * 2.0);
    let root = BitMapBackend::new(path, (1400, 620)).into_drawing_area();
    root.fill(&WHITE)?;
    let date_label = |x: &f64| dates[(x.round() as usize).clamp(0, n - 1)].format("%Y-%m").to_string();
    let mut chart = ChartBuilder::on(&root)
        .caption("Daily volatility: realized (grey) and one-day-ahead forecasts (%, log scale)", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(70)
        .build_cartesian_2d(from as f64..(n - 1) as f64, (lo * 0.9..hi * 1.1).log_scale())?;
    chart
        .configure_mesh()
        .x_label_formatter(&date_label)
        .y_label_formatter(&|y| format!("{y:.1}%"))
        .x_labels(12)
        .light_line_style(WHITE)
        .draw()?;
    chart
        .draw_series((from + 1..n).filter_map(|t| points(t).map(|v| Circle::new((t as f64, vol(v)), 1, RGBColor(150, 150, 150).filled()))))?
        .label("realized")
        .legend(|(x, y)| Circle::new((x + 9, y), 3, RGBColor(150, 150, 150).filled()));
    for (k, (name, f)) in forecasts.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let series: Vec<(f64, f64)> = (from..n - 1).filter_map(|t| f[t].filter(|v| *v > 0.0).map(|v| ((t + 1) as f64, vol(v)))).collect();
        chart
            .draw_series(LineSeries::new(series, color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight, 15)?;
    root.present()?;
    Ok(())
}

/// Draws the cost–procyclicality plane of each window side by side: average margin against the
/// largest 30-day rise, reactive arms as circles and forward arms as triangles, filled where
/// coverage passes and hollow where it fails, each kind's frontier as a line, and the frozen
/// arm (and the reference reactive arms) labelled.
pub fn draw_frontier_chart(path: &Path, title: &str, windows: &[FrontierPanel<'_>]) -> Result<()> {
    let fail = |message: String| DataError::Chart { file: path.to_path_buf(), message };
    ensure_font().map_err(fail)?;
    draw_frontier(path, title, windows).map_err(|e| fail(e.to_string()))
}

/// One panel of [`draw_frontier_chart`].
pub struct FrontierPanel<'a> {
    /// Caption, e.g. `development 2019-01-03 .. 2021-12-31`.
    pub caption: String,
    /// The window's points.
    pub points: &'a [foresight_core::frontier::Point],
    /// Points to label, with the label.
    pub labelled: Vec<(usize, String)>,
}

fn draw_frontier(path: &Path, title: &str, panels: &[FrontierPanel<'_>]) -> DrawResult {
    use foresight_core::frontier::{Kind, frontier};
    let root = BitMapBackend::new(path, (1600, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let (head, body) = root.split_vertically(40);
    head.titled(title, ("sans-serif", 24))?;
    let areas = body.split_evenly((1, panels.len().max(1)));
    let reactive_color = RGBColor(31, 119, 180);
    let forward_color = RGBColor(230, 120, 20);
    for (area, panel) in areas.iter().zip(panels) {
        let pts = panel.points;
        let x_max = pts.iter().map(|p| p.cost).fold(0.0f64, f64::max) * 1.08;
        let x_min = pts.iter().map(|p| p.cost).fold(f64::INFINITY, f64::min) * 0.92;
        let y_max = pts.iter().map(|p| p.rise_30d).fold(0.0f64, f64::max) * 1.08 + 0.05;
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.caption, ("sans-serif", 19))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x_min..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("cost: average margin (mean of long and short)")
            .y_desc("largest 30-day margin rise")
            .x_label_formatter(&|x| format!("{:.1}%", 100.0 * x))
            .y_label_formatter(&|y| format!("{:.0}%", 100.0 * y))
            .light_line_style(WHITE)
            .draw()?;
        for (kind, color, name) in [(Kind::Reactive, reactive_color, "reactive"), (Kind::Forward, forward_color, "forward")] {
            let line: Vec<(f64, f64)> = frontier(pts, kind).into_iter().map(|i| (pts[i].cost, pts[i].rise_30d)).collect();
            let covered = pts.iter().filter(|p| p.kind == kind && p.covered).count();
            let total = pts.iter().filter(|p| p.kind == kind).count();
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))?
                .label(format!("{name} frontier ({covered} of {total} arms cover)"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
            for p in pts.iter().filter(|p| p.kind == kind) {
                let style = if p.covered { color.filled() } else { color.stroke_width(1) };
                let at = (p.cost, p.rise_30d);
                match kind {
                    Kind::Reactive => chart.draw_series(std::iter::once(Circle::new(at, 5, style)))?,
                    Kind::Forward => chart.draw_series(std::iter::once(TriangleMarker::new(at, 6, style)))?,
                };
            }
        }
        for (i, label) in &panel.labelled {
            let p = &pts[*i];
            chart.draw_series(std::iter::once(Cross::new((p.cost, p.rise_30d), 8, BLACK.stroke_width(2))))?;
            chart.draw_series(std::iter::once(Text::new(label.clone(), (p.cost, p.rise_30d), ("sans-serif", 14).into_font())))?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight, 15)?;
    }
    root.present()?;
    Ok(())
}

/// Draws impulse responses: one panel per step, each arm's median margin ÷ its pre-step level
/// against days from the step, with the 5–95% band of the paths shaded.
pub fn draw_impulse_chart(path: &Path, title: &str, run: &crate::impulse::ImpulseRun) -> Result<()> {
    let fail = |message: String| DataError::Chart { file: path.to_path_buf(), message };
    ensure_font().map_err(fail)?;
    draw_impulse(path, title, run).map_err(|e| fail(e.to_string()))
}

fn draw_impulse(path: &Path, title: &str, run: &crate::impulse::ImpulseRun) -> DrawResult {
    let steps = &run.settings.steps;
    let root = BitMapBackend::new(path, (560 * steps.len().max(1) as u32, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let (head, body) = root.split_vertically(40);
    head.titled(title, ("sans-serif", 22))?;
    let areas = body.split_evenly((1, steps.len().max(1)));
    for (area, step) in areas.iter().zip(steps) {
        let responses: Vec<&crate::impulse::ArmResponse> = run.responses.iter().filter(|r| r.step == *step).collect();
        let Some(first) = responses.first() else { continue };
        let x0 = first.response.first_day as f64;
        let x1 = x0 + first.response.median.len() as f64;
        let y_max = responses.iter().flat_map(|r| r.response.p95.iter()).copied().fold(step * 1.2, f64::max).min(3.0 * step);
        let mut chart = ChartBuilder::on(area)
            .caption(format!("volatility × {step} at day 0"), ("sans-serif", 19))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(50)
            .build_cartesian_2d(x0..x1, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("days from the step")
            .y_desc("margin ÷ margin before the step")
            .light_line_style(WHITE)
            .draw()?;
        for (k, r) in responses.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            let day = |i: usize| x0 + i as f64;
            let mut band: Vec<(f64, f64)> = r.response.p95.iter().enumerate().map(|(i, y)| (day(i), y.min(y_max))).collect();
            band.extend(r.response.p05.iter().enumerate().rev().map(|(i, y)| (day(i), *y)));
            chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.12).filled())))?;
            chart
                .draw_series(LineSeries::new(r.response.median.iter().enumerate().map(|(i, y)| (day(i), y.min(y_max))), color.stroke_width(2)))?
                .label(r.arm.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight, 13)?;
    }
    root.present()?;
    Ok(())
}
