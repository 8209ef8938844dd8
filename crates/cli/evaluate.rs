//! `foresight evaluate`: walk-forward comparison of variance forecasters on realized variance.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use foresight_train::data::{ExogenousSpec, load_exogenous, load_ohlcv};
use foresight_core::calibrate::Arm;
use foresight_registry::{ModelRef, Registry};
use foresight_train::report::draw_forecast_chart;

use crate::backtest;
use foresight_train::evaluate::{
    DailyHistory, Forecaster, WalkForward, evaluate_with, exogenous_gain, registered_forecasts, registered_regime_scores,
};

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// OHLCV bars: intraday bars give daily realized variance (the target); daily bars fall
    /// back to the Garman-Klass range variance.
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Forecasters: ewma, garch, garch-t, gjr, gjr-t, har, log-har (re-fitted walk-forward), and
    /// registered models by name (`btc-neural`, `btc-log-har@v1`), run frozen through ONNX
    /// Runtime; the evaluation must start after every registered model's training window.
    #[arg(long, value_delimiter = ',', default_value = "ewma,garch,gjr-t,har,log-har")]
    models: Vec<String>,
    /// Horizons in days.
    #[arg(long, value_delimiter = ',', default_value = "1,5,22")]
    horizons: Vec<usize>,
    /// Days of history before the first forecast.
    #[arg(long, default_value_t = 1000)]
    train_days: usize,
    /// Re-estimate every this many days (expanding window).
    #[arg(long, default_value_t = 22)]
    refit_every: usize,
    /// Exogenous inputs whose forecast gain over log-HAR (HAR-X) to measure:
    /// `NAME=FILE[:iv|sum|last]`, e.g. `dvol=data/btc_dvol_1d.csv:iv` (annualised implied vol in
    /// percent) or `funding=data/btc_funding_8h.csv:sum` (daily sum of 8-hour rates).
    #[arg(long = "exog", value_name = "NAME=FILE[:TRANSFORM]")]
    exogenous: Vec<String>,
    /// Training days with the exogenous input before its first HAR-X forecast.
    #[arg(long, default_value_t = 250)]
    exog_min_days: usize,
    /// Also backtest each forecaster as a margin arm on these daily closes (e.g.
    /// data/btc_usdt_1d.csv), next to EWMA and historical simulation, with readiness at the
    /// stress events; the report goes to `<out>/margin` (or reports/evaluate_margin).
    #[arg(long, value_name = "FILE")]
    margin_data: Option<PathBuf>,
    /// Arms beside the forecasters in the margin backtest.
    #[arg(long, value_delimiter = ',', default_value = "ewma,hs:250,static:0.10")]
    margin_baselines: Vec<String>,
    /// The registry of registered models: a folder or `s3://bucket/prefix`.
    #[arg(long, value_name = "DIR|URL", default_value = "models")]
    registry: PathBuf,
    /// Write `forecast_scores.json` here.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<()> {
    let bars = load_ohlcv(&args.data)?;
    let periods_per_year = bars.to_daily().frequency.periods_per_year();
    let history = DailyHistory::from_bars(&bars)?;
    if args.train_days >= history.dates.len() {
        bail!("--train-days {} leaves nothing to evaluate in {} days", args.train_days, history.dates.len());
    }
    let first_origin = history.dates[args.train_days];
    let mut forecasters = Vec::new();
    let mut registered = Vec::new();
    let mut regime_scores = Vec::new();
    let mut registry: Option<Registry> = None;
    for m in &args.models {
        if let Some(f) = Forecaster::parse(m) {
            forecasters.push(f);
            continue;
        }
        let reference: ModelRef = m.parse().with_context(|| format!("--models: `{m}` is neither a forecaster (ewma, garch, garch-t, gjr, gjr-t, har, log-har) nor a model reference"))?;
        if registry.is_none() {
            registry = Some(Registry::open(&args.registry)?);
        }
        let registry = registry.as_ref().expect("opened above");
        let (card, mut loaded, _) = registry
            .load(&reference)
            .with_context(|| format!("--models: `{m}` is not a forecaster (ewma, garch, garch-t, gjr, gjr-t, har, log-har), so it must be a registered model"))?;
        // Scoring a model on days it was fitted on would flatter it: refuse.
        if first_origin <= card.training.end {
            bail!(
                "{} was trained on {}..{}; this evaluation starts at {first_origin}: raise --train-days so the first forecast comes after {}",
                card.reference(),
                card.training.start,
                card.training.end,
                card.training.end
            );
        }
        if card.onnx.outputs.iter().any(|o| o.starts_with("p_high_regime_h")) {
            regime_scores.extend(registered_regime_scores(&card, &mut loaded, &history, args.train_days)?);
        }
        if card.onnx.outputs.iter().any(|o| o.starts_with("variance_h")) {
            let forecasts = registered_forecasts(&card, &mut loaded, &history, &args.horizons)?;
            registered.push((card.reference().to_string(), forecasts));
        }
    }
    if forecasters.is_empty() && registered.is_empty() {
        bail!("--models: name at least one variance forecaster");
    }
    let config = WalkForward { train_days: args.train_days, refit_every: args.refit_every, horizons: args.horizons.clone() };
    let (scores, forecasts) =
        evaluate_with(&history, &forecasters, registered, &config).with_context(|| format!("evaluating on {}", args.data.display()))?;
    println!(
        "{}: {} days, RV from {}; first forecast {} (after {} days), refit every {} days, expanding window",
        args.data.display(),
        history.dates.len(),
        history.rv_source,
        history.dates[args.train_days],
        args.train_days,
        args.refit_every
    );
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec!["h", "model", "n", "QLIKE", "vs log-HAR", "MSE (%²)²", "MZ R²", "DM vs log-HAR p", "DM vs GARCH p"]);
    for h in &args.horizons {
        let base = scores.iter().find(|s| s.horizon == *h && s.model == "log-har").map(|s| s.qlike);
        for s in scores.iter().filter(|s| s.horizon == *h) {
            let right = |t: String| Cell::new(t).set_alignment(CellAlignment::Right);
            let p = |d: Option<foresight_core::forecast::DieboldMariano>| {
                d.map_or("-".to_string(), |d| format!("{:.3}{}", d.p_value, if d.statistic < 0.0 { " (better)" } else { " (worse)" }))
            };
            table.add_row(vec![
                right(h.to_string()),
                Cell::new(&s.model),
                right(s.n.to_string()),
                right(format!("{:.4}", s.qlike)),
                right(base.map_or("-".into(), |b| format!("{:+.1}%", 100.0 * (s.qlike / b - 1.0)))),
                right(format!("{:.3}", s.mse)),
                right(format!("{:.3}", s.mincer_zarnowitz.r2)),
                right(p(s.dm_vs_log_har)),
                right(p(s.dm_vs_garch)),
            ]);
        }
    }
    println!("{table}");
    println!("QLIKE = RV/F − ln(RV/F) − 1 (0 is perfect). DM: Diebold-Mariano on QLIKE, Newey-West over h−1 lags.");
    if !regime_scores.is_empty() {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(vec!["regime forecast", "h", "n", "Brier", "climatology", "vs climatology", "event freq."]);
        for r in &regime_scores {
            let right = |t: String| Cell::new(t).set_alignment(CellAlignment::Right);
            table.add_row(vec![
                Cell::new(&r.model),
                right(r.horizon.to_string()),
                right(r.n.to_string()),
                right(format!("{:.4}", r.brier)),
                right(format!("{:.4}", r.climatology)),
                right(format!("{:+.1}%", 100.0 * (r.brier / r.climatology - 1.0))),
                right(format!("{:.3}", r.event_frequency)),
            ]);
        }
        println!("{table}");
        println!("P(stressed regime within h days): days labelled by the mixture each card stores; climatology = the training-window frequency.");
    }
    let mut gains = Vec::new();
    for spec in &args.exogenous {
        let (name, rest) = spec.split_once('=').with_context(|| format!("--exog `{spec}`: expected NAME=FILE[:iv|sum|last]"))?;
        let source = ExogenousSpec::parse(rest, periods_per_year).map_err(anyhow::Error::msg).context("--exog")?;
        let x = load_exogenous(&source, &history.dates)?;
        let known = x.iter().filter(|v| v.is_some()).count();
        println!("{name}: {} ({}), known on {known} of {} days", source.file.display(), source.transform.name(), history.dates.len());
        gains.extend(exogenous_gain(&history, name, &x, &args.horizons, args.exog_min_days, args.refit_every)?);
    }
    if !gains.is_empty() {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(vec!["input", "h", "from", "n", "fallback", "QLIKE log-HAR", "QLIKE HAR-X", "change", "DM p", "coef"]);
        for g in &gains {
            let right = |t: String| Cell::new(t).set_alignment(CellAlignment::Right);
            table.add_row(vec![
                Cell::new(&g.input),
                right(g.horizon.to_string()),
                Cell::new(g.first_origin.to_string()),
                right(g.n.to_string()),
                right(g.fallback.to_string()),
                right(format!("{:.4}", g.qlike_log_har)),
                right(format!("{:.4}", g.qlike_har_x)),
                right(format!("{:+.1}%", 100.0 * g.change)),
                right(format!("{:.3}", g.dm.p_value)),
                right(format!("{:.3}", g.coefficient)),
            ]);
        }
        println!("{table}");
        println!("HAR-X = log-HAR + the input, walk-forward on the same origins; `fallback` days lacked the input and used log-HAR.");
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        if let Some(k) = args.horizons.iter().position(|h| *h == 1) {
            let one_day: Vec<(String, Vec<Option<f64>>)> = forecasts.iter().map(|(n, f)| (n.clone(), f[k].clone())).collect();
            let chart = dir.join("forecast_chart.png");
            match draw_forecast_chart(&chart, &history.dates, &history.rv, &one_day, args.train_days) {
                Ok(()) => println!("wrote {}", chart.display()),
                Err(e) => eprintln!("warning: chart not drawn: {e}"),
            }
        }
        let path = dir.join("forecast_scores.json");
        let doc = serde_json::json!({
            "data": args.data.display().to_string(),
            "rv_source": history.rv_source,
            "train_days": args.train_days,
            "refit_every": args.refit_every,
            "first_origin": history.dates[args.train_days].to_string(),
            "scores": scores,
            "exogenous": gains,
            "regime": regime_scores,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if let Some(prices) = &args.margin_data {
        // Each forecaster becomes a `model:` arm, beside the reactive baselines.
        let mut arms: Vec<Arm> = args.margin_baselines.iter().map(|a| a.parse()).collect::<Result<_, _>>().context("--margin-baselines")?;
        for m in forecasts.iter().map(|(name, _)| name).filter(|m| m.as_str() != "ewma") {
            arms.push(format!("model:{m}").parse().with_context(|| format!("--models {m} as a margin arm"))?);
        }
        println!();
        backtest::execute(backtest::Settings {
            rv_data: Some(args.data.clone()),
            iv_data: None,
            refit_every: args.refit_every,
            data: prices.clone(),
            arms,
            confidence: 0.99,
            horizon: 1,
            burn_in: args.train_days,
            out: args.out.as_ref().map_or_else(|| PathBuf::from("reports/evaluate_margin"), |d| d.join("margin")),
            events: backtest::parse_events(&[])?,
            registry: args.registry.clone(),
            audit: None,
            from: None,
            to: None,
        })?;
    }
    Ok(())
}
