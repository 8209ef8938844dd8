//! The cost–procyclicality frontier of a declared grid of arms on one series
//! (`foresight frontier`, `training/frontier_<class>.toml`).
//!
//! Every arm's rates are computed once over the whole series, walk-forward (a rate at `t` uses
//! data up to `t` only), then scored on two windows: the **development** window, on which the
//! config's written rule ([`foresight_core::frontier::select`]) picks one forward arm, and the
//! later **report** window, which judges the arm frozen in the config. Forecasts are made once
//! per forecaster family at every horizon its arms need, and base rates once per family and
//! policy; arms that differ only in APC options share them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;
use foresight_core::backtest::{Backtest, BacktestConfig, run_backtest_rates};
use foresight_core::calibrate::{Arm, BaseCalibrator, CalibrationParams, ForwardPolicy, ModelName, SideRates};
use foresight_core::features::Side;
use foresight_core::frontier::{Rule, Kind, Point, Standing, frontier, references, select, standing};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::data::{Values, load_daily_closes};
use crate::error::{DataError, Result};
use crate::evaluate::{ArmInputs, ByHorizon, DailyHistory, arm_inputs, model_forecasts, policy_rates};
use crate::report::{Event, date_of, events_in};

/// A `training/frontier_<class>.toml` file. Relative paths are taken from the working directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontierConfig {
    /// `crypto` or `equity`: the asset class the frozen choice is for.
    pub asset_class: String,
    /// Daily prices: OHLCV, or `date,close`.
    pub data: PathBuf,
    /// Intraday OHLCV for the forecasters' realized variance (default: `data`'s range variance,
    /// or its squared returns when it has closes only).
    pub rv_data: Option<PathBuf>,
    /// Implied volatility for `+iv` arms (`date,<value>`, annualised percent); days without it
    /// (all of them when absent) use the forecasts alone.
    pub iv_data: Option<PathBuf>,
    /// Margin confidence [default 0.99].
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// Margin period of risk in days.
    pub horizon: usize,
    /// Days before the first forecast [default 250].
    #[serde(default = "default_burn_in")]
    pub burn_in: usize,
    /// Re-estimate the forecasters every this many days [default 22].
    #[serde(default = "default_refit_every")]
    pub refit_every: usize,
    /// Output folder.
    pub out: PathBuf,
    /// Where the rule chooses.
    pub develop: Window,
    /// Where the frozen choice is judged.
    pub report: Window,
    /// Stress events to measure readiness at, `YYYY-MM-DD[=label]`.
    #[serde(default)]
    pub events: Vec<String>,
    /// The forward arm the rule chose on the development window, frozen.
    pub frozen: Option<String>,
    /// The reactive grid.
    pub reactive: Grid,
    /// The forward grid.
    pub forward: Grid,
    /// The selection rule: the goal thresholds it scores against and its coverage headroom.
    #[serde(default)]
    pub selection: Rule,
}

fn default_confidence() -> f64 {
    0.99
}
fn default_burn_in() -> usize {
    250
}
fn default_refit_every() -> usize {
    22
}

/// A scoring window, both days included.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// First day.
    pub from: NaiveDate,
    /// Last day.
    pub to: NaiveDate,
}

/// A grid of arms: every `base` + `policy` + `input` + `option` combination, plus `arms` as
/// written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// Arms taken as they are.
    #[serde(default)]
    pub arms: Vec<String>,
    /// Bases (`hs:500`, `model:log-har`).
    #[serde(default)]
    pub bases: Vec<String>,
    /// Forward policies (`""`, `+lookahead:22`, `+path:66`); forward grids only.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Optional inputs of forward arms (`""`, `+iv:0.5`); forward grids only.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// APC options (`""`, `+buffer:0.25`, `+release:10+floor:0.05`).
    #[serde(default)]
    pub options: Vec<String>,
}

