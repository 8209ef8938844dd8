//! `foresight report`: one self-contained HTML page for a risk officer.
//! - `--from DIR`: an offline run (a backtest, an evaluation, a frontier or impulse folder); see
//!   `foresight_train::report::offline_report`.
//! - `--from-audit AUDIT --prices FILE`: what the live service posted and shadowed. Every arm of
//!   the audit log is scored on the days whose later prices are known (the audit replay of
//!   `foresight backtest --from-audit`, run in-process and kept beside the page), with the arms' margin and
//!   multiplier distributions, the fallbacks and guard rails applied, and the registry's
//!   promotion log over the period.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use foresight_registry::Registry;
use foresight_registry::verify::sha256_hex;
use foresight_serve::audit::AuditRecord;
use foresight_serve::journal::read_lines;
use foresight_train::report::{Extra, esc, offline_report, report};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run's output folder: `foresight backtest --out`, `evaluate --out`, `frontier`, `impulse`.
    #[arg(long = "from", value_name = "DIR", conflicts_with = "from_audit", required_unless_present = "from_audit")]
    from: Option<PathBuf>,
    /// The service's audit log (`state_dir/audit.jsonl`): a live report.
    #[arg(long, value_name = "FILE", requires = "prices")]
    from_audit: Option<PathBuf>,
    /// With --from-audit: daily prices of the audited underlying (OHLCV or `date,close`).
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,
    /// With --from-audit: the underlying, when the log holds several.
    #[arg(long)]
    asset: Option<String>,
    /// With --from-audit: the registry whose promotion log and model cards the page cites.
    #[arg(long, value_name = "DIR|URL", default_value = "models")]
    registry: PathBuf,
    /// The HTML file to write [default: DIR/report.html, or report.html beside the audit log].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let (html, out) = match (&args.from, &args.from_audit, &args.prices) {
        (Some(dir), _, _) => {
            let html = offline_report(dir).with_context(|| format!("--from {}", dir.display()))?;
            (html, args.out.clone().unwrap_or_else(|| dir.join("report.html")))
        }
        (None, Some(audit), Some(prices)) => {
            let out = args.out.clone().unwrap_or_else(|| audit.with_file_name("report.html"));
            (live_report(audit, prices, args.asset.as_deref(), &args.registry, &out)?, out)
        }
        _ => bail!("give --from DIR, or --from-audit FILE with --prices FILE"),
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("--out {}", out.display()))?;
    }
    std::fs::write(&out, html).with_context(|| format!("--out {}", out.display()))?;
    println!("wrote {} (self-contained: open it from a file:// URL)", out.display());
    Ok(())
}

/// The `q`-quantile of sorted `values` (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((q * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)]
}

