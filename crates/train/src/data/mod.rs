//! Market history: loading, validation, calendars and intraday aggregation.
//!
//! Two shapes are read, from CSV or Parquet:
//! - OHLCV: `date,open,high,low,close[,volume]`, daily or intraday;
//! - single values: `date,<name>` (a close, an implied-volatility index, a funding rate).
//!
//! Rejected, with the file, row and column named: a missing column, an unparsable date, a
//! duplicate or out-of-order timestamp, a missing or non-numeric value, a non-positive or
//! non-finite price (returns are logarithmic), `high < low`, an open or close outside
//! `[low, high]`, a negative volume. Gaps in time are allowed and reported.

mod calendar;
mod exogenous;
mod table;

use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveDateTime};
use foresight_core::features::{Bar, DailyRv, daily_realized_variance};

pub use calendar::{Frequency, Gap, GapReport};
pub use exogenous::{ExogenousSpec, Transform, daily_input, load_exogenous};
use table::Table;

use crate::error::{DataError, Result};

/// OHLCV bars with their timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct Ohlcv {
    /// Where the bars came from.
    pub source: PathBuf,
    /// Bar start times, UTC, strictly ascending.
    pub timestamps: Vec<NaiveDateTime>,
    /// The bars, validated.
    pub bars: Vec<Bar>,
    /// Traded volume, when the file has it.
    pub volume: Option<Vec<f64>>,
    /// Sampling frequency.
    pub frequency: Frequency,
    /// Missing bars.
    pub gaps: GapReport,
}

/// One value per timestamp (a price, an implied-vol index, a funding rate...).
#[derive(Debug, Clone, PartialEq)]
pub struct Values {
    /// Where the values came from.
    pub source: PathBuf,
    /// Column name.
    pub name: String,
    /// Timestamps, UTC, strictly ascending.
    pub timestamps: Vec<NaiveDateTime>,
    /// The values, finite (and positive when loaded as prices).
    pub values: Vec<f64>,
    /// Sampling frequency.
    pub frequency: Frequency,
    /// Missing observations.
    pub gaps: GapReport,
}

impl Values {
    /// How many bars reach up to the last one on or before `day`, plus the `after` bars that
    /// follow it (a margin's h-day loss); `None` when no bar is that early.
    pub fn bars_through(&self, day: chrono::NaiveDate, after: usize) -> Option<usize> {
        let last = self.timestamps.iter().rposition(|t| t.date() <= day)?;
        Some((last + 1 + after).min(self.values.len()))
    }

    /// Keeps the first `n` bars.
    pub fn truncate(&mut self, n: usize) {
        self.values.truncate(n);
        self.timestamps.truncate(n);
    }
}

const PRICE_REASON: &str = "prices must be positive because returns are logarithmic";

/// A file as loaded: OHLCV bars when it has `open, high, low, close`, else single values.
#[derive(Debug, Clone, PartialEq)]
pub enum Series {
    /// OHLCV bars.
    Ohlcv(Ohlcv),
    /// `date,<name>` values (not required to be positive).
    Values(Values),
}

/// Loads either shape, deciding by the columns present.
pub fn load(path: &Path) -> Result<Series> {
    let table = Table::read(path)?;
    if has_ohlc(&table) { ohlcv_from(table).map(Series::Ohlcv) } else { values_from(table, None, false).map(Series::Values) }
}

fn has_ohlc(table: &Table) -> bool {
    ["open", "high", "low", "close"].iter().all(|c| table.find(c).is_some())
}

/// Loads an OHLCV file.
pub fn load_ohlcv(path: &Path) -> Result<Ohlcv> {
    ohlcv_from(Table::read(path)?)
}

fn ohlcv_from(table: Table) -> Result<Ohlcv> {
    table.require(&["date", "open", "high", "low", "close"])?;
    let timestamps = table.timestamps("date")?;
    let [open, high, low, close] = ["open", "high", "low", "close"].map(|c| table.floats(c));
    let (open, high, low, close) = (open?, high?, low?, close?);
    for (column, values) in [("open", &open), ("high", &high), ("low", &low), ("close", &close)] {
        check_positive(&table, column, values)?;
    }
    let mut bars = Vec::with_capacity(table.height());
    for i in 0..table.height() {
        let bar = Bar { open: open[i], high: high[i], low: low[i], close: close[i] };
        if bar.high < bar.low {
            return Err(table.invalid(i, "high", format!("high {} is below low {}", bar.high, bar.low)));
        }
        for (column, v) in [("open", bar.open), ("close", bar.close)] {
            if v < bar.low || v > bar.high {
                return Err(table.invalid(
                    i,
                    column,
                    format!("{column} {v} is outside the bar's range [low {}, high {}]", bar.low, bar.high),
                ));
            }
        }
        bars.push(bar);
    }
    let volume = match table.find("volume") {
        None => None,
        Some(_) => {
            let v = table.floats("volume")?;
            if let Some(i) = v.iter().position(|x| *x < 0.0) {
                return Err(table.invalid(i, "volume", format!("volume {} is negative", v[i])));
            }
            Some(v)
        }
    };
    let (frequency, gaps) = calendar::detect(&timestamps);
    Ok(Ohlcv { source: table.path().to_path_buf(), timestamps, bars, volume, frequency, gaps })
}