impl Grid {
    /// The grid's arms in canonical form, without repeats, each checked to be of `kind`.
    pub fn expand(&self, kind: Kind) -> std::result::Result<Vec<Arm>, String> {
        if kind == Kind::Reactive && !(self.policies.is_empty() && self.inputs.is_empty()) {
            return Err("[reactive] takes no policies or inputs (they are forward options)".into());
        }
        let or_plain = |v: &[String]| if v.is_empty() { vec![String::new()] } else { v.to_vec() };
        let mut texts = self.arms.clone();
        for base in &self.bases {
            for policy in or_plain(&self.policies) {
                for input in or_plain(&self.inputs) {
                    for option in or_plain(&self.options) {
                        texts.push(format!("{base}{policy}{input}{option}"));
                    }
                }
            }
        }
        let mut out: Vec<Arm> = Vec::with_capacity(texts.len());
        for text in texts {
            let arm: Arm = text.parse().map_err(|e| format!("{e}"))?;
            let forward = matches!(arm.base, BaseCalibrator::Model { .. });
            let reactive = matches!(arm.base, BaseCalibrator::Static { .. } | BaseCalibrator::Ewma { .. } | BaseCalibrator::HistoricalSimulation { .. });
            match kind {
                Kind::Reactive if !reactive => return Err(format!("arm {arm} in [reactive] is not a reactive arm (static, ewma, hs)")),
                Kind::Forward if !forward => {
                    return Err(format!("arm {arm} in [forward] must name a forecaster family (model:<family>), fitted walk-forward on the series"));
                }
                _ => {}
            }
            if !out.contains(&arm) {
                out.push(arm);
            }
        }
        Ok(out)
    }
}

impl FrontierConfig {
    /// Reads and checks a config file; errors name the file and the key.
    pub fn read(path: &Path) -> Result<Self> {
        let fail = |message: String| DataError::Recipe { file: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(|source| DataError::Io { file: path.to_path_buf(), source })?;
        let config: Self = toml::from_str(&text).map_err(|e| fail(e.to_string()))?;
        config.check().map_err(fail)?;
        Ok(config)
    }

    /// Checks values that the types do not.
    pub fn check(&self) -> std::result::Result<(), String> {
        for (name, w) in [("develop", &self.develop), ("report", &self.report)] {
            if w.from > w.to {
                return Err(format!("{name}: from {} is after to {}", w.from, w.to));
            }
        }
        if self.report.from <= self.develop.to {
            return Err(format!("report.from {} must come after develop.to {}: the report window is out of sample", self.report.from, self.develop.to));
        }
        if self.horizon == 0 || self.refit_every == 0 {
            return Err("horizon and refit_every must be ≥ 1".into());
        }
        let rule = &self.selection;
        if !(rule.cost_saving > 0.0 && rule.rise_reduction > 0.0 && (0.0..1.0).contains(&rule.min_coverage_p)) {
            return Err("selection: cost_saving and rise_reduction must be > 0, min_coverage_p in [0, 1)".into());
        }
        Ok(())
    }

    /// Every arm of the run with its kind: the reactive grid, then the forward grid, then the
    /// frozen arm if the forward grid lacks it.
    pub fn arms(&self) -> std::result::Result<Vec<(Arm, Kind)>, String> {
        let mut out: Vec<(Arm, Kind)> = Vec::new();
        for (grid, kind, name) in [(&self.reactive, Kind::Reactive, "reactive"), (&self.forward, Kind::Forward, "forward")] {
            for arm in grid.expand(kind).map_err(|e| format!("[{name}]: {e}"))? {
                if out.iter().any(|(a, _)| *a == arm) {
                    return Err(format!("arm {arm} is in both grids"));
                }
                out.push((arm, kind));
            }
        }
        if let Some(frozen) = &self.frozen {
            // The rule picks from the grid; an arm outside it could not have been frozen by it.
            let arm = Grid { arms: vec![frozen.clone()], ..Grid::default() }.expand(Kind::Forward).map_err(|e| format!("frozen: {e}"))?;
            if !out.iter().any(|(a, _)| *a == arm[0]) {
                return Err(format!("frozen: {} is not in the [forward] grid, so the rule could not have picked it", arm[0]));
            }
        }
        if !out.iter().any(|(_, k)| *k == Kind::Reactive) || !out.iter().any(|(_, k)| *k == Kind::Forward) {
            return Err("both [reactive] and [forward] need at least one arm".into());
        }
        Ok(out)
    }
}

/// One window's scores.
#[derive(Debug, Clone)]
pub struct WindowScores {
    /// `develop` or `report`.
    pub name: &'static str,
    /// The window asked for.
    pub window: Window,
    /// Every arm scored on the same days (the arms in [`FrontierRun::arms`] order).
    pub backtest: Backtest,
    /// The arms as points.
    pub points: Vec<Point>,
    /// The stress events inside the scored days.
    pub events: Vec<Event>,
}

impl WindowScores {
    /// The index of `arm` among the points.
    pub fn position(&self, arm: &Arm) -> Option<usize> {
        self.backtest.arms.iter().position(|a| a.arm == *arm)
    }

