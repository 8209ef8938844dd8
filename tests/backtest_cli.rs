//! `foresight backtest`, `inspect` and `features` run end to end on the bundled data.

use crate::util::{assert_close, data, foresight_err, foresight_ok, read_json};

const SIDE_KEYS: [&str; 15] = [
    "observations",
    "exceptions",
    "exception_rate",
    "kupiec_lr",
    "kupiec_p",
    "christoffersen_ind_lr",
    "christoffersen_ind_p",
    "christoffersen_cc_lr",
    "christoffersen_cc_p",
    "traffic_light",
    "avg_margin",
    "peak_to_trough",
    "max_rise_1d",
    "max_rise_5d",
    "mean_shortfall",
];

#[test]
fn several_arms_side_by_side_on_btc_daily() {
    let out = tempfile::tempdir().unwrap();
    let arms = "static:0.10,ewma,hs:250,hs:500,ewma:0.94+floor:stress10y+cap:0.25,hs:250+buffer:0.25";
    let stdout = foresight_ok(&[
        "backtest",
        "--data",
        data("btc_usdt_1d.csv").to_str().unwrap(),
        "--calibrator",
        arms,
        "--out",
        out.path().to_str().unwrap(),
    ]);
    // One table with every arm and side.
    for arm in ["static:0.1", "ewma:0.94", "hs:250", "hs:500", "ewma:0.94+floor:stress10y+cap:0.25", "hs:250+buffer:0.25"] {
        assert!(stdout.contains(arm), "table lists {arm}:\n{stdout}");
    }
    assert!(stdout.contains("kupiec p") && stdout.contains("peak/trough"), "{stdout}");

    let summary = read_json(&out.path().join("summary.json"));
    assert_eq!(summary["settings"]["confidence"], 0.99);
    assert_eq!(summary["settings"]["horizon_days"], 1);
    // hs:500 needs 500 days of losses: every arm is scored from the same later day.
    assert_eq!(summary["settings"]["scored_from"], "2018-12-30");
    let arms_json = summary["arms"].as_object().unwrap();
    assert_eq!(arms_json.len(), 6);
    for (arm, sides) in arms_json {
        for side in ["long", "short"] {
            let s = &sides[side];
            for key in SIDE_KEYS {
                assert!(!s[key].is_null() || key == "mean_shortfall", "{arm} {side} has {key}");
            }
            assert_eq!(s["observations"], 2431);
            let rate = s["exception_rate"].as_f64().unwrap();
            assert!(rate > 0.0 && rate < 0.05, "{arm} {side}: {rate}");
            let zone = s["traffic_light"]["worst_250"].as_str().unwrap();
            assert!(["green", "yellow", "red"].contains(&zone));
        }
    }
    // Reactive EWMA is the procyclical one: its margin swings far more than HS or the APC arm.
    let ptt = |arm: &str| arms_json[arm]["long"]["peak_to_trough"].as_f64().unwrap();
    assert!(ptt("ewma:0.94") > 10.0, "{}", ptt("ewma:0.94"));
    assert!(ptt("ewma:0.94+floor:stress10y+cap:0.25") < ptt("ewma:0.94") / 2.0);
    let rise1 = |arm: &str| arms_json[arm]["long"]["max_rise_1d"]["rel"].as_f64().unwrap();
    assert!(rise1("ewma:0.94+floor:stress10y+cap:0.25") <= 0.25 + 1e-12, "the cap holds");
    assert!(rise1("ewma:0.94") > 1.0);

    // Readiness at the known stress events in the window: EWMA 0.26 before 2020-03-12 (the
    // figure the training issue quotes), a static rate is always ready.
    assert!(stdout.contains("readiness") && stdout.contains("2022-11-09"), "{stdout}");
    let readiness = |arm: &str, date: &str| {
        let list = arms_json[arm]["readiness"].as_array().unwrap();
        let e = list.iter().find(|e| e["date"] == date).unwrap_or_else(|| panic!("{arm} has {date}"));
        e["long"].as_f64().unwrap()
    };
    assert_close("EWMA readiness 2020-03-12", readiness("ewma:0.94", "2020-03-12"), 0.26, 0.02);
    assert_eq!(readiness("static:0.1", "2020-03-12"), 1.0);
    assert!(readiness("hs:500", "2020-03-12") > 0.9);
    let dates: Vec<&str> = arms_json["hs:250"]["readiness"].as_array().unwrap().iter().map(|e| e["date"].as_str().unwrap()).collect();
    assert_eq!(dates, ["2020-03-12", "2021-05-19", "2022-06-13", "2022-11-09", "2024-08-05"], "events outside the window are left out");

    // Per-arm series files with the documented columns, and the chart.
    let csv = std::fs::read_to_string(out.path().join("series_hs-250+buffer-0.25.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "date,close,margin_long,margin_short,loss_long,loss_short,exception_long,exception_short"
    );
    assert_eq!(lines.clone().count(), 2431);
    let covid = lines.find(|l| l.starts_with("2020-03-11,")).unwrap();
    assert!(covid.ends_with(",1,0"), "the 2020-03-12 crash is a long exception: {covid}");
    let png = std::fs::read(out.path().join("chart.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn single_arm_writes_series_csv_and_multi_day_horizon_uses_non_overlapping_tests() {
    let out = tempfile::tempdir().unwrap();
    let stdout = foresight_ok(&[
        "backtest",
        "--data",
        data("spx_1d.csv").to_str().unwrap(),
        "--calibrator",
        "hs:500",
        "--horizon",
        "10",
        "--confidence",
        "0.975",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(stdout.contains("non-overlapping"), "{stdout}");
    assert!(out.path().join("series.csv").exists());
    let summary = read_json(&out.path().join("summary.json"));
    let long = &summary["arms"]["hs:500"]["long"];
    let obs = long["observations"].as_u64().unwrap();
    let test_obs = long["test_observations"].as_u64().unwrap();
    assert_eq!(test_obs, obs.div_ceil(10));
    assert_eq!(summary["settings"]["periods_per_year"], 252.0);
    assert_eq!(summary["data"]["frequency"], "daily (business days)");
}

#[test]
fn intraday_bars_are_aggregated_to_daily_closes() {
    let out = tempfile::tempdir().unwrap();
    foresight_ok(&[
        "backtest",
        "--data",
        data("btc_usdt_2h.csv").to_str().unwrap(),
        "--calibrator",
        "ewma",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let summary = read_json(&out.path().join("summary.json"));
    assert_eq!(summary["data"]["rows"], 2932);
    assert_eq!(summary["data"]["frequency"], "daily (every calendar day)");
}

#[test]
fn bad_arguments_and_bad_data_fail_with_one_clear_line() {
    let out = tempfile::tempdir().unwrap();
    let btc = data("btc_usdt_1d.csv");
    let o = out.path().to_str().unwrap();
    let err = foresight_err(&["backtest", "--data", btc.to_str().unwrap(), "--calibrator", "ewma,garch", "--out", o]);
    assert!(err.contains("--calibrator") && err.contains("`garch`"), "{err}");
    let err = foresight_err(&["backtest", "--data", btc.to_str().unwrap(), "--calibrator", "ewma,ewma:0.94", "--out", o]);
    assert!(err.contains("ewma:0.94 is given twice"), "{err}");
    let err = foresight_err(&["backtest", "--data", btc.to_str().unwrap(), "--calibrator", "ewma", "--confidence", "1.5", "--out", o]);
    assert!(err.contains("confidence"), "{err}");
    let err = foresight_err(&["backtest", "--data", btc.to_str().unwrap(), "--calibrator", "hs:250", "--burn-in", "5000", "--out", o]);
    assert!(err.contains("not enough history"), "{err}");
    let bad = out.path().join("bad.csv");
    std::fs::write(&bad, "date,close\n2024-01-01,100\n2024-01-02,0\n").unwrap();
    let err = foresight_err(&["backtest", "--data", bad.to_str().unwrap(), "--calibrator", "ewma", "--out", o]);
    assert!(err.contains("row 2 (line 3), column `close`") && err.contains("logarithmic"), "{err}");
    let err = foresight_err(&["backtest", "--data", "no/such/file.csv", "--calibrator", "ewma", "--out", o]);
    assert!(err.contains("no/such/file.csv"), "{err}");
}

#[test]
fn inspect_reports_gaps_and_writes_daily_realized_variance() {
    let out = tempfile::tempdir().unwrap();
    let rv = out.path().join("rv.csv");
    let stdout = foresight_ok(&["inspect", "--data", data("btc_usdt_2h.csv").to_str().unwrap(), "--rv-out", rv.to_str().unwrap()]);
    assert!(stdout.contains("intraday (2-hour bars)"), "{stdout}");
    assert!(stdout.contains("gap(s)") && stdout.contains("largest"), "{stdout}");
    let text = std::fs::read_to_string(&rv).unwrap();
    assert!(text.starts_with("date,rv,intervals,expected\n"));
    assert_eq!(text.lines().count(), 2933);
    // A day with fewer than half of its 12 intervals has an empty RV cell.
    assert!(text.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split(',').collect();
        f[1].is_empty() && f[2].parse::<usize>().unwrap() < 6
    }));
    let stdout = foresight_ok(&["inspect", "--data", data("btc_funding_8h.csv").to_str().unwrap()]);
    assert!(stdout.contains("single-value series `funding_rate`"), "{stdout}");
}

#[test]
fn features_follow_the_versioned_spec() {
    let spec = foresight_ok(&["features", "--spec"]);
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    assert_eq!(spec["version"], "foresight-features/1");
    let out = tempfile::tempdir().unwrap();
    let csv = out.path().join("features.csv");
    foresight_ok(&[
        "features",
        "--data",
        data("btc_usdt_1d.csv").to_str().unwrap(),
        "--intraday",
        data("btc_usdt_2h.csv").to_str().unwrap(),
        "--out",
        csv.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&csv).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let names: Vec<&str> = spec["features"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(&header[1..], names.as_slice());
    assert_eq!(text.lines().count(), 2933);
    // Day 30 onwards has every feature.
    let row: Vec<&str> = text.lines().nth(40).unwrap().split(',').collect();
    assert!(row.iter().all(|c| !c.is_empty()), "{row:?}");
}

#[test]
fn config_file_gives_the_settings_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bt.toml");
    std::fs::write(
        &config,
        format!(
            "data = {:?}\ncalibrators = [\"ewma\", \"hs:250\"]\nhorizon = 2\nout = {:?}\n",
            data("btc_usdt_1d.csv"),
            dir.path().join("from_config")
        ),
    )
    .unwrap();
    let flag_out = dir.path().join("from_flag");
    foresight_ok(&["backtest", "--config", config.to_str().unwrap(), "--horizon", "3", "--out", flag_out.to_str().unwrap()]);
    let summary = read_json(&flag_out.join("summary.json"));
    assert_eq!(summary["settings"]["horizon_days"], 3, "the flag wins");
    assert_eq!(summary["arms"].as_object().unwrap().len(), 2, "arms come from the file");
    assert!(!dir.path().join("from_config").exists());
    // The bundled configs parse and name real arms.
    for name in ["reactive_btc.toml", "reactive_spx.toml"] {
        let text = std::fs::read_to_string(crate::util::root().join("training").join(name)).unwrap();
        assert!(text.contains("calibrators"), "{name}");
    }
    std::fs::write(&config, "data = \"x.csv\"\ncalibrator = [\"ewma\"]\n").unwrap();
    let err = foresight_err(&["backtest", "--config", config.to_str().unwrap()]);
    assert!(err.contains("unknown field `calibrator`"), "{err}");
}

#[test]
fn fit_prints_one_json_object_with_the_documented_keys() {
    let stdout = foresight_ok(&["fit", "--model", "gjr", "--dist", "t", "--data", data("spx_1d.csv").to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    for key in ["mu", "omega", "alpha", "gamma", "beta", "nu", "loglik", "aic", "bic", "nobs", "std_err", "at_boundary"] {
        assert!(!v[key].is_null(), "{key} in {v}");
    }
    for key in ["mu", "omega", "beta", "nu"] {
        assert!(v["std_err"][key].as_f64().unwrap() > 0.0, "std_err.{key}");
    }
    assert_eq!(v["nobs"], 5030);
    assert_eq!(v["at_boundary"], false);
    let err = crate::util::foresight_err(&["fit", "--model", "egarch", "--data", data("spx_1d.csv").to_str().unwrap()]);
    assert!(err.contains("egarch"), "{err}");
}

#[test]
fn evaluate_prints_the_forecast_table_and_writes_scores() {
    let out = tempfile::tempdir().unwrap();
    let stdout = foresight_ok(&[
        "evaluate",
        "--data",
        data("btc_usdt_2h.csv").to_str().unwrap(),
        "--models",
        "ewma,har,log-har",
        "--horizons",
        "1,5",
        "--refit-every",
        "250",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(stdout.contains("RV from intraday") && stdout.contains("log-har"), "{stdout}");
    let scores = read_json(&out.path().join("forecast_scores.json"));
    assert_eq!(scores["scores"].as_array().unwrap().len(), 6);
    assert_eq!(scores["first_origin"], "2020-05-13");
    let err = crate::util::foresight_err(&["evaluate", "--data", data("btc_usdt_2h.csv").to_str().unwrap(), "--models", "ewma,lstm"]);
    assert!(err.contains("`lstm` is not a forecaster") && err.contains("no model `lstm`"), "{err}");
}

#[test]
fn model_arms_join_the_backtest_next_to_reactive_ones() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let stdout = foresight_ok(&[
        "backtest",
        "--data",
        data("btc_usdt_1d.csv").to_str().unwrap(),
        "--rv-data",
        data("btc_usdt_2h.csv").to_str().unwrap(),
        "--calibrator",
        "ewma,model:log-har,model:log-har+cap:0.25,model:log-har+lookahead:22",
        "--refit-every",
        "250",
        "--out",
        o,
    ]);
    assert!(stdout.contains("model:log-har+cap:0.25"), "{stdout}");
    let summary = read_json(&out.path().join("summary.json"));
    let arms = summary["arms"].as_object().unwrap();
    // Forecasts start after the burn-in and FHS needs 100 residuals: every arm is scored later.
    assert_eq!(summary["settings"]["scored_from"], "2018-08-02");
    let long = &arms["model:log-har"]["long"];
    assert!(long["avg_margin"].as_f64().unwrap() > 0.02 && long["avg_margin"].as_f64().unwrap() < 0.3);
    let capped = arms["model:log-har+cap:0.25"]["long"]["max_rise_1d"]["rel"].as_f64().unwrap();
    assert!(capped <= 0.25 + 1e-12, "APC options apply to model arms: {capped}");
    // Scaling by the 22-day forecast makes the margin far less procyclical and readier.
    let side = |arm: &str, key: &str| arms[arm]["long"][key].as_f64().unwrap();
    assert!(side("model:log-har+lookahead:22", "peak_to_trough") < 0.5 * side("model:log-har", "peak_to_trough"));
    let ready = |arm: &str| arms[arm]["readiness"].as_array().unwrap().iter().find(|e| e["date"] == "2020-03-12").unwrap()["long"].as_f64().unwrap();
    assert!(ready("model:log-har+lookahead:22") > ready("model:log-har") + 0.1, "{} vs {}", ready("model:log-har+lookahead:22"), ready("model:log-har"));
    // A close-only file: the forecasters learn from squared daily returns instead; a registered
    // model trained on intraday variance refuses that history and says what to give it.
    let closes = out.path().join("closes.csv");
    let text = std::fs::read_to_string(data("btc_usdt_1d.csv")).unwrap();
    let close_only: String = text.lines().map(|l| {
        let f: Vec<&str> = l.split(',').collect();
        format!("{},{}\n", f[0], f[4])
    }).collect();
    std::fs::write(&closes, close_only).unwrap();
    foresight_ok(&["backtest", "--data", closes.to_str().unwrap(), "--calibrator", "model:log-har+path:22", "--refit-every", "250", "--out", o]);
    let summary = read_json(&out.path().join("summary.json"));
    let long = summary["arms"]["model:log-har+path:22"]["long"]["avg_margin"].as_f64().unwrap();
    assert!(long > 0.02 && long < 0.3, "{long}");
    let registry = crate::util::root().join("models");
    let err = crate::util::foresight_err(&["backtest", "--data", closes.to_str().unwrap(), "--calibrator", "model:btc-log-har@v1", "--registry", registry.to_str().unwrap(), "--out", o]);
    assert!(err.contains("squared_return") && err.contains("--rv-data"), "{err}");
}
