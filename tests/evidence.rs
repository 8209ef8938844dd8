//! The evidence commands. `foresight frontier`: the written selection rule, re-run on the
//! development window alone, still picks the frozen arm; frontiers hold only covering arms; the
//! frozen arm's report numbers come back from a plain `foresight backtest`. `foresight
//! impulse`: a flat volatility gives a flat margin for every kind of arm, a step moves it.

use std::path::Path;

use crate::util::{assert_close, foresight_ok, read_json, root};

/// A bundled `date,value` file as (day, value) pairs.
fn dated(file: &str) -> Vec<(chrono::NaiveDate, f64)> {
    std::fs::read_to_string(root().join("data").join(file))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let (d, v) = l.split_once(',').unwrap();
            (d.parse().unwrap(), v.parse().unwrap())
        })
        .collect()
}

/// The `frozen` arm of a frontier config.
fn frozen_of(config: &Path) -> String {
    let text = std::fs::read_to_string(config).unwrap();
    let table: toml::Table = text.parse().unwrap();
    table["frozen"].as_str().unwrap_or_else(|| panic!("{} has no frozen arm", config.display())).to_string()
}

/// Runs the frontier of `config` and returns its frontier.json.
fn frontier(config: &str, develop_only: bool) -> serde_json::Value {
    let out = tempfile::tempdir().unwrap();
    let config = root().join("training").join(config);
    let mut args = vec!["frontier", "--config", config.to_str().unwrap(), "--out", out.path().to_str().unwrap()];
    if develop_only {
        args.push("--develop-only");
    }
    // The configs name their files relative to the repository root, where cargo runs tests.
    let stdout = foresight_ok(&args);
    assert!(stdout.contains("The rule re-run on the development window picks the frozen arm"), "{stdout}");
    assert!(out.path().join("frontier.png").is_file());
    let json = read_json(&out.path().join("frontier.json"));
    check_goals_report(out.path(), &json);
    if develop_only {
        // Cut before any arm ran: the last day loaded is the one that closes the development
        // window's last h-day loss, h rows after its last day.
        let table: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
        let to = table["develop"]["to"].as_str().unwrap();
        let h = table["horizon"].as_integer().unwrap() as usize;
        let dates: Vec<String> = std::fs::read_to_string(root().join(table["data"].as_str().unwrap()))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().to_string())
            .collect();
        let last_in_window = dates.iter().rposition(|d| d.as_str() <= to).unwrap();
        assert_eq!(json["last_day"], dates[last_in_window + h].as_str(), "development ends {to}, horizon {h}");
    }
    json
}

/// `foresight report` of a frontier's folder gives every forward arm of every window a row with
/// frontier.json's cost saving, rise reduction and verdict against the run's goal.
fn check_goals_report(dir: &Path, json: &serde_json::Value) {
    let page = dir.join("report.html");
    foresight_ok(&["report", "--from", dir.to_str().unwrap(), "--out", page.to_str().unwrap()]);
    let html = std::fs::read_to_string(&page).unwrap();
    let percent = |v: &serde_json::Value| v.as_f64().map_or("–".to_string(), |x| format!("{:.2}%", 100.0 * x));
    let goal = format!("at least {} cheaper", percent(&json["selection"]["cost_saving"]));
    assert!(html.contains(&goal), "the page states the run's goal ({goal})");
    let mut rows = 0;
    for w in json["windows"].as_array().unwrap() {
        for p in w["points"].as_array().unwrap().iter().filter(|p| p["kind"] == "forward") {
            let start = format!("<tr data-window=\"{}\" data-arm=\"{}\"", w["name"].as_str().unwrap(), p["arm"].as_str().unwrap());
            let at = html.find(&start).unwrap_or_else(|| panic!("no goal row for {start}"));
            let row = &html[at..at + html[at..].find("</tr>").unwrap()];
            let field = |name: &str| {
                let key = format!("data-field=\"{name}\">");
                let from = row.find(&key).unwrap() + key.len();
                row[from..from + row[from..].find('<').unwrap()].to_string()
            };
            let standing = &p["standing"];
            assert_eq!(field("cost_saving"), percent(&standing["cost_saving"]), "{start}");
            assert_eq!(field("rise_reduction"), percent(&standing["rise_reduction"]), "{start}");
            let verdict = if standing["meets_goal"] == true { "meets the goal" } else { "does not meet the goal" };
            assert_eq!(field("meets_goal"), verdict, "{start}");
            if w["frozen"]["arm"] == p["arm"] {
                assert!(row.contains("<td>frozen"), "{start}: the frozen arm is marked");
            }
            rows += 1;
        }
    }
    assert_eq!(html.matches("<tr data-window=").count(), rows, "one row per forward arm and window");
}

