//! `foresight backtest`: run arms over a price history, print the table, write the report.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use foresight_core::backtest::{Backtest, BacktestConfig, run_backtest_rates};
use chrono::NaiveDate;
use foresight_core::calibrate::{Arm, BaseCalibrator, CalibrationParams, SideRates, forward_fill};
use foresight_core::features::Side;
use foresight_core::stats::{LrTest, Rise};
use foresight_registry::runtime::LoadedModel;
use foresight_registry::{ModelCard, ModelRef, Registry};
use foresight_serve::audit::AuditRecord;
use foresight_serve::journal::read_lines;
use foresight_train::data::{Values, load_daily_closes};
use foresight_train::evaluate::{ArmInputs, DailyHistory, arm_inputs, model_margin_rates, registered_margin_rates};
use foresight_train::report::{Event, STRESS_EVENTS, date_of, events_in, write_backtest_report};

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// A backtest config (TOML, see `training/reactive_btc.toml`); flags given here override it.
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// Price history: OHLCV (`date,open,high,low,close[,volume]`, daily or intraday) or
    /// `date,<price>`, as CSV or Parquet.
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    /// Comma-separated arms, e.g. `ewma,hs:250,static:0.10,ewma:0.94+floor:stress10y+cap:0.25`.
    #[arg(long, value_name = "ARM[,ARM...]", value_delimiter = ',')]
    calibrator: Vec<String>,
    /// Confidence of the margin (one-sided), in (0.5, 1) [default: 0.99].
    #[arg(long)]
    confidence: Option<f64>,
    /// Margin period of risk in days [default: 1].
    #[arg(long)]
    horizon: Option<usize>,
    /// Days of history before scoring starts, later if an arm needs more [default: 250].
    #[arg(long)]
    burn_in: Option<usize>,
    /// Output folder for summary.json, series CSV and chart.png.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// For `model:` arms: intraday OHLCV whose daily realized variance the forecasters learn
    /// from (default: the daily bars' Garman-Klass range variance).
    #[arg(long, value_name = "FILE")]
    rv_data: Option<PathBuf>,
    /// For `+iv` model arms: implied volatility, `date,<value>` in annualised percent (VIX,
    /// DVOL); days without it use the forecast alone.
    #[arg(long, value_name = "FILE")]
    iv_data: Option<PathBuf>,
    /// For `model:` arms: re-estimate every this many days (walk-forward, expanding window)
    /// [default: 22].
    #[arg(long)]
    refit_every: Option<usize>,
    /// Score from this day on (`YYYY-MM-DD`); the arms still learn from everything before it.
    #[arg(long, value_name = "DATE")]
    from: Option<NaiveDate>,
    /// Score up to this day (its h-day loss included); nothing after that loss is loaded.
    #[arg(long, value_name = "DATE")]
    to: Option<NaiveDate>,
    /// Stress events to measure readiness at, `YYYY-MM-DD[=label]`, comma-separated
    /// [default: the known stress events of the bundled data that fall in the scored window].
    #[arg(long, value_name = "DATE[=LABEL]", value_delimiter = ',')]
    events: Vec<String>,
    /// For `model:<name>[@vN]` arms: the registry, a folder or `s3://bucket/prefix` [default: models].
    #[arg(long, value_name = "DIR|URL")]
    registry: Option<PathBuf>,
    /// Replay the margins a `foresight-serve` audit log recorded (every arm, posted or shadow)
    /// instead of computing arms: each arm's last audited rate of a day is its margin that day,
    /// scored against --data's closes.
    #[arg(long, value_name = "AUDIT.jsonl", conflicts_with = "calibrator")]
    from_audit: Option<PathBuf>,
    /// With --from-audit: the underlying to replay (needed when the log holds several).
    #[arg(long, requires = "from_audit")]
    asset: Option<String>,
}

/// The `[backtest]`-style TOML config: the same settings as the flags, arms in the arm grammar.
/// Relative paths are taken from the working directory.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BacktestConfigFile {
    data: Option<PathBuf>,
    #[serde(default)]
    calibrators: Vec<String>,
    confidence: Option<f64>,
    horizon: Option<usize>,
    burn_in: Option<usize>,
    out: Option<PathBuf>,
    rv_data: Option<PathBuf>,
    iv_data: Option<PathBuf>,
    refit_every: Option<usize>,
    #[serde(default)]
    events: Vec<String>,
    registry: Option<PathBuf>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
}

