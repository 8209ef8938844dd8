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
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .draw()?;
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
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present()?;
    Ok(())
}
