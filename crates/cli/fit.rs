//! `foresight fit`: fit a GARCH-family model to a price history's daily percent log returns
//! (constant mean, as `arch`'s defaults) and print the estimates.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use foresight_core::features::percent_log_returns;
use foresight_core::volatility::Innovation;
use foresight_train::data::load_daily_closes;
use foresight_train::fit::GarchParams;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Model {
    /// GARCH(1,1).
    Garch,
    /// GJR-GARCH(1,1,1): GARCH with a leverage term for negative shocks.
    Gjr,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Dist {
    /// Standard normal innovations.
    Normal,
    /// Standardised Student-t innovations.
    T,
}

#[derive(Debug, Args)]
pub struct FitArgs {
    /// Volatility process.
    #[arg(long, value_enum)]
    model: Model,
    /// Innovation distribution.
    #[arg(long, value_enum, default_value = "normal")]
    dist: Dist,
    /// Price history (OHLCV or `date,<price>`, CSV or Parquet; intraday is aggregated to days).
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Print one JSON object (mu, omega, alpha, [gamma], beta, [nu], loglik, aic, bic, nobs,
    /// std_err, at_boundary, ...) instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: FitArgs) -> anyhow::Result<()> {
    let prices = load_daily_closes(&args.data)?;
    let returns = percent_log_returns(&prices.values)?;
    let innovation = match args.dist {
        Dist::Normal => Innovation::Normal,
        Dist::T => Innovation::StudentT,
    };
    let fit = GarchParams::new(matches!(args.model, Model::Gjr))
        .innovation(innovation)
        .fit(&returns)
        .with_context(|| format!("fitting {}", args.data.display()))?;
    if args.json {
        println!("{}", fit.to_json());
        return Ok(());
    }
    println!(
        "{:?}-{:?} on {} ({} daily percent log returns, constant mean)",
        args.model,
        args.dist,
        args.data.display(),
        fit.nobs()
    );
    println!("{:>8} {:>14} {:>12}", "param", "estimate", "robust s.e.");
    for ((name, value), se) in fit.model().param_names().iter().zip(fit.params()).zip(fit.std_err()) {
        let se = se.map_or("-".to_string(), |s| format!("{s:.6}"));
        println!("{name:>8} {value:>14.6} {se:>12}");
    }
    println!(
        "loglik {:.4}  aic {:.4}  bic {:.4}  persistence {:.6}{}",
        fit.loglik(),
        fit.model().aic(fit.loglik()),
        fit.model().bic(fit.loglik(), fit.nobs()),
        fit.persistence(),
        if fit.at_boundary() { "  (at the stationarity boundary α + γ/2 + β = 1)" } else { "" }
    );
    Ok(())
}
