//! The Rust backtest agrees with the independent Python implementation on the bundled BTC
//! daily history, statistic by statistic (fixture: `tests/data/reference_btc_backtest.json`).

use foresight_core::backtest::{BacktestConfig, run_backtest};
use foresight_core::calibrate::{Arm, CalibrationParams};
use foresight_core::features::Side;
use foresight_core::stats::Rise;
use foresight_train::data::load_daily_closes;
use foresight_train::report::date_of;
use serde_json::Value;

use crate::util::{assert_close, data, read_json, root};

const REL: f64 = 1e-9;

fn rise_matches(what: &str, got: Option<Rise>, want: &Value) {
    let got = got.expect("a rise");
    assert_close(&format!("{what}.abs"), got.abs, want["abs"].as_f64().unwrap(), REL);
    assert_close(&format!("{what}.rel"), got.rel.unwrap(), want["rel"].as_f64().unwrap(), REL);
}

#[test]
fn backtest_statistics_match_the_python_reference() {
    let fixture = read_json(&root().join("tests/data/reference_btc_backtest.json"));
    let prices = load_daily_closes(&data("btc_usdt_1d.csv")).unwrap();
    let runs = fixture["runs"].as_array().unwrap();
    assert!(runs.len() >= 6);
    for run in runs {
        let arm: Arm = run["arm"].as_str().unwrap().parse().unwrap();
        let h = run["horizon"].as_u64().unwrap() as usize;
        let params = CalibrationParams::new(fixture["confidence"].as_f64().unwrap(), h, 365.0).unwrap();
        let burn_in = fixture["burn_in"].as_u64().unwrap() as usize;
        let bt = run_backtest(&prices.values, std::slice::from_ref(&arm), BacktestConfig { params, burn_in }).unwrap();
        for side in Side::BOTH {
            let want = &run["sides"][side.as_str()];
            let got = bt.arms[0].side(side);
            let what = |k: &str| format!("{arm} h={h} {} {k}", side.as_str());
            assert_eq!(date_of(&prices, bt.start), want["scored_from"].as_str().unwrap(), "{}", what("start"));
            for (k, v) in [
                ("observations", got.observations),
                ("exceptions", got.exceptions),
                ("test_observations", got.test_observations),
                ("worst_250_exceptions", got.traffic_light.worst_250_exceptions),
            ] {
                assert_eq!(v as u64, want[k].as_u64().unwrap(), "{}", what(k));
            }
            for (k, v) in [
                ("kupiec_lr", got.kupiec.lr),
                ("kupiec_p", got.kupiec.p_value),
                ("christoffersen_ind_lr", got.christoffersen_ind.lr),
                ("christoffersen_ind_p", got.christoffersen_ind.p_value),
                ("christoffersen_cc_lr", got.christoffersen_cc.lr),
                ("christoffersen_cc_p", got.christoffersen_cc.p_value),
                ("avg_margin", got.avg_margin),
                ("peak_to_trough", got.peak_to_trough.unwrap()),
            ] {
                assert_close(&what(k), v, want[k].as_f64().unwrap(), REL);
            }
            match (got.mean_shortfall, want["mean_shortfall"].as_f64()) {
                (Some(g), Some(w)) => assert_close(&what("mean_shortfall"), g, w, REL),
                (g, w) => assert_eq!(g, w, "{}", what("mean_shortfall")),
            }
            assert_eq!(got.traffic_light.last_250.as_str(), want["last_250"].as_str().unwrap(), "{}", what("last_250"));
            assert_eq!(got.traffic_light.worst_250.as_str(), want["worst_250"].as_str().unwrap(), "{}", what("worst_250"));
            rise_matches(&what("max_rise_1d"), got.max_rise_1d, &want["max_rise_1d"]);
            rise_matches(&what("max_rise_5d"), got.max_rise_5d, &want["max_rise_5d"]);
            rise_matches(&what("max_rise_30d"), got.max_rise_30d, &want["max_rise_30d"]);
        }
    }
}
