//! The arm grammar: parsing, canonical printing and the margin series of an arm.

use std::fmt;
use std::str::FromStr;

use super::apc::{Apc, Floor};
use super::forecast::{ForwardPolicy, Stress, blend_implied, implied_daily_variance, raise_by_stress};
use super::reactive::{BaseCalibrator, CalibrationParams, ModelName, SideRates};
use crate::error::{CoreError, Result};
use crate::features::Ewma;

/// A margin calibration arm: a base calibrator plus APC options. See the
/// [module docs](crate::calibrate) for the grammar.
///
/// ```
/// use foresight_core::calibrate::Arm;
/// let arm: Arm = "ewma+cap:0.25+floor:stress10y".parse().unwrap();
/// assert_eq!(arm.to_string(), "ewma:0.94+floor:stress10y+cap:0.25");
/// assert!("ewma:1.2".parse::<Arm>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    /// How the base rate is set.
    pub base: BaseCalibrator,
    /// Anti-procyclicality options.
    pub apc: Apc,
    /// Model arms only: which forecasts scale the margin (`+lookahead:N`, `+path:N`; the margin
    /// horizon's by default).
    pub policy: ForwardPolicy,
    /// Model arms only (`+iv:<weight>`): blend every forecast with the variance implied by the
    /// asset's implied volatility on days that have one; without one, the forecast alone.
    pub implied: Option<f64>,
    /// Model arms only (`+regime:<days>`): raise every forecast toward the stressed regime's
    /// variance by the probability that it comes within this many days; without a regime
    /// view, the forecast alone.
    pub regime: Option<usize>,
}

/// What a model arm may use beyond its forecasts, each aligned with the returns. An input that
/// is absent (or a day without a value) leaves the forecasts as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardInputs<'a> {
    /// Implied volatility, annualised percent (for `+iv`).
    pub implied_vol: Option<&'a [Option<f64>]>,
    /// The regime model's view (for `+regime`).
    pub stress: Option<&'a [Option<Stress>]>,
}

const GRAMMAR: &str = "expected static:<rate> | ewma[:<lambda>] | hs:<window> | model:<forecaster> | model:<name>[@vN], then optional \
                       +lookahead:<days> | +path:<days> | +iv:<weight> | +regime:<days> (model arms) | +floor:<rate> | +floor:stress<N>y | +buffer:<fraction> | +release:<half-life days> | +cap:<fraction>";

impl Arm {
    /// An arm with no APC option.
    pub fn new(base: BaseCalibrator) -> Result<Self> {
        base.validate()?;
        Ok(Self { base, apc: Apc::default(), policy: ForwardPolicy::Horizon, implied: None, regime: None })
    }

    /// A file-name-safe form of the canonical name (`:` becomes `-`).
    pub fn slug(&self) -> String {
        self.to_string().replace(':', "-")
    }

    /// Element `t` is the margin rate posted at the close of bar `t`, computed from
    /// `prices[..=t]` only; `None` until the arm has enough history.
    pub fn margin_rates(&self, prices: &[f64], params: &CalibrationParams) -> Result<Vec<Option<SideRates>>> {
        let base = self.base.rates(prices, params)?;
        self.with_apc(&base, prices, params)
    }

    /// Applies this arm's APC options to base rates computed elsewhere (a model arm's
    /// forecast rates), aligned with `prices`.
    pub fn with_apc(&self, base: &[Option<SideRates>], prices: &[f64], params: &CalibrationParams) -> Result<Vec<Option<SideRates>>> {
        self.apc.validate(&self.base)?;
        let floor = self.apc.floor_series(&self.base, prices, params)?;
        Ok(self.apc.apply(base, &floor))
    }

