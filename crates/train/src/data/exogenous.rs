//! Exogenous inputs (implied volatility indices, perpetual funding) turned into one value per
//! day and aligned with a history by date: the value of day `d` uses observations stamped on
//! `d` only, which are all known at the close of `d`, so nothing looks ahead. A day without an
//! observation stays `None`.

use std::collections::BTreeMap;

use chrono::NaiveDate;
pub use foresight_registry::exogenous::{ExogenousSpec, Transform};

use super::Values;

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
            transform.of_day(sum, last, periods_per_year)
        })
        .collect()
}

/// Loads the file `spec` names and returns one regressor per day of `dates` (`None` where it
/// has no observation that day).
pub fn load_exogenous(spec: &ExogenousSpec, dates: &[NaiveDate]) -> crate::Result<Vec<Option<f64>>> {
    let values = super::load_values(&spec.file, None, false)?;
    Ok(daily_input(&values, spec.transform, spec.periods_per_year, dates))
}
