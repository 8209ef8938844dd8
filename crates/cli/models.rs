//! `foresight models list|show|verify|promote|review|rollback|diff|copy`: the registry for
//! people, in a folder or an object store.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use foresight_registry::promotion::{PromotionEvidence, PromotionRule};
use foresight_registry::storage::Location;
use foresight_registry::store::diff;
use foresight_registry::{ModelCard, ModelRef, Registry};
use foresight_train::promotion::{MarginSettings, PromotionData, promotion_evidence, same_days_evidence};

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// The registry: a folder, or an S3-compatible store (`s3://bucket/prefix`, configured by
    /// the AWS_* environment variables: AWS_ENDPOINT, AWS_REGION, credentials...).
    #[arg(long, value_name = "DIR|URL", default_value = "models", global = true)]
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
    /// Make a model the champion of its slot. Both it and the champion (EWMA when there is
    /// none) run through ONNX Runtime on the days both are out of sample; refused unless there
    /// are at least 250 such days, it wins at the primary horizon (one-sided Diebold-Mariano
    /// p < 0.05) and its margin does not fail coverage where the champion's passes.
    Promote {
        /// `name` or `name@vN`.
        model: ModelRef,
        #[command(flatten)]
        data: EvidenceData,
        /// Promote even though the rule objects; the reason and the evidence are logged.
        #[arg(long, value_name = "REASON")]
        force: Option<String>,
    },
    /// Compare a slot's champion again on the same days, with another model of the slot or
    /// the baseline (EWMA), and log what the promotion rule finds; the champion stays.
    Review {
        /// `ASSET` (its volatility slot) or `ASSET/volatility`.
        slot: String,
        /// The model to compare with (default: the EWMA baseline).
        #[arg(long, value_name = "MODEL")]
        against: Option<ModelRef>,
        #[command(flatten)]
        data: EvidenceData,
    },
    /// Restore the champion that the current one replaced.
    Rollback {
        /// `ASSET` (its volatility slot) or `ASSET/TASK`.
        slot: String,
        /// Why; logged in registry.json.
        #[arg(long)]
        reason: String,
    },
    /// Copy the registry to another folder or object store (e.g. the bucket replicas serve
    /// from): the versions it lacks, each checked first, the artifacts, then registry.json.
    Copy {
        /// Where to: a folder or `s3://bucket/prefix`.
        #[arg(long, value_name = "DIR|URL")]
        to: String,
    },
    /// What differs between two model versions' cards and, for two volatility models of one
    /// slot, how they compare on the same out-of-sample days (forecasts and margin).
    Diff {
        /// Left.
        a: ModelRef,
        /// Right.
        b: ModelRef,
        #[command(flatten)]
        data: EvidenceData,
    },
}

/// The data two models are compared on, and how their margin is backtested.
#[derive(Debug, Args)]
struct EvidenceData {
    /// Data to score on: intraday bars, daily bars or closes (default: the first data file the
    /// model's card names, as it is on disk now).
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    /// Bars for the realized variance when --data is daily closes.
    #[arg(long, value_name = "FILE", requires = "data")]
    rv_data: Option<PathBuf>,
    /// Serving policy of both margin arms, appended to `model:<name>@vN` (e.g.
    /// `+lookahead:22`; default: none, as the service's `model:champion` arm).
    #[arg(long, value_name = "SUFFIX", default_value = "")]
    policy: String,
    /// Confidence of both margin arms.
    #[arg(long, default_value_t = 0.99)]
    confidence: f64,
}

impl EvidenceData {
    fn load(&self, card: &ModelCard) -> anyhow::Result<PromotionData> {
        Ok(match &self.data {
            Some(data) => PromotionData::load(data, self.rv_data.as_deref())?,
            None => PromotionData::for_card(card).with_context(|| format!("the data {} was trained on (give --data)", card.reference()))?,
        })
    }

