//! Registered models join the backtest (`model:<name>[@vN]`) and the forecast evaluation, run
//! through ONNX Runtime, and are only ever scored after their training window.

use crate::util::{data, foresight_err, foresight_ok, read_json, root};

fn registry() -> String {
    root().join("models").display().to_string()
}

/// Backtests `calibrators` on BTC daily closes with 2-hour realized variance and the committed
/// registry; returns stdout and summary.json.
fn backtest_btc(calibrators: &str) -> (String, serde_json::Value) {
    let out = tempfile::tempdir().unwrap();
    let stdout = foresight_ok(&[
        "backtest",
        "--data",
        data("btc_usdt_1d.csv").to_str().unwrap(),
        "--rv-data",
        data("btc_usdt_2h.csv").to_str().unwrap(),
        "--calibrator",
        calibrators,
        "--registry",
        &registry(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    (stdout, read_json(&out.path().join("summary.json")))
}

#[test]
fn a_registered_model_is_an_arm_scored_after_its_training_window() {
    let (stdout, summary) = backtest_btc("ewma,model:btc-gjr-t@v1,model:btc-log-har+cap:0.25");
    assert!(stdout.contains("model:btc-gjr-t@v1 is btc-gjr-t@v1 (trained on 2017-08-17..2021-12-31)"), "{stdout}");
    // Every arm is scored on the same days, all after the models' training window.
    assert_eq!(summary["settings"]["scored_from"], "2022-01-01");
    let arms = summary["arms"].as_object().unwrap();
    let gjr = &arms["model:btc-gjr-t@v1"]["long"];
    assert_eq!(gjr["observations"], 1333);
    let avg = gjr["avg_margin"].as_f64().unwrap();
    assert!(avg > 0.03 && avg < 0.2, "{avg}");
    let capped = arms["model:btc-log-har+cap:0.25"]["long"]["max_rise_1d"]["rel"].as_f64().unwrap();
    assert!(capped <= 0.25 + 1e-12, "the cap applies to registered arms too: {capped}");
}

#[test]
fn a_model_fed_another_kind_of_variance_is_refused() {
    let out = tempfile::tempdir().unwrap();
    // btc-log-har learned intraday realized variance; daily bars only give a range estimate.
    let err = foresight_err(&[
        "backtest",
        "--data",
        data("btc_usdt_1d.csv").to_str().unwrap(),
        "--calibrator",
        "model:btc-log-har",
        "--registry",
        &registry(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(err.contains("--rv-data"), "{err}");
    let err = foresight_err(&["backtest", "--data", data("btc_usdt_1d.csv").to_str().unwrap(), "--calibrator", "model:Nope", "--out", "x"]);
    assert!(err.contains("neither a forecaster"), "{err}");
}

#[test]
fn evaluate_scores_registered_models_only_out_of_sample() {
    let err = foresight_err(&["evaluate", "--data", data("btc_usdt_2h.csv").to_str().unwrap(), "--models", "ewma,btc-log-har@v1", "--registry", &registry()]);
    assert!(err.contains("btc-log-har@v1 was trained on 2017-08-17..2021-12-31") && err.contains("--train-days"), "{err}");
    let out = tempfile::tempdir().unwrap();
    let stdout = foresight_ok(&[
        "evaluate",
        "--data",
        data("btc_usdt_2h.csv").to_str().unwrap(),
        "--models",
        "ewma,log-har,btc-log-har@v1,btc-regime",
        "--horizons",
        "1,5",
        "--train-days",
        "1600",
        "--registry",
        &registry(),
        "--margin-data",
        data("btc_usdt_1d.csv").to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(stdout.contains("first forecast 2022-01-03") && stdout.contains("btc-log-har@v1"), "{stdout}");
    // The regime model is scored by Brier score (and is not a margin arm: it forecasts no variance).
    let scores = read_json(&out.path().join("forecast_scores.json"));
    let regime = scores["regime"].as_array().unwrap();
    let h5 = regime.iter().find(|r| r["model"] == "btc-regime@v1" && r["horizon"] == 5).unwrap();
    assert!(h5["brier"].as_f64().unwrap() < 0.8 * h5["climatology"].as_f64().unwrap(), "{h5}");
    // The forecasters as margin arms beside the reactive ones, with readiness, and the charts.
    let summary = read_json(&out.path().join("margin/summary.json"));
    let arms = summary["arms"].as_object().unwrap();
    for arm in ["ewma:0.94", "hs:250", "static:0.1", "model:log-har", "model:btc-log-har@v1"] {
        assert!(arms.contains_key(arm), "{arm} in {:?}", arms.keys().collect::<Vec<_>>());
    }
    assert!(!arms.keys().any(|a| a.contains("regime")));
    assert!(arms["model:log-har"]["readiness"].as_array().unwrap().iter().any(|e| e["date"] == "2022-11-09"));
    for png in ["forecast_chart.png", "margin/chart.png"] {
        assert!(std::fs::read(out.path().join(png)).unwrap().starts_with(b"\x89PNG"), "{png}");
    }
}

/// The registered HAR-X with implied volatility (DVOL), scaled by its 22-day forecast, meets the
/// training issue's margin goals on the days after its training window (2024-07..2025-08), where
/// EWMA fails coverage; its input comes from the file its card names.
#[test]
fn the_dvol_arm_meets_the_margin_goals_out_of_sample() {
    let (_, summary) = backtest_btc("ewma,model:btc-dvol-har-x@v1+lookahead:22");
    assert_eq!(summary["settings"]["scored_from"], "2024-07-01");
    let arms = summary["arms"].as_object().unwrap();
    for side in ["long", "short"] {
        let s = &arms["model:btc-dvol-har-x@v1+lookahead:22"][side];
        let f = |k: &str| s[k].as_f64().unwrap();
        assert!(f("kupiec_p") > 0.05, "{side}: Kupiec p {}", f("kupiec_p"));
        assert!(f("avg_margin") <= 0.085, "{side}: average margin {}", f("avg_margin"));
        assert!(f("peak_to_trough") <= 4.0, "{side}: peak-to-trough {}", f("peak_to_trough"));
        assert!(s["max_rise_5d"]["rel"].as_f64().unwrap() <= 1.0, "{side}: 5-day rise");
    }
    assert!(arms["ewma:0.94"]["short"]["kupiec_p"].as_f64().unwrap() < 0.05, "EWMA fails coverage on this window");
}
