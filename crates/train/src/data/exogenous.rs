//! Exogenous inputs (implied volatility indices, perpetual funding) turned into one value per
//! day and aligned with a history by date: the value of day `d` uses observations stamped on
//! `d` only, which are all known at the close of `d`, so nothing looks ahead. A day without an
//! observation stays `None`.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::NaiveDate;
use foresight_core::features::implied_log_variance;

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
                Transform::ImpliedVol => implied_log_variance(last, periods_per_year),
                Transform::DailySum => Some(sum),
                Transform::Last => Some(last),
            }
        })
        .collect()
}

/// An exogenous input as a recipe or a card names it: `FILE:iv|sum|last` (`last` when no
/// transform is given), with the periods per year that annualise implied volatility.
#[derive(Debug, Clone, PartialEq)]
pub struct ExogenousSource {
    /// The data file (`date,<value>`).
    pub file: std::path::PathBuf,
    /// How observations become a day's regressor.
    pub transform: Transform,
    /// 365 for calendar-daily assets, 252 for business-daily ones.
    pub periods_per_year: f64,
}

impl ExogenousSource {
    /// Parses `FILE[:iv|sum|last]`.
    pub fn parse(spec: &str, periods_per_year: f64) -> Result<Self, String> {
        let (file, transform) = match spec.rsplit_once(':') {
            Some((f, t)) if ["iv", "sum", "last"].contains(&t) => (f, t.parse()?),
            _ => (spec, Transform::Last),
        };
        if file.trim().is_empty() {
            return Err(format!("exogenous input `{spec}`: expected FILE[:iv|sum|last]"));
        }
        Ok(Self { file: file.trim().into(), transform, periods_per_year })
    }

    /// `iv`, `sum` or `last`.
    pub fn transform_name(&self) -> &'static str {
        match self.transform {
            Transform::ImpliedVol => "iv",
            Transform::DailySum => "sum",
            Transform::Last => "last",
        }
    }

    /// Loads the file and returns one regressor per day of `dates` (`None` where missing).
    pub fn load(&self, dates: &[NaiveDate]) -> crate::Result<Vec<Option<f64>>> {
        let values = super::load_values(&self.file, None, false)?;
        Ok(daily_input(&values, self.transform, self.periods_per_year, dates))
    }
}
