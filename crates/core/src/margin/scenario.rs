//! Portfolio initial margin by scenarios, in the style of SPAN and Deribit's portfolio margin:
//! every underlying's positions are revalued under price shocks spanning ± the arm's margin rate
//! (the rate the backtest scores, for that underlying and margin period) crossed with implied-vol
//! shocks; the worst loss of the net position is the core IM. A linear unit position therefore
//! needs exactly `rate × notional`. Underlyings are then combined with the trained correlation,
//! never offsetting more than a configured share, and a liquidity add-on prices closing out
//! against the order-book depth.

use std::collections::BTreeMap;

use serde::Serialize;

use super::black76::{Contract, OptionKind};
use crate::error::{CoreError, Result};

/// What a position holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Instrument {
    /// Spot, perpetual or future: its value moves one for one with the underlying.
    Linear,
    /// A European option with its contract terms, revalued in full (Black-76 on the spot).
    Option {
        /// Call or put.
        kind: OptionKind,
        /// Strike.
        strike: f64,
        /// Years to expiry.
        expiry_years: f64,
    },
    /// Only Greeks per unit: the delta-gamma-vega expansion, an approximation the result flags.
    Greeks {
        /// ∂V/∂S.
        delta: f64,
        /// ∂²V/∂S².
        gamma: f64,
        /// ∂V/∂σ per 1.00 of volatility.
        vega: f64,
    },
}

/// A position: a signed quantity (negative = short) of an instrument on an underlying.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    /// Underlying asset, e.g. `BTC`.
    pub underlying: String,
    /// Units held; negative when short.
    pub quantity: f64,
    /// The instrument.
    pub instrument: Instrument,
}

/// What the margin needs to know about one underlying now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnderlyingMarket {
    /// Spot (or forward) price, > 0.
    pub spot: f64,
    /// Annual implied volatility (0.6 = 60%), ≥ 0.
    pub implied_vol: f64,
    /// The arm's margin rate for this underlying and margin period: the price shocks span ± it.
    pub margin_rate: f64,
    /// Forecast daily volatility (for the liquidity add-on), ≥ 0.
    pub daily_vol: f64,
    /// Notional resting in the order book within the configured distance of mid; `None`
    /// when unknown (no liquidity add-on).
    pub depth_notional: Option<f64>,
}

/// Settings of the scenario grid and the add-ons.
/// Read from a service config with every field optional (the defaults fill in).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScenarioConfig {
    /// Price shocks from −rate to +rate, evenly spaced (odd, ≥ 9, so 0 is one of them).
    pub price_steps: usize,
    /// Relative implied-vol shock: scenarios at σ·(1 − s), σ and σ·(1 + s).
    pub vol_shock: f64,
    /// Discount rate for option revaluation (crypto venues use 0 on inverse/USD-settled books).
    pub rate: f64,
    /// Largest share of the undiversified IM that cross-underlying correlation may offset.
    pub max_offset: f64,
    /// Coefficient `Y` of the square-root impact law: closing `N` against depth `D` costs
    /// `Y · σ_daily · |N| · √(|N| / D)`.
    pub liquidity_coefficient: f64,
}

impl Default for ScenarioConfig {
    /// 9 price steps (SPAN uses 7 price points plus extremes; 9 spans ±rate at quarter steps),
    /// ±25% relative vol shocks (Deribit's portfolio margin shocks implied vol by a comparable
    /// amount at short expiries), no discounting, at most 50% cross-underlying offset (a
    /// prudent cap: correlations break down in stress), and a square-root impact coefficient of
    /// 1 (the order of magnitude measured across markets; depth near mid is thinner than daily
    /// volume, which makes the add-on conservative).
    fn default() -> Self {
        Self { price_steps: 9, vol_shock: 0.25, rate: 0.0, max_offset: 0.5, liquidity_coefficient: 1.0 }
    }
}

/// One scenario: relative price shock and relative implied-vol shock.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scenario {
    /// Relative price move, e.g. −0.12.
    pub price_shock: f64,
    /// Relative implied-vol move, e.g. +0.25.
    pub vol_shock: f64,
}

