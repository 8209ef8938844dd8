//! `foresight models list|show|verify|promote|rollback|diff`: the registry for people.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use foresight_registry::store::diff;
use foresight_registry::{ModelRef, Registry};

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Registry folder.
    #[arg(long, value_name = "DIR", default_value = "models", global = true)]
    registry: PathBuf,
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Every registered model version, its slot, role and out-of-sample score.
    List,
    /// One model's card (the latest version unless `name@vN`), after checking it.
    Show {
        /// `name` or `name@vN`.
        model: ModelRef,
        /// Print the whole card as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a model's sha256 and golden rows through ONNX Runtime.
    Verify {
        /// `name` or `name@vN`.
        model: ModelRef,
    },
    /// Make a model the champion of its asset (refused unless it checks out and beats the
    /// current champion, or EWMA when there is none, on out-of-sample QLIKE).
    Promote {
        /// `name` or `name@vN`.
        model: ModelRef,
        /// Promote even though it does not beat the champion; the reason is logged.
        #[arg(long, value_name = "REASON")]
        force: Option<String>,
    },
    /// Restore the champion that the current one replaced.
    Rollback {
        /// `ASSET` (its volatility slot) or `ASSET/TASK`.
        slot: String,
        /// Why; logged in registry.json.
        #[arg(long)]
        reason: String,
    },
    /// What differs between two model versions' cards.
    Diff {
        /// Left.
        a: ModelRef,
        /// Right.
        b: ModelRef,
    },
}

pub fn run(args: ModelsArgs) -> anyhow::Result<()> {
    let mut registry = Registry::open(&args.registry)?;
    match args.command {
        ModelsCommand::List => list(&registry),
        ModelsCommand::Show { model, json } => show(&registry, &model, json),
        ModelsCommand::Verify { model } => {
            let (card, _, v) = registry.load(&model)?;
            println!(
                "{}: ok (sha256 {}, {} golden rows through ONNX Runtime, max relative error {:.1e})",
                card.reference(),
                v.sha256,
                v.golden_rows,
                v.max_relative_error
            );
            Ok(())
        }
        ModelsCommand::Promote { model, force } => {
            let p = registry.promote(&model, force.as_deref())?;
            println!(
                "{} is now champion{} ({}){}",
                p.model,
                p.previous.map_or(String::new(), |prev| format!(", replacing {prev}")),
                p.evidence,
                if p.forced { "; FORCED, reason logged" } else { "" }
            );
            Ok(())
        }
        ModelsCommand::Rollback { slot, reason } => {
            let p = registry.rollback(&slot, &reason)?;
            println!("{} is champion again ({})", p.model, p.evidence);
            Ok(())
        }
        ModelsCommand::Diff { a, b } => {
            let (ca, cb) = (registry.card(&a)?, registry.card(&b)?);
            let rows = diff(&ca, &cb);
            if rows.is_empty() {
                println!("{} and {} have identical cards apart from their versions", ca.reference(), cb.reference());
                return Ok(());
            }
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED);
            table.set_header(vec!["field".to_string(), ca.reference().to_string(), cb.reference().to_string()]);
            for (field, l, r) in rows {
                table.add_row(vec![field, l, r]);
            }
            println!("{table}");
            Ok(())
        }
    }
}

