//! Walk-forward forecast evaluation on the bundled BTC 2-hour realized variance: log-HAR is the
//! baseline to beat, ahead of EWMA, GARCH and level HAR on QLIKE at every horizon.

use std::path::Path;

use foresight_train::data::load_ohlcv;
use foresight_train::evaluate::{DailyHistory, Forecaster, WalkForward, evaluate};

#[test]
fn log_har_beats_ewma_garch_and_level_har_out_of_sample() {
    let bars = load_ohlcv(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/btc_usdt_2h.csv")).unwrap();
    let history = DailyHistory::from_bars(&bars).unwrap();
    assert_eq!(history.rv_source, "intraday");
    let models: Vec<Forecaster> =
        ["ewma", "garch", "har", "log-har"].iter().map(|m| Forecaster::parse(m).unwrap()).collect();
    // A sparse refit keeps the debug-build test quick; the CLI refits every 22 days.
    let config = WalkForward { train_days: 1000, refit_every: 250, horizons: vec![1, 5, 22] };
    let scores = evaluate(&history, &models, &config).unwrap();
    assert_eq!(scores.len(), 12);
    for h in [1, 5, 22] {
        let q = |m: &str| scores.iter().find(|s| s.horizon == h && s.model == m).unwrap().qlike;
        for other in ["ewma", "garch", "har"] {
            assert!(q("log-har") < q(other), "h={h}: log-har {} vs {other} {}", q("log-har"), q(other));
        }
        let row = scores.iter().find(|s| s.horizon == h && s.model == "ewma").unwrap();
        assert!(row.n > 1800, "scored origins: {}", row.n);
        assert!(row.dm_vs_log_har.unwrap().statistic > 0.0, "EWMA's QLIKE is higher than log-HAR's");
        assert!(row.mincer_zarnowitz.r2 > 0.1 && row.mincer_zarnowitz.r2 < 1.0);
    }
}

#[test]
fn bad_settings_are_refused() {
    let bars = load_ohlcv(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/btc_usdt_1d.csv")).unwrap();
    let history = DailyHistory::from_bars(&bars).unwrap();
    assert_eq!(history.rv_source, "range_gk");
    let models = [Forecaster::Ewma];
    for config in [
        WalkForward { train_days: 100, refit_every: 22, horizons: vec![1] },
        WalkForward { train_days: 2920, refit_every: 22, horizons: vec![1] },
        WalkForward { train_days: 1000, refit_every: 0, horizons: vec![1] },
        WalkForward { train_days: 1000, refit_every: 22, horizons: vec![0] },
    ] {
        assert!(evaluate(&history, &models, &config).is_err(), "{config:?}");
    }
}
