//! `foresight report`: one self-contained HTML page of an offline run for a risk officer — no
//! network at view time (CSS, SVG and PNG inline), so it opens from a `file://` URL on an
//! air-gapped desk. From a backtest's folder: the arms side by side per side (exceptions,
//! Kupiec, Christoffersen, traffic light, average margin, peak/trough, largest 5- and 30-day
//! rises), readiness at the stress events, a verdict line per arm against the coverage goal, and
//! each arm's margin path over the price with its exceptions marked. From a frontier's folder:
//! every forward arm of every window against the goal the run's selection rule states (cost
//! saving or smaller 30-day rise than the covered reactive arms, with coverage), the frozen arm
//! and the rule's pick marked. Charts the folder holds (a
//! frontier, impulse responses, a forecast chart) and an evaluation's scores are included where
//! present. The page ends with its provenance: the code's version and commit, the data file and
//! its sha256, the settings the run used. Numbers are read from the run's own files, never
//! recomputed.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;
use serde_json::Value;

use crate::error::{DataError, Result};

/// `text` with HTML's special characters escaped.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io { file: path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|e| DataError::Invalid { file: path.to_path_buf(), row: e.line(), line: Some(e.line()), column: "-".into(), message: e.to_string() })
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// A number with `digits` decimals, or `–` when absent.
fn fixed(v: &Value, digits: usize) -> String {
    num(v).map_or_else(|| "–".into(), |x| format!("{x:.digits$}"))
}

/// A rate as a percentage with two decimals.
fn percent(v: &Value) -> String {
    num(v).map_or_else(|| "–".into(), |x| format!("{:.2}%", 100.0 * x))
}

/// One arm's daily series (`series_<arm>.csv`): date, close, long and short margins and
/// exceptions.
struct Series {
    close: Vec<f64>,
    margin_long: Vec<Option<f64>>,
    exception_long: Vec<bool>,
    exception_short: Vec<bool>,
}

fn read_series(path: &Path) -> Result<Series> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io { file: path.to_path_buf(), source })?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| DataError::MissingColumns { file: path.to_path_buf(), missing: vec![name.to_string()], found: header.iter().map(|h| h.to_string()).collect() })
    };
    let (close, margin, exc_long, exc_short) = (column("close")?, column("margin_long")?, column("exception_long")?, column("exception_short")?);
    let mut series = Series { close: Vec::new(), margin_long: Vec::new(), exception_long: Vec::new(), exception_short: Vec::new() };
    for (row, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        let cell = |i: usize| cells.get(i).copied().unwrap_or_default();
        let close = cell(close).parse::<f64>().map_err(|e| DataError::Invalid { file: path.to_path_buf(), row: row + 1, line: Some(row + 2), column: "close".into(), message: e.to_string() })?;
        series.close.push(close);
        series.margin_long.push(cell(margin).parse::<f64>().ok().filter(|m| m.is_finite()));
        series.exception_long.push(cell(exc_long) == "1");
        series.exception_short.push(cell(exc_short) == "1");
    }
    Ok(series)
}