/// The margin of one underlying's net position.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnderlyingMargin {
    /// The underlying.
    pub underlying: String,
    /// Worst scenario loss of the net position (≥ 0).
    pub core_im: f64,
    /// The scenario of that loss.
    pub binding: Scenario,
    /// Cost of closing the net delta against the depth.
    pub liquidity_addon: f64,
    /// Net delta notional (Σ quantity · delta · spot).
    pub net_delta_notional: f64,
    /// Gross notional (Σ |quantity| · spot).
    pub gross_notional: f64,
    /// Whether a position was valued from Greeks only (delta-gamma-vega expansion).
    pub approximate: bool,
}

/// The portfolio's initial margin and how it came about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortfolioMargin {
    /// Per underlying, in name order.
    pub underlyings: Vec<UnderlyingMargin>,
    /// Σ core IM.
    pub undiversified: f64,
    /// After correlation offsets (at least `(1 − max_offset) · undiversified`).
    pub diversified: f64,
    /// Σ liquidity add-ons.
    pub liquidity_addon: f64,
    /// `diversified + liquidity_addon`.
    pub initial_margin: f64,
}

fn invalid(field: &'static str, index: usize, value: f64, reason: &'static str) -> CoreError {
    CoreError::InvalidInput { field, index, value, reason }
}

/// The scenario grid of `config` for a margin rate.
pub fn scenarios(rate: f64, config: &ScenarioConfig) -> Vec<Scenario> {
    let grid = Grid::new(rate, config);
    (0..grid.len()).map(|k| grid.scenario(k)).collect()
}

/// A scenario grid: `steps` price shocks from −rate to +rate (outer), each crossed with the
/// relative vol shocks −s, 0 and +s (inner); scenario `k` is price step `k / 3`, vol shock
/// `k % 3`.
struct Grid {
    rate: f64,
    steps: usize,
    vol_shocks: [f64; 3],
}

impl Grid {
    fn new(rate: f64, config: &ScenarioConfig) -> Self {
        Self { rate, steps: config.price_steps.max(3), vol_shocks: [-config.vol_shock, 0.0, config.vol_shock] }
    }

    fn len(&self) -> usize {
        3 * self.steps
    }

    fn price_shock(&self, i: usize) -> f64 {
        -self.rate + 2.0 * self.rate * i as f64 / (self.steps - 1) as f64
    }

    fn scenario(&self, k: usize) -> Scenario {
        Scenario { price_shock: self.price_shock(k / 3), vol_shock: self.vol_shocks[k % 3] }
    }
}

/// The value change of `positions` (all on one underlying, whose market is `market`) in each
/// scenario of the grid: linear and Greeks positions in closed form, options revalued in full
/// (Black-76). What every option shares is worked out once: each shocked forward and its log,
/// each shocked volatility.
fn value_changes<'a>(positions: impl IntoIterator<Item = &'a Position>, market: &UnderlyingMarket, grid: &Grid, rate: f64) -> Vec<f64> {
    let (spot, sigma) = (market.spot, market.implied_vol);
    let forwards: Vec<f64> = (0..grid.steps).map(|i| spot * (1.0 + grid.price_shock(i))).collect();
    let vols = grid.vol_shocks.map(|v| (sigma * (1.0 + v)).max(0.0));
    let mut ln_forwards: Option<Vec<f64>> = None; // at the first option
    let mut change = vec![0.0; grid.len()];
    for p in positions {
        let quantity = p.quantity;
        match p.instrument {
            Instrument::Linear => {
                for (f, row) in forwards.iter().zip(change.chunks_exact_mut(3)) {
                    row.iter_mut().for_each(|c| *c += quantity * (f - spot));
                }
            }
            Instrument::Greeks { delta, gamma, vega } => {
                for (f, row) in forwards.iter().zip(change.chunks_exact_mut(3)) {
                    let ds = f - spot;
                    for (c, vol) in row.iter_mut().zip(vols) {
                        *c += quantity * (delta * ds + 0.5 * gamma * ds * ds + vega * (vol - sigma));
                    }
                }
            }
            Instrument::Option { kind, strike, expiry_years } => {
                let contract = Contract::new(kind, strike, expiry_years, rate);
                let ln_strike = strike.ln();
                // Today's price with the log-moneyness worked out as the scenarios' is, so the
                // unshocked scenario changes by exactly 0.
                let base = contract.price(spot, spot.ln() - ln_strike, sigma);
                let ln_forwards = ln_forwards.get_or_insert_with(|| forwards.iter().map(|f| f.ln()).collect());
                for ((f, ln_f), row) in forwards.iter().zip(ln_forwards.iter()).zip(change.chunks_exact_mut(3)) {
                    for (c, vol) in row.iter_mut().zip(vols) {
                        *c += quantity * (contract.price(*f, ln_f - ln_strike, vol) - base);
                    }
                }
            }
        }
    }
    change
}