/// Loads a `date,<name>` file. `column` picks the value column (default: the only column
/// besides `date`); `positive` requires strictly positive values (prices, volatility indices).
pub fn load_values(path: &Path, column: Option<&str>, positive: bool) -> Result<Values> {
    values_from(Table::read(path)?, column, positive)
}

fn values_from(table: Table, column: Option<&str>, positive: bool) -> Result<Values> {
    let path = table.path().to_path_buf();
    table.require(&["date"])?;
    let name = match column {
        Some(c) => {
            table.require(&[c])?;
            c.to_string()
        }
        None => {
            let others: Vec<String> =
                table.names().into_iter().filter(|n| !n.trim().eq_ignore_ascii_case("date")).collect();
            match others.as_slice() {
                [one] => one.trim().to_string(),
                _ => {
                    return Err(DataError::MissingColumns {
                        file: path.to_path_buf(),
                        missing: vec!["one value column besides `date` (or name it)".into()],
                        found: table.names(),
                    });
                }
            }
        }
    };
    let timestamps = table.timestamps("date")?;
    let values = table.floats(&name)?;
    if positive {
        check_positive(&table, &name, &values)?;
    }
    let (frequency, gaps) = calendar::detect(&timestamps);
    Ok(Values { source: path, name, timestamps, values, frequency, gaps })
}

/// Loads daily closing prices for a backtest from an OHLCV file (intraday bars are aggregated
/// to UTC days first) or from a `date,<price>` file.
pub fn load_daily_closes(path: &Path) -> Result<Values> {
    let table = Table::read(path)?;
    if has_ohlc(&table) {
        let daily = ohlcv_from(table)?.to_daily();
        return Ok(Values {
            source: daily.source,
            name: "close".into(),
            values: daily.bars.iter().map(|b| b.close).collect(),
            timestamps: daily.timestamps,
            frequency: daily.frequency,
            gaps: daily.gaps,
        });
    }
    let values = values_from(table, None, true)?;
    if let Frequency::Intraday { .. } = values.frequency {
        return Err(DataError::Invalid {
            file: path.to_path_buf(),
            row: 1,
            line: Some(2),
            column: "date".into(),
            message: "a backtest needs daily prices; give intraday data as OHLCV bars so they can be aggregated".into(),
        });
    }
    Ok(values)
}

fn check_positive(table: &Table, column: &str, values: &[f64]) -> Result<()> {
    match values.iter().position(|v| *v <= 0.0) {
        Some(i) => Err(table.invalid(i, column, format!("{} is not a positive price: {PRICE_REASON}", values[i]))),
        None => Ok(()),
    }
}

impl Ohlcv {
    /// Daily bars (UTC days): first open, highest high, lowest low, last close, summed volume.
    /// Daily input is returned unchanged.
    pub fn to_daily(&self) -> Ohlcv {
        if let Frequency::Daily { .. } = self.frequency {
            return self.clone();
        }
        let mut timestamps: Vec<NaiveDateTime> = Vec::new();
        let mut bars: Vec<Bar> = Vec::new();
        let mut volume: Vec<f64> = Vec::new();
        for (i, (t, b)) in self.timestamps.iter().zip(&self.bars).enumerate() {
            let day = t.date().and_hms_opt(0, 0, 0).unwrap_or(*t);
            let v = self.volume.as_ref().map_or(0.0, |v| v[i]);
            match (timestamps.last(), bars.last_mut()) {
                (Some(last), Some(agg)) if *last == day => {
                    agg.high = agg.high.max(b.high);
                    agg.low = agg.low.min(b.low);
                    agg.close = b.close;
                    if let Some(total) = volume.last_mut() {
                        *total += v;
                    }
                }
                _ => {
                    timestamps.push(day);
                    bars.push(*b);
                    volume.push(v);
                }
            }
        }
        let (frequency, gaps) = calendar::detect(&timestamps);
        Ohlcv {
            source: self.source.clone(),
            timestamps,
            bars,
            volume: self.volume.as_ref().map(|_| volume),
            frequency,
            gaps,
        }
    }

    /// Daily realized variance from intraday bars (see
    /// [`foresight_core::features::daily_realized_variance`]), one row per UTC day.
    pub fn daily_realized_variance(&self) -> Result<Vec<(NaiveDate, DailyRv)>> {
        let Frequency::Intraday { interval_secs } = self.frequency else {
            return Err(DataError::Invalid {
                file: self.source.clone(),
                row: 1,
                line: None,
                column: "date".into(),
                message: "realized variance needs intraday bars; this series is daily".into(),
            });
        };
        let secs: Vec<i64> = self.timestamps.iter().map(|t| t.and_utc().timestamp()).collect();
        let opens: Vec<f64> = self.bars.iter().map(|b| b.open).collect();
        let closes: Vec<f64> = self.bars.iter().map(|b| b.close).collect();
        let rv = daily_realized_variance(&secs, &opens, &closes, interval_secs)?;
        Ok(rv
            .into_iter()
            .map(|d| {
                let date = chrono::DateTime::from_timestamp(d.day * 86_400, 0)
                    .map(|t| t.date_naive())
                    .unwrap_or_default();
                (date, d)
            })
            .collect())
    }
}
