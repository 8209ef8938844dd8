//! `foresight report`: one self-contained HTML page of an offline run (a backtest, an
//! evaluation, a frontier or impulse folder) for a risk officer; see
//! `foresight_train::report::offline_report`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run's output folder: `foresight backtest --out`, `evaluate --out`, `frontier`, `impulse`.
    #[arg(long = "from", value_name = "DIR")]
    from: PathBuf,
    /// The HTML file to write [default: DIR/report.html].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let html = foresight_train::report::offline_report(&args.from).with_context(|| format!("--from {}", args.from.display()))?;
    let out = args.out.unwrap_or_else(|| args.from.join("report.html"));
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("--out {}", out.display()))?;
    }
    std::fs::write(&out, html).with_context(|| format!("--out {}", out.display()))?;
    println!("wrote {} (self-contained: open it from a file:// URL)", out.display());
    Ok(())
}