    fn margin(&self) -> anyhow::Result<MarginSettings> {
        let policy = self.policy.trim();
        if !(policy.is_empty() || policy.starts_with('+')) {
            anyhow::bail!("--policy `{policy}`: options start with `+`, e.g. +lookahead:22");
        }
        Ok(MarginSettings { policy: policy.to_string(), confidence: self.confidence, ..MarginSettings::default() })
    }
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
        ModelsCommand::Promote { model, data, force } => {
            let card = registry.card(&model)?;
            let evidence = promotion_evidence(&registry, &model, &data.load(&card)?, &data.margin()?)?;
            println!("{}", evidence_report(&evidence, &PromotionRule::default()));
            let p = registry.promote(&model, &evidence, &PromotionRule::default(), force.as_deref())?;
            println!(
                "{} is now champion{}{}",
                p.model,
                p.previous.map_or(String::new(), |prev| format!(", replacing {prev}")),
                if p.forced { "; FORCED past the rule, reason and evidence logged" } else { "" }
            );
            Ok(())
        }
        ModelsCommand::Review { slot, against, data } => {
            let slot_name = foresight_registry::card::named_slot(&slot);
            let champion = registry.champion(&slot_name).cloned().with_context(|| format!("{slot_name} has no champion to review"))?;
            let card = registry.card(&champion)?;
            let evidence = same_days_evidence(&registry, &champion, against.as_ref(), &data.load(&card)?, &data.margin()?)?;
            println!("{}", evidence_report(&evidence, &PromotionRule::default()));
            let objections = registry.review(&slot_name, &evidence, &PromotionRule::default())?;
            println!(
                "review of {champion} logged in {}: {}",
                registry.describe("registry.json"),
                if objections.is_empty() { "it would win its place again today".to_string() } else { format!("the rule objects ({})", objections.len()) }
            );
            Ok(())
        }
        ModelsCommand::Rollback { slot, reason } => {
            let p = registry.rollback(&slot, &reason)?;
            println!("{} is champion again ({})", p.model, p.evidence);
            Ok(())
        }
        ModelsCommand::Copy { to } => {
            let mut target = Registry::open(Location::parse(&to))?;
            let copied = registry.copy_to(&mut target)?;
            println!(
                "copied {} to {}: {} versions stored, {} already there, {} artifacts; registry.json at change {}",
                registry.location(),
                target.location(),
                copied.versions_copied,
                copied.versions_present,
                copied.artifacts,
                target.index().change_sequence()
            );
            Ok(())
        }
        ModelsCommand::Diff { a, b, data } => {
            let (ca, cb) = (registry.card(&a)?, registry.card(&b)?);
            let rows = diff(&ca, &cb);
            if rows.is_empty() {
                println!("{} and {} have identical cards apart from their versions", ca.reference(), cb.reference());
            } else {
                let mut table = Table::new();
                table.load_preset(UTF8_FULL_CONDENSED);
                table.set_header(vec!["field".to_string(), ca.reference().to_string(), cb.reference().to_string()]);
                for (field, l, r) in rows {
                    table.add_row(vec![field, l, r]);
                }
                println!("{table}");
            }
            // Two models of one slot: the same days, as a promotion of b over a would see them.
            if ca.slot() == cb.slot() {
                let evidence = same_days_evidence(&registry, &cb.reference(), Some(&ca.reference()), &data.load(&cb)?, &data.margin()?)?;
                println!("\n{} against {} on the same days:", cb.reference(), ca.reference());
                println!("{}", evidence_report(&evidence, &PromotionRule::default()));
            }
            Ok(())
        }
    }
}

fn list(registry: &Registry) -> anyhow::Result<()> {
    let listing = registry.list()?;
    if listing.is_empty() {
        println!("{}: no models yet (train some: foresight train --config training/btc_intraday.toml)", registry.location());
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
            println!("{slot}: last log entry {} {:?} {} ({})", last.at, last.action, last.model, last.reason.as_deref().unwrap_or(&last.evidence));
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

/// The evidence as a reviewer reads it: windows, scores per horizon, the test, both margin
/// backtests, and what the rule says.
pub fn evidence_report(e: &PromotionEvidence, rule: &PromotionRule) -> String {
    let mut out = Vec::new();
    out.push(format!(
        "{} out of sample on {}; {} on {}; common {}",
        e.challenger,
        e.challenger_window,
        e.incumbent,
        e.incumbent_window,
        e.common_window().map_or("none".to_string(), |w| w.to_string())
    ));
    out.push(format!("data: {}", e.data.iter().map(|d| format!("{} (sha256 {})", d.path, &d.sha256[..12.min(d.sha256.len())])).collect::<Vec<_>>().join(", ")));
    if !e.horizons.is_empty() {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(vec!["h".to_string(), "days".into(), format!("{} {}", e.score_name, e.challenger), format!("{} {}", e.score_name, e.incumbent), "ratio".into()]);
        let right = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
        for h in &e.horizons {
            table.add_row(vec![
                right(format!("{}{}", h.horizon, if h.horizon == e.primary_horizon { " (primary)" } else { "" })),
                right(h.n.to_string()),
                right(format!("{:.4}", h.challenger)),
                right(format!("{:.4}", h.incumbent)),
                right(format!("{:.3}", h.challenger / h.incumbent)),
            ]);
        }
        out.push(table.to_string());
    }
    if let Some(dm) = &e.diebold_mariano {
        out.push(format!("Diebold-Mariano at h={} on {} days: {:.2}, one-sided p {:.4} (challenger better)", dm.horizon, dm.n, dm.statistic, dm.p_value_one_sided));
    }
    if let Some(m) = &e.margin {
        out.push(format!("margin at {}% over {} day(s), both arms scored on {}:", 100.0 * m.confidence, m.horizon, m.window));
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(vec!["arm", "side", "exceptions", "Kupiec p", "cc p", "avg margin", "largest 30-day rise"]);
        for arm in [&m.challenger, &m.incumbent] {
            for (side, s) in arm.sides() {
                let flag = |p: f64| format!("{p:.3}{}", if p < rule.coverage_level { "*" } else { "" });
                table.add_row(vec![
                    arm.arm.clone(),
                    side.to_string(),
                    format!("{}/{}", s.exceptions, s.observations),
                    flag(s.kupiec_p),
                    flag(s.christoffersen_cc_p),
                    crate::backtest::pct(s.average_margin),
                    s.largest_30d_rise.map_or("-".into(), |r| format!("+{:.0}%", 100.0 * r)),
                ]);
            }
        }
        out.push(table.to_string());
        out.push(format!("(* rejects coverage at {})", rule.coverage_level));
    }
    let objections = rule.objections(e);
    out.push(if objections.is_empty() {
        format!("rule: {} may replace {} (≥ {} common days, significant win, coverage kept)", e.challenger, e.incumbent, rule.min_common_days)
    } else {
        format!("rule objects: {}", objections.join("; "))
    });
    out.join("\n")
}
