//! The market data the engine works on, free of the wire format: an asset's daily history as
//! the feature code takes it (checked once and fingerprinted so forecasts can be cached), the
//! updates the market state stores, and one underlying's market for a calibration.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{ServeError, invalid};

/// One completed day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Day {
    /// `YYYY-MM-DD`, UTC.
    pub date: String,
    /// Last price of the day, > 0.
    pub close: f64,
    /// Realized variance of the day's log returns.
    pub realized_variance: Option<f64>,
    /// Annualised implied volatility in percent (DVOL, VIX), last of the day.
    #[serde(alias = "implied_vol")]
    pub implied_vol_percent: Option<f64>,
}

impl Day {
    /// Checks one day against the day before (`previous_date`); the error names `field`.
    pub fn check(&self, previous_date: Option<&str>, field: &str) -> Result<(), ServeError> {
        if !(self.close.is_finite() && self.close > 0.0) {
            return Err(invalid(format!("{field}.close"), format!("must be finite and > 0, got {}", self.close)));
        }
        if self.realized_variance.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
            return Err(invalid(format!("{field}.realized_variance"), "must be finite and ≥ 0"));
        }
        // No upper bound: journals written before the field was renamed replay through this check.
        if self.implied_vol_percent.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
            return Err(invalid(format!("{field}.implied_vol_percent"), "must be finite and ≥ 0 (annualised percent)"));
        }
        // Canonical dates only (`2024-09-30`, not `2024-9-30`): dates are compared as text.
        let canonical = chrono::NaiveDate::parse_from_str(&self.date, "%Y-%m-%d").is_ok_and(|d| d.format("%Y-%m-%d").to_string() == self.date);
        if !canonical {
            return Err(invalid(format!("{field}.date"), format!("`{}` is not a YYYY-MM-DD date", self.date)));
        }
        if let Some(previous) = previous_date
            && self.date.as_str() <= previous
        {
            return Err(invalid(format!("{field}.date"), format!("`{}` must come after the day before ({previous})", self.date)));
        }
        Ok(())
    }
}

/// A checked daily history.
#[derive(Debug, Clone)]
pub struct Series {
    /// The days' dates.
    pub dates: Vec<String>,
    /// Daily closes.
    pub closes: Vec<f64>,
    /// Log return into each day (`None` on the first).
    pub returns: Vec<Option<f64>>,
    /// Realized variance per day.
    pub rv: Vec<Option<f64>>,
    /// Implied volatility (annualised percent) per day.
    pub implied_vol_percent: Vec<Option<f64>>,
    /// 365 for calendar-daily history (crypto), 252 for business days (indices).
    pub periods_per_year: f64,
    /// Identifies the history's content (a cache key).
    pub fingerprint: u64,
}

impl Series {
    /// Checks `days` (oldest first) and builds the series; errors name `field[i]`.
    pub fn from_days(days: &[Day], field: &str) -> Result<Self, ServeError> {
        let mut previous: Option<&str> = None;
        for (i, day) in days.iter().enumerate() {
            day.check(previous, &format!("{field}[{i}]"))?;
            previous = Some(&day.date);
        }
        Ok(Self::from_checked(days))
    }

    /// Builds the series from days already checked (the market state checks on publish).
    pub fn from_checked(days: &[Day]) -> Self {
        let closes: Vec<f64> = days.iter().map(|d| d.close).collect();
        let returns = foresight_core::features::aligned_log_returns(&closes);
        let mut hasher = DefaultHasher::new();
        for d in days {
            d.date.hash(&mut hasher);
            d.close.to_bits().hash(&mut hasher);
            d.realized_variance.map(f64::to_bits).hash(&mut hasher);
            d.implied_vol_percent.map(f64::to_bits).hash(&mut hasher);
        }
        // Calendar-daily history (crypto) has weekends; business-daily (indices) does not.
        let weekend = days.iter().any(|d| is_weekend(&d.date));
        Self {
            dates: days.iter().map(|d| d.date.clone()).collect(),
            returns,
            rv: days.iter().map(|d| d.realized_variance).collect(),
            implied_vol_percent: days.iter().map(|d| d.implied_vol_percent).collect(),
            closes,
            periods_per_year: if weekend { 365.0 } else { 252.0 },
            fingerprint: hasher.finish(),
        }
    }

    /// Number of days.
    pub fn len(&self) -> usize {
        self.closes.len()
    }

    /// Whether there is no day.
    pub fn is_empty(&self) -> bool {
        self.closes.is_empty()
    }
}