/// The loss of `positions` (all on one underlying, whose market is `market`) in each scenario of
/// the grid `market.margin_rate` and `config` span, price shock by price shock: the risk array
/// the margin is the worst of. Loss is minus the value change, so a gain is negative.
pub fn scenario_losses<'a>(positions: impl IntoIterator<Item = &'a Position>, market: &UnderlyingMarket, config: &ScenarioConfig) -> Vec<(Scenario, f64)> {
    let grid = Grid::new(market.margin_rate, config);
    // `0 − change`, not `−change`: a zero change is a loss of +0, never −0.
    value_changes(positions, market, &grid, config.rate).into_iter().enumerate().map(|(k, c)| (grid.scenario(k), 0.0 - c)).collect()
}

fn check(positions: &[Position], markets: &[(&str, UnderlyingMarket)], config: &ScenarioConfig) -> Result<()> {
    if positions.is_empty() {
        return Err(CoreError::InsufficientHistory { what: "a portfolio (at least one position)".into(), needed: 1, available: 0 });
    }
    if config.price_steps < 9 || config.price_steps.is_multiple_of(2) {
        return Err(invalid("price_steps", 0, config.price_steps as f64, "the grid needs an odd number of price steps, at least 9"));
    }
    for (name, value, ok) in [
        ("vol_shock", config.vol_shock, (0.0..1.0).contains(&config.vol_shock)),
        ("max_offset", config.max_offset, (0.0..=1.0).contains(&config.max_offset)),
        ("liquidity_coefficient", config.liquidity_coefficient, config.liquidity_coefficient >= 0.0),
        ("rate", config.rate, config.rate.is_finite()),
    ] {
        if !ok {
            return Err(invalid(name, 0, value, "outside its valid range"));
        }
    }
    for (i, p) in positions.iter().enumerate() {
        if !p.quantity.is_finite() {
            return Err(invalid("quantity", i, p.quantity, "quantities must be finite"));
        }
        if !markets.iter().any(|(name, _)| *name == p.underlying) {
            return Err(CoreError::InvalidArm { spec: p.underlying.clone(), reason: format!("position {i}: no market data for this underlying") });
        }
        match p.instrument {
            Instrument::Option { strike, expiry_years, .. } => {
                if !(strike.is_finite() && strike > 0.0) {
                    return Err(invalid("strike", i, strike, "strikes must be finite and > 0"));
                }
                if !(expiry_years.is_finite() && expiry_years >= 0.0) {
                    return Err(invalid("expiry_years", i, expiry_years, "expiries must be finite and ≥ 0"));
                }
            }
            Instrument::Greeks { delta, gamma, vega } => {
                for (field, v) in [("delta", delta), ("gamma", gamma), ("vega", vega)] {
                    if !v.is_finite() {
                        return Err(invalid(field, i, v, "Greeks must be finite"));
                    }
                }
            }
            Instrument::Linear => {}
        }
    }
    for (i, (_, m)) in markets.iter().enumerate() {
        for (field, v, ok) in [
            ("spot", m.spot, m.spot.is_finite() && m.spot > 0.0),
            ("implied_vol", m.implied_vol, m.implied_vol.is_finite() && m.implied_vol >= 0.0),
            ("margin_rate", m.margin_rate, m.margin_rate.is_finite() && m.margin_rate > 0.0 && m.margin_rate < 1.0),
            ("daily_vol", m.daily_vol, m.daily_vol.is_finite() && m.daily_vol >= 0.0),
            ("depth_notional", m.depth_notional.unwrap_or(1.0), m.depth_notional.is_none_or(|d| d.is_finite() && d > 0.0)),
        ] {
            if !ok {
                return Err(invalid(field, i, v, "market inputs must be finite; spot and depth > 0, margin rate in (0, 1)"));
            }
        }
    }
    Ok(())
}

