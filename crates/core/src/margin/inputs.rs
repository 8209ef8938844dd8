//! When not to trust a forward-looking margin: inputs too old, a price that jumped implausibly
//! against the last one (oracle-style guard rails, as Drift's), or model inputs outside the range
//! seen in training. Any of these sends the account to the reactive arm, flagged.

use serde::Serialize;

/// Why a forward-looking margin was not used.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Fallback {
    /// No model is loaded for the asset.
    NoModel,
    /// The model could not forecast from the inputs given (e.g. too short a history).
    ForecastFailed {
        /// What went wrong.
        detail: String,
    },
    /// The latest market data is older than allowed.
    Stale {
        /// Age of the data, seconds.
        age_secs: f64,
        /// Allowed age, seconds.
        max_age_secs: f64,
    },
    /// The new price moved more than `max_sigmas` daily standard deviations from the last one.
    PriceJump {
        /// `|ln(new/last)| / σ_daily`.
        sigmas: f64,
        /// The limit.
        max_sigmas: f64,
    },
    /// A model input lies outside the range seen in training (beyond the tolerance).
    OutOfRange {
        /// Input column.
        column: String,
        /// The value.
        value: f64,
        /// Training minimum.
        min: f64,
        /// Training maximum.
        max: f64,
    },
}

impl Fallback {
    /// The reason's name, as serialised in the `reason` tag (`stale`, `price_jump`...): a
    /// label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoModel => "no_model",
            Self::ForecastFailed { .. } => "forecast_failed",
            Self::Stale { .. } => "stale",
            Self::PriceJump { .. } => "price_jump",
            Self::OutOfRange { .. } => "out_of_range",
        }
    }
}

/// Limits of [`check_inputs`].
/// Read from a service config with every field optional (the defaults fill in).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InputLimits {
    /// Market data older than this (seconds) is stale.
    pub max_age_secs: f64,
    /// A move of more than this many daily standard deviations between two prices is suspect.
    pub max_jump_sigmas: f64,
    /// Inputs may exceed the training range by this share of its width before falling back.
    pub range_tolerance: f64,
}

impl Default for InputLimits {
    /// 5 minutes; 10 daily σ (the largest BTC day of the bundled history, 2020-03-12, is about
    /// 8 σ of the EWMA before it); 25% beyond the training range.
    fn default() -> Self {
        Self { max_age_secs: 300.0, max_jump_sigmas: 10.0, range_tolerance: 0.25 }
    }
}

/// The first reason to fall back, if any: data age, price jump against `last_price` (when
/// known) at daily volatility `daily_sigma`, then each named input against its training range
/// `(min, max)`.
pub fn check_inputs(
    age_secs: f64,
    last_price: Option<f64>,
    price: f64,
    daily_sigma: f64,
    inputs: &[(&str, f64, (f64, f64))],
    limits: &InputLimits,
) -> Option<Fallback> {
    if age_secs.is_nan() || age_secs > limits.max_age_secs {
        return Some(Fallback::Stale { age_secs, max_age_secs: limits.max_age_secs });
    }
    if let Some(last) = last_price.filter(|l| *l > 0.0)
        && price > 0.0
        && daily_sigma > 0.0
    {
        let sigmas = (price / last).ln().abs() / daily_sigma;
        if sigmas.is_nan() || sigmas > limits.max_jump_sigmas {
            return Some(Fallback::PriceJump { sigmas, max_sigmas: limits.max_jump_sigmas });
        }
    }
    for (column, value, (min, max)) in inputs {
        let slack = limits.range_tolerance * (max - min).abs();
        if value.is_nan() || *value < min - slack || *value > max + slack {
            return Some(Fallback::OutOfRange { column: column.to_string(), value: *value, min: *min, max: *max });
        }
    }
    None
}

/// Haircut of collateral whose value moves with daily volatility `daily_sigma`: the one-sided
/// `z` quantile move over `mpor_days` (`z · σ · √mpor`), at most `cap`. Collateral counts at
/// `value · (1 − haircut)`: a volatile collateral asset is worth less as margin exactly when its
/// volatility forecast rises.
pub fn collateral_haircut(daily_sigma: f64, mpor_days: f64, z: f64, cap: f64) -> f64 {
    if !(daily_sigma.is_finite() && daily_sigma >= 0.0 && mpor_days > 0.0 && z.is_finite()) {
        return cap.clamp(0.0, 1.0);
    }
    (z * daily_sigma * mpor_days.sqrt()).clamp(0.0, cap.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_are_the_serialised_tags() {
        for f in [
            Fallback::NoModel,
            Fallback::ForecastFailed { detail: "x".into() },
            Fallback::Stale { age_secs: 1.0, max_age_secs: 0.5 },
            Fallback::PriceJump { sigmas: 11.0, max_sigmas: 10.0 },
            Fallback::OutOfRange { column: "c".into(), value: 1.0, min: 0.0, max: 0.5 },
        ] {
            assert_eq!(serde_json::to_value(&f).unwrap()["reason"], f.reason());
        }
    }

    #[test]
    fn each_reason_to_fall_back() {
        let limits = InputLimits::default();
        let ok = check_inputs(10.0, Some(100.0), 101.0, 0.03, &[("ln_rv", -7.0, (-10.0, -4.0))], &limits);
        assert_eq!(ok, None);
        assert!(matches!(check_inputs(301.0, None, 100.0, 0.03, &[], &limits), Some(Fallback::Stale { .. })));
        assert!(matches!(check_inputs(f64::NAN, None, 100.0, 0.03, &[], &limits), Some(Fallback::Stale { .. })), "unknown age is stale");
        // A 40% move at 3% daily vol is ~17 σ.
        match check_inputs(1.0, Some(100.0), 60.0, 0.03, &[], &limits) {
            Some(Fallback::PriceJump { sigmas, .. }) => assert!((sigmas - (0.6f64).ln().abs() / 0.03).abs() < 1e-9),
            other => panic!("{other:?}"),
        }
        // 25% slack beyond [-10, -4]: -2.6 passes, -2.4 does not; NaN never passes.
        assert_eq!(check_inputs(1.0, None, 1.0, 0.0, &[("x", -2.6, (-10.0, -4.0))], &limits), None);
        assert!(matches!(check_inputs(1.0, None, 1.0, 0.0, &[("x", -2.4, (-10.0, -4.0))], &limits), Some(Fallback::OutOfRange { .. })));
        assert!(matches!(check_inputs(1.0, None, 1.0, 0.0, &[("x", f64::NAN, (-10.0, -4.0))], &limits), Some(Fallback::OutOfRange { .. })));
    }

    #[test]
    fn haircuts_scale_with_forecast_volatility_up_to_the_cap() {
        let z = 2.326; // 99%
        assert!((collateral_haircut(0.03, 1.0, z, 0.5) - 0.06978).abs() < 1e-9);
        assert!(collateral_haircut(0.06, 1.0, z, 0.5) > collateral_haircut(0.03, 1.0, z, 0.5));
        assert_eq!(collateral_haircut(0.5, 2.0, z, 0.5), 0.5);
        assert_eq!(collateral_haircut(f64::NAN, 1.0, z, 0.4), 0.4, "unknown volatility: the cap");
    }
}
