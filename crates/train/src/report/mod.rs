//! Backtest reports: `summary.json`, per-arm series CSV files and a PNG chart.

mod chart;
mod html;

use std::io::Write;
use std::path::{Path, PathBuf};

use foresight_core::backtest::{ArmBacktest, Backtest, SideSummary};
use foresight_core::features::Side;
use foresight_core::stats::Rise;
use serde_json::{Value, json};

use crate::data::Values;
use crate::error::{DataError, Result};

pub use chart::{FrontierPanel, draw_backtest_chart, draw_forecast_chart, draw_frontier_chart, draw_impulse_chart};
pub use html::{Extra, esc, offline_report, report};

/// How the statistics treat overlapping windows, written into every summary.
pub const OVERLAP_NOTE: &str = "With a horizon h > 1 consecutive loss windows overlap. Exception counts, \
rates, margins and shortfall use every scored day; Kupiec, Christoffersen and the traffic light use the \
non-overlapping subsample (every h-th scored day), where their independence assumption holds.";

/// Stress events in the bundled histories (see `data/README.md`), which reports measure
/// readiness at when they fall inside the scored window.
pub const STRESS_EVENTS: [(&str, &str); 10] = [
    ("2008-09-15", "Lehman Brothers files for bankruptcy"),
    ("2008-09-29", "US House rejects TARP; S&P 500 −8.8%"),
    ("2011-08-08", "US downgrade; S&P 500 −6.7%"),
    ("2015-08-24", "China devaluation sell-off"),
    ("2018-02-05", "Volmageddon (short-VIX products collapse)"),
    ("2020-03-12", "COVID crash, BTC about −40% in a day"),
    ("2021-05-19", "BTC −30% intraday (China mining ban, leverage flush)"),
    ("2022-06-13", "3AC / Celsius"),
    ("2022-11-09", "FTX collapse"),
    ("2024-08-05", "Yen carry-trade unwind"),
];

/// An event a report measures readiness at: a scored bar and its name.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Index of the event's bar in the price series.
    pub index: usize,
    /// Its date as text.
    pub date: String,
    /// What happened.
    pub label: String,
}

/// The events (`dates` with labels) that fall on a bar of `prices` inside the scored window of
/// `backtest`, with a scored day before them. An event on a non-trading day moves to the next
/// bar (at most 4 days later); events outside the window are left out.
pub fn events_in(prices: &Values, backtest: &Backtest, dates: &[(chrono::NaiveDate, String)]) -> Vec<Event> {
    dates
        .iter()
        .filter_map(|(day, label)| {
            let index = prices.timestamps.iter().position(|t| t.date() >= *day)?;
            let close = (prices.timestamps[index].date() - *day).num_days() <= 4;
            (close && index > backtest.start && index <= backtest.end).then(|| Event { index, date: date_of(prices, index), label: label.clone() })
        })
        .collect()
}

/// The files a backtest report consists of.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFiles {
    /// `summary.json`.
    pub summary: PathBuf,
    /// `series.csv`, or one `series_<arm>.csv` per arm.
    pub series: Vec<PathBuf>,
    /// `chart.png`, unless it could not be drawn.
    pub chart: Option<PathBuf>,
    /// Why the chart is missing, when it is.
    pub chart_error: Option<String>,
}

