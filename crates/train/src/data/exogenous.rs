//! Exogenous inputs (implied volatility indices, perpetual funding) turned into one value per
//! day and aligned with a history by date: the value of day `d` uses observations stamped on
//! `d` only, which are all known at the close of `d`, so nothing looks ahead. A day without an
//! observation stays `None`.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::NaiveDate;

use super::Values;

/// How an input's observations become the regressor of a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// An annualised implied volatility in percent (DVOL, VIX): the log of the implied daily
    /// variance `ln((v/100)² / periods_per_year)` from the day's last value, on the scale of
    /// log realized variance.
    ImpliedVol,
    /// The sum of the day's values (e.g. three 8-hour funding rates make the daily rate).
    DailySum,
    /// The day's last value.
    Last,
}

impl FromStr for Transform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "iv" => Ok(Transform::ImpliedVol),
            "sum" => Ok(Transform::DailySum),
            "last" => Ok(Transform::Last),
            other => Err(format!("unknown transform `{other}` (iv, sum, last)")),
        }
    }
}

/// The input as one value per day of `dates` (`None` where it has no observation that day).
pub fn daily_input(values: &Values, transform: Transform, periods_per_year: f64, dates: &[NaiveDate]) -> Vec<Option<f64>> {
    let mut by_day: BTreeMap<NaiveDate, (f64, f64)> = BTreeMap::new(); // (sum, last)
    for (t, v) in values.timestamps.iter().zip(&values.values) {
        let e = by_day.entry(t.date()).or_insert((0.0, *v));
        e.0 += v;
        e.1 = *v;
    }
    dates
        .iter()
        .map(|d| {
            let (sum, last) = *by_day.get(d)?;
            match transform {
                Transform::ImpliedVol => (last > 0.0).then(|| ((last / 100.0).powi(2) / periods_per_year).ln()),
                Transform::DailySum => Some(sum),
                Transform::Last => Some(last),
            }
        })
        .collect()
}
