//! `foresight frontier`: a grid of reactive and forward arms on one series, the cost–
//! procyclicality frontier of each kind on a development and a report window, the rule's pick
//! and the frozen arm beside the reference reactive arms.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use foresight_core::calibrate::Arm;
use foresight_core::features::Side;
use foresight_core::frontier::{Kind, frontier, standing};
use foresight_train::frontier::{FrontierConfig, FrontierRun, WindowScores, frontier_json, headline, run_frontier};
use foresight_train::report::{FrontierPanel, date_of, draw_frontier_chart};

use crate::backtest::{parse_events, pct};

#[derive(Debug, Args)]
pub struct FrontierArgs {
    /// The grid, windows, rule and frozen arm (`training/frontier_crypto.toml`,
    /// `training/frontier_equity.toml`); the flags below override it.
    #[arg(long, value_name = "FILE.toml")]
    config: PathBuf,
    /// Daily prices (OHLCV or `date,close`).
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    /// Intraday OHLCV for the forecasters' realized variance.
    #[arg(long, value_name = "FILE")]
    rv_data: Option<PathBuf>,
    /// Implied volatility for `+iv` arms (annualised percent).
    #[arg(long, value_name = "FILE")]
    iv_data: Option<PathBuf>,
    /// Output folder for frontier.json and frontier.png.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Judge this forward arm of the grid instead of the config's `frozen`.
    #[arg(long, value_name = "ARM")]
    frozen: Option<String>,
    /// Stop at the end of the development window: the series is cut there before any arm
    /// runs, and only the selection is made (what the frozen choice was made from).
    #[arg(long)]
    develop_only: bool,
}

