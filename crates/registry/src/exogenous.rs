//! The exogenous input of a HAR-X model, as its card records it (`params.exogenous`): which
//! file, how a day's observations become the day's regressor, and the periods per year that
//! annualise implied volatility. Training writes it and reads it back for evaluation, the
//! service reads it to feed the model: one typed reading, so a model is fed the way it was
//! trained.

use std::path::PathBuf;
use std::str::FromStr;

use foresight_core::features::implied_log_variance;
use serde::{Deserialize, Serialize};

use crate::card::ModelCard;
use crate::error::{RegistryError, Result};

/// How an input's observations on one day become that day's regressor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transform {
    /// An annualised implied volatility in percent (DVOL, VIX): the log of the implied daily
    /// variance `ln((v/100)² / periods_per_year)` from the day's last value, on the scale of
    /// log realized variance.
    #[serde(rename = "iv")]
    ImpliedVol,
    /// The sum of the day's values (e.g. three 8-hour funding rates make the daily rate).
    #[serde(rename = "sum")]
    DailySum,
    /// The day's last value.
    #[serde(rename = "last")]
    Last,
}

impl Transform {
    /// Its name in recipes and cards: `iv`, `sum` or `last`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ImpliedVol => "iv",
            Self::DailySum => "sum",
            Self::Last => "last",
        }
    }

    /// The regressor of a day whose observations sum to `sum` and end with `last`.
    pub fn of_day(self, sum: f64, last: f64, periods_per_year: f64) -> Option<f64> {
        match self {
            Self::ImpliedVol => implied_log_variance(last, periods_per_year),
            Self::DailySum => Some(sum),
            Self::Last => Some(last),
        }
    }
}

impl FromStr for Transform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "iv" => Ok(Self::ImpliedVol),
            "sum" => Ok(Self::DailySum),
            "last" => Ok(Self::Last),
            other => Err(format!("unknown transform `{other}` (iv, sum, last)")),
        }
    }
}

/// An exogenous input: `FILE[:iv|sum|last]` in a recipe, `params.exogenous` in a card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExogenousSpec {
    /// The data file (`date,<value>`).
    pub file: PathBuf,
    /// How observations become a day's regressor.
    pub transform: Transform,
    /// 365 for calendar-daily assets, 252 for business-daily ones.
    pub periods_per_year: f64,
}

impl ExogenousSpec {
    /// Parses `FILE[:iv|sum|last]` (`last` when no transform is given).
    pub fn parse(spec: &str, periods_per_year: f64) -> Result<Self, String> {
        let (file, transform) = match spec.rsplit_once(':') {
            Some((f, t)) if ["iv", "sum", "last"].contains(&t) => (f, t.parse()?),
            _ => (spec, Transform::Last),
        };
        if file.trim().is_empty() {
            return Err(format!("exogenous input `{spec}`: expected FILE[:iv|sum|last]"));
        }
        let parsed = Self { file: file.trim().into(), transform, periods_per_year };
        parsed.check().map_err(|message| format!("exogenous input `{spec}`: {message}"))?;
        Ok(parsed)
    }

    /// The input a card records, if it has one; an error names the card and the field.
    pub fn from_card(card: &ModelCard) -> Result<Option<Self>> {
        let Some(value) = card.params.get("exogenous") else { return Ok(None) };
        let bad = |message: String| RegistryError::Format { file: format!("{}/card.json", card.reference()).into(), message: format!("params.exogenous: {message}") };
        let spec: Self = serde_json::from_value(value.clone()).map_err(|e| bad(e.to_string()))?;
        spec.check().map_err(bad)?;
        Ok(Some(spec))
    }

    /// The card's form (`params.exogenous`; a path that is not UTF-8 is written lossily).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "file": self.file.to_string_lossy(), "transform": self.transform.name(), "periods_per_year": self.periods_per_year })
    }

    fn check(&self) -> Result<(), String> {
        if !(self.periods_per_year.is_finite() && self.periods_per_year > 0.0) {
            return Err(format!("periods_per_year must be finite and > 0, got {}", self.periods_per_year));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_recipe_spec_and_round_trips_a_card_spec() {
        let spec = ExogenousSpec::parse("data/btc_dvol_1d.csv:iv", 365.0).unwrap();
        assert_eq!(spec, ExogenousSpec { file: "data/btc_dvol_1d.csv".into(), transform: Transform::ImpliedVol, periods_per_year: 365.0 });
        assert_eq!(ExogenousSpec::parse("C:/funding.csv", 365.0).unwrap().transform, Transform::Last);
        assert_eq!(spec.to_json(), serde_json::json!({"file": "data/btc_dvol_1d.csv", "transform": "iv", "periods_per_year": 365.0}));
        assert_eq!(serde_json::from_value::<ExogenousSpec>(spec.to_json()).unwrap(), spec);
        assert!(ExogenousSpec::parse(":iv", 365.0).is_err());
        assert!(ExogenousSpec::parse("x.csv", 0.0).unwrap_err().contains("periods_per_year"));
        // DVOL 80% a year over 365 days: ln(0.8² / 365).
        let x = Transform::ImpliedVol.of_day(160.0, 80.0, 365.0).unwrap();
        assert!((x - (0.64f64 / 365.0).ln()).abs() < 1e-15);
        assert_eq!(Transform::DailySum.of_day(0.3, 0.1, 365.0), Some(0.3));
    }
}
