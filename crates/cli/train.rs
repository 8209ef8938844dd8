//! `foresight train --config training/<name>.toml`: fit, score walk-forward, export to ONNX,
//! check parity, and register every model of a recipe as a challenger.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;
use clap::Args;
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use foresight_registry::Registry;
use foresight_train::fit::Epoch;
use foresight_train::recipe::{Progress, Recipe, RunInfo, train};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training recipe (TOML): asset, name, data, models, horizons, train_end, refit_every.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The registry, a folder or `s3://bucket/prefix` (overrides the recipe's `registry`).
    #[arg(long, value_name = "DIR|URL")]
    registry: Option<PathBuf>,
    /// Train, score and check, but register nothing.
    #[arg(long)]
    dry_run: bool,
}

/// The checkout's commit, with `-dirty` when tracked files outside the registry changed (the
/// registry itself changes with every training run); `None` outside git.
fn git_commit(registry: &std::path::Path) -> Option<String> {
    let run = |args: &[&str]| Command::new("git").args(args).output().ok().filter(|o| o.status.success());
    let head = String::from_utf8(run(&["rev-parse", "--short=12", "HEAD"])?.stdout).ok()?.trim().to_string();
    let exclude = format!(":(exclude){}", registry.display());
    let dirty = run(&["status", "--porcelain", "--untracked-files=no", "--", ".", &exclude]).is_some_and(|o| !o.stdout.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let mut recipe = Recipe::from_file(&args.config)?;
    if let Some(dir) = args.registry {
        recipe.registry = dir;
    }
    let info = RunInfo {
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        git_commit: git_commit(&recipe.registry),
    };
    let mut bars = Bars::new(1 + 3 * recipe.models.len() as u64);
    let trained = train(&recipe, &info, &mut bars).with_context(|| format!("training {}", args.config.display()))?;
    bars.finish();

    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec!["model", "h", "n", "score", "baseline", "ratio", "MZ R² / event freq.", "ONNX parity"]);
    for t in &trained {
        for m in &t.card.evaluation.metrics {
            let right = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
            let r2 = m.extra.get("mincer_zarnowitz").and_then(|v| v.get("r2")).and_then(|v| v.as_f64());
            let freq = m.extra.get("event_frequency").and_then(|v| v.as_f64());
            table.add_row(vec![
                Cell::new(&t.card.name),
                right(m.horizon.to_string()),
                right(m.n.to_string()),
                right(format!("{} {:.4}", m.score_name, m.score)),
                right(format!("{} {:.4}", m.baseline, m.baseline_score)),
                right(format!("{:.3}", m.relative())),
                right(r2.or(freq).map_or("-".into(), |r| format!("{r:.3}"))),
                right(format!("{} rows, max rel {:.1e}", t.parity_rows, t.parity_max_relative_error)),
            ]);
        }
    }
    let first = &trained[0].card;
    println!(
        "{} ({}): trained on {}..{}, scored out of sample on {}..{} ({})",
        recipe.asset,
        recipe.data.display(),
        first.training.start,
        first.training.end,
        first.evaluation.start,
        first.evaluation.end,
        first.evaluation.refit_every.map_or("frozen parameters".to_string(), |r| format!("re-fitted every {r} days"))
    );
    println!("{table}");
    if args.dry_run {
        println!("--dry-run: nothing registered");
        return Ok(());
    }
    let mut registry = Registry::open(&recipe.registry)?;
    for t in trained {
        let card = registry.publish(t.card, &t.onnx)?;
        println!(
            "registered {} in {} ({} golden rows; challenger of {})",
            card.reference(),
            registry.describe(&format!("{}/v{}", card.name, card.version)),
            card.golden.len(),
            card.slot()
        );
    }
    Ok(())
}

/// Progress on a terminal: a bar of steps and, while a neural model trains, a bar of epochs.
/// Elsewhere (CI, pipes): one timestamped line per step and every 25th epoch.
struct Bars {
    multi: MultiProgress,
    steps: ProgressBar,
    epochs: Option<ProgressBar>,
    started: std::time::Instant,
}

impl Bars {
    fn new(steps: u64) -> Self {
        let multi = MultiProgress::new();
        let bar = multi.add(ProgressBar::new(steps));
        bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed}] {msg}").expect("valid template"));
        Self { multi, steps: bar, epochs: None, started: std::time::Instant::now() }
    }

    fn log(&self, line: &str) {
        if self.steps.is_hidden() {
            eprintln!("[{:>5.1}s] {line}", self.started.elapsed().as_secs_f64());
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.epochs.take() {
            bar.finish_and_clear();
        }
        self.steps.finish_and_clear();
    }
}

impl Progress for Bars {
    fn step(&mut self, message: &str) {
        if let Some(bar) = self.epochs.take() {
            bar.finish_and_clear();
        }
        self.log(message);
        self.steps.set_message(message.to_string());
        self.steps.inc(1);
    }

    fn epoch(&mut self, model: &str, e: &Epoch) {
        let losses = format!("train {:.4}  validation {:.4}  best {:.4}", e.train_loss, e.validation_loss, e.best_validation_loss);
        if e.epoch == 1 || e.epoch.is_multiple_of(25) {
            self.log(&format!("{model}: epoch {}/{}  {losses}", e.epoch, e.max_epochs));
        }
        let bar = self.epochs.get_or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(e.max_epochs as u64));
            bar.set_style(ProgressStyle::with_template("{bar:30} epoch {pos}/{len} {msg}").expect("valid template"));
            bar
        });
        bar.set_position(e.epoch as u64);
        bar.set_message(losses);
    }
}