    /// The forward arm the rule picks on this window.
    pub fn selected(&self, rule: &Rule) -> Option<usize> {
        select(&self.points, rule)
    }

    /// Readiness `(long, short)` of point `i` at each event.
    pub fn readiness(&self, i: usize) -> Vec<(Option<f64>, Option<f64>)> {
        let a = &self.backtest.arms[i];
        self.events.iter().map(|e| (a.readiness(Side::Long, e.index), a.readiness(Side::Short, e.index))).collect()
    }
}

/// Seconds spent in each stage.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Timings {
    /// Walk-forward forecasts (fits and refits), per family.
    pub forecasts: BTreeMap<String, f64>,
    /// Base rates, APC options and reactive arms.
    pub rates: f64,
    /// Both windows' backtests and points.
    pub scoring: f64,
}

/// A frontier run.
#[derive(Debug, Clone)]
pub struct FrontierRun {
    /// The daily prices the arms were run on.
    pub prices: Values,
    /// Every arm and its kind.
    pub arms: Vec<(Arm, Kind)>,
    /// The development window, then the report window (unless the run stopped at the end of
    /// the development window).
    pub windows: Vec<WindowScores>,
    /// Where the time went.
    pub timings: Timings,
}

/// Runs the grid of `config` over its series and scores both windows. With `develop_only` the
/// series is cut after the development window (and its last loss) before any arm runs: what
/// the rule picks then provably never saw the report window.
pub fn run_frontier(config: &FrontierConfig, events: &[(NaiveDate, String)], develop_only: bool) -> Result<FrontierRun> {
    let fail = |message: String| DataError::Recipe { file: PathBuf::from(format!("frontier[{}]", config.asset_class)), message };
    let arms = config.arms().map_err(fail)?;
    let mut prices = load_daily_closes(&config.data)?;
    if develop_only {
        prices.truncate(prices.bars_through(config.develop.to, config.horizon).unwrap_or(0));
    }
    let params = CalibrationParams::new(config.confidence, config.horizon, prices.frequency.periods_per_year())?;
    let mut timings = Timings::default();

    // Forecasts once per family, at every horizon its arms need.
    let mut needed: BTreeMap<ModelName, Vec<usize>> = BTreeMap::new();
    for (arm, _) in &arms {
        if let BaseCalibrator::Model { forecaster } = arm.base {
            needed.entry(forecaster).or_default().extend(arm.policy.horizons(config.horizon));
        }
    }
    let history = match (needed.is_empty(), prices.timestamps.last()) {
        (false, Some(last)) => Some(DailyHistory::load(&config.data, config.rv_data.as_deref())?.through(last.date())),
        _ => None,
    };
    let forward_arms: Vec<Arm> = arms.iter().filter(|(_, k)| *k == Kind::Forward).map(|(a, _)| a.clone()).collect();
    let clock = Instant::now();
    let inputs = match &history {
        Some(history) => arm_inputs(&forward_arms, history, config.iv_data.as_deref(), &prices, config.burn_in, config.refit_every)?,
        None => ArmInputs::default(),
    };
    if !inputs.stress.is_empty() {
        timings.forecasts.insert("regime".into(), clock.elapsed().as_secs_f64());
    }
    let mut forecasts: HashMap<ModelName, ByHorizon> = HashMap::new();
    if let Some(history) = &history {
        for (family, horizons) in &needed {
            let clock = Instant::now();
            let f = model_forecasts(*family, history, &inputs, prices.frequency.periods_per_year(), (config.burn_in, config.refit_every), horizons)
                .map_err(|e| fail(format!("forecasting with model:{}: {e}", family.as_str())))?;
            forecasts.insert(*family, f);
            timings.forecasts.insert(family.as_str().to_string(), clock.elapsed().as_secs_f64());
        }
    }

    let clock = Instant::now();
    // Base rates once; APC per arm. Arms that differ only in APC options share a base: family, policy, implied weight, regime.
    type BaseKey = (ModelName, ForwardPolicy, Option<u64>, Option<usize>);
    let mut bases: HashMap<BaseKey, Vec<Option<SideRates>>> = HashMap::new();
    let mut rates: Vec<Vec<Option<SideRates>>> = Vec::with_capacity(arms.len());
    for (arm, _) in &arms {
        let r = match (&arm.base, &history) {
            (BaseCalibrator::Model { forecaster }, Some(history)) => {
                let key = (*forecaster, arm.policy, arm.implied.map(f64::to_bits), arm.regime);
                let base = match bases.entry(key) {
                    std::collections::hash_map::Entry::Occupied(slot) => slot.into_mut(),
                    std::collections::hash_map::Entry::Vacant(slot) => slot.insert(
                        policy_rates(arm, &forecasts[forecaster], &inputs, history, &prices, &params).map_err(|e| fail(format!("arm {arm}: {e}")))?,
                    ),
                };
                arm.with_apc(base, &prices.values, &params).map_err(|e| fail(format!("arm {arm}: {e}")))?
            }
            _ => arm.margin_rates(&prices.values, &params).map_err(|e| fail(format!("arm {arm}: {e}")))?,
        };
        rates.push(r);
    }
    timings.rates = clock.elapsed().as_secs_f64();

    let clock = Instant::now();
    let score = |name: &'static str, window: Window| -> Result<WindowScores> {
        let first = prices.timestamps.iter().position(|t| t.date() >= window.from);
        // The last scored day needs its h-day loss; nothing after it is looked at.
        let (Some(first), Some(keep)) = (first, prices.bars_through(window.to, config.horizon)) else {
            return Err(fail(format!("{name}: no data between {} and {}", window.from, window.to)));
        };
        let with_rates = arms.iter().zip(&rates).map(|((arm, _), r)| (arm.clone(), r[..keep].to_vec())).collect();
        let backtest = run_backtest_rates(&prices.values[..keep], with_rates, BacktestConfig { params, burn_in: first.max(config.burn_in) })
            .map_err(|e| fail(format!("{name} window {}..{}: {e}", window.from, window.to)))?;
        // A 30-day rise needs more than 30 scored days; a shorter window would call every arm steady.
        if backtest.end - backtest.start < 60 {
            return Err(fail(format!("{name} window {}..{}: {} scored days, need at least 61", window.from, window.to, backtest.end - backtest.start + 1)));
        }
        let points = backtest.arms.iter().zip(&arms).map(|(a, (_, kind))| Point::new(a, *kind)).collect();
        let events = events_in(&prices, &backtest, events);
        Ok(WindowScores { name, window, backtest, points, events })
    };
    let mut windows = vec![score("develop", config.develop)?];
    if !develop_only {
        windows.push(score("report", config.report)?);
    }
    timings.scoring = clock.elapsed().as_secs_f64();
    Ok(FrontierRun { prices, arms, windows, timings })
}