/// Settings after merging defaults, the config file and the flags (flags win).
pub struct Settings {
    pub rv_data: Option<PathBuf>,
    pub iv_data: Option<PathBuf>,
    pub refit_every: usize,
    pub data: PathBuf,
    pub arms: Vec<Arm>,
    pub confidence: f64,
    pub horizon: usize,
    pub burn_in: usize,
    pub out: PathBuf,
    pub events: Vec<(chrono::NaiveDate, String)>,
    pub registry: PathBuf,
    /// Replay an audit log (and which underlying) instead of computing `arms`.
    pub audit: Option<(PathBuf, Option<String>)>,
    /// The scoring window's first and last day.
    pub from: Option<NaiveDate>,
    /// See `from`.
    pub to: Option<NaiveDate>,
}

/// Parses `YYYY-MM-DD[=label]` events; none given means the known stress events.
pub fn parse_events(texts: &[String]) -> anyhow::Result<Vec<(chrono::NaiveDate, String)>> {
    if texts.is_empty() {
        return Ok(STRESS_EVENTS
            .iter()
            .map(|(d, l)| (chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").expect("valid built-in date"), l.to_string()))
            .collect());
    }
    texts
        .iter()
        .map(|t| {
            let (date, label) = t.split_once('=').unwrap_or((t.as_str(), ""));
            let day = chrono::NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
                .with_context(|| format!("--events: `{date}` is not a YYYY-MM-DD date"))?;
            Ok((day, if label.is_empty() { date.trim().to_string() } else { label.trim().to_string() }))
        })
        .collect()
}

fn settings(args: BacktestArgs) -> anyhow::Result<Settings> {
    let file = match &args.config {
        None => BacktestConfigFile::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("{}", path.display()))?
        }
    };
    let arm_texts = if args.calibrator.is_empty() { file.calibrators } else { args.calibrator };
    if arm_texts.is_empty() && args.from_audit.is_none() {
        bail!("no arm given: pass --calibrator ARM[,ARM...] or `calibrators = [...]` in --config");
    }
    let arms = arm_texts
        .iter()
        .map(|s| s.parse::<Arm>())
        .collect::<Result<Vec<_>, _>>()
        .context("--calibrator")?;
    // Reports are keyed by the canonical arm name: the same arm twice would overwrite itself.
    for (i, arm) in arms.iter().enumerate() {
        if arms[..i].contains(arm) {
            bail!("--calibrator: arm {arm} is given twice");
        }
    }
    let events = parse_events(if args.events.is_empty() { &file.events } else { &args.events })?;
    Ok(Settings {
        events,
        registry: args.registry.or(file.registry).unwrap_or_else(|| PathBuf::from("models")),
        rv_data: args.rv_data.or(file.rv_data),
        iv_data: args.iv_data.or(file.iv_data),
        refit_every: args.refit_every.or(file.refit_every).unwrap_or(22),
        data: args.data.or(file.data).context("no data: pass --data FILE or `data = ...` in --config")?,
        arms,
        confidence: args.confidence.or(file.confidence).unwrap_or(0.99),
        horizon: args.horizon.or(file.horizon).unwrap_or(1),
        // An audit log's rates are what was posted: nothing to learn first.
        burn_in: args.burn_in.or(file.burn_in).unwrap_or(if args.from_audit.is_some() { 0 } else { 250 }),
        out: args.out.or(file.out).context("no output folder: pass --out DIR or `out = ...` in --config")?,
        audit: args.from_audit.map(|path| (path, args.asset)),
        from: args.from.or(file.from),
        to: args.to.or(file.to),
    })
}

pub fn run(args: BacktestArgs) -> anyhow::Result<()> {
    execute(settings(args)?)
}

