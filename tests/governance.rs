//! Model governance on the committed registry: `foresight models promote` compares challenger
//! and champion on the days both are out of sample, through ONNX Runtime, on forecasts and on
//! margin; refusals name their reason, forced promotions log reason and evidence, and the
//! evidence committed for each champion is what the code computes today.

use std::path::Path;

use foresight_registry::promotion::{Incumbent, PromotionRule};
use foresight_registry::store::Action;
use foresight_registry::{ModelRef, Registry};
use foresight_train::promotion::{MarginSettings, PromotionData, same_days_evidence};

use crate::serve_ops::scratch_registry;
use crate::util::{data, foresight_err, foresight_ok, read_json, root};

fn models(registry: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["models".to_string(), "--registry".into(), registry.display().to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    all
}

fn ok(registry: &Path, args: &[&str]) -> String {
    let all = models(registry, args);
    foresight_ok(&all.iter().map(String::as_str).collect::<Vec<_>>())
}

fn err(registry: &Path, args: &[&str]) -> String {
    let all = models(registry, args);
    foresight_err(&all.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn no_common_out_of_sample_window_is_refused_naming_both_windows() {
    let dir = scratch_registry();
    // The bundled 2-hour bars up to 2024-03-31: the champion (HAR-X, trained to 2024-06-30)
    // has no out-of-sample day in them, the challenger (trained to 2021-12-31) has 820.
    let text = std::fs::read_to_string(data("btc_usdt_2h.csv")).unwrap();
    let cut: Vec<&str> = text.lines().take_while(|l| !l.starts_with("2024-04-01")).collect();
    let bars = dir.path().join("btc_to_2024-03.csv");
    std::fs::write(&bars, cut.join("\n") + "\n").unwrap();
    let before = std::fs::read(dir.path().join("registry.json")).unwrap();
    let refused = err(dir.path(), &["promote", "btc-neural@v1", "--data", bars.to_str().unwrap()]);
    assert!(
        refused.contains("btc-neural@v1 is out of sample on 2022-01-01..2024-03-31 and btc-dvol-har-x@v1 on 2024-07-01.. (no day of the data, which ends 2024-03-31)")
            && refused.contains("0 common days"),
        "{refused}"
    );
    assert_eq!(std::fs::read(dir.path().join("registry.json")).unwrap(), before, "a refusal writes nothing");
}

#[test]
fn a_forecast_winner_whose_margin_fails_coverage_is_refused_and_forcing_logs_reason_and_evidence() {
    let dir = scratch_registry();
    // GJR-t as SPX champion, forced past the rule (it loses to log-HAR on forecasts).
    let forced = ok(dir.path(), &["promote", "spx-gjr-t@v1", "--force", "governance test: GJR-t as incumbent"]);
    assert!(forced.contains("FORCED") && forced.contains("rule objects: no significant win"), "{forced}");
    let index = read_json(&dir.path().join("registry.json"));
    let last = index["slots"]["SPX/volatility"]["log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["forced"], true);
    assert_eq!(last["reason"], "governance test: GJR-t as incumbent");
    assert!(last["objections"][0].as_str().unwrap().contains("no significant win at h=5"), "{last}");
    assert_eq!(last["details"]["incumbent"]["model"], "spx-log-har@v1");
    assert_eq!(last["details"]["horizons"].as_array().unwrap().len(), 3);
    assert!(last["details"]["margin"]["challenger"]["long"]["observations"].as_u64().unwrap() > 2000, "{last}");

    // log-HAR beats GJR-t on QLIKE by far on the same 2,007 days of 2011..2018, but at the
    // 99.5% of EMIR's OTC margin its long side fails coverage (21 exceptions in 2,011 days)
    // where GJR-t's passes (15): refused, and the champion stays.
    let refused = err(dir.path(), &["promote", "spx-log-har@v1", "--confidence", "0.995"]);
    assert!(refused.contains("fails coverage on the long side") && refused.contains("where model:spx-gjr-t@v1 passes"), "{refused}");
    assert!(!refused.contains("no significant win"), "the forecasts do win: {refused}");
    let index = read_json(&dir.path().join("registry.json"));
    assert_eq!(index["slots"]["SPX/volatility"]["champion"], "spx-gjr-t@v1");

    // At 99% its margin holds where GJR-t's does not reject either: promoted on the evidence.
    let promoted = ok(dir.path(), &["promote", "spx-log-har@v1"]);
    assert!(promoted.contains("spx-log-har@v1 is now champion, replacing spx-gjr-t@v1") && !promoted.contains("FORCED"), "{promoted}");
    assert!(promoted.contains("Diebold-Mariano at h=5 on 2007 days"), "{promoted}");
}

#[test]
fn diff_compares_two_forecasters_on_the_same_days() {
    let dir = scratch_registry();
    let out = ok(dir.path(), &["diff", "btc-neural@v1", "btc-dvol-har-x@v1"]);
    assert!(out.contains("evaluation.window"), "the card diff comes first: {out}");
    assert!(out.contains("btc-dvol-har-x@v1 against btc-neural@v1 on the same days"), "{out}");
    assert!(out.contains("common 2024-07-01..2025-08-26") && out.contains("largest 30-day rise"), "{out}");
    // Models scored against another target are not compared.
    let out = ok(dir.path(), &["diff", "spx-log-har@v1", "spx-close-log-har@v1"]);
    assert!(out.contains("cannot be scored against"), "{out}");
}

/// The README's table of champions rests on the reviews logged in `models/registry.json`: each
/// champion's latest review against its slot's baseline (EWMA, climatology) must be what the
/// code computes today from the bundled data, and must support the champion.
#[test]
fn the_committed_champions_evidence_is_reproducible_and_supports_them() {
    let registry = Registry::open(root().join("models")).unwrap();
    for (slot, baseline) in [("BTC/volatility", "ewma"), ("SPX/volatility", "ewma"), ("BTC/regime", "climatology"), ("SPX/regime", "climatology")] {
        let champion: ModelRef = registry.champion(slot).unwrap().clone();
        let review = registry.index().slots[slot]
            .log
            .iter()
            .rev()
            .find(|e| e.action == Action::Review && e.details.as_ref().is_some_and(|d| d.incumbent == Incumbent::Baseline(baseline.into())))
            .unwrap_or_else(|| panic!("{slot}: no review of {champion} against {baseline} in the log"));
        let logged = review.details.clone().unwrap();
        assert_eq!(logged.challenger, champion);
        let card = registry.card(&champion).unwrap();
        // As `foresight models review` ran it, from the checkout (paths as the card gives them).
        let data = PromotionData::for_card(&card).unwrap();
        let today = same_days_evidence(&registry, &champion, None, &data, &MarginSettings::default()).unwrap();
        assert_eq!(today, logged, "{slot}: the logged evidence differs from today's");
        assert!(PromotionRule::default().objections(&today).is_empty(), "{slot}: {:?}", PromotionRule::default().objections(&today));
    }
}
