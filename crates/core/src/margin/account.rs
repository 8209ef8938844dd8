//! One account's margin, forward-looking and explained: the portfolio IM under the reactive
//! arm's rates (the base) and under the forward-looking arm's rates, the guard rails between
//! them, and the components that explain the multiplier. The service's `Calibrate` is this
//! function plus model inference and I/O.

use std::collections::BTreeMap;

use serde::Serialize;

use super::guard::{GuardRails, Guarded, apply};
use super::inputs::Fallback;
use super::scenario::{PortfolioMargin, Position, ScenarioConfig, UnderlyingMarket, margin_of};
use crate::error::Result;

/// What is known about one underlying for one account's calibration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnderlyingInputs {
    /// Spot, implied vol, liquidity depth (the margin rate inside is ignored: the rates below set it).
    #[serde(skip)]
    pub market: UnderlyingMarket,
    /// The reactive arm's margin rate (e.g. EWMA) for the margin period.
    pub reactive_rate: f64,
    /// The forward-looking arm's rate, or why it is not used (the reactive rate then serves).
    pub forward_rate: std::result::Result<f64, Fallback>,
    /// Forecast daily volatility per horizon, `(h, σ)`, for the explanation.
    pub forecast_sigma: Vec<(usize, f64)>,
    /// P(stressed regime within h days), `(h, p)`, when a regime model serves the asset.
    pub regime_probability: Vec<(usize, f64)>,
    /// The reactive arm's daily volatility, for the explanation.
    pub reactive_sigma: f64,
}

/// The explained result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountMargin {
    /// Posted margin after the guard rails.
    pub posted: Guarded,
    /// Portfolio IM under the reactive rates.
    pub base: PortfolioMargin,
    /// Portfolio IM under the forward-looking rates (reactive where they fell back).
    pub forward: PortfolioMargin,
    /// `forward.initial_margin / base.initial_margin` before the guard rails.
    pub raw_multiplier: f64,
    /// Underlyings that fell back to the reactive rate, and why.
    pub fallbacks: BTreeMap<String, Fallback>,
    /// The inputs per underlying, for the explanation.
    pub inputs: BTreeMap<String, UnderlyingInputs>,
}

/// Calibrates one account: `positions` over `inputs` per underlying, optionally with the
/// cross-underlying correlation, the scenario settings, the guard rails and the margin posted at
/// the previous update. The inputs are kept in the result, for the explanation.
pub fn calibrate_account(
    positions: &[Position],
    inputs: BTreeMap<String, UnderlyingInputs>,
    correlation: Option<(&[String], &[Vec<f64>])>,
    config: &ScenarioConfig,
    rails: &GuardRails,
    previous_im: Option<f64>,
) -> Result<AccountMargin> {
    let with_rate = |rate: &dyn Fn(&UnderlyingInputs) -> f64| -> Vec<(&str, UnderlyingMarket)> {
        inputs.iter().map(|(name, i)| (name.as_str(), UnderlyingMarket { margin_rate: rate(i), ..i.market })).collect()
    };
    let base = margin_of(positions, &with_rate(&|i| i.reactive_rate), correlation, config)?;
    let forward = margin_of(positions, &with_rate(&|i| *i.forward_rate.as_ref().unwrap_or(&i.reactive_rate)), correlation, config)?;
    let fallbacks = inputs.iter().filter_map(|(name, i)| i.forward_rate.clone().err().map(|f| (name.clone(), f))).collect();
    let gross: f64 = forward.underlyings.iter().map(|u| u.gross_notional).sum();
    let posted = apply(forward.initial_margin, base.initial_margin, gross, previous_im, rails)?;
    let raw_multiplier = if base.initial_margin > 0.0 { forward.initial_margin / base.initial_margin } else { 1.0 };
    Ok(AccountMargin { posted, base, forward, raw_multiplier, fallbacks, inputs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::margin::scenario::Instrument;

    fn inputs(reactive: f64, forward: std::result::Result<f64, Fallback>) -> BTreeMap<String, UnderlyingInputs> {
        let market = UnderlyingMarket { spot: 60_000.0, implied_vol: 0.5, margin_rate: 0.0, daily_vol: 0.03, depth_notional: None };
        [("BTC".to_string(), UnderlyingInputs { market, reactive_rate: reactive, forward_rate: forward, forecast_sigma: vec![(1, 0.03)], regime_probability: vec![(5, 0.4)], reactive_sigma: 0.025 })]
            .into_iter()
            .collect()
    }

    #[test]
    fn the_multiplier_is_forward_over_reactive_and_the_rails_apply() {
        let long = [Position { underlying: "BTC".into(), quantity: 1.0, instrument: Instrument::Linear }];
        let rails = GuardRails { max_rise: None, max_fall: None, ..GuardRails::default() };
        let m = calibrate_account(&long, inputs(0.06, Ok(0.09)), None, &ScenarioConfig::default(), &rails, None).unwrap();
        assert!((m.base.initial_margin - 3_600.0).abs() < 1e-6);
        assert!((m.forward.initial_margin - 5_400.0).abs() < 1e-6);
        assert!((m.raw_multiplier - 1.5).abs() < 1e-12 && (m.posted.multiplier - 1.5).abs() < 1e-12);
        assert_eq!(m.posted.maintenance_margin, 0.5 * m.posted.initial_margin);
        // A rise limit against the previous posted margin holds it back, and says so.
        let m = calibrate_account(&long, inputs(0.06, Ok(0.09)), None, &ScenarioConfig::default(), &GuardRails::default(), Some(4_000.0)).unwrap();
        assert_eq!(m.posted.initial_margin, 5_000.0);
        assert!(m.posted.applied.contains(&crate::margin::Guard::MaxRise));
    }

    #[test]
    fn a_fallback_uses_the_reactive_rate_and_is_reported() {
        let long = [Position { underlying: "BTC".into(), quantity: 2.0, instrument: Instrument::Linear }];
        let stale = Fallback::Stale { age_secs: 900.0, max_age_secs: 300.0 };
        let m = calibrate_account(&long, inputs(0.06, Err(stale.clone())), None, &ScenarioConfig::default(), &GuardRails::default(), None).unwrap();
        assert_eq!(m.forward.initial_margin, m.base.initial_margin);
        assert_eq!(m.fallbacks.get("BTC"), Some(&stale));
        assert_eq!(m.posted.multiplier, 1.0);
    }
}