/// Runs the backtest these settings describe: prints the table and readiness, writes the report.
pub fn execute(args: Settings) -> anyhow::Result<()> {
    let mut prices = load_daily_closes(&args.data)?;
    // A scoring window ending early: prices after its last loss are cut.
    if let Some(to) = args.to {
        let keep = prices.bars_through(to, args.horizon).with_context(|| format!("--to {to}: no data up to it"))?;
        prices.truncate(keep);
    }
    let burn_in = match args.from {
        Some(from) => prices.timestamps.iter().position(|t| t.date() >= from).with_context(|| format!("--from {from}: no data from it on"))?.max(args.burn_in),
        None => args.burn_in,
    };
    let params = CalibrationParams::new(args.confidence, args.horizon, prices.frequency.periods_per_year())
        .context("--confidence/--horizon")?;
    let config = BacktestConfig { params, burn_in };
    // Model arms share one daily history: realized variance from --rv-data (intraday bars) when
    // given, else the daily bars' range, else (a `date,close` file) squared daily returns.
    let history = if args.arms.iter().any(|a| matches!(a.base, BaseCalibrator::Model { .. } | BaseCalibrator::Registered { .. })) {
        let last = prices.timestamps.last().map(|t| t.date()).context("no prices")?;
        Some(DailyHistory::load(&args.data, args.rv_data.as_deref())?.through(last))
    } else {
        None
    };
    let inputs = match &history {
        Some(history) => arm_inputs(&args.arms, history, args.iv_data.as_deref(), &prices, args.burn_in, args.refit_every)?,
        None => ArmInputs::default(),
    };
    // Registered models: the registry is opened once and each model loaded (and checked) once,
    // however many arms name it.
    let registry = if args.arms.iter().any(|a| matches!(a.base, BaseCalibrator::Registered { .. })) {
        Some(Registry::open(&args.registry)?)
    } else {
        None
    };
    let mut loaded_models: HashMap<ModelRef, (ModelCard, LoadedModel)> = HashMap::new();
    let mut with_rates = match &args.audit {
        Some((path, asset)) => {
            let rates = audit_rates(path, asset.as_deref(), &prices)?;
            // Score up to the last audited day (and its loss): after it, nothing was posted.
            let last = rates.iter().filter_map(|(_, r)| r.iter().rposition(Option::is_some)).max().unwrap_or(0);
            let keep = (last + args.horizon + 1).min(prices.values.len());
            prices.values.truncate(keep);
            prices.timestamps.truncate(keep);
            rates.into_iter().map(|(arm, mut r)| (arm, {
                r.truncate(keep);
                r
            })).collect()
        }
        None => Vec::with_capacity(args.arms.len()),
    };
    for arm in &args.arms {
        let base = match (&arm.base, &history, &registry) {
            (BaseCalibrator::Model { forecaster }, Some(history), _) => {
                model_margin_rates(*forecaster, arm, history, &inputs, &prices, &params, args.burn_in, args.refit_every)
                    .with_context(|| format!("forecasting with model:{}", forecaster.as_str()))?
            }
            (BaseCalibrator::Registered { model }, Some(history), Some(registry)) => {
                let reference = registry.resolve(&model.parse()?)?;
                if !loaded_models.contains_key(&reference) {
                    let (card, loaded, _) = registry.load(&reference)?;
                    println!(
                        "model:{model} is {reference} (trained on {}..{}); its rates start after the training window",
                        card.training.start, card.training.end
                    );
                    loaded_models.insert(reference.clone(), (card, loaded));
                }
                let (card, loaded) = loaded_models.get_mut(&reference).expect("inserted above");
                registered_margin_rates(card, loaded, history, &prices, &params, arm, &inputs)
                    .with_context(|| format!("forecasting with model:{model}"))?
            }
            _ => {
                with_rates.push((arm.clone(), arm.margin_rates(&prices.values, &params)?));
                continue;
            }
        };
        with_rates.push((arm.clone(), arm.with_apc(&base, &prices.values, &params)?));
    }
    let backtest = run_backtest_rates(&prices.values, with_rates, config)
        .with_context(|| format!("backtest of {}", args.data.display()))?;

    println!(
        "{}: {} rows, {}, {}; scored {} .. {} ({} days), confidence {}, horizon {} day(s)",
        args.data.display(),
        prices.values.len(),
        prices.frequency.describe(),
        prices.gaps.describe(),
        date_of(&prices, backtest.start),
        date_of(&prices, backtest.end),
        backtest.end - backtest.start + 1,
        args.confidence,
        args.horizon,
    );
    println!("{}", table(&backtest));
    println!(
        "p-values marked * reject at 5%. Zones: last 250 / worst 250 test days. Rises are relative (largest over the window)."
    );
    if args.horizon > 1 {
        println!("{}", foresight_train::report::OVERLAP_NOTE);
    }
    let events = events_in(&prices, &backtest, &args.events);
    if !events.is_empty() {
        println!("{}", readiness_table(&backtest, &events));
        println!("Readiness m(t−1) / max m(t..t+29), long/short: 1 = the margin was already at its peak when the event came.");
    }
    let files = write_backtest_report(&args.out, &prices, &backtest, &events)?;
    println!("wrote {}", files.summary.display());
    for s in &files.series {
        println!("wrote {}", s.display());
    }
    match (&files.chart, &files.chart_error) {
        (Some(c), _) => println!("wrote {}", c.display()),
        (None, Some(e)) => eprintln!("warning: chart not drawn: {e}"),
        (None, None) => {}
    }
    Ok(())
}

