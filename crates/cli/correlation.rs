//! `foresight correlation`: the cross-asset correlation the service needs for portfolio
//! offsets, estimated on overlapping dates with shrinkage, stored as a registry artifact.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use foresight_registry::Registry;
use foresight_train::correlation::estimate;
use foresight_train::data::load_daily_closes;

#[derive(Debug, Args)]
pub struct CorrelationArgs {
    /// `NAME=FILE` per asset (daily or intraday closes), at least two.
    #[arg(long = "asset", value_name = "NAME=FILE", required = true)]
    assets: Vec<String>,
    /// First date to use (YYYY-MM-DD).
    #[arg(long)]
    start: Option<chrono::NaiveDate>,
    /// Last date to use (YYYY-MM-DD).
    #[arg(long)]
    end: Option<chrono::NaiveDate>,
    /// The registry the artifact goes into: a folder or `s3://bucket/prefix`.
    #[arg(long, value_name = "DIR|URL", default_value = "models")]
    registry: PathBuf,
    /// Print, store nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: CorrelationArgs) -> anyhow::Result<()> {
    let mut assets = Vec::new();
    for a in &args.assets {
        let (name, file) = a.split_once('=').with_context(|| format!("--asset `{a}`: expected NAME=FILE"))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            bail!("--asset `{a}`: the name is letters and digits (e.g. BTC)");
        }
        assets.push((name.to_string(), load_daily_closes(std::path::Path::new(file))?));
    }
    let artifact = estimate(&assets, args.start, args.end)?;
    println!(
        "{} aligned daily returns on common dates {}..{}; shrinkage {:.3} (Schäfer-Strimmer)",
        artifact.observations, artifact.window.0, artifact.window.1, artifact.intensity
    );
    let width = artifact.assets.iter().map(String::len).max().unwrap_or(3).max(6);
    print!("{:width$}", "");
    for a in &artifact.assets {
        print!("  {a:>width$}");
    }
    println!();
    for (i, a) in artifact.assets.iter().enumerate() {
        print!("{a:width$}");
        for j in 0..artifact.assets.len() {
            print!("  {:>width$.3}", artifact.matrix[i][j]);
        }
        println!("   (sample: {})", artifact.sample[i].iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(" "));
    }
    if args.dry_run {
        return Ok(());
    }
    let mut registry = Registry::open(&args.registry)?;
    let description = format!("{} on {}..{} ({} returns), shrinkage {:.3}", artifact.assets.join("/"), artifact.window.0, artifact.window.1, artifact.observations, artifact.intensity);
    let stored = registry.put_artifact("correlation", &serde_json::to_value(&artifact)?, &description)?;
    println!("wrote {} (sha256 {})", registry.describe(&stored.path), stored.sha256);
    Ok(())
}
