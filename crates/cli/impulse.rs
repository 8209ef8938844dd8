//! `foresight impulse`: how each arm's margin answers a volatility step on simulated paths.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use foresight_core::calibrate::Arm;
use foresight_train::impulse::{ImpulseSettings, run_impulse};
use foresight_train::report::draw_impulse_chart;

#[derive(Debug, Args)]
pub struct ImpulseArgs {
    /// The real daily series whose standardised residuals build the paths and on which model
    /// arms' forecasters are fitted (OHLCV or `date,close`).
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Comma-separated arms (reactive, or `model:<family>` with policies and APC options).
    #[arg(long, value_name = "ARM[,ARM...]", value_delimiter = ',', required = true)]
    calibrator: Vec<String>,
    /// Volatility multipliers at day 0.
    #[arg(long, value_delimiter = ',', default_values_t = [2.0, 3.0, 5.0])]
    steps: Vec<f64>,
    /// Simulated paths per step.
    #[arg(long, default_value_t = 200)]
    paths: usize,
    /// Seed of the path generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Calm days before the step (enough for every arm's history, e.g. hs:500).
    #[arg(long, default_value_t = 750)]
    calm_days: usize,
    /// Days at the stepped volatility.
    #[arg(long, default_value_t = 120)]
    high_days: usize,
    /// Calm days after the step ends.
    #[arg(long, default_value_t = 120)]
    after_days: usize,
    /// Margin confidence.
    #[arg(long, default_value_t = 0.99)]
    confidence: f64,
    /// Margin period of risk in days.
    #[arg(long, default_value_t = 1)]
    horizon: usize,
    /// Output folder for impulse.json and impulse.png.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn run(args: ImpulseArgs) -> anyhow::Result<()> {
    let arms: Vec<Arm> = args.calibrator.iter().map(|a| a.parse()).collect::<Result<_, _>>().context("--calibrator")?;
    if args.paths == 0 || args.steps.is_empty() {
        anyhow::bail!("--paths and --steps: at least one each");
    }
    let settings = ImpulseSettings {
        steps: args.steps,
        paths: args.paths,
        seed: args.seed,
        calm_days: args.calm_days,
        high_days: args.high_days,
        after_days: args.after_days,
        show_before: 30,
        confidence: args.confidence,
        horizon: args.horizon,
    };
    let run = run_impulse(&args.data, &arms, &settings, None).with_context(|| format!("impulse responses on {}", args.data.display()))?;
    println!(
        "{}: {} residuals, calm daily volatility {:.2}% (median EWMA); {} paths per step, seed {}",
        run.data,
        run.residuals,
        100.0 * run.sigma,
        settings.paths,
        settings.seed
    );
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec!["arm", "step", "settled level", "days to 90% of step", "overshoot", "exceptions, first 10 days"]);
    let right = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
    for r in &run.responses {
        let x = &r.response;
        t.add_row(vec![
            Cell::new(&r.arm),
            right(format!("×{}", r.step)),
            right(format!("{:.2}", x.settled)),
            right(x.days_to_90.map_or(format!("> {}", settings.high_days), |d| d.to_string())),
            right(format!("{:.2}", x.overshoot)),
            right(format!("{:.2}", x.exceptions_10d)),
        ]);
    }
    println!("{t}");
    println!(
        "Settled level: median margin ÷ pre-step margin over the last 20 stepped days (a margin proportional to volatility settles at the step); \
         days to 90%: until the median reaches 90% of the step; overshoot: its peak ÷ the step; exceptions: per path, long and short (expected at 99%: 0.2)."
    );
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let json = args.out.join("impulse.json");
    std::fs::write(&json, serde_json::to_string_pretty(&run)? + "\n").with_context(|| format!("writing {}", json.display()))?;
    println!("wrote {}", json.display());
    let png = args.out.join("impulse.png");
    let title = format!("Impulse responses on {} residuals ({} paths, median and 5–95% band)", run.data, settings.paths);
    match draw_impulse_chart(&png, &title, &run) {
        Ok(()) => println!("wrote {}", png.display()),
        Err(e) => eprintln!("warning: chart not drawn: {e}"),
    }
    Ok(())
}