/// The rows a person reads first: the frozen arm, the rule's pick on this window, and the two
/// reference reactive arms, without repeats, each with its role.
pub fn headline(scores: &WindowScores, frozen: Option<&Arm>, rule: &Rule) -> Vec<(String, usize)> {
    let refs = references(&scores.points);
    let mut rows: Vec<(String, usize)> = Vec::new();
    let mut push = |role: &str, i: Option<usize>| {
        if let Some(i) = i {
            match rows.iter_mut().find(|(_, j)| *j == i) {
                Some((r, _)) => *r = format!("{r}, {role}"),
                None => rows.push((role.to_string(), i)),
            }
        }
    };
    push("frozen", frozen.and_then(|a| scores.position(a)));
    let best = if scores.name == "develop" { "rule's pick" } else { "best forward (hindsight)" };
    push(best, scores.selected(rule));
    push("cheapest reactive", refs.cheapest);
    push("steadiest reactive", refs.steadiest);
    rows
}

/// The `frontier.json` document.
pub fn frontier_json(config: &FrontierConfig, run: &FrontierRun) -> Value {
    let frozen: Option<Arm> = config.frozen.as_ref().and_then(|f| f.parse().ok());
    let windows: Vec<Value> = run
        .windows
        .iter()
        .map(|w| {
            let refs = references(&w.points);
            let name_of = |i: Option<usize>| i.map(|i| w.points[i].arm.clone());
            let standing_json = |s: &Standing| {
                json!({
                    "cost_reference": name_of(s.cost_reference),
                    "cost_saving": s.cost_saving,
                    "rise_reference": name_of(s.rise_reference),
                    "rise_reduction": s.rise_reduction,
                    "meets_goal": s.meets_goal,
                    "score": s.score.is_finite().then_some(s.score),
                })
            };
            let points: Vec<Value> = w
                .points
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let arm = &w.backtest.arms[i];
                    let side = |s: Side| {
                        let x = arm.side(s);
                        json!({
                            "exceptions": x.exceptions, "observations": x.observations,
                            "kupiec_p": x.kupiec.p_value, "christoffersen_cc_p": x.christoffersen_cc.p_value,
                            "avg_margin": x.avg_margin, "max_rise_30d": x.max_rise_30d.and_then(|r| r.rel),
                        })
                    };
                    let readiness: Vec<Value> = w
                        .readiness(i)
                        .into_iter()
                        .zip(&w.events)
                        .map(|((l, s), e)| json!({ "date": e.date, "long": l, "short": s }))
                        .collect();
                    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
                    v["long"] = side(Side::Long);
                    v["short"] = side(Side::Short);
                    v["readiness"] = Value::Array(readiness);
                    if p.kind == Kind::Forward {
                        v["standing"] = standing_json(&standing(&w.points, i, &config.selection));
                    }
                    v
                })
                .collect();
            let names = |kind: Kind| -> Vec<String> { frontier(&w.points, kind).into_iter().map(|i| w.points[i].arm.clone()).collect() };
            let frozen_at = frozen.as_ref().and_then(|f| w.position(f));
            json!({
                "name": w.name,
                "requested": w.window,
                "scored_from": date_of(&run.prices, w.backtest.start),
                "scored_to": date_of(&run.prices, w.backtest.end),
                "days": w.backtest.end - w.backtest.start + 1,
                "events": w.events.iter().map(|e| json!({ "date": e.date, "label": e.label })).collect::<Vec<_>>(),
                "frontier": { "reactive": names(Kind::Reactive), "forward": names(Kind::Forward) },
                "cheapest_reactive": name_of(refs.cheapest),
                "steadiest_reactive": name_of(refs.steadiest),
                "rule_pick": name_of(w.selected(&config.selection)),
                "frozen": frozen_at.map(|i| json!({ "arm": w.points[i].arm, "standing": standing_json(&standing(&w.points, i, &config.selection)) })),
                "points": points,
            })
        })
        .collect();
    json!({
        "foresight_version": env!("CARGO_PKG_VERSION"),
        "asset_class": config.asset_class,
        "data": config.data.display().to_string(),
        "rv_data": config.rv_data.as_ref().map(|p| p.display().to_string()),
        "iv_data": config.iv_data.as_ref().map(|p| p.display().to_string()),
        "first_day": date_of(&run.prices, 0),
        "last_day": date_of(&run.prices, run.prices.values.len() - 1),
        "confidence": config.confidence,
        "horizon_days": config.horizon,
        "burn_in_days": config.burn_in,
        "refit_every": config.refit_every,
        "coverage": "Kupiec and Christoffersen conditional coverage not rejected at 5% on both sides (non-overlapping subsample for h > 1)",
        "cost": "mean of the two sides' average margin",
        "procyclicality": "largest relative 30-day margin rise of either side",
        "rule": format!(
            "on the development window, among covered forward arms whose smallest coverage p-value is at least {}, the highest score max(cost saving / {}, rise reduction / {}) against the covered reactive arms (cheaper on ties); with none, the forward arm with the largest smallest coverage p-value",
            config.selection.min_coverage_p, config.selection.cost_saving, config.selection.rise_reduction
        ),
        "selection": config.selection,
        "frozen": config.frozen,
        "arms": run.arms.len(),
        "timings_s": run.timings,
        "windows": windows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> std::result::Result<FrontierConfig, String> {
        let base = r#"
            asset_class = "crypto"
            data = "data/btc_usdt_1d.csv"
            horizon = 1
            out = "reports/x"
            develop = { from = "2018-01-01", to = "2021-12-31" }
            report = { from = "2022-01-01", to = "2025-08-26" }
        "#;
        let c: FrontierConfig = toml::from_str(&format!("{base}{text}")).map_err(|e| e.to_string())?;
        c.check()?;
        Ok(c)
    }

    #[test]
    fn grids_cross_bases_policies_and_options_in_canonical_form() {
        let c = config(
            r#"
            frozen = "model:log-har+path:66"
            [reactive]
            arms = ["ewma"]
            bases = ["ewma:0.94", "hs:250"]
            options = ["", "+cap:0.25"]
            [forward]
            bases = ["model:log-har"]
            policies = ["", "+path:66"]
            options = ["", "+release:10"]
        "#,
        )
        .unwrap();
        let arms: Vec<String> = c.arms().unwrap().iter().map(|(a, _)| a.to_string()).collect();
        // `ewma` and `ewma:0.94` are one arm.
        assert_eq!(
            arms,
            [
                "ewma:0.94", "ewma:0.94+cap:0.25", "hs:250", "hs:250+cap:0.25", "model:log-har", "model:log-har+release:10",
                "model:log-har+path:66", "model:log-har+path:66+release:10",
            ]
        );
    }

    #[test]
    fn a_bad_grid_or_window_is_refused_with_the_reason() {
        let grid = |reactive: &str, forward: &str| config(&format!("[reactive]\n{reactive}\n[forward]\n{forward}\n")).and_then(|c| c.arms().map(|_| ()));
        let e = grid(r#"arms = ["model:har"]"#, r#"arms = ["model:har"]"#).unwrap_err();
        assert!(e.contains("[reactive]") && e.contains("not a reactive arm"), "{e}");
        let e = grid(r#"arms = ["ewma"]"#, r#"arms = ["model:btc-log-har@v1"]"#).unwrap_err();
        assert!(e.contains("[forward]") && e.contains("forecaster family"), "{e}");
        let e = grid(r#"arms = ["ewma"]
policies = ["+path:22"]"#, r#"arms = ["model:har"]"#).unwrap_err();
        assert!(e.contains("no policies or inputs"), "{e}");
        let e = grid(r#"arms = ["ewma"]"#, r#"bases = ["model:har"]
options = ["+bogus:1"]"#).unwrap_err();
        assert!(e.contains("unknown option"), "{e}");
        assert!(grid(r#"arms = ["ewma"]"#, "").unwrap_err().contains("at least one arm"));
        let off_grid = config("frozen = \"model:har\"\n[reactive]\narms = [\"ewma\"]\n[forward]\narms = [\"model:log-har\"]\n").unwrap();
        assert!(off_grid.arms().unwrap_err().contains("not in the [forward] grid"));
        let overlapping = toml::from_str::<FrontierConfig>(
            r#"asset_class = "x"
            data = "d.csv"
            horizon = 1
            out = "o"
            develop = { from = "2018-01-01", to = "2021-12-31" }
            report = { from = "2021-06-01", to = "2025-08-26" }
            [reactive]
            [forward]"#,
        )
        .unwrap();
        assert!(overlapping.check().unwrap_err().contains("out of sample"));
        let unknown = toml::from_str::<FrontierConfig>("asset_class = \"x\"\nwindow = 3\n").unwrap_err().to_string();
        assert!(unknown.contains("window"), "{unknown}");
    }
}