/// Each audited arm's rate per day of `prices` for one underlying: the last audited rate of a
/// day is that day's margin, kept until the next audited day (an account keeps its margin
/// between calibrations); `None` before the arm's first audited day.
fn audit_rates(path: &Path, asset: Option<&str>, prices: &Values) -> anyhow::Result<Vec<(Arm, Vec<Option<SideRates>>)>> {
    let records: Vec<AuditRecord> = read_lines(path).with_context(|| format!("--from-audit {}", path.display()))?;
    let assets: BTreeSet<&str> = records.iter().flat_map(|r| r.underlyings.iter().map(|u| u.asset.as_str())).collect();
    let asset = match (asset, assets.len()) {
        (Some(a), _) if assets.contains(a) => a,
        (None, 1) => assets.first().copied().unwrap_or_default(),
        _ => bail!("--asset: {} holds margins for {assets:?}; name one of them", path.display()),
    };
    // Arms in order of first appearance; per arm, date → rate (later records of a day win).
    let mut arms: Vec<(String, BTreeMap<NaiveDate, f64>)> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        for u in r.underlyings.iter().filter(|u| u.asset == asset) {
            let line = i + 1;
            let date = NaiveDate::parse_from_str(&u.as_of, "%Y-%m-%d").with_context(|| format!("{}:{line}: as_of `{}`", path.display(), u.as_of))?;
            if !(u.rate.is_finite() && u.rate >= 0.0) {
                bail!("{}:{line}: rate {} of arm {} is not a margin rate", path.display(), u.rate, r.arm);
            }
            match arms.iter_mut().find(|(a, _)| *a == r.arm) {
                Some((_, days)) => {
                    days.insert(date, u.rate);
                }
                None => arms.push((r.arm.clone(), BTreeMap::from([(date, u.rate)]))),
            }
        }
    }
    let dates: HashSet<NaiveDate> = prices.timestamps.iter().map(|t| t.date()).collect();
    let mut out = Vec::with_capacity(arms.len());
    for (name, days) in arms {
        let missing = days.keys().filter(|d| !dates.contains(d)).count();
        if missing > 0 {
            eprintln!("warning: {missing} audited day(s) of {name} are not in the price data; they are not scored");
        }
        let arm: Arm = name.parse().with_context(|| format!("{}: arm `{name}`", path.display()))?;
        let mut rates: Vec<Option<SideRates>> = prices.timestamps.iter().map(|t| days.get(&t.date()).map(|r| SideRates::both(*r))).collect();
        forward_fill(&mut rates);
        println!("audited arm {arm}: {} day(s) of {asset}, {} .. {}", days.len(), days.keys().next().map_or("-".into(), |d| d.to_string()), days.keys().last().map_or("-".into(), |d| d.to_string()));
        out.push((arm, rates));
    }
    if out.is_empty() {
        bail!("{}: no audited margin", path.display());
    }
    Ok(out)
}

fn p_cell(t: &LrTest) -> Cell {
    let mark = if t.rejects() { "*" } else { "" };
    Cell::new(format!("{:.3}{mark}", t.p_value)).set_alignment(CellAlignment::Right)
}

/// A rate as a percentage with two decimals (the tables of `backtest` and `frontier`).
pub fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

fn rise(r: Option<Rise>) -> String {
    match r.and_then(|r| r.rel) {
        Some(rel) => format!("{:+.0}%", 100.0 * rel),
        None => "-".into(),
    }
}

/// The side-by-side table: one row per arm and side.
fn table(bt: &Backtest) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "arm", "side", "obs", "exc", "rate", "kupiec p", "ind p", "cc p", "zone", "avg margin", "peak/trough",
        "rise 1d", "rise 5d", "rise 30d", "shortfall",
    ]);
    for arm in &bt.arms {
        for side in Side::BOTH {
            let s = arm.side(side);
            let right = |text: String| Cell::new(text).set_alignment(CellAlignment::Right);
            t.add_row(vec![
                Cell::new(arm.arm.to_string()),
                Cell::new(side.as_str()),
                right(s.observations.to_string()),
                right(s.exceptions.to_string()),
                right(pct(s.exception_rate)),
                p_cell(&s.kupiec),
                p_cell(&s.christoffersen_ind),
                p_cell(&s.christoffersen_cc),
                Cell::new(format!("{}/{}", s.traffic_light.last_250.as_str(), s.traffic_light.worst_250.as_str())),
                right(pct(s.avg_margin)),
                right(s.peak_to_trough.map_or("-".into(), |x| format!("{x:.1}"))),
                right(rise(s.max_rise_1d)),
                right(rise(s.max_rise_5d)),
                right(rise(s.max_rise_30d)),
                right(s.mean_shortfall.map_or("-".into(), pct)),
            ]);
        }
    }
    t
}


/// Readiness of every arm at every event, long/short.
fn readiness_table(bt: &Backtest, events: &[Event]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["readiness".to_string()];
    header.extend(events.iter().map(|e| e.date.clone()));
    t.set_header(header);
    let show = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.2}"));
    for arm in &bt.arms {
        let mut row = vec![Cell::new(arm.arm.to_string())];
        row.extend(events.iter().map(|e| {
            Cell::new(format!("{}/{}", show(arm.readiness(Side::Long, e.index)), show(arm.readiness(Side::Short, e.index))))
                .set_alignment(CellAlignment::Right)
        }));
        t.add_row(row);
    }
    t
}
