//! The scenario grid is consistent with the backtest: a linear unit position's initial margin per
//! notional is exactly the rate the same arm posts, on real history.

use std::collections::BTreeMap;

use foresight_core::calibrate::{Arm, CalibrationParams};
use foresight_core::margin::{Instrument, Position, ScenarioConfig, UnderlyingMarket, portfolio_margin};
use foresight_train::data::load_daily_closes;

use crate::util::data;

#[test]
fn a_unit_position_needs_the_backtested_rate_of_its_arm() {
    let prices = load_daily_closes(&data("btc_usdt_1d.csv")).unwrap();
    let params = CalibrationParams::new(0.99, 1, prices.frequency.periods_per_year()).unwrap();
    for arm in ["ewma", "hs:250", "static:0.16", "ewma+floor:stress10y+cap:0.25"] {
        let rates = arm.parse::<Arm>().unwrap().margin_rates(&prices.values, &params).unwrap();
        for date in ["2020-03-11", "2022-11-08", "2024-08-04"] {
            let t = prices.timestamps.iter().position(|ts| ts.date().to_string() == date).unwrap();
            let rate = rates[t].unwrap();
            for (quantity, side_rate) in [(1.0, rate.long), (-1.0, rate.short)] {
                let market = UnderlyingMarket { spot: prices.values[t], implied_vol: 0.6, margin_rate: side_rate, daily_vol: 0.03, depth_notional: None };
                let markets: BTreeMap<String, UnderlyingMarket> = [("BTC".to_string(), market)].into_iter().collect();
                let position = Position { underlying: "BTC".into(), quantity, instrument: Instrument::Linear };
                let im = portfolio_margin(&[position], &markets, None, &ScenarioConfig::default()).unwrap().initial_margin;
                let per_notional = im / prices.values[t];
                assert!((per_notional - side_rate).abs() < 1e-12, "{arm} {date} q={quantity}: {per_notional} vs {side_rate}");
            }
        }
    }
}