    /// A model arm's base rates from its forecasts: the implied-volatility blend (`+iv`) where
    /// the inputs have an implied volatility (an estimate of variance: it standardises the
    /// residuals and scales the quantile), then the regime raise (`+regime`) where they have a
    /// regime view (an add-on: it scales only), then the policy ([`ForwardPolicy::rates`]).
    /// Without those inputs the forecasts are used as they are.
    pub fn forward_rates<'a>(
        &self,
        returns: &[Option<f64>],
        forecast: impl Fn(usize) -> Option<&'a [Option<f64>]>,
        inputs: ForwardInputs<'_>,
        params: &CalibrationParams,
    ) -> Result<Vec<Option<SideRates>>> {
        let implied = self.implied.zip(inputs.implied_vol);
        let stress = inputs.stress.filter(|_| self.regime.is_some());
        if implied.is_none() && stress.is_none() {
            return self.policy.rates(returns, forecast, params);
        }
        let variance: Option<Vec<Option<f64>>> =
            implied.map(|(_, iv)| iv.iter().map(|v| v.and_then(|v| implied_daily_variance(v, params.periods_per_year()))).collect());
        let horizons = self.policy.horizons(params.horizon());
        let estimated: Vec<(usize, Vec<Option<f64>>)> = horizons
            .iter()
            .filter_map(|&h| {
                let f = forecast(h)?;
                Some((h, match (implied, &variance) {
                    (Some((weight, _)), Some(variance)) => blend_implied(f, variance, weight),
                    _ => f.to_vec(),
                }))
            })
            .collect();
        let raised: Vec<(usize, Vec<Option<f64>>)> = match stress {
            Some(stress) => estimated.iter().map(|(h, f)| (*h, raise_by_stress(f, stress))).collect(),
            None => estimated.clone(),
        };
        self.policy.rates_scaled_by(returns, &|h| by_horizon(&estimated, h), &|h| by_horizon(&raised, h), params)
    }
}

/// The series of horizon `h` in a list of `(horizon, series)`.
fn by_horizon(series: &[(usize, Vec<Option<f64>>)], h: usize) -> Option<&[Option<f64>]> {
    series.iter().find(|(k, _)| *k == h).map(|(_, v)| v.as_slice())
}

/// `name` or `name@vN` with a lowercase/digit/`-` name (the registry's model references).
fn is_model_reference(text: &str) -> bool {
    let (name, version) = text.split_once('@').map_or((text, None), |(n, v)| (n, Some(v)));
    let name_ok = !name.is_empty() && !name.starts_with('-') && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let version_ok = version.is_none_or(|v| v.strip_prefix('v').unwrap_or(v).parse::<u32>().is_ok_and(|n| n > 0));
    name_ok && version_ok
}

impl fmt::Display for Arm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.base {
            BaseCalibrator::Static { rate } => write!(f, "static:{rate}")?,
            BaseCalibrator::Ewma { lambda } => write!(f, "ewma:{lambda}")?,
            BaseCalibrator::HistoricalSimulation { window } => write!(f, "hs:{window}")?,
            BaseCalibrator::Model { forecaster } => write!(f, "model:{}", forecaster.as_str())?,
            BaseCalibrator::Registered { model } => write!(f, "model:{model}")?,
        }
        match self.policy {
            ForwardPolicy::Horizon => {}
            ForwardPolicy::Lookahead(days) => write!(f, "+lookahead:{days}")?,
            ForwardPolicy::Path(days) => write!(f, "+path:{days}")?,
        }
        if let Some(w) = self.implied {
            write!(f, "+iv:{w}")?;
        }
        if let Some(days) = self.regime {
            write!(f, "+regime:{days}")?;
        }
        match self.apc.floor {
            Some(Floor::Rate(r)) => write!(f, "+floor:{r}")?,
            Some(Floor::StressLookback { years }) => write!(f, "+floor:stress{years}y")?,
            None => {}
        }
        if let Some(b) = self.apc.buffer {
            write!(f, "+buffer:{b}")?;
        }
        if let Some(days) = self.apc.release {
            write!(f, "+release:{days}")?;
        }
        if let Some(c) = self.apc.cap {
            write!(f, "+cap:{c}")?;
        }
        Ok(())
    }
}

impl FromStr for Arm {
    type Err = CoreError;