/// One update the market state stores (its journal's line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Update {
    /// A trade or mark price now.
    Tick {
        /// The asset.
        asset: String,
        /// Its per-asset sequence number.
        sequence: u64,
        /// Unix milliseconds, UTC.
        timestamp_ms: i64,
        /// The price.
        price: f64,
        /// Annualised implied volatility, percent.
        #[serde(default, skip_serializing_if = "Option::is_none", alias = "implied_vol")]
        implied_vol_percent: Option<f64>,
        /// Order-book notional near mid.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        depth_notional: Option<f64>,
    },
    /// A completed day (backfill).
    Day {
        /// The asset.
        asset: String,
        /// Its per-asset sequence number.
        sequence: u64,
        /// The day.
        day: Day,
    },
}

impl Update {
    /// The asset.
    pub fn asset(&self) -> &str {
        match self {
            Self::Tick { asset, .. } | Self::Day { asset, .. } => asset,
        }
    }

    /// Its sequence number.
    pub fn sequence(&self) -> u64 {
        match self {
            Self::Tick { sequence, .. } | Self::Day { sequence, .. } => *sequence,
        }
    }
}

/// A published update refused before it reached the market state.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The asset, as given.
    pub asset: String,
    /// The sequence number, as given.
    pub sequence: u64,
    /// The field at fault.
    pub field: String,
    /// Why.
    pub message: String,
}

/// One underlying's market as a request gives it, checked: zero or `None` where the request
/// leaves the value to the published market state.
#[derive(Debug, Clone)]
pub struct MarketQuote {
    /// The underlying.
    pub asset: String,
    /// Spot (0: the last published price).
    pub spot: f64,
    /// Implied volatility, annual fraction (0: the last published one).
    pub implied_vol_fraction: f64,
    /// Order-book notional near mid.
    pub depth_notional: Option<f64>,
    /// Age of `spot`, seconds.
    pub age_secs: Option<f64>,
    /// Inline history (`None`: the published one).
    pub history: Option<Arc<Series>>,
    /// The quote's field path, for errors: `markets[0]`.
    pub field: String,
}

/// One underlying's market for a calibration: the quote over the published state.
#[derive(Debug, Clone)]
pub struct MarketInput {
    /// Spot, > 0.
    pub spot: f64,
    /// Implied volatility, annual fraction (option revaluation).
    pub implied_vol_fraction: f64,
    /// Order-book notional near mid.
    pub depth_notional: Option<f64>,
    /// Age of `spot` in seconds.
    pub age_secs: f64,
    /// Completed days.
    pub series: Arc<Series>,
    /// Where the days came from, for errors: `markets[0].history`, `market state of BTC`.
    pub field: String,
}

fn is_weekend(date: &str) -> bool {
    use chrono::Datelike;
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok_and(|d| d.weekday().number_from_monday() >= 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(date: &str, close: f64) -> Day {
        Day { date: date.into(), close, realized_variance: Some(1e-4), implied_vol_percent: None }
    }

    #[test]
    fn checks_days_and_names_the_field() {
        let ok = [day("2020-03-13", 5000.0), day("2020-03-14", 5100.0), day("2020-03-15", 5050.0)];
        let s = Series::from_days(&ok, "history").unwrap();
        assert_eq!(s.periods_per_year, 365.0, "a weekend in the data: calendar days");
        assert!((s.returns[1].unwrap() - (5100.0f64 / 5000.0).ln()).abs() < 1e-15);
        let business = [day("2020-03-12", 1.0), day("2020-03-13", 1.0), day("2020-03-16", 1.0)];
        assert_eq!(Series::from_days(&business, "h").unwrap().periods_per_year, 252.0);
        for (bad, expected) in [
            (vec![day("2020-03-13", 1.0), day("2020-03-13", 1.0)], "history[1].date"),
            (vec![day("2020-03-13", 1.0), day("2020-13-14", 1.0)], "history[1].date"),
            (vec![day("2020-03-13", 1.0), day("2020-3-14", 1.0)], "history[1].date"),
            (vec![day("2020-03-13", f64::NAN)], "history[0].close"),
            (vec![Day { realized_variance: Some(-1.0), ..day("2020-03-13", 1.0) }], "history[0].realized_variance"),
        ] {
            let e = Series::from_days(&bad, "history").unwrap_err().to_string();
            assert!(e.starts_with(expected), "{e}");
        }
        assert_ne!(Series::from_checked(&ok).fingerprint, Series::from_checked(&ok[..2]).fingerprint);
    }
}
