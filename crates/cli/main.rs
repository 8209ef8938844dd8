//! `foresight`: the command line for people.
//!
//! Subcommands today: `backtest` (the margin yardstick on real history), `inspect` (validate a
//! data file, report its calendar, gaps and intraday realized variance), `features` (compute the
//! versioned feature set), `fit` (GARCH-family maximum likelihood), `evaluate` (walk-forward
//! forecast comparison), `frontier` (the cost–procyclicality frontier of a grid of arms, the
//! frozen choice), `impulse` (responses to volatility steps), `train` (recipes → ONNX models
//! with cards in the registry), `models` (list, verify, promote, roll back, diff registered
//! models), `correlation`, `calibrate` and `publish` (clients of the service), `serve` (runs the
//! service binary) and `doctor` (check the native runtimes).

mod audit;
mod backtest;
mod calibrate;
mod correlation;
mod doctor;
mod evaluate;
mod fit;
mod frontier;
mod impulse;
mod inspect;
mod models;
mod publish;
mod report;
mod serve;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Forward-looking margin calibration: backtests, features and (soon) forecasters.
#[derive(Debug, Parser)]
#[command(name = "foresight", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Walk-forward margin backtest of one or more calibration arms on a price history.
    Backtest(backtest::BacktestArgs),
    /// Validate a data file and report its calendar, gaps and (intraday) daily realized variance.
    Inspect(inspect::InspectArgs),
    /// Compute the versioned feature set (feature spec v1) of an OHLCV file into a CSV.
    Features(inspect::FeaturesArgs),
    /// Fit GARCH(1,1) or GJR-GARCH(1,1,1) (normal or Student-t) by maximum likelihood.
    Fit(fit::FitArgs),
    /// A grid of reactive and forward arms on one series: the cost–procyclicality frontier on a
    /// development and a report window, the selection rule's pick and the frozen arm.
    Frontier(frontier::FrontierArgs),
    /// Each arm's margin around a simulated volatility step (×2, ×3, ×5): reaction speed,
    /// overshoot and the losses that break through while it catches up.
    Impulse(impulse::ImpulseArgs),
    /// Walk-forward comparison of variance forecasters (EWMA, GARCH, HAR) on realized variance.
    Evaluate(evaluate::EvaluateArgs),
    /// Train the forecasters of a recipe (training/<name>.toml), check their ONNX export and
    /// register them as challengers.
    Train(train::TrainArgs),
    /// The model registry: list, show, verify, promote, rollback, diff.
    Models(models::ModelsArgs),
    /// Ask a running foresight-serve for an account's forward-looking margin (portfolio JSON).
    Calibrate(calibrate::CalibrateArgs),
    /// Backfill a running foresight-serve's market state with daily history from files.
    Publish(publish::PublishArgs),
    /// The audit log replicas share on NATS: export it to a file replays and reports read.
    Audit(audit::AuditArgs),
    /// Run the calibration service (the foresight-serve binary beside this one) with these arguments.
    Serve(serve::ServeArgs),
    /// Estimate the cross-asset correlation (common dates, shrinkage) into the registry.
    Correlation(correlation::CorrelationArgs),
    /// One self-contained HTML page of an offline run (backtest, evaluation, frontier): arms side
    /// by side, verdicts, margin paths, provenance.
    Report(report::ReportArgs),
    /// Check that the native runtimes (ONNX Runtime, libtorch) are installed and load.
    Doctor(doctor::DoctorArgs),
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Backtest(args) => backtest::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Features(args) => inspect::run_features(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Fit(args) => fit::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Frontier(args) => frontier::run(args),
        Command::Impulse(args) => impulse::run(args),
        Command::Train(args) => train::run(args),
        Command::Models(args) => models::run(args),
        Command::Correlation(args) => correlation::run(args),
        Command::Calibrate(args) => calibrate::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Publish(args) => publish::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Report(args) => report::run(args),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed pipe (`foresight ... | head`) is not a failure.
            if e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
