//! `foresight inspect` and `foresight features`: look at a data file the way the models will.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use foresight_core::features::FeatureSpec;
use foresight_train::data::{Frequency, Series, load, load_ohlcv};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// OHLCV or `date,<value>` file (CSV or Parquet).
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// For intraday OHLCV: write the daily realized variance (date, rv, intervals, expected).
    #[arg(long, value_name = "FILE.csv")]
    rv_out: Option<PathBuf>,
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let ohlcv = match load(&args.data)? {
        Series::Ohlcv(o) => o,
        Series::Values(v) => {
            let lo = v.values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            println!("{}: single-value series `{}`", args.data.display(), v.name);
            println!("  rows      {}", v.values.len());
            println!("  range     {} .. {}", v.timestamps[0], v.timestamps[v.timestamps.len() - 1]);
            println!("  frequency {}", v.frequency.describe());
            println!("  gaps      {}", v.gaps.describe());
            println!("  values    min {lo}, max {hi}");
            return Ok(());
        }
    };
    println!("{}: OHLCV bars", args.data.display());
    println!("  rows      {}", ohlcv.bars.len());
    println!("  range     {} .. {}", ohlcv.timestamps[0], ohlcv.timestamps[ohlcv.timestamps.len() - 1]);
    println!("  frequency {}", ohlcv.frequency.describe());
    println!("  gaps      {}", ohlcv.gaps.describe());
    println!("  volume    {}", if ohlcv.volume.is_some() { "present" } else { "absent" });
    if let Frequency::Intraday { .. } = ohlcv.frequency {
        let rv = ohlcv.daily_realized_variance()?;
        let with_rv = rv.iter().filter(|(_, d)| d.rv.is_some()).count();
        let partial = rv.iter().filter(|(_, d)| d.rv.is_some() && d.intervals < d.expected).count();
        println!(
            "  daily RV  {} days: {} with RV ({} scaled up for missing intervals), {} missing (fewer than half the intervals)",
            rv.len(),
            with_rv,
            partial,
            rv.len() - with_rv
        );
        if let Some(path) = args.rv_out {
            let io = || format!("writing {}", path.display());
            create_parent(&path)?;
            let mut w = std::io::BufWriter::new(std::fs::File::create(&path).with_context(io)?);
            writeln!(w, "date,rv,intervals,expected").with_context(io)?;
            for (date, d) in &rv {
                let rv = d.rv.map_or(String::new(), |v| v.to_string());
                writeln!(w, "{date},{rv},{},{}", d.intervals, d.expected).with_context(io)?;
            }
            w.flush().with_context(io)?;
            println!("wrote {}", path.display());
        }
    } else if args.rv_out.is_some() {
        anyhow::bail!("--rv-out needs intraday bars; {} is daily", args.data.display());
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct FeaturesArgs {
    /// OHLCV file; intraday bars are aggregated to UTC days.
    #[arg(long, value_name = "FILE", required_unless_present = "spec")]
    data: Option<PathBuf>,
    /// Intraday OHLCV file whose daily realized variance feeds the HAR features (default: each
    /// day's Garman-Klass range variance).
    #[arg(long, value_name = "FILE")]
    intraday: Option<PathBuf>,
    /// Output CSV (one row per day, one column per feature; empty where not yet defined).
    #[arg(long, value_name = "FILE.csv", required_unless_present = "spec")]
    out: Option<PathBuf>,
    /// Print the feature spec (JSON) and exit.
    #[arg(long)]
    spec: bool,
}

pub fn run_features(args: FeaturesArgs) -> anyhow::Result<()> {
    let spec = FeatureSpec::v1();
    if args.spec {
        println!("{}", serde_json::to_string_pretty(&spec)?);
        return Ok(());
    }
    let (Some(data), Some(out)) = (args.data, args.out) else {
        anyhow::bail!("--data and --out are required");
    };
    let daily = load_ohlcv(&data)?.to_daily();
    let rv = match &args.intraday {
        None => None,
        Some(path) => {
            let by_day: std::collections::HashMap<_, _> =
                load_ohlcv(path)?.daily_realized_variance()?.into_iter().map(|(d, rv)| (d, rv.rv)).collect();
            Some(daily.timestamps.iter().map(|t| by_day.get(&t.date()).copied().flatten()).collect::<Vec<_>>())
        }
    };
    let frame = spec.compute(&daily.bars, rv.as_deref())?;
    let io = || format!("writing {}", out.display());
    create_parent(&out)?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(&out).with_context(io)?);
    writeln!(w, "date,{}", frame.names.join(",")).with_context(io)?;
    for (i, t) in daily.timestamps.iter().enumerate() {
        let cells: Vec<String> = frame.columns.iter().map(|c| c[i].map_or(String::new(), |v| v.to_string())).collect();
        writeln!(w, "{},{}", t.date(), cells.join(",")).with_context(io)?;
    }
    w.flush().with_context(io)?;
    println!(
        "wrote {} ({} days x {} features, spec {}, HAR from {})",
        out.display(),
        daily.bars.len(),
        frame.names.len(),
        spec.version,
        if args.intraday.is_some() { "intraday RV" } else { "daily Garman-Klass range" }
    );
    Ok(())
}

/// Creates the folder an output file goes into.
fn create_parent(path: &std::path::Path) -> anyhow::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
        }
        _ => Ok(()),
    }
}