/// The initial margin of `positions`, with `markets` per underlying and, optionally, the
/// correlation between underlyings (`(names, matrix)`, e.g. the registry's artifact). Without a
/// correlation for a pair, the pair offsets nothing.
pub fn portfolio_margin(
    positions: &[Position],
    markets: &BTreeMap<String, UnderlyingMarket>,
    correlation: Option<(&[String], &[Vec<f64>])>,
    config: &ScenarioConfig,
) -> Result<PortfolioMargin> {
    let markets: Vec<(&str, UnderlyingMarket)> = markets.iter().map(|(name, m)| (name.as_str(), *m)).collect();
    margin_of(positions, &markets, correlation, config)
}

/// [`portfolio_margin`] with the markets as `(underlying, market)` in name order.
pub(crate) fn margin_of(
    positions: &[Position],
    markets: &[(&str, UnderlyingMarket)],
    correlation: Option<(&[String], &[Vec<f64>])>,
    config: &ScenarioConfig,
) -> Result<PortfolioMargin> {
    check(positions, markets, config)?;
    let mut underlyings = Vec::with_capacity(markets.len());
    for &(name, m) in markets {
        let group = || positions.iter().filter(move |p| p.underlying == name);
        if group().next().is_none() {
            continue;
        }
        let grid = Grid::new(m.margin_rate, config);
        let changes = value_changes(group(), &m, &grid, config.rate);
        // The worst loss is the most negative change (the first of equals).
        let (binding, worst) = changes.iter().enumerate().fold((0, f64::NEG_INFINITY), |best, (k, c)| if 0.0 - c > best.1 { (k, 0.0 - c) } else { best });
        let delta_of = |p: &Position| match p.instrument {
            Instrument::Linear => 1.0,
            Instrument::Greeks { delta, .. } => delta,
            Instrument::Option { kind, strike, expiry_years } => {
                super::black76::greeks(kind, m.spot, strike, expiry_years, config.rate, m.implied_vol).0
            }
        };
        let net_delta_notional: f64 = group().map(|p| p.quantity * delta_of(p) * m.spot).sum();
        let liquidity_addon = m.depth_notional.map_or(0.0, |depth| {
            config.liquidity_coefficient * m.daily_vol * net_delta_notional.abs() * (net_delta_notional.abs() / depth).sqrt()
        });
        underlyings.push(UnderlyingMargin {
            underlying: name.to_string(),
            core_im: worst.max(0.0),
            binding: grid.scenario(binding),
            liquidity_addon,
            net_delta_notional,
            gross_notional: group().map(|p| p.quantity.abs() * m.spot).sum(),
            approximate: group().any(|p| matches!(p.instrument, Instrument::Greeks { .. })),
        });
    }
    let undiversified: f64 = underlyings.iter().map(|u| u.core_im).sum();
    let rho = |a: &str, b: &str| -> f64 {
        if a == b {
            return 1.0;
        }
        correlation
            .and_then(|(names, matrix)| {
                let i = names.iter().position(|n| n == a)?;
                let j = names.iter().position(|n| n == b)?;
                matrix.get(i)?.get(j).copied()
            })
            .filter(|r| r.is_finite())
            .map_or(1.0, |r| r.clamp(-1.0, 1.0))
    };
    let mut variance = 0.0;
    for a in &underlyings {
        for b in &underlyings {
            variance += rho(&a.underlying, &b.underlying) * a.core_im * b.core_im;
        }
    }
    let diversified = variance.max(0.0).sqrt().max((1.0 - config.max_offset) * undiversified).min(undiversified);
    let liquidity_addon: f64 = underlyings.iter().map(|u| u.liquidity_addon).sum();
    Ok(PortfolioMargin { underlyings, undiversified, diversified, liquidity_addon, initial_margin: diversified + liquidity_addon })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn market(rate: f64) -> UnderlyingMarket {
        UnderlyingMarket { spot: 50_000.0, implied_vol: 0.6, margin_rate: rate, daily_vol: 0.03, depth_notional: None }
    }

    fn markets(entries: &[(&str, UnderlyingMarket)]) -> BTreeMap<String, UnderlyingMarket> {
        entries.iter().map(|(n, m)| (n.to_string(), *m)).collect()
    }

    fn linear(underlying: &str, quantity: f64) -> Position {
        Position { underlying: underlying.into(), quantity, instrument: Instrument::Linear }
    }

    #[test]
    fn a_linear_unit_position_needs_exactly_the_arms_rate() {
        for rate in [0.16, 0.0734, 0.25] {
            for q in [1.0, -1.0, 3.5] {
                let m = portfolio_margin(&[linear("BTC", q)], &markets(&[("BTC", market(rate))]), None, &ScenarioConfig::default()).unwrap();
                let notional = q.abs() * 50_000.0;
                assert!((m.initial_margin / notional - rate).abs() < 1e-12, "rate {rate} q {q}: {}", m.initial_margin / notional);
                let binding = m.underlyings[0].binding.price_shock;
                assert_eq!(binding, if q > 0.0 { -rate } else { rate }, "a long loses on the way down");
            }
        }
    }

    #[test]
    fn a_delta_hedged_option_needs_less_than_its_legs() {
        let call = Instrument::Option { kind: OptionKind::Call, strike: 50_000.0, expiry_years: 30.0 / 365.0 };
        let (delta, _, _) = super::super::black76::greeks(OptionKind::Call, 50_000.0, 50_000.0, 30.0 / 365.0, 0.0, 0.6);
        let mk = markets(&[("BTC", market(0.16))]);
        let cfg = ScenarioConfig::default();
        let option = Position { underlying: "BTC".into(), quantity: -10.0, instrument: call };
        let hedge = linear("BTC", 10.0 * delta);
        let alone = portfolio_margin(std::slice::from_ref(&option), &mk, None, &cfg).unwrap().initial_margin;
        let hedge_alone = portfolio_margin(std::slice::from_ref(&hedge), &mk, None, &cfg).unwrap().initial_margin;
        let both = portfolio_margin(&[option, hedge], &mk, None, &cfg).unwrap();
        assert!(both.initial_margin < 0.5 * (alone + hedge_alone), "{} vs {alone} + {hedge_alone}", both.initial_margin);
        assert!(both.underlyings[0].net_delta_notional.abs() < 1e-6 * 50_000.0);
        // A short call at the money loses most when the price jumps and vol rises.
        let worst = portfolio_margin(&[Position { underlying: "BTC".into(), quantity: -1.0, instrument: call }], &mk, None, &cfg).unwrap();
        assert_eq!(worst.underlyings[0].binding, Scenario { price_shock: 0.16, vol_shock: 0.25 });
        assert!(!worst.underlyings[0].approximate);
    }

    #[test]
    fn the_unshocked_scenario_changes_nothing_and_the_grid_runs_price_by_price() {
        let positions: Vec<Position> = [(OptionKind::Call, 43_000.0, 0.02), (OptionKind::Put, 61_000.0, 0.7)]
            .into_iter()
            .map(|(kind, strike, expiry_years)| Position { underlying: "BTC".into(), quantity: -3.0, instrument: Instrument::Option { kind, strike, expiry_years } })
            .chain([linear("BTC", 2.0)])
            .collect();
        let config = ScenarioConfig::default();
        let losses = scenario_losses(&positions, &market(0.08), &config);
        assert_eq!(losses.iter().map(|(s, _)| *s).collect::<Vec<_>>(), scenarios(0.08, &config));
        let (unshocked, loss) = losses[losses.len() / 2];
        assert_eq!((unshocked.price_shock, unshocked.vol_shock), (0.0, 0.0));
        assert_eq!(loss.to_bits(), 0.0f64.to_bits(), "exactly zero, never -0 or a rounding residue: {loss:e}");
    }

    #[test]
    fn greeks_only_positions_are_flagged_and_close_to_full_revaluation_for_small_moves() {
        let (f, k, t) = (50_000.0, 52_000.0, 60.0 / 365.0);
        let (delta, gamma, vega) = super::super::black76::greeks(OptionKind::Call, f, k, t, 0.0, 0.6);
        let mk = markets(&[("BTC", market(0.02))]);
        let cfg = ScenarioConfig { vol_shock: 0.01, ..ScenarioConfig::default() };
        let full = Position { underlying: "BTC".into(), quantity: 2.0, instrument: Instrument::Option { kind: OptionKind::Call, strike: k, expiry_years: t } };
        let approx = Position { underlying: "BTC".into(), quantity: 2.0, instrument: Instrument::Greeks { delta, gamma, vega } };
        let a = portfolio_margin(&[full], &mk, None, &cfg).unwrap();
        let b = portfolio_margin(&[approx], &mk, None, &cfg).unwrap();
        assert!(b.underlyings[0].approximate);
        assert!((a.initial_margin - b.initial_margin).abs() < 0.02 * a.initial_margin, "{} vs {}", a.initial_margin, b.initial_margin);
    }

    #[test]
    fn correlation_offsets_across_underlyings_up_to_the_cap() {
        let mk = markets(&[("BTC", market(0.10)), ("SPX", UnderlyingMarket { spot: 4_000.0, ..market(0.05) })]);
        let positions = [linear("BTC", 1.0), linear("SPX", 25.0)];
        let (btc, spx) = (5_000.0, 5_000.0);
        let names = ["BTC".to_string(), "SPX".to_string()];
        let cfg = ScenarioConfig::default();
        let none = portfolio_margin(&positions, &mk, None, &cfg).unwrap();
        assert!((none.diversified - (btc + spx)).abs() < 1e-6, "no correlation: no offset");
        let zero = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        let m = portfolio_margin(&positions, &mk, Some((&names, &zero)), &cfg).unwrap();
        assert!((m.diversified - f64::hypot(btc, spx)).abs() < 1e-6);
        // Perfectly negative correlation would offset everything: the cap keeps half.
        let negative = vec![vec![1.0, -1.0], vec![-1.0, 1.0]];
        let capped = portfolio_margin(&positions, &mk, Some((&names, &negative)), &cfg).unwrap();
        assert!((capped.diversified - 0.5 * (btc + spx)).abs() < 1e-6, "never more than max_offset: {}", capped.diversified);
    }

    #[test]
    fn liquidity_addon_follows_the_square_root_law() {
        let depth = 1_000_000.0;
        let mk = markets(&[("BTC", UnderlyingMarket { depth_notional: Some(depth), ..market(0.1) })]);
        let m = |q: f64| portfolio_margin(&[linear("BTC", q)], &mk, None, &ScenarioConfig::default()).unwrap().liquidity_addon;
        let n = 40.0 * 50_000.0;
        assert!((m(40.0) - 0.03 * n * (n / depth).sqrt()).abs() < 1e-6);
        // Four times the size costs eight times as much.
        assert!((m(160.0) / m(40.0) - 8.0).abs() < 1e-9);
    }

    #[test]
    fn bad_inputs_name_the_field_and_never_give_nan() {
        let mk = markets(&[("BTC", market(0.1))]);
        let cfg = ScenarioConfig::default();
        let err = |positions: &[Position], mk: &BTreeMap<String, UnderlyingMarket>| portfolio_margin(positions, mk, None, &cfg).unwrap_err().to_string();
        assert!(err(&[], &mk).contains("at least one position"));
        assert!(err(&[linear("BTC", f64::NAN)], &mk).contains("quantity"));
        assert!(err(&[linear("ETH", 1.0)], &mk).contains("no market data"));
        let bad_spot = markets(&[("BTC", UnderlyingMarket { spot: -1.0, ..market(0.1) })]);
        assert!(err(&[linear("BTC", 1.0)], &bad_spot).contains("spot"));
        let bad_vol = markets(&[("BTC", UnderlyingMarket { implied_vol: f64::INFINITY, ..market(0.1) })]);
        assert!(err(&[linear("BTC", 1.0)], &bad_vol).contains("implied_vol"));
        let option = Position { underlying: "BTC".into(), quantity: 1.0, instrument: Instrument::Option { kind: OptionKind::Put, strike: 0.0, expiry_years: 0.1 } };
        assert!(err(&[option], &mk).contains("strike"));
        let coarse = ScenarioConfig { price_steps: 5, ..cfg };
        assert!(portfolio_margin(&[linear("BTC", 1.0)], &mk, None, &coarse).unwrap_err().to_string().contains("price_steps"));
    }
}
