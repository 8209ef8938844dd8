//! `foresight evaluate`: walk-forward comparison of variance forecasters on realized variance.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use foresight_train::data::load_ohlcv;
use foresight_registry::{ModelRef, Registry};
use foresight_train::evaluate::{DailyHistory, Forecaster, WalkForward, evaluate_with, registered_forecasts};

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
    /// Registry folder for registered models.
    #[arg(long, value_name = "DIR", default_value = "models")]
    registry: PathBuf,
    /// Write `forecast_scores.json` here.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<()> {
    let history = DailyHistory::from_bars(&load_ohlcv(&args.data)?)?;
    if args.train_days >= history.dates.len() {
        bail!("--train-days {} leaves nothing to evaluate in {} days", args.train_days, history.dates.len());
    }
    let first_origin = history.dates[args.train_days];
    let mut forecasters = Vec::new();
    let mut registered = Vec::new();
    for m in &args.models {
        if let Some(f) = Forecaster::parse(m) {
            forecasters.push(f);
            continue;
        }
        let reference: ModelRef = m.parse().with_context(|| format!("--models: `{m}` is neither a forecaster (ewma, garch, garch-t, gjr, gjr-t, har, log-har) nor a model reference"))?;
        let registry = Registry::open(&args.registry)?;
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
        let forecasts = registered_forecasts(&card, &mut loaded, &history, &args.horizons)?;
        registered.push((card.reference().to_string(), forecasts));
    }
    if forecasters.is_empty() && registered.is_empty() {
        bail!("--models: name at least one forecaster");
    }
    let config = WalkForward { train_days: args.train_days, refit_every: args.refit_every, horizons: args.horizons.clone() };
    let scores = evaluate_with(&history, &forecasters, registered, &config).with_context(|| format!("evaluating on {}", args.data.display()))?;
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
    if let Some(dir) = args.out {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("forecast_scores.json");
        let doc = serde_json::json!({
            "data": args.data.display().to_string(),
            "rv_source": history.rv_source,
            "train_days": args.train_days,
            "refit_every": args.refit_every,
            "first_origin": history.dates[args.train_days].to_string(),
            "scores": scores,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