/// Every frontier of every window holds covering arms of its own kind only.
fn check_frontiers(json: &serde_json::Value) {
    for w in json["windows"].as_array().unwrap() {
        let points = w["points"].as_array().unwrap();
        for (kind, list) in w["frontier"].as_object().unwrap() {
            for arm in list.as_array().unwrap() {
                let p = points.iter().find(|p| p["arm"] == *arm).unwrap();
                assert_eq!(p["covered"], true, "{} frontier holds {arm}, which fails coverage", w["name"]);
                assert_eq!(p["kind"], *kind);
            }
        }
    }
}

#[test]
fn the_rule_rerun_on_crypto_development_data_picks_the_frozen_arm() {
    let frozen = frozen_of(&root().join("training/frontier_crypto.toml"));
    let json = frontier("frontier_crypto.toml", true);
    let windows = json["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 1, "no report window when the series stops at the end of development");
    assert_eq!(windows[0]["rule_pick"], frozen.as_str());
    assert!(windows[0]["scored_to"].as_str().unwrap() <= "2021-12-31");
    assert!(json["arms"].as_u64().unwrap() >= 100, "the grid has at least 100 arms");
    check_frontiers(&json);
}

#[test]
fn the_rule_rerun_on_equity_development_data_picks_the_frozen_arm() {
    let frozen = frozen_of(&root().join("training/frontier_equity.toml"));
    let json = frontier("frontier_equity.toml", true);
    assert_eq!(json["windows"][0]["rule_pick"], frozen.as_str());
    assert!(json["windows"][0]["scored_to"].as_str().unwrap() <= "2006-12-31");
    check_frontiers(&json);
}

/// Runs the whole frontier of `config` and checks that a plain `foresight backtest` of the frozen
/// arm, given the config's files and horizon, reproduces its report-window numbers.
fn frozen_arm_reproduces(config: &str) {
    let path = root().join("training").join(config);
    let frozen = frozen_of(&path);
    let table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let json = frontier(config, false);
    check_frontiers(&json);
    let report = &json["windows"][1];
    assert_eq!(report["name"], "report");
    let point = report["points"].as_array().unwrap().iter().find(|p| p["arm"] == frozen.as_str()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = |key: &str| table.get(key).and_then(|v| v.as_str()).map(|f| root().join(f).display().to_string());
    let mut args: Vec<String> = vec!["backtest".into(), "--data".into(), file("data").unwrap()];
    for (flag, key) in [("--rv-data", "rv_data"), ("--iv-data", "iv_data")] {
        if let Some(f) = file(key) {
            args.extend([flag.to_string(), f]);
        }
    }
    let window = |k: &str| report[k].as_str().unwrap().to_string();
    args.extend([
        "--calibrator".into(), format!("{frozen},ewma,hs:250"), "--horizon".into(), table["horizon"].as_integer().unwrap().to_string(),
        "--from".into(), window("scored_from"), "--to".into(), window("scored_to"), "--out".into(), out.path().display().to_string(),
    ]);
    foresight_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let summary = read_json(&out.path().join("summary.json"));
    assert_eq!(summary["settings"]["scored_from"], report["scored_from"]);
    assert_eq!(summary["settings"]["scored_to"], report["scored_to"]);
    for side in ["long", "short"] {
        let s = &summary["arms"][frozen.as_str()][side];
        assert_eq!(s["exceptions"], point[side]["exceptions"], "{config} {side}");
        assert_close(side, s["avg_margin"].as_f64().unwrap(), point[side]["avg_margin"].as_f64().unwrap(), 1e-12);
        assert_close(side, s["kupiec_p"].as_f64().unwrap(), point[side]["kupiec_p"].as_f64().unwrap(), 1e-12);
    }
}

#[test]
fn the_frozen_crypto_arm_is_reproduced_by_a_plain_backtest_on_the_report_window() {
    frozen_arm_reproduces("frontier_crypto.toml");
}

#[test]
fn the_frozen_equity_arm_is_reproduced_by_a_plain_backtest_on_the_report_window() {
    frozen_arm_reproduces("frontier_equity.toml");
}

#[test]
fn impulse_responses_are_flat_without_a_step_and_rise_with_one() {
    let frozen = frozen_of(&root().join("training/frontier_crypto.toml"));
    let out = tempfile::tempdir().unwrap();
    let arms = format!("{frozen},ewma,hs:250,model:gjr-t");
    let stdout = foresight_ok(&[
        "impulse",
        "--data",
        root().join("data/btc_usdt_1d.csv").to_str().unwrap(),
        "--calibrator",
        &arms,
        "--steps",
        "1,3",
        "--paths",
        "40",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(stdout.contains("days to 90% of step"), "{stdout}");
    let json = read_json(&out.path().join("impulse.json"));
    assert!(out.path().join("impulse.png").is_file());
    let responses = json["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 8);
    for r in responses {
        let median: Vec<f64> = r["response"]["median"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let arm = r["arm"].as_str().unwrap();
        if r["step"] == 1.0 {
            // Real residuals, constant volatility: the median margin stays at its level.
            assert!(median.iter().all(|m| (0.85..1.15).contains(m)), "{arm} moves without a step: {median:?}");
        } else {
            let settled = r["response"]["settled"].as_f64().unwrap();
            assert!(settled > 1.3, "{arm} hardly answers a ×3 step: settles at {settled}");
            assert!(r["response"]["exceptions_10d"].as_f64().unwrap() > 0.2, "{arm}: a step is a surprise to every arm");
        }
    }
    // Seeded: the same run gives the same curves.
    let again = tempfile::tempdir().unwrap();
    foresight_ok(&[
        "impulse", "--data", root().join("data/btc_usdt_1d.csv").to_str().unwrap(), "--calibrator", &arms, "--steps", "1,3", "--paths", "40",
        "--out", again.path().to_str().unwrap(),
    ]);
    assert_eq!(read_json(&again.path().join("impulse.json"))["responses"], json["responses"]);
}

/// One asset's days as both the service and the backtest take them.
struct Day {
    date: chrono::NaiveDate,
    close: f64,
    realized_variance: Option<f64>,
    implied_vol_percent: Option<f64>,
}

/// Serves `served` (a registered model with the frozen policy) in the split of a real server,
/// calibrates a unit future on `days` sent inline, and checks the forward rate against the
/// backtest's computation on the same days: the same to 1e-12.
async fn served_rate_matches_the_backtest(asset: &str, days: &[Day], served: &str, rv_source: &'static str) {
    use foresight_core::calibrate::{Arm, CalibrationParams};
    use foresight_serve::proto::{self, model_service_client::ModelServiceClient};
    use foresight_train::data::{Frequency, GapReport, Values};
    use foresight_train::evaluate::{DailyHistory, registered_margin_rates};

    let served_arm: Arm = served.parse().unwrap();
    let (address, _) = crate::serve::serve(crate::serve::config(&root().join("models"), None)).await;
    let address = format!("http://{address}");
    let split = proto::TrafficSplit { arms: vec![proto::ArmWeight { arm: served.into(), weight: 1.0 }], shadow: false };
    ModelServiceClient::connect(address.clone()).await.unwrap().set_split(proto::SetSplitRequest { split: Some(split) }).await.unwrap();
    let history: Vec<proto::DailyObservation> = days
        .iter()
        .map(|d| proto::DailyObservation { date: d.date.to_string(), close: d.close, realized_variance: d.realized_variance, implied_vol_percent: d.implied_vol_percent })
        .collect();
    let spot = days.last().unwrap().close;
    let market = proto::AssetMarket { asset: asset.into(), spot, implied_vol_fraction: 0.3, depth_notional: Some(5e7), history, data_age_seconds: Some(2.0) };
    let position = proto::Position { underlying: asset.into(), ..crate::serve::linear(1.0) };
    let mut client = proto::calibration_service_client::CalibrationServiceClient::connect(address).await.unwrap();
    let response = client.calibrate(crate::serve::request(vec![position], market)).await.unwrap().into_inner();
    assert_eq!(response.arm, served);
    let component = &response.components[0];
    assert!(component.fallback.is_none(), "{:?}", component.fallback);

    let closes: Vec<f64> = days.iter().map(|d| d.close).collect();
    let weekend = days.iter().any(|d| chrono::Datelike::weekday(&d.date).number_from_monday() > 5);
    let history = DailyHistory {
        dates: days.iter().map(|d| d.date).collect(),
        returns: std::iter::once(None).chain(closes.windows(2).map(|w| Some((w[1] / w[0]).ln()))).collect(),
        rv: days.iter().map(|d| d.realized_variance).collect(),
        rv_source,
    };
    let prices = Values {
        source: asset.into(),
        name: "close".into(),
        timestamps: days.iter().map(|d| d.date.and_time(chrono::NaiveTime::MIN)).collect(),
        values: closes,
        frequency: Frequency::Daily { business_days: !weekend },
        gaps: GapReport::default(),
    };
    let implied: Vec<Option<f64>> = days.iter().map(|d| d.implied_vol_percent).collect();
    let registry = foresight_registry::Registry::open(root().join("models")).unwrap();
    let model = served.split('+').next().unwrap().trim_start_matches("model:");
    let (card, mut loaded, _) = registry.load(&model.parse().unwrap()).unwrap();
    // The service posts 1-day rates (its scenario grid takes them from there).
    let params = CalibrationParams::new(0.99, 1, prices.frequency.periods_per_year()).unwrap();
    let inputs = foresight_train::evaluate::ArmInputs { implied_vol: Some(implied), ..Default::default() };
    let base = registered_margin_rates(&card, &mut loaded, &history, &prices, &params, &served_arm, &inputs).unwrap();
    let rates = served_arm.with_apc(&base, &prices.values, &params).unwrap();
    let last = rates.last().unwrap().unwrap();
    crate::util::assert_close(served, component.forward_rate, last.long.max(last.short), 1e-12);
}

/// The frozen crypto arm names the log-HAR family; the service serves it through BTC's
/// registered log-HAR with the 66-day horizon (training/btc_frozen.toml), in the split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_frozen_crypto_policy_is_served_at_the_backtest_rate() {
    use foresight_core::calibrate::{Arm, BaseCalibrator, ModelName};
    let frozen: Arm = frozen_of(&root().join("training/frontier_crypto.toml")).parse().unwrap();
    assert_eq!(frozen.base, BaseCalibrator::Model { forecaster: ModelName::LogHar });
    let served = frozen.to_string().replacen("model:log-har", "model:btc-lookahead-log-har@v1", 1);
    let days = foresight_train::evaluate::market_days(&crate::util::data("btc_usdt_1d.csv"), &crate::util::data("btc_usdt_2h.csv"), None).unwrap();
    let days: Vec<Day> = days[days.len() - 600..]
        .iter()
        .map(|d| Day { date: d.date, close: d.close, realized_variance: d.realized_variance, implied_vol_percent: d.implied_vol_percent })
        .collect();
    served_rate_matches_the_backtest("BTC", &days, &served, "intraday").await;
}

/// The frozen equity arm (log-HAR family, half VIX) served through the S&P 500's registered
/// log-HAR on squared returns (training/spx_frozen.toml), VIX from the days' implied_vol_percent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_frozen_equity_policy_is_served_at_the_backtest_rate() {
    use foresight_core::calibrate::{Arm, BaseCalibrator, ModelName};
    let frozen: Arm = frozen_of(&root().join("training/frontier_equity.toml")).parse().unwrap();
    assert_eq!(frozen.base, BaseCalibrator::Model { forecaster: ModelName::LogHar });
    assert!(frozen.implied.is_some(), "the frozen equity arm blends VIX");
    let served = frozen.to_string().replacen("model:log-har", "model:spx-close-log-har@v1", 1);
    let vix: std::collections::HashMap<chrono::NaiveDate, f64> = dated("vix_close_1990_2026.csv").into_iter().collect();
    let closes = dated("spx_close_1928_2024.csv");
    // A daily close gives only its squared log return as realized variance (as in training).
    let days: Vec<Day> = closes
        .windows(2)
        .skip(closes.len() - 801)
        .map(|w| Day { date: w[1].0, close: w[1].1, realized_variance: Some((w[1].1 / w[0].1).ln().powi(2)), implied_vol_percent: vix.get(&w[1].0).copied() })
        .collect();
    assert_eq!(days.len(), 800);
    served_rate_matches_the_backtest("SPX", &days, &served, "squared_return").await;
}

/// `+iv`: implied volatility as the scale. With weight 1 the margin follows VIX day by day;
/// without an implied-volatility file the arm is its forecast alone, and says so.
#[test]
fn an_implied_volatility_arm_follows_vix_and_falls_back_without_it() {
    let out = tempfile::tempdir().unwrap();
    let run = |arms: &str, iv: bool, dir: &str| {
        let dir = out.path().join(dir);
        let mut args = vec![
            "backtest".to_string(), "--data".into(), root().join("data/spx_close_1928_2024.csv").display().to_string(),
            "--calibrator".into(), arms.into(), "--horizon".into(), "2".into(), "--refit-every".into(), "250".into(),
            "--from".into(), "2008-06-02".into(), "--to".into(), "2009-06-30".into(), "--out".into(), dir.display().to_string(),
        ];
        if iv {
            args.extend(["--iv-data".into(), root().join("data/vix_close_1990_2026.csv").display().to_string()]);
        }
        let out = crate::util::foresight(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (read_json(&dir.join("summary.json")), String::from_utf8_lossy(&out.stderr).into_owned(), dir)
    };
    let (with, _, dir) = run("model:log-har+iv:1,model:log-har", true, "with");
    let (without, note, _) = run("model:log-har+iv:1,model:log-har", false, "without");
    assert!(note.contains("no implied-volatility file"), "{note}");
    let arms = |s: &serde_json::Value, arm: &str| s["arms"][arm]["long"]["avg_margin"].as_f64().unwrap();
    assert_eq!(arms(&without, "model:log-har+iv:1"), arms(&without, "model:log-har"), "without VIX: the forecast alone");
    assert_ne!(arms(&with, "model:log-har+iv:1"), arms(&with, "model:log-har"));
    // Weight 1: margin = FHS quantile × √(2 · VIX²/252); the quantile barely moves in a year, so
    // margin and VIX move together through the 2008 crash.
    let vix: std::collections::HashMap<String, f64> = dated("vix_close_1990_2026.csv").into_iter().map(|(d, v)| (d.to_string(), v)).collect();
    let series = std::fs::read_to_string(dir.join("series_model-log-har+iv-1.csv")).unwrap();
    let pairs: Vec<(f64, f64)> = series.lines().skip(1).filter_map(|l| {
        let f: Vec<&str> = l.split(',').collect();
        Some((f[2].parse::<f64>().ok()?, *vix.get(f[0])?))
    }).collect();
    assert!(pairs.len() > 250, "{}", pairs.len());
    let ratios: Vec<f64> = pairs.iter().map(|(m, v)| m / v).collect();
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    let spread = ratios.iter().map(|r| (r / mean - 1.0).abs()).fold(0.0, f64::max);
    assert!(spread < 0.05, "margin ÷ VIX moves by {spread} through 2008-09 while VIX went from 20 to 80");
}

/// `+regime`: the walk-forward regime model's P(stressed within h) raises margin before the
/// turn; on BTC's development years it makes log-HAR readier for the COVID crash.
#[test]
fn a_regime_arm_is_readier_before_the_covid_crash() {
    let out = tempfile::tempdir().unwrap();
    let (plain, raised) = ("model:log-har+lookahead:22", "model:log-har+lookahead:22+regime:22");
    foresight_ok(&[
        "backtest", "--data", root().join("data/btc_usdt_1d.csv").to_str().unwrap(), "--rv-data", root().join("data/btc_usdt_2h.csv").to_str().unwrap(),
        "--calibrator", &format!("{plain},{raised}"), "--refit-every", "66", "--to", "2021-12-31", "--out", out.path().to_str().unwrap(),
    ]);
    let summary = read_json(&out.path().join("summary.json"));
    let ready = |arm: &str| {
        let events = summary["arms"][arm]["readiness"].as_array().unwrap();
        events.iter().find(|e| e["date"] == "2020-03-12").unwrap()["long"].as_f64().unwrap()
    };
    assert!(ready(raised) > ready(plain) + 0.1, "regime {} vs plain {}", ready(raised), ready(plain));
    let cost = |arm: &str| summary["arms"][arm]["long"]["avg_margin"].as_f64().unwrap();
    assert!(cost(raised) > cost(plain), "raising before the turn costs margin in calm");
}

/// `model:har-x` walk-forward: log-HAR with VIX as a regressor once 250 training days have it,
/// log-HAR before (and without --iv-data, throughout).
#[test]
fn har_x_is_log_har_until_implied_volatility_arrives() {
    let out = tempfile::tempdir().unwrap();
    let run = |iv: bool, dir: &str| {
        let dir = out.path().join(dir);
        let mut args = vec![
            "backtest".to_string(), "--data".into(), root().join("data/spx_close_1928_2024.csv").display().to_string(),
            "--calibrator".into(), "model:har-x,model:log-har".into(), "--horizon".into(), "2".into(), "--refit-every".into(), "250".into(),
            "--from".into(), "1985-01-02".into(), "--to".into(), "1995-12-29".into(), "--out".into(), dir.display().to_string(),
        ];
        if iv {
            args.extend(["--iv-data".into(), root().join("data/vix_close_1990_2026.csv").display().to_string()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = crate::util::foresight(&refs);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let margins = |arm: &str| -> Vec<(String, f64)> {
            std::fs::read_to_string(dir.join(format!("series_{arm}.csv")))
                .unwrap()
                .lines()
                .skip(1)
                .map(|l| {
                    let f: Vec<&str> = l.split(',').collect();
                    (f[0].to_string(), f[2].parse().unwrap())
                })
                .collect()
        };
        (margins("model-har-x"), margins("model-log-har"), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (x, log, note) = run(false, "without");
    assert_eq!(x, log, "no implied volatility: HAR-X is log-HAR");
    assert!(note.contains("no implied-volatility file"), "{note}");
    let (x, log, _) = run(true, "with");
    let before = |s: &[(String, f64)]| s.iter().filter(|(d, _)| d.as_str() < "1990-01-01").cloned().collect::<Vec<_>>();
    assert_eq!(before(&x), before(&log), "before VIX exists the two are one model");
    let differ = x.iter().zip(&log).filter(|(a, b)| a.0.as_str() >= "1992-01-01" && (a.1 - b.1).abs() > 1e-9).count();
    assert!(differ > 500, "with VIX in the regression, HAR-X moves apart: {differ} days differ");
}

/// `model:neural` walk-forward: the network is retrained on the expanding window (seeded, so a
/// rerun gives the same margins) and covers the years after its first 300 training rows.
#[test]
fn the_neural_family_is_retrained_walk_forward_and_repeats_exactly() {
    let out = tempfile::tempdir().unwrap();
    let run = |dir: &str| {
        let dir = out.path().join(dir);
        foresight_ok(&[
            "backtest", "--data", root().join("data/btc_usdt_1d.csv").to_str().unwrap(), "--rv-data", root().join("data/btc_usdt_2h.csv").to_str().unwrap(),
            "--calibrator", "model:neural+lookahead:22,ewma", "--refit-every", "500", "--out", dir.to_str().unwrap(),
        ]);
        read_json(&dir.join("summary.json"))
    };
    let (a, b) = (run("a"), run("b"));
    assert_eq!(a["arms"], b["arms"], "seeded training: the same margins");
    let long = &a["arms"]["model:neural+lookahead:22"]["long"];
    assert!(long["observations"].as_u64().unwrap() > 2000, "scored from its first fit to 2025: {long}");
    assert!((0.03..0.3).contains(&long["avg_margin"].as_f64().unwrap()), "{long}");
}

/// `+path` and `+release` on real data: with a 1-day margin the path policy shares the plain
/// policy's residuals and scales by the larger end of the path, so it is never below it; a
/// 30-day release never lets the posted rate fall faster than halving in 30 days.
#[test]
fn path_and_release_keep_their_promises_on_btc() {
    let out = tempfile::tempdir().unwrap();
    let arms = "model:log-har,model:log-har+path:66,model:log-har+release:30";
    foresight_ok(&[
        "backtest", "--data", root().join("data/btc_usdt_1d.csv").to_str().unwrap(), "--rv-data", root().join("data/btc_usdt_2h.csv").to_str().unwrap(),
        "--calibrator", arms, "--refit-every", "66", "--to", "2021-12-31", "--out", out.path().to_str().unwrap(),
    ]);
    let margins = |arm: &str| -> Vec<(f64, f64)> {
        std::fs::read_to_string(out.path().join(format!("series_{}.csv", arm.replace(':', "-"))))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[2].parse().unwrap(), f[3].parse().unwrap())
            })
            .collect()
    };
    let (plain, path, released) = (margins("model:log-har"), margins("model:log-har+path:66"), margins("model:log-har+release:30"));
    assert!(plain.len() > 1000);
    assert!(plain.iter().zip(&path).all(|(a, b)| b.0 >= a.0 - 1e-15 && b.1 >= a.1 - 1e-15), "path below plain somewhere");
    let higher = plain.iter().zip(&path).filter(|(a, b)| b.0 > a.0 + 1e-12).count();
    assert!(higher > 100, "the month ahead above the next day on {higher} days only");
    let decay = 0.5f64.powf(1.0 / 30.0);
    assert!(released.windows(2).all(|w| w[1].0 >= w[0].0 * decay - 1e-15 && w[1].1 >= w[0].1 * decay - 1e-15), "released faster than the half-life");
    assert!(released.iter().zip(&plain).all(|(r, p)| r.0 >= p.0 - 1e-15), "release only ever holds margin up");
}

/// No look-ahead in the walk-forward families and inputs: every forecast up to a day is the same
/// whether the history goes on after it or stops there.
#[test]
fn walk_forward_forecasts_up_to_a_day_do_not_change_when_the_future_is_cut() {
    use foresight_core::calibrate::ModelName;
    use foresight_train::evaluate::{ArmInputs, DailyHistory, model_forecasts, regime_stress};
    let cut = chrono::NaiveDate::from_ymd_opt(2020, 6, 30).unwrap();
    let btc = DailyHistory::load(&root().join("data/btc_usdt_1d.csv"), Some(&root().join("data/btc_usdt_2h.csv"))).unwrap();
    let short = btc.clone().through(cut);
    let n = short.dates.len();
    assert!(n < btc.dates.len() && *short.dates.last().unwrap() <= cut);
    let none = ArmInputs::default();
    for family in [ModelName::LogHar, ModelName::Neural] {
        let full = model_forecasts(family, &btc, &none, 365.0, (250, 250), &[1, 22]).unwrap();
        let part = model_forecasts(family, &short, &none, 365.0, (250, 250), &[1, 22]).unwrap();
        for h in [1, 22] {
            assert_eq!(full[&h][..n], part[&h][..], "{} h={h}", family.as_str());
            assert!(part[&h].iter().flatten().count() > 300, "{} h={h} forecasts something", family.as_str());
        }
    }
    let (full, part) = (regime_stress(&btc, 250, 250, 22).unwrap(), regime_stress(&short, 250, 250, 22).unwrap());
    assert_eq!(full[..n], part[..]);
    assert!(part.iter().flatten().count() > 300);
    // HAR-X with VIX on the S&P 500, cut in 1996.
    let spx = DailyHistory::load(&root().join("data/spx_close_1928_2024.csv"), None).unwrap();
    let vix: std::collections::HashMap<chrono::NaiveDate, f64> = dated("vix_close_1990_2026.csv").into_iter().collect();
    let inputs = |h: &DailyHistory| ArmInputs { implied_vol: Some(h.dates.iter().map(|d| vix.get(d).copied()).collect()), ..Default::default() };
    let spx_short = spx.clone().through(chrono::NaiveDate::from_ymd_opt(1996, 6, 28).unwrap());
    let m = spx_short.dates.len();
    let full = model_forecasts(ModelName::HarX, &spx, &inputs(&spx), 252.0, (250, 250), &[2]).unwrap();
    let part = model_forecasts(ModelName::HarX, &spx_short, &inputs(&spx_short), 252.0, (250, 250), &[2]).unwrap();
    assert_eq!(full[&2][..m], part[&2][..]);
}