    fn from_str(spec: &str) -> Result<Self> {
        let invalid = |reason: String| CoreError::InvalidArm { spec: spec.to_string(), reason };
        let number = |what: &str, text: &str| -> Result<f64> {
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| invalid(format!("{what} `{text}` is not a number")))
        };
        let mut parts = spec.trim().split('+');
        let head = parts.next().unwrap_or_default().trim();
        let (name, value) = match head.split_once(':') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (head, None),
        };
        let base = match (name, value) {
            ("static", Some(v)) => BaseCalibrator::Static { rate: number("static rate", v)? },
            ("ewma", None) => BaseCalibrator::Ewma { lambda: Ewma::RISKMETRICS_LAMBDA },
            ("ewma", Some(v)) => BaseCalibrator::Ewma { lambda: number("ewma lambda", v)? },
            ("hs", Some(v)) => BaseCalibrator::HistoricalSimulation {
                window: v.parse().map_err(|_| invalid(format!("hs window `{v}` is not a whole number of days")))?,
            },
            // A forecaster family re-estimated walk-forward, or a registered model by name.
            ("model", Some(v)) => match ModelName::parse(v) {
                Some(forecaster) => BaseCalibrator::Model { forecaster },
                None if is_model_reference(v) => BaseCalibrator::Registered { model: v.to_string() },
                None => {
                    let known: Vec<&str> = ModelName::ALL.iter().map(|m| m.as_str()).collect();
                    return Err(invalid(format!(
                        "`{v}` is neither a forecaster ({}) nor a registered model name (lowercase, digits, `-`, optional @vN)",
                        known.join(", ")
                    )));
                }
            },
            ("static" | "hs" | "model", None) => return Err(invalid(format!("`{name}` needs a value; {GRAMMAR}"))),
            _ => return Err(invalid(format!("unknown calibrator `{head}`; {GRAMMAR}"))),
        };
        base.validate().map_err(|e| invalid(e.to_string()))?;
        let mut apc = Apc::default();
        let mut policy = ForwardPolicy::Horizon;
        let mut implied = None;
        let mut regime = None;
        for option in parts {
            let option = option.trim();
            let (key, value) = option
                .split_once(':')
                .ok_or_else(|| invalid(format!("option `{option}` has no value; {GRAMMAR}")))?;
            let duplicate = || invalid(format!("option `{key}` is given twice"));
            match key.trim() {
                "floor" => {
                    if apc.floor.is_some() {
                        return Err(duplicate());
                    }
                    let value = value.trim();
                    apc.floor = Some(match value.strip_prefix("stress").and_then(|v| v.strip_suffix('y')) {
                        Some(years) => Floor::StressLookback {
                            years: years
                                .parse()
                                .map_err(|_| invalid(format!("floor `{value}`: expected stress<N>y, e.g. stress10y")))?,
                        },
                        None => Floor::Rate(number("floor rate", value)?),
                    });
                }
                "buffer" if apc.buffer.is_some() => return Err(duplicate()),
                "buffer" => apc.buffer = Some(number("buffer", value)?),
                "cap" if apc.cap.is_some() => return Err(duplicate()),
                "cap" => apc.cap = Some(number("cap", value)?),
                "release" if apc.release.is_some() => return Err(duplicate()),
                "release" => apc.release = Some(number("release half-life", value)?),
                "iv" if implied.is_some() => return Err(duplicate()),
                "iv" => {
                    if !matches!(base, BaseCalibrator::Model { .. } | BaseCalibrator::Registered { .. }) {
                        return Err(invalid("iv applies to model arms only".into()));
                    }
                    let w = number("iv weight", value)?;
                    if !(w > 0.0 && w <= 1.0) {
                        return Err(invalid(format!("iv weight `{value}`: the implied variance's share, in (0, 1]")));
                    }
                    implied = Some(w);
                }
                "regime" if regime.is_some() => return Err(duplicate()),
                "regime" => {
                    if !matches!(base, BaseCalibrator::Model { .. }) {
                        return Err(invalid("regime applies to forecaster families (model:<family>) only".into()));
                    }
                    let days: usize = value.trim().parse().ok().filter(|d| *d >= 1).ok_or_else(|| invalid(format!("regime `{value}`: a whole number of days ≥ 1")))?;
                    regime = Some(days);
                }
                "lookahead" | "path" if policy != ForwardPolicy::Horizon => {
                    return Err(invalid("a model arm takes one of lookahead and path, once".into()));
                }
                key @ ("lookahead" | "path") => {
                    if !matches!(base, BaseCalibrator::Model { .. } | BaseCalibrator::Registered { .. }) {
                        return Err(invalid(format!("{key} applies to model arms only")));
                    }
                    let days: usize = value.trim().parse().ok().filter(|d| *d >= 1).ok_or_else(|| invalid(format!("{key} `{value}`: a whole number of days ≥ 1")))?;
                    policy = if key == "path" { ForwardPolicy::Path(days) } else { ForwardPolicy::Lookahead(days) };
                }
                other => return Err(invalid(format!("unknown option `{other}`; {GRAMMAR}"))),
            }
        }
        apc.validate(&base).map_err(|e| invalid(e.to_string()))?;
        Ok(Self { base, apc, policy, implied, regime })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonically() {
        for (given, canonical) in [
            ("static:0.10", "static:0.1"),
            ("ewma", "ewma:0.94"),
            ("ewma:0.97", "ewma:0.97"),
            ("hs:250", "hs:250"),
            ("ewma:0.94+floor:stress10y+cap:0.25", "ewma:0.94+floor:stress10y+cap:0.25"),
            ("hs:500 + cap:0.5 + buffer:0.25 + floor:0.05", "hs:500+floor:0.05+buffer:0.25+cap:0.5"),
            ("model:log-har+cap:0.25", "model:log-har+cap:0.25"),
        ] {
            let arm: Arm = given.parse().unwrap();
            assert_eq!(arm.to_string(), canonical);
            assert_eq!(canonical.parse::<Arm>().unwrap(), arm, "round trip of {canonical}");
        }
        assert_eq!("ewma:0.94+floor:stress10y".parse::<Arm>().unwrap().slug(), "ewma-0.94+floor-stress10y");
    }

    #[test]
    fn lookahead_is_a_model_arm_option() {
        let arm: Arm = "model:log-har+cap:0.15+lookahead:22".parse().unwrap();
        assert_eq!(arm.policy, ForwardPolicy::Lookahead(22));
        assert_eq!(arm.to_string(), "model:log-har+lookahead:22+cap:0.15");
        assert!("ewma+lookahead:22".parse::<Arm>().unwrap_err().to_string().contains("model arms only"));
        assert!("hs:250+path:22".parse::<Arm>().unwrap_err().to_string().contains("model arms only"));
        assert!("model:har+lookahead:0".parse::<Arm>().is_err());
        assert!("model:har+lookahead:5+lookahead:5".parse::<Arm>().unwrap_err().to_string().contains("once"));
        assert!("model:har+path:5+lookahead:5".parse::<Arm>().unwrap_err().to_string().contains("one of lookahead and path"));
        let iv: Arm = "model:log-har+iv:0.5+lookahead:22".parse().unwrap();
        assert_eq!((iv.implied, iv.to_string().as_str()), (Some(0.5), "model:log-har+lookahead:22+iv:0.5"));
        assert!("ewma+iv:0.5".parse::<Arm>().unwrap_err().to_string().contains("model arms only"));
        assert!("model:har+iv:1.5".parse::<Arm>().unwrap_err().to_string().contains("(0, 1]"));
        let regime: Arm = "model:har+regime:5+lookahead:22".parse().unwrap();
        assert_eq!((regime.regime, regime.to_string().as_str()), (Some(5), "model:har+lookahead:22+regime:5"));
        assert!("model:btc-log-har+regime:5".parse::<Arm>().unwrap_err().to_string().contains("forecaster families"));
        let path: Arm = "model:gjr-t+release:10+path:66+buffer:0.25".parse().unwrap();
        assert_eq!(path.policy, ForwardPolicy::Path(66));
        assert_eq!(path.to_string(), "model:gjr-t+path:66+buffer:0.25+release:10");
    }

    #[test]
    fn the_regime_raise_scales_margin_up_and_never_shrinks_the_residuals() {
        use crate::calibrate::Stress;
        let n = 400;
        let returns: Vec<Option<f64>> = (0..n).map(|i| (i > 0).then(|| 0.01 * (((i * 37) % 19) as f64 - 9.0) / 9.0)).collect();
        let forecast: Vec<Option<f64>> = (0..n).map(|i| Some(1e-4 * (1.0 + (i % 7) as f64))).collect();
        // A wary regime model half the time, a stressed variance between the forecasts' levels.
        let stress: Vec<Option<Stress>> = (0..n).map(|i| (i % 2 == 0).then_some(Stress { probability: 0.6, variance: 4e-4 })).collect();
        let p = CalibrationParams::new(0.99, 1, 365.0).unwrap();
        let plain: Arm = "model:log-har".parse().unwrap();
        let raised: Arm = "model:log-har+regime:5".parse().unwrap();
        let by_h = |h: usize| (h == 1).then_some(&forecast[..]);
        let inputs = ForwardInputs { implied_vol: None, stress: Some(&stress) };
        let a = plain.forward_rates(&returns, by_h, inputs, &p).unwrap();
        let b = raised.forward_rates(&returns, by_h, inputs, &p).unwrap();
        let (mut higher, mut equal) = (0, 0);
        for t in 0..n {
            if let (Some(a), Some(b)) = (a[t], b[t]) {
                assert!(b.long >= a.long - 1e-15 && b.short >= a.short - 1e-15, "day {t}: {b:?} below {a:?}");
                // Raised exactly where the regime view is wary and the forecast below 4e-4.
                let lifted = stress[t].is_some() && forecast[t].unwrap() < 4e-4;
                if lifted { higher += 1 } else { equal += 1 }
                assert_eq!(b.long > a.long + 1e-15, lifted, "day {t}");
            }
        }
        assert!(higher > 50 && equal > 50);
    }

    #[test]
    fn a_model_that_is_not_a_forecaster_family_is_a_registry_reference() {
        let arm: Arm = "model:btc-log-har@v2+cap:0.25".parse().unwrap();
        assert_eq!(arm.base, BaseCalibrator::Registered { model: "btc-log-har@v2".into() });
        assert_eq!(arm.to_string(), "model:btc-log-har@v2+cap:0.25");
        let family: Arm = "model:log-har".parse().unwrap();
        assert_eq!(family.base, BaseCalibrator::Model { forecaster: ModelName::LogHar });
    }

    #[test]
    fn rejects_each_malformed_arm_with_a_reason() {
        for (bad, needle) in [
            ("", "unknown calibrator"),
            ("garch", "unknown calibrator"),
            ("static", "needs a value"),
            ("static:abc", "not a number"),
            ("static:0", "(0, 1]"),
            ("ewma:1.5", "between 0 and 1"),
            ("hs:2.5", "whole number"),
            ("hs:10", "at least 20"),
            ("ewma+cap", "has no value"),
            ("ewma+cap:0.1+cap:0.2", "given twice"),
            ("ewma+floor:stressy", "stress<N>y"),
            ("ewma+floor:stress0y", "at least one year"),
            ("static:0.1+floor:stress10y", "reactive volatility arm"),
            ("ewma+buffer:2", "(0, 1]"),
            ("ewma+speed:1", "unknown option"),
            ("ewma:NaN", "not a number"),
            ("model:LSTM", "neither a forecaster"),
            ("model:btc-log-har@v0", "neither a forecaster"),
            ("model:garch+floor:stress10y", "reactive volatility arm"),
        ] {
            let err = bad.parse::<Arm>().unwrap_err().to_string();
            assert!(err.contains(needle), "`{bad}`: {err}");
            assert!(err.contains(&format!("`{bad}`")), "error names the arm: {err}");
        }
    }
}