pub fn run(args: FrontierArgs) -> anyhow::Result<()> {
    let mut config = FrontierConfig::read(&args.config)?;
    config.data = args.data.unwrap_or(config.data);
    config.rv_data = args.rv_data.or(config.rv_data);
    config.iv_data = args.iv_data.or(config.iv_data);
    config.out = args.out.unwrap_or(config.out);
    config.frozen = args.frozen.or(config.frozen);
    let events = parse_events(&config.events)?;
    let frozen: Option<Arm> = config.frozen.as_deref().map(str::parse).transpose().context("frozen")?;
    let run = run_frontier(&config, &events, args.develop_only).with_context(|| format!("frontier of {}", args.config.display()))?;

    let reactive = run.arms.iter().filter(|(_, k)| *k == Kind::Reactive).count();
    let t = &run.timings;
    let forecasts: Vec<String> = t.forecasts.iter().map(|(f, s)| format!("{f} {s:.1} s")).collect();
    println!(
        "frontier[{}]: {} from {}{}; {} arms ({reactive} reactive, {} forward); confidence {}, horizon {} day(s)",
        config.asset_class,
        config.data.display(),
        date_of(&run.prices, 0),
        config.rv_data.as_ref().map_or(String::new(), |r| format!(" (realized variance from {})", r.display())),
        run.arms.len(),
        run.arms.len() - reactive,
        config.confidence,
        config.horizon,
    );
    println!("time: forecasts {}; rates {:.1} s; scoring {:.1} s", forecasts.join(", "), t.rates, t.scoring);
    for w in &run.windows {
        print_window(&run, w, frozen.as_ref(), &config);
    }
    let develop = &run.windows[0];
    let picked = develop.selected(&config.selection).map(|i| &develop.points[i]);
    if picked.is_some_and(|p| !(p.covered && p.min_coverage_p >= config.selection.min_coverage_p)) {
        println!(
            "note: no forward arm passes coverage with the headroom (smallest p ≥ {}) on the development window; the rule falls back to the one closest to passing",
            config.selection.min_coverage_p
        );
    }
    let pick = picked.map(|p| p.arm.clone());
    match (&pick, &frozen) {
        (Some(p), Some(f)) if *p == f.to_string() => println!("The rule re-run on the development window picks the frozen arm {p}."),
        (Some(p), Some(f)) => eprintln!("warning: the rule picks {p} on the development window, but the config freezes {f}"),
        (Some(p), None) => println!("No arm is frozen yet; the rule picks {p}: write `frozen = \"{p}\"` into {}.", args.config.display()),
        (None, _) => {}
    }

    std::fs::create_dir_all(&config.out).with_context(|| format!("creating {}", config.out.display()))?;
    let json_path = config.out.join("frontier.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&frontier_json(&config, &run))? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!("wrote {}", json_path.display());
    let chart_path = config.out.join("frontier.png");
    let panels: Vec<FrontierPanel> = run
        .windows
        .iter()
        .map(|w| FrontierPanel {
            caption: format!("{} {} .. {}", w.name, date_of(&run.prices, w.backtest.start), date_of(&run.prices, w.backtest.end)),
            points: &w.points,
            labelled: headline(w, frozen.as_ref(), &config.selection)
                .into_iter()
                .filter(|(role, _)| !role.contains("hindsight") || role.contains(','))
                .map(|(role, i)| (i, format!("{} ({role})", w.points[i].arm)))
                .collect(),
        })
        .collect();
    let title = format!("{}: cost vs procyclicality, {}% margin, {}-day horizon (filled: coverage passes)", config.asset_class, 100.0 * config.confidence, config.horizon);
    match draw_frontier_chart(&chart_path, &title, &panels) {
        Ok(()) => println!("wrote {}", chart_path.display()),
        Err(e) => eprintln!("warning: chart not drawn: {e}"),
    }
    Ok(())
}

fn print_window(run: &FrontierRun, w: &WindowScores, frozen: Option<&Arm>, config: &FrontierConfig) {
    let count = |kind: Kind| {
        let all = w.points.iter().filter(|p| p.kind == kind).count();
        let covered = w.points.iter().filter(|p| p.kind == kind && p.covered).count();
        format!("{covered} of {all}")
    };
    println!(
        "\n{} window {} .. {} ({} days): {} reactive and {} forward arms pass coverage",
        w.name,
        date_of(&run.prices, w.backtest.start),
        date_of(&run.prices, w.backtest.end),
        w.backtest.end - w.backtest.start + 1,
        count(Kind::Reactive),
        count(Kind::Forward),
    );
    for kind in [Kind::Reactive, Kind::Forward] {
        let names: Vec<String> = frontier(&w.points, kind)
            .into_iter()
            .map(|i| format!("{} ({}, {:+.0}%)", w.points[i].arm, pct(w.points[i].cost), 100.0 * w.points[i].rise_30d))
            .collect();
        println!("  {kind:?} frontier: {}", if names.is_empty() { "none (no arm covers)".into() } else { names.join(" · ") });
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header: Vec<String> = ["role", "arm", "exc L/S", "kupiec p L/S", "cc p L/S", "avg margin", "rise 30d", "rise 5d", "peak/trough"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(w.events.iter().map(|e| format!("ready {}", e.date)));
    t.set_header(header);
    let right = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
    for (role, i) in headline(w, frozen, &config.selection) {
        let a = &w.backtest.arms[i];
        let p = &w.points[i];
        let (l, s) = (a.side(Side::Long), a.side(Side::Short));
        let mark = |p: f64| if p < foresight_core::stats::REJECT_AT { format!("{p:.3}*") } else { format!("{p:.3}") };
        let mut row = vec![
            Cell::new(role),
            Cell::new(&p.arm),
            right(format!("{}/{}", l.exceptions, s.exceptions)),
            right(format!("{}/{}", mark(l.kupiec.p_value), mark(s.kupiec.p_value))),
            right(format!("{}/{}", mark(l.christoffersen_cc.p_value), mark(s.christoffersen_cc.p_value))),
            right(pct(p.cost)),
            right(format!("{:+.0}%", 100.0 * p.rise_30d)),
            right(format!("{:+.0}%", 100.0 * p.rise_5d)),
            right(p.peak_to_trough.map_or("-".into(), |x| format!("{x:.1}"))),
        ];
        let show = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.2}"));
        row.extend(w.readiness(i).into_iter().map(|(l, s)| right(format!("{}/{}", show(l), show(s)))));
        t.add_row(row);
    }
    println!("{t}");
    if let Some(i) = frozen.and_then(|f| w.position(f)) {
        let s = standing(&w.points, i, &config.selection);
        let against = |r: Option<usize>| r.map_or("no covered reactive arm".to_string(), |r| w.points[r].arm.clone());
        let gain = |g: Option<f64>| g.map_or("-".to_string(), |g| format!("{:+.1}%", 100.0 * g));
        println!(
            "  goal for the frozen arm: {}. Cost saving {} vs {} (needs ≥ {:.0}% at no larger 30-day rise); 30-day rise reduction {} vs {} (needs ≥ {:.0}% at no higher cost){}",
            if s.meets_goal { "MET" } else { "not met" },
            gain(s.cost_saving),
            against(s.cost_reference),
            100.0 * config.selection.cost_saving,
            gain(s.rise_reduction),
            against(s.rise_reference),
            100.0 * config.selection.rise_reduction,
            if w.points[i].covered { "" } else { "; coverage FAILS" },
        );
    }
}