fn list(registry: &Registry) -> anyhow::Result<()> {
    let listing = registry.list()?;
    if listing.is_empty() {
        println!("{}: no models yet (train some: foresight train --config training/btc_intraday.toml)", registry.root().display());
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec!["model", "slot", "role", "type", "trained on", "scored on", "h", "score", "vs baseline"]);
    for l in &listing {
        let c = &l.card;
        let m = c.primary_metrics();
        let right = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
        table.add_row(vec![
            Cell::new(c.reference().to_string()),
            Cell::new(c.slot()),
            Cell::new(l.role),
            Cell::new(&c.model_type),
            Cell::new(format!("{}..{}", c.training.start, c.training.end)),
            Cell::new(format!("{}..{}", c.evaluation.start, c.evaluation.end)),
            right(c.evaluation.primary_horizon.to_string()),
            right(m.map_or("-".into(), |m| format!("{} {:.4}", m.score_name, m.score))),
            right(m.map_or("-".into(), |m| format!("{:.3} × {}", m.relative(), m.baseline))),
        ]);
    }
    println!("{table}");
    for (slot, s) in &registry.index().slots {
        if let Some(last) = s.log.last() {
            println!("{slot}: last change {} {:?} {} ({})", last.at, last.action, last.model, last.reason.as_deref().unwrap_or(&last.evidence));
        }
    }
    Ok(())
}

fn show(registry: &Registry, model: &ModelRef, json: bool) -> anyhow::Result<()> {
    let (card, _, verified) = registry.load(model)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&card)?);
        return Ok(());
    }
    println!("{}  ({} {}, slot {})", card.reference(), card.model_type, card.task.as_str(), card.slot());
    println!("  {}", card.description);
    println!("  onnx: {} opset {}, input `{}` {:?} = {}", card.onnx.file, card.onnx.opset, card.onnx.input, card.onnx.input_shape, card.onnx.input_columns.join(", "));
    println!("        outputs {}", card.onnx.outputs.join(", "));
    println!("        sha256 {} (checked), {} golden rows pass (max rel err {:.1e})", verified.sha256, verified.golden_rows, verified.max_relative_error);
    for d in &card.training.data {
        println!("  data: {} sha256 {}", d.path, d.sha256);
    }
    println!("  trained on {}..{} ({} days); scored on {}..{}, refit {}", card.training.start, card.training.end, card.training.days, card.evaluation.start, card.evaluation.end, card.evaluation.refit_every.map_or("never".into(), |r| format!("every {r} days")));
    for m in &card.evaluation.metrics {
        println!(
            "  h={:<2} n={:<5} {} {:.4}  {} {:.4}  ratio {:.3}{}",
            m.horizon,
            m.n,
            m.score_name,
            m.score,
            m.baseline,
            m.baseline_score,
            m.relative(),
            if m.horizon == card.evaluation.primary_horizon { "  (primary)" } else { "" }
        );
    }
    if let Some(regimes) = card.details.get("regimes").and_then(|r| r.as_array()) {
        println!("  regimes (calm → stressed): typical daily vol, mixture weight, mean daily return");
        for r in regimes {
            let f = |k: &str| r.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
            println!("    {}: {:.2}%  {:.2}  {:+.3}%", f("rank"), f("typical_daily_vol_pct"), f("weight"), f("mean_return_pct"));
        }
        for (label, key) in [("training", "transition_frequencies_training"), ("evaluation", "transition_frequencies_evaluation")] {
            if let Some(rows) = card.details.get(key).and_then(|v| v.as_array()) {
                let text: Vec<String> = rows
                    .iter()
                    .map(|row| row.as_array().map_or(String::new(), |r| r.iter().map(|v| format!("{:.2}", v.as_f64().unwrap_or(f64::NAN))).collect::<Vec<_>>().join(" ")))
                    .collect();
                println!("  transitions ({label}, row = from): [{}]", text.join(" | "));
            }
        }
    }
    if let Some(bins) = card.primary_metrics().and_then(|m| m.extra.get("calibration")).and_then(|c| c.as_array()) {
        println!("  calibration at h={} (forecast bin: n, mean forecast → observed):", card.evaluation.primary_horizon);
        for b in bins {
            let f = |k: &str| b.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
            println!("    {:.1}-{:.1}: {:>4}  {:.3} → {:.3}", f("from"), f("to"), f("n"), f("mean_forecast"), f("observed"));
        }
    }
    println!("  created {} by foresight {} at commit {}", card.created_at, card.foresight_version, card.git_commit.as_deref().unwrap_or("unknown"));
    Ok(())
}
