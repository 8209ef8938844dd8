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

/// Implied volatility (DVOL) is a forward-looking input: HAR-X beats log-HAR out of sample at
/// five days, and a gap in the input falls back to log-HAR explicitly, day by day.
#[test]
fn dvol_improves_the_five_day_forecast_and_gaps_fall_back_to_log_har() {
    use foresight_train::data::{Transform, daily_input, load_values};
    use foresight_train::evaluate::exogenous_gain;

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
    let history = DailyHistory::from_bars(&load_ohlcv(&root.join("btc_usdt_2h.csv")).unwrap()).unwrap();
    let dvol = load_values(&root.join("btc_dvol_1d.csv"), None, true).unwrap();
    let mut x = daily_input(&dvol, Transform::ImpliedVol, 365.0, &history.dates);
    // DVOL 56.76 on 2022-11-06 → ln((0.5676)²/365).
    let first = history.dates.iter().position(|d| d.to_string() == "2022-11-06").unwrap();
    assert!((x[first].unwrap() - (0.5676f64.powi(2) / 365.0).ln()).abs() < 1e-12);
    assert!(x[first - 1].is_none(), "no value before the index starts: missing, not zero");

    let gains = exogenous_gain(&history, "dvol", &x, &[5], 250, 66).unwrap();
    let g = &gains[0];
    assert_eq!(g.fallback, 0);
    assert!(g.change < -0.05 && g.dm.statistic < 0.0, "DVOL helps at h=5: {g:?}");

    // Remove 40 days of DVOL inside the scored window: those origins use log-HAR.
    let gap = history.dates.iter().position(|d| d.to_string() == "2024-03-01").unwrap();
    for v in &mut x[gap..gap + 40] {
        *v = None;
    }
    let with_gap = &exogenous_gain(&history, "dvol", &x, &[5], 250, 66).unwrap()[0];
    assert_eq!(with_gap.fallback, 40);
    assert_eq!(with_gap.n, g.n, "the same origins are scored");
    assert!(with_gap.qlike_har_x.is_finite() && with_gap.qlike_har_x != g.qlike_har_x);
}