/// An inline SVG of the close (grey, right scale) and the arm's long margin rate (blue, left
/// scale), long exceptions as red dots on the price and short ones as orange.
fn margin_chart(arm: &str, s: &Series) -> String {
    const W: f64 = 760.0;
    const H: f64 = 220.0;
    const PAD: f64 = 40.0;
    let n = s.close.len().max(2);
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / (n - 1) as f64;
    let (lo, hi) = s.close.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), c| (a.min(*c), b.max(*c)));
    let price_y = |c: f64| H - PAD - (H - 2.0 * PAD) * if hi > lo { (c - lo) / (hi - lo) } else { 0.5 };
    let top = s.margin_long.iter().flatten().fold(0.0f64, |a, m| a.max(*m)).max(1e-9);
    let margin_y = |m: f64| H - PAD - (H - 2.0 * PAD) * m / top;
    let price: Vec<String> = s.close.iter().enumerate().map(|(i, c)| format!("{:.1},{:.1}", x(i), price_y(*c))).collect();
    let margin: Vec<String> = s.margin_long.iter().enumerate().filter_map(|(i, m)| m.map(|m| format!("{:.1},{:.1}", x(i), margin_y(m)))).collect();
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}"><rect x="{PAD}" y="{PAD}" width="{}" height="{}" class="frame"/>"#,
        esc(&format!("{arm}: margin path over price")),
        W - 2.0 * PAD,
        H - 2.0 * PAD
    );
    let _ = write!(svg, r#"<polyline class="price" points="{}"/>"#, price.join(" "));
    let _ = write!(svg, r#"<polyline class="margin" points="{}"/>"#, margin.join(" "));
    for (i, (long, short)) in s.exception_long.iter().zip(&s.exception_short).enumerate() {
        if *long || *short {
            let class = if *long { "exception long" } else { "exception short" };
            let _ = write!(svg, r#"<circle class="{class}" cx="{:.1}" cy="{:.1}" r="3"/>"#, x(i), price_y(s.close[i]));
        }
    }
    let _ = write!(
        svg,
        r#"<text x="{PAD}" y="{}" class="axis">margin (long) 0–{:.1}%</text><text x="{}" y="{}" class="axis" text-anchor="end">close {:.0}–{:.0}</text></svg>"#,
        PAD - 8.0,
        100.0 * top,
        W - PAD,
        PAD - 8.0,
        lo,
        hi
    );
    svg
}

/// Whether an arm meets the coverage goal on both sides, and why not.
fn verdict(summary: &Value) -> (bool, Vec<String>) {
    let mut failures = Vec::new();
    for side in ["long", "short"] {
        let s = &summary[side];
        if s["kupiec_reject"].as_bool() == Some(true) {
            failures.push(format!("{side}: Kupiec rejects (p = {})", fixed(&s["kupiec_p"], 3)));
        }
        if s["christoffersen_cc_reject"].as_bool() == Some(true) {
            failures.push(format!("{side}: Christoffersen conditional coverage rejects (p = {})", fixed(&s["christoffersen_cc_p"], 3)));
        }
        if s["traffic_light"]["worst_250"].as_str() == Some("red") {
            failures.push(format!("{side}: the worst 250 days are in the red zone ({} exceptions)", s["traffic_light"]["worst_250_exceptions"]));
        }
    }
    (failures.is_empty(), failures)
}

/// A frontier run's verdicts: every forward arm of every window against the goal the run's
/// selection rule states (a cost saving or a smaller 30-day rise than the covered reactive arms,
/// with coverage), the frozen arm and the rule's pick marked.
fn goals_section(f: &Value) -> String {
    let mut html = String::new();
    let rule = &f["selection"];
    let _ = write!(
        html,
        "<h2>Goals</h2><p id=\"goal\">The goal this run was scored against: a forward arm that passes coverage ({}) and is at least {} cheaper than the cheapest covered reactive arm that is no steadier, or has a largest 30-day rise at least {} smaller than the steadiest covered reactive arm that is no cheaper. Cost: {}; procyclicality: {}.</p>",
        esc(f["coverage"].as_str().unwrap_or("?")),
        percent(&rule["cost_saving"]),
        percent(&rule["rise_reduction"]),
        esc(f["cost"].as_str().unwrap_or("?")),
        esc(f["procyclicality"].as_str().unwrap_or("?"))
    );
    html.push_str("<table id=\"goals\"><thead><tr><th>window</th><th>forward arm</th><th>role</th><th>coverage</th><th>cost saving</th><th>against</th><th>30-day rise reduction</th><th>against</th><th>verdict</th></tr></thead><tbody>");
    for w in f["windows"].as_array().into_iter().flatten() {
        let window = format!("{} {} to {}", w["name"].as_str().unwrap_or("?"), w["scored_from"].as_str().unwrap_or("?"), w["scored_to"].as_str().unwrap_or("?"));
        // On a later window the rule's pick is hindsight: it was not chosen there.
        let pick = if w["name"] == "develop" { "rule's pick" } else { "the rule's pick with hindsight" };
        let role_of = |arm: &str| -> Vec<&str> {
            [("frozen", w["frozen"]["arm"].as_str() == Some(arm)), (pick, w["rule_pick"].as_str() == Some(arm))]
                .into_iter()
                .filter_map(|(r, on)| on.then_some(r))
                .collect()
        };
        // The frozen arm and the rule's pick first, then the arms that meet the goal, then the
        // rest, each by how far they go toward it.
        let mut forward: Vec<&Value> = w["points"].as_array().into_iter().flatten().filter(|p| p["kind"] == "forward").collect();
        let rank = |p: &Value| (role_of(p["arm"].as_str().unwrap_or("")).is_empty(), p["standing"]["meets_goal"].as_bool() != Some(true), -p["standing"]["score"].as_f64().unwrap_or(f64::NEG_INFINITY));
        forward.sort_by(|a, b| rank(a).partial_cmp(&rank(b)).unwrap_or(std::cmp::Ordering::Equal));
        for p in forward {
            let arm = p["arm"].as_str().unwrap_or("?");
            let st = &p["standing"];
            let role = role_of(arm);
            let meets = st["meets_goal"].as_bool() == Some(true);
            let _ = write!(
                html,
                "<tr data-window=\"{}\" data-arm=\"{}\"{}><td>{}</td><td class=\"arm\">{}</td><td>{}</td><td>{}</td><td data-field=\"cost_saving\">{}</td><td>{}</td><td data-field=\"rise_reduction\">{}</td><td>{}</td><td class=\"verdict {}\" data-field=\"meets_goal\">{}</td></tr>",
                esc(w["name"].as_str().unwrap_or("?")),
                esc(arm),
                if meets { "" } else { " class=\"fails\"" },
                esc(&window),
                esc(arm),
                role.join(", "),
                if p["covered"].as_bool() == Some(true) { "passes" } else { "fails" },
                percent(&st["cost_saving"]),
                esc(st["cost_reference"].as_str().unwrap_or("–")),
                percent(&st["rise_reduction"]),
                esc(st["rise_reference"].as_str().unwrap_or("–")),
                if meets { "meets" } else { "fails" },
                if meets { "meets the goal" } else { "does not meet the goal" }
            );
        }
    }
    html.push_str("</tbody></table>");
    html
}

/// sha256 of a data file as it is now, or why there is none.
fn file_sha256(file: &str) -> String {
    std::fs::read(file).map(|b| foresight_registry::verify::sha256_hex(&b)).unwrap_or_else(|_| "file not found from here".into())
}

/// The fields `keys` of the object `v`.
fn json_subset(v: &Value, keys: &[&str]) -> Value {
    Value::Object(keys.iter().map(|k| (k.to_string(), v[*k].clone())).collect())
}

fn png(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
}

/// The commit of the checkout the report is written from, marked when it has uncommitted
/// changes.
fn git_commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git").args(args).output().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(commit) if git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty()) => format!("{commit} (with uncommitted changes)"),
        Some(commit) => commit,
        None => "unknown (not a git checkout)".into(),
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}\
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right}\
th{background:#f4f4f4}td.arm,td.side,td.event,th:first-child{text-align:left}tr.fails td.arm{color:#b00}\
.green{background:#dff5df}.yellow{background:#fff4c2}.red{background:#f8d0d0}\
.verdict.meets::before{content:'✔ ';color:#080}.verdict.fails::before{content:'✘ ';color:#b00}\
svg.chart{background:#fff;border:1px solid #eee;max-width:100%;height:auto}svg .frame{fill:none;stroke:#ddd}\
svg .price{fill:none;stroke:#999;stroke-width:1}svg .margin{fill:none;stroke:#1f5fbf;stroke-width:1.2}\
svg .exception.long{fill:#d00}svg .exception.short{fill:#f90}svg .axis{font-size:11px;fill:#555}\
figure{margin:1em 0}figcaption{font-size:.85em;color:#555}img.chart{max-width:100%;border:1px solid #eee}\
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;font-size:.85em}dt{font-weight:600}dd{margin:0;word-break:break-all}";

/// What a caller adds to a report: its own title, sections (a heading and ready HTML, escaped
/// by the caller with [`esc`]) placed before the provenance, and provenance lines.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// The page's title (default: the folder's).
    pub title: Option<String>,
    /// `(heading, html)`.
    pub sections: Vec<(String, String)>,
    /// `(what, value)`.
    pub provenance: Vec<(String, String)>,
}

/// The HTML report of the offline run in `dir` (a backtest, an evaluation or a frontier /
/// impulse folder).
pub fn offline_report(dir: &Path) -> Result<String> {
    report(dir, &Extra::default())
}

/// [`offline_report`] with a caller's `extra` title, sections and provenance.
pub fn report(dir: &Path, extra: &Extra) -> Result<String> {
    let backtest = dir.join("summary.json");
    let scores = dir.join("forecast_scores.json");
    let charts: Vec<(&str, &str)> =
        vec![("frontier.png", "The cost–procyclicality frontier"), ("impulse.png", "Impulse responses"), ("forecast_chart.png", "Forecasts against realized variance")];
    let present: Vec<_> = charts.iter().filter(|(f, _)| dir.join(f).exists()).collect();
    if !backtest.exists() && !scores.exists() && !dir.join("frontier.json").exists() && present.is_empty() && extra.sections.is_empty() {
        return Err(DataError::Invalid {
            file: dir.to_path_buf(),
            row: 0,
            line: None,
            column: "-".into(),
            message: "holds no summary.json (backtest), forecast_scores.json (evaluate) nor frontier/impulse charts: give a run's output folder".into(),
        });
    }
    let mut html = String::new();
    let title = extra.title.clone().unwrap_or_else(|| format!("Foresight report: {}", dir.display()));
    let _ = write!(html, "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>", esc(&title));
    let _ = write!(html, "<h1>{}</h1>", esc(&title));
    let mut provenance: Vec<(String, String)> = vec![("report written by".into(), format!("foresight {} at git commit {}", env!("CARGO_PKG_VERSION"), git_commit()))];

    if backtest.exists() {
        let summary = read_json(&backtest)?;
        let settings = &summary["settings"];
        let data = &summary["data"];
        let reject_at = settings["reject_at"].as_f64().unwrap_or(0.05);
        let _ = write!(
            html,
            "<p>{} from {} to {}, one-sided confidence {}, horizon {} day(s); tests reject at {}.</p>",
            esc(data["file"].as_str().unwrap_or("?")),
            esc(settings["scored_from"].as_str().unwrap_or("?")),
            esc(settings["scored_to"].as_str().unwrap_or("?")),
            fixed(&settings["confidence"], 3),
            settings["horizon_days"],
            reject_at
        );
        let arms = summary["arms"].as_object().cloned().unwrap_or_default();
        html.push_str("<h2>Verdicts</h2><p>Coverage goal: neither Kupiec's nor Christoffersen's conditional-coverage test rejects on either side, and no 250-day window of the run is in the Basel red zone.</p><ul id=\"verdicts\">");
        for (arm, s) in &arms {
            let (meets, failures) = verdict(s);
            let class = if meets { "meets" } else { "fails" };
            let text = if meets { "meets the coverage goal".to_string() } else { format!("does not meet the coverage goal: {}", failures.join("; ")) };
            let _ = write!(
                html,
                "<li class=\"verdict {class}\" data-arm=\"{}\"><b>{}</b> {}; average margin {} long / {} short, peak/trough {} long, largest 30-day rise {} long.</li>",
                esc(arm),
                esc(arm),
                esc(&text),
                percent(&s["long"]["avg_margin"]),
                percent(&s["short"]["avg_margin"]),
                fixed(&s["long"]["peak_to_trough"], 2),
                percent(&s["long"]["max_rise_30d"]["abs"])
            );
        }
        html.push_str("</ul><h2>Arms side by side</h2><table id=\"arms\"><thead><tr><th>arm</th><th>side</th><th>exceptions</th><th>expected</th><th>Kupiec p</th><th>Christoffersen cc p</th><th>traffic light (last / worst 250)</th><th>average margin</th><th>peak/trough</th><th>largest 5-day rise</th><th>largest 30-day rise</th><th>mean shortfall</th></tr></thead><tbody>");
        for (arm, s) in &arms {
            let fails = !verdict(s).0;
            for side in ["long", "short"] {
                let v = &s[side];
                let light = &v["traffic_light"];
                let (last, worst) = (light["last_250"].as_str().unwrap_or("-"), light["worst_250"].as_str().unwrap_or("-"));
                let _ = write!(
                    html,
                    "<tr data-arm=\"{}\" data-side=\"{side}\"{}><td class=\"arm\">{}</td><td class=\"side\">{side}</td><td data-field=\"exceptions\">{}</td><td data-field=\"expected_exceptions\">{}</td><td data-field=\"kupiec_p\">{}</td><td data-field=\"christoffersen_cc_p\">{}</td><td data-field=\"traffic_light\"><span class=\"{}\">{}</span> / <span class=\"{}\">{}</span></td><td data-field=\"avg_margin\">{}</td><td data-field=\"peak_to_trough\">{}</td><td data-field=\"max_rise_5d\">{}</td><td data-field=\"max_rise_30d\">{}</td><td data-field=\"mean_shortfall\">{}</td></tr>",
                    esc(arm),
                    if fails { " class=\"fails\"" } else { "" },
                    esc(arm),
                    v["exceptions"],
                    fixed(&v["expected_exceptions"], 1),
                    fixed(&v["kupiec_p"], 3),
                    fixed(&v["christoffersen_cc_p"], 3),
                    esc(last),
                    esc(last),
                    esc(worst),
                    esc(worst),
                    percent(&v["avg_margin"]),
                    fixed(&v["peak_to_trough"], 2),
                    percent(&v["max_rise_5d"]["abs"]),
                    percent(&v["max_rise_30d"]["abs"]),
                    percent(&v["mean_shortfall"])
                );
            }
        }
        html.push_str("</tbody></table>");
        // Readiness at the stress events: the margin in force before each over its 30-day peak.
        let events: Vec<(String, String)> = arms
            .values()
            .next()
            .and_then(|s| s["readiness"].as_array())
            .map(|r| r.iter().map(|e| (e["date"].as_str().unwrap_or("").to_string(), e["event"].as_str().unwrap_or("").to_string())).collect())
            .unwrap_or_default();
        if !events.is_empty() {
            let _ = write!(html, "<h2>Readiness at stress events</h2><p>{}</p><table id=\"readiness\"><thead><tr><th>event</th><th>date</th>", esc(settings["readiness"].as_str().unwrap_or("")));
            for arm in arms.keys() {
                let _ = write!(html, "<th>{} (long / short)</th>", esc(arm));
            }
            html.push_str("</tr></thead><tbody>");
            for (date, event) in &events {
                let _ = write!(html, "<tr><td class=\"event\">{}</td><td>{}</td>", esc(event), esc(date));
                for s in arms.values() {
                    let e = s["readiness"].as_array().and_then(|r| r.iter().find(|e| e["date"].as_str() == Some(date.as_str())));
                    let cell = e.map_or("–".into(), |e| format!("{} / {}", fixed(&e["long"], 2), fixed(&e["short"], 2)));
                    let _ = write!(html, "<td>{cell}</td>");
                }
                html.push_str("</tr>");
            }
            html.push_str("</tbody></table>");
        }
        html.push_str("<h2>Margin paths</h2><p>Each arm's long margin rate (blue) over the close (grey); dots mark exceptions, red long and orange short.</p>");
        for arm in arms.keys() {
            // The file the backtest wrote for this arm (one arm: `series.csv`), no other.
            let path = if arms.len() == 1 { dir.join("series.csv") } else { dir.join(format!("series_{}.csv", arm.replace(':', "-"))) };
            if let Ok(series) = read_series(&path) {
                let _ = write!(html, "<figure data-arm=\"{}\">{}<figcaption>{}</figcaption></figure>", esc(arm), margin_chart(arm, &series), esc(arm));
            }
        }
        if let Some(uri) = png(&dir.join("chart.png")) {
            let _ = write!(html, "<figure><img class=\"chart\" alt=\"all arms\" src=\"{uri}\"><figcaption>All arms, as the backtest drew them</figcaption></figure>");
        }
        let data_file = data["file"].as_str().unwrap_or("");
        let data_sha = file_sha256(data_file);
        provenance.push(("run by".into(), format!("foresight {}", summary["foresight_version"].as_str().unwrap_or("?"))));
        provenance.push(("data".into(), format!("{data_file} ({} rows, {} to {})", data["rows"], data["first"].as_str().unwrap_or("?"), data["last"].as_str().unwrap_or("?"))));
        provenance.push(("data sha256 (as the file is now)".into(), data_sha));
        provenance.push(("settings".into(), serde_json::to_string(settings).unwrap_or_default()));
    }

    if scores.exists() {
        let s = read_json(&scores)?;
        html.push_str("<h2>Forecast evaluation</h2><table id=\"forecasts\"><thead><tr><th>model</th><th>h</th><th>n</th><th>QLIKE</th><th>MZ R²</th><th>DM vs log-HAR p</th></tr></thead><tbody>");
        for row in s["scores"].as_array().into_iter().flatten() {
            let _ = write!(
                html,
                "<tr><td class=\"arm\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(row["model"].as_str().unwrap_or("?")),
                row["horizon"],
                row["n"],
                fixed(&row["qlike"], 4),
                fixed(&row["mincer_zarnowitz"]["r2"], 3),
                fixed(&row["dm_vs_log_har"]["p_value"], 3)
            );
        }
        html.push_str("</tbody></table>");
        provenance.push(("evaluation data".into(), s["data"].to_string()));
    }
    let frontier = dir.join("frontier.json");
    if frontier.exists() {
        let f = read_json(&frontier)?;
        html.push_str(&goals_section(&f));
        for key in ["data", "rv_data", "iv_data"] {
            if let Some(file) = f[key].as_str() {
                provenance.push((format!("frontier {key} and its sha256 (as the file is now)"), format!("{file}: {}", file_sha256(file))));
            }
        }
        provenance.push(("frontier settings".into(), serde_json::to_string(&json_subset(&f, &["asset_class", "confidence", "horizon_days", "burn_in_days", "refit_every", "selection", "frozen"])).unwrap_or_default()));
    }
    for (file, caption) in present {
        if let Some(uri) = png(&dir.join(file)) {
            let _ = write!(html, "<figure><img class=\"chart\" alt=\"{}\" src=\"{uri}\"><figcaption>{}</figcaption></figure>", esc(caption), esc(caption));
        }
    }
    for (heading, section) in &extra.sections {
        let _ = write!(html, "<h2>{}</h2>{section}", esc(heading));
    }
    provenance.extend(extra.provenance.iter().cloned());
    html.push_str("<h2>Provenance</h2><dl id=\"provenance\">");
    for (k, v) in provenance {
        let _ = write!(html, "<dt>{}</dt><dd>{}</dd>", esc(&k), esc(&v));
    }
    html.push_str("</dl></body></html>\n");
    Ok(html)
}