/// Writes the whole report of `backtest` (run on `prices`) into `out_dir`, creating it. The
/// JSON and CSV files are written first, so a chart failure loses no data.
pub fn write_backtest_report(out_dir: &Path, prices: &Values, backtest: &Backtest, events: &[Event]) -> Result<ReportFiles> {
    std::fs::create_dir_all(out_dir).map_err(|source| DataError::Io { file: out_dir.to_path_buf(), source })?;
    let summary = out_dir.join("summary.json");
    let text = serde_json::to_string_pretty(&summary_json(prices, backtest, events)).unwrap_or_default();
    std::fs::write(&summary, text + "\n").map_err(|source| DataError::Io { file: summary.clone(), source })?;
    let mut series = Vec::new();
    for arm in &backtest.arms {
        let name = if backtest.arms.len() == 1 { "series.csv".to_string() } else { format!("series_{}.csv", arm.arm.slug()) };
        let path = out_dir.join(name);
        write_series_csv(&path, prices, arm)?;
        series.push(path);
    }
    let chart_path = out_dir.join("chart.png");
    let (chart, chart_error) = match draw_backtest_chart(&chart_path, prices, backtest) {
        Ok(()) => (Some(chart_path), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(ReportFiles { summary, series, chart, chart_error })
}

/// The date of bar `index`, as text (`YYYY-MM-DD` for daily bars).
pub fn date_of(prices: &Values, index: usize) -> String {
    let t = prices.timestamps[index];
    if t.time() == chrono::NaiveTime::MIN { t.date().to_string() } else { t.to_string() }
}

/// The `summary.json` document.
pub fn summary_json(prices: &Values, backtest: &Backtest, events: &[Event]) -> Value {
    let params = &backtest.config.params;
    let arms: serde_json::Map<String, Value> = backtest
        .arms
        .iter()
        .map(|a| {
            let mut sides: serde_json::Map<String, Value> =
                Side::BOTH.iter().map(|s| (s.as_str().to_string(), side_json(prices, a.side(*s), params.confidence()))).collect();
            let readiness: Vec<Value> = events
                .iter()
                .map(|e| json!({ "date": e.date, "event": e.label, "long": a.readiness(Side::Long, e.index), "short": a.readiness(Side::Short, e.index) }))
                .collect();
            sides.insert("readiness".into(), Value::Array(readiness));
            (a.arm.to_string(), Value::Object(sides))
        })
        .collect();
    json!({
        "foresight_version": env!("CARGO_PKG_VERSION"),
        "data": {
            "file": prices.source.display().to_string(),
            "column": prices.name,
            "rows": prices.values.len(),
            "first": date_of(prices, 0),
            "last": date_of(prices, prices.values.len() - 1),
            "frequency": prices.frequency.describe(),
            "gaps": {
                "count": prices.gaps.count,
                "missing_bars": prices.gaps.missing_bars,
                "largest": prices.gaps.largest.map(|g| json!({
                    "after": g.after.to_string(), "before": g.before.to_string(), "missing": g.missing
                })),
            },
        },
        "settings": {
            "confidence": params.confidence(),
            "horizon_days": params.horizon(),
            "burn_in_days": backtest.config.burn_in,
            "periods_per_year": params.periods_per_year(),
            "scored_from": date_of(prices, backtest.start),
            "scored_to": date_of(prices, backtest.end),
            "reject_at": foresight_core::stats::REJECT_AT,
            "overlap": OVERLAP_NOTE,
            "readiness": "m(t−1) / max m(t..t+29): the margin in force before the event over its peak in the 30 days from it",
        },
        "arms": arms,
    })
}

fn rise_json(r: Option<Rise>) -> Value {
    r.map_or(Value::Null, |r| json!({ "abs": r.abs, "rel": r.rel }))
}

fn side_json(prices: &Values, s: &SideSummary, confidence: f64) -> Value {
    let tl = &s.traffic_light;
    json!({
        "observations": s.observations,
        "exceptions": s.exceptions,
        "exception_rate": s.exception_rate,
        "expected_exceptions": s.observations as f64 * (1.0 - confidence),
        "test_observations": s.test_observations,
        "test_exceptions": s.test_exceptions,
        "kupiec_lr": s.kupiec.lr,
        "kupiec_p": s.kupiec.p_value,
        "kupiec_reject": s.kupiec.rejects(),
        "christoffersen_ind_lr": s.christoffersen_ind.lr,
        "christoffersen_ind_p": s.christoffersen_ind.p_value,
        "christoffersen_ind_reject": s.christoffersen_ind.rejects(),
        "christoffersen_cc_lr": s.christoffersen_cc.lr,
        "christoffersen_cc_p": s.christoffersen_cc.p_value,
        "christoffersen_cc_reject": s.christoffersen_cc.rejects(),
        "traffic_light": {
            "last_250": tl.last_250,
            "last_250_exceptions": tl.last_250_exceptions,
            "worst_250": tl.worst_250,
            "worst_250_exceptions": tl.worst_250_exceptions,
            "worst_250_end": date_of(prices, tl.worst_250_end),
            "window": tl.window,
        },
        "avg_margin": s.avg_margin,
        "peak_to_trough": s.peak_to_trough,
        "max_rise_1d": rise_json(s.max_rise_1d),
        "max_rise_5d": rise_json(s.max_rise_5d),
        "max_rise_30d": rise_json(s.max_rise_30d),
        "mean_shortfall": s.mean_shortfall,
    })
}

/// Writes one arm's scored days: `date, close, margin_long, margin_short, loss_long,
/// loss_short, exception_long, exception_short` (exceptions as 0/1).
pub fn write_series_csv(path: &Path, prices: &Values, arm: &ArmBacktest) -> Result<()> {
    let io = |source| DataError::Io { file: path.to_path_buf(), source };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "date,close,margin_long,margin_short,loss_long,loss_short,exception_long,exception_short").map_err(io)?;
    for row in &arm.rows {
        writeln!(
            w,
            "{},{},{},{},{},{},{},{}",
            date_of(prices, row.index),
            prices.values[row.index],
            row.margin.long,
            row.margin.short,
            row.loss.long,
            row.loss.short,
            u8::from(row.exception(Side::Long)),
            u8::from(row.exception(Side::Short)),
        )
        .map_err(io)?;
    }
    w.flush().map_err(io)
}