/// The live report: the audit replay's page plus the service's own view of each arm.
fn live_report(audit: &Path, prices: &Path, asset: Option<&str>, registry: &Path, out: &Path) -> anyhow::Result<String> {
    // Score every audited arm on the price history: the audit replay, kept beside the page.
    let replay = out.with_extension("replay");
    // A fresh folder: nothing of an earlier replay may be read as this one's.
    if replay.exists() {
        std::fs::remove_dir_all(&replay).with_context(|| format!("clearing {}", replay.display()))?;
    }
    let replayed = crate::backtest::execute(crate::backtest::Settings {
        rv_data: None,
        iv_data: None,
        refit_every: 22,
        data: prices.to_path_buf(),
        arms: Vec::new(),
        confidence: 0.99,
        horizon: 1,
        burn_in: 0, // an audit log's rates are what was posted: nothing to learn first
        out: replay.clone(),
        events: crate::backtest::parse_events(&[])?,
        registry: registry.to_path_buf(),
        audit: Some((audit.to_path_buf(), asset.map(str::to_string))),
        from: None,
        to: None,
    });
    // Nothing to score yet (every audited day is the last one with a price) is a page that says
    // so; any other failure of the replay is an error.
    let unscored = match replayed {
        Ok(()) => None,
        Err(e) if e.chain().any(|c| matches!(c.downcast_ref::<foresight_core::CoreError>(), Some(foresight_core::CoreError::InsufficientHistory { .. }))) => Some(e),
        Err(e) => return Err(e.context(format!("--from-audit {}: replaying it", audit.display()))),
    };
    std::fs::create_dir_all(&replay).with_context(|| format!("{}", replay.display()))?;
    let records: Vec<AuditRecord> = read_lines(audit).with_context(|| format!("--from-audit {}", audit.display()))?;

    // Per arm: how many margins, posted or shadow, their multipliers, fallbacks and rails.
    #[derive(Default)]
    struct ArmStats {
        posted: usize,
        shadow: usize,
        multipliers: Vec<f64>,
        initial_margin: f64,
        fallbacks: BTreeMap<String, usize>,
        guards: BTreeMap<String, usize>,
    }
    let mut arms: BTreeMap<&str, ArmStats> = BTreeMap::new();
    let mut models: BTreeSet<&str> = BTreeSet::new();
    for r in &records {
        let s = arms.entry(r.arm.as_str()).or_default();
        if r.posted { s.posted += 1 } else { s.shadow += 1 }
        s.multipliers.push(r.multiplier);
        s.initial_margin += r.initial_margin;
        for g in &r.guards {
            *s.guards.entry(g.clone()).or_default() += 1;
        }
        for u in &r.underlyings {
            if let Some(f) = &u.fallback {
                // A fallback is stored as its JSON (`{"reason":"stale",...}`): counted by reason.
                let reason = serde_json::from_str::<serde_json::Value>(f).ok().and_then(|v| v["reason"].as_str().map(str::to_string)).unwrap_or_else(|| f.clone());
                *s.fallbacks.entry(reason).or_default() += 1;
            }
            if let Some(m) = &u.model {
                models.insert(m.as_str());
            }
        }
    }
    let mut section = String::from(
        "<table id=\"live-arms\"><thead><tr><th>arm</th><th>posted</th><th>shadow</th><th>sum of audited initial margins (every account, every calibration)</th><th>multiplier p5 / p50 / p95</th><th>fallbacks</th><th>guard rails</th></tr></thead><tbody>",
    );
    for (arm, s) in &mut arms {
        s.multipliers.sort_by(f64::total_cmp);
        let counts = |m: &BTreeMap<String, usize>| if m.is_empty() { "none".to_string() } else { m.iter().map(|(k, n)| format!("{k} ×{n}")).collect::<Vec<_>>().join(", ") };
        let _ = write!(
            section,
            "<tr data-arm=\"{}\"><td class=\"arm\">{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.3} / {:.3} / {:.3}</td><td>{}</td><td>{}</td></tr>",
            esc(arm),
            esc(arm),
            s.posted,
            s.shadow,
            s.initial_margin,
            quantile(&s.multipliers, 0.05),
            quantile(&s.multipliers, 0.5),
            quantile(&s.multipliers, 0.95),
            esc(&counts(&s.fallbacks)),
            esc(&counts(&s.guards))
        );
    }
    section.push_str("</tbody></table>");

    // The registry's champion changes over the audited period (and the last one before it).
    let (first, last) = (records.first().map_or("", |r| r.time.as_str()), records.last().map_or("", |r| r.time.as_str()));
    // Times are compared as instants (the audit log writes milliseconds, the registry seconds).
    let instant = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    let (period_start, period_end) = (instant(first), instant(last));
    let mut log = String::from("<table id=\"promotions\"><thead><tr><th>when</th><th>slot</th><th>action</th><th>model</th><th>replaced</th><th>evidence</th></tr></thead><tbody>");
    let mut changes = 0;
    let mut cards: Vec<(String, String)> = Vec::new();
    let mut unreadable = None;
    match Registry::open(registry) {
        Err(e) => unreadable = Some(format!("the registry at {} could not be read ({e}): its promotion log is not shown", registry.display())),
        Ok(registry) => {
            for (slot, entry) in &registry.index().slots {
                let at = |e: &foresight_registry::store::LogEntry| instant(&e.at);
                let before = entry.log.iter().rposition(|e| at(e) < period_start);
                for (i, e) in entry.log.iter().enumerate().filter(|(i, e)| Some(*i) == before || (at(e) >= period_start && at(e) <= period_end)) {
                    changes += 1;
                    let note = if Some(i) == before { " (in force when the period began)" } else { "" };
                    let _ = write!(
                        log,
                        "<tr><td>{}{}</td><td>{}</td><td>{:?}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(&e.at),
                        esc(note),
                        esc(slot),
                        e.action,
                        esc(&e.model.to_string()),
                        esc(&e.previous.as_ref().map_or("-".into(), |p| p.to_string())),
                        esc(&e.evidence)
                    );
                }
            }
            for m in &models {
                if let Ok(reference) = m.parse().and_then(|r| registry.resolve(&r))
                    && let Ok(card) = registry.card(&reference)
                {
                    cards.push((format!("model {m}"), format!("onnx sha256 {}, trained {}..{}", card.onnx.sha256, card.training.start, card.training.end)));
                }
            }
        }
    }
    log.push_str("</tbody></table>");
    if let Some(why) = unreadable {
        log = format!("<p>{}</p>", esc(&why));
    } else if changes == 0 {
        log = "<p>No champion change in the registry's log for this period.</p>".into();
    }
    let sha = |p: &Path| std::fs::read(p).map(|b| sha256_hex(&b)).unwrap_or_else(|_| "unreadable".into());
    let mut provenance = vec![
        ("audit log".to_string(), format!("{} ({} margins, {first} .. {last})", audit.display(), records.len())),
        ("audit sha256".to_string(), sha(audit)),
        ("prices".to_string(), prices.display().to_string()),
        ("prices sha256".to_string(), sha(prices)),
    ];
    provenance.extend(cards);
    let extra = Extra {
        title: Some(format!("Foresight live A/B report: {}", audit.display())),
        sections: vec![
            (
                "What the service posted and shadowed".into(),
                format!(
                    "<p>From the audit log: every margin each arm computed, posted (the account's assigned arm) or in shadow.{}</p>{section}",
                    if unscored.is_some() { " No audited day has a later price in the price file yet, so no arm is scored against realized moves." } else { " Each arm is scored above on the days whose next price is known." }
                ),
            ),
            ("Champion changes in the period".into(), log),
        ],
        provenance,
    };
    report(&replay, &extra).with_context(|| format!("the audit replay in {}", replay.display()))
}
