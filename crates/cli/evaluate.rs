//! `foresight evaluate`: walk-forward comparison of variance forecasters on realized variance.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use foresight_train::data::load_ohlcv;
use foresight_train::evaluate::{DailyHistory, Forecaster, WalkForward, evaluate};

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// OHLCV bars: intraday bars give daily realized variance (the target); daily bars fall
    /// back to the Garman-Klass range variance.
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Forecasters: ewma, garch, garch-t, gjr, gjr-t, har, log-har.
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
    /// Write `forecast_scores.json` here.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<()> {
    let forecasters = args
        .models
        .iter()
        .map(|m| Forecaster::parse(m).with_context(|| format!("--models: unknown forecaster `{m}` (ewma, garch, garch-t, gjr, gjr-t, har, log-har)")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if forecasters.is_empty() {
        bail!("--models: name at least one forecaster");
    }
    let history = DailyHistory::from_bars(&load_ohlcv(&args.data)?)?;
    let config = WalkForward { train_days: args.train_days, refit_every: args.refit_every, horizons: args.horizons.clone() };
    let scores = evaluate(&history, &forecasters, &config).with_context(|| format!("evaluating on {}", args.data.display()))?;
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
