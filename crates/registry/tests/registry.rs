//! The registry's rules on the committed models: every model checks out through ONNX Runtime,
//! tampering is caught, promotion and rollback follow the rules and are logged, and writes never
//! leave a half-written registry.

use std::path::{Path, PathBuf};

use foresight_registry::card::{GOLDEN_TOLERANCE, ModelCard};
use foresight_registry::promotion::{
    ArmCoverage, DateWindow, DieboldMarianoEvidence, HorizonScores, Incumbent, MarginEvidence, PromotionEvidence, PromotionRule, SideCoverage,
};
use foresight_registry::store::{Action, INDEX_FILE};
use foresight_registry::verify::sha256_hex;
use foresight_registry::{ModelRef, Registry, RegistryError};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A scratch copy of the committed `models/` (without its registry.json unless asked).
fn scratch(with_index: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("models"), dir.path());
    if !with_index {
        std::fs::remove_file(dir.path().join(INDEX_FILE)).unwrap();
    }
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn r(s: &str) -> ModelRef {
    s.parse().unwrap()
}

#[test]
fn every_committed_model_matches_its_card_through_onnx_runtime() {
    let registry = Registry::open(repo().join("models")).unwrap();
    let listing = registry.list().unwrap();
    let assets: std::collections::BTreeSet<_> = listing.iter().map(|l| l.card.asset.clone()).collect();
    assert!(assets.contains("BTC") && assets.contains("SPX"), "one model per bundled asset: {assets:?}");
    for l in &listing {
        let (card, _, verified) = registry.load(&l.card.reference()).unwrap();
        assert!(verified.golden_rows >= 5, "{}", card.reference());
        assert!(verified.max_relative_error <= GOLDEN_TOLERANCE);
        // The card names the bundled data file it was trained on, by content.
        for d in &card.training.data {
            let bytes = std::fs::read(repo().join(&d.path)).unwrap();
            assert_eq!(sha256_hex(&bytes), d.sha256, "{}: {} changed since training", card.reference(), d.path);
        }
        assert!(card.evaluation.start > card.training.end, "{}: evaluation overlaps training", card.reference());
        // The training range of every input column, for the service's out-of-range fallback.
        assert_eq!(card.onnx.input_ranges.len(), card.onnx.input_columns.len(), "{}", card.reference());
        assert!(card.onnx.input_ranges.iter().all(|[lo, hi]| lo.is_finite() && lo <= hi), "{}", card.reference());
        let parity = &card.details["onnx_parity"];
        assert!(parity["holdout_rows"].as_u64().unwrap() > 400, "{}", card.reference());
        assert!(parity["max_relative_error"].as_f64().unwrap() <= 1e-5);
    }
    // Each slot's champion is registered.
    for (slot, s) in &registry.index().slots {
        let champion = s.champion.as_ref().unwrap_or_else(|| panic!("{slot} has no champion"));
        assert_eq!(registry.card(champion).unwrap().slot(), *slot);
    }
}

#[test]
fn a_changed_onnx_file_or_golden_row_is_refused() {
    let dir = scratch(true);
    let registry = Registry::open(dir.path()).unwrap();
    let model = r("btc-log-har@v1");
    let onnx = dir.path().join(registry.model_folder(&model).unwrap()).join("model.onnx");
    let mut bytes = std::fs::read(&onnx).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&onnx, &bytes).unwrap();
    let err = registry.load(&model).unwrap_err();
    assert!(matches!(err, RegistryError::HashMismatch { .. }), "{err}");
    assert!(err.to_string().contains("btc-log-har@v1"), "{err}");

    // A card whose golden expectation is off by more than the tolerance.
    let model = r("spx-gjr-t@v1");
    let card_path = dir.path().join(registry.model_folder(&model).unwrap()).join("card.json");
    let mut card: ModelCard = serde_json::from_str(&std::fs::read_to_string(&card_path).unwrap()).unwrap();
    let (name, value) = card.golden[3].outputs.iter_mut().next().unwrap();
    let name = name.clone();
    *value *= 1.0 + 1e-4;
    std::fs::write(&card_path, serde_json::to_string(&card).unwrap()).unwrap();
    match registry.load(&model).unwrap_err() {
        RegistryError::GoldenMismatch { row, output, .. } => assert_eq!((row, output), (3, name)),
        other => panic!("expected a golden-row mismatch, got {other}"),
    }
}

/// Evidence as `foresight-train` would compute it: `challenger` against `incumbent` on the
/// same 400 days, with the given one-sided p-value and coverage of the challenger's long side.
fn evidence(challenger: &str, incumbent: Incumbent, p: f64, long_kupiec_p: f64) -> PromotionEvidence {
    let day = |s: &str| s.parse().unwrap();
    let window = DateWindow { start: day("2024-07-01"), end: day("2025-08-26") };
    let side = |kupiec_p: f64| SideCoverage {
        observations: 420,
        exceptions: 4,
        kupiec_p,
        christoffersen_cc_p: 0.5,
        average_margin: 0.07,
        largest_30d_rise: Some(1.0),
    };
    PromotionEvidence {
        challenger: r(challenger),
        incumbent,
        data: vec![],
        challenger_window: window,
        incumbent_window: window,
        not_comparable: None,
        score_name: "qlike".into(),
        primary_horizon: 5,
        horizons: vec![HorizonScores { horizon: 5, n: 400, challenger: 0.19, incumbent: 0.26 }],
        diebold_mariano: Some(DieboldMarianoEvidence { horizon: 5, n: 400, statistic: -3.0, p_value_one_sided: p }),
        margin: Some(MarginEvidence {
            confidence: 0.99,
            horizon: 1,
            window,
            challenger: ArmCoverage { arm: format!("model:{challenger}"), long: side(long_kupiec_p), short: side(0.5) },
            incumbent: ArmCoverage { arm: "ewma:0.94".into(), long: side(0.5), short: side(0.5) },
        }),
    }
}

#[test]
fn promotion_follows_the_evidence_or_a_logged_reason_and_rollback_walks_back() {
    let dir = scratch(false);
    let mut registry = Registry::open(dir.path()).unwrap();
    let rule = PromotionRule::default();
    let ewma = || Incumbent::Baseline("ewma".into());
    // No champion yet: the evidence must be against the baseline, about this model, and win.
    let weak = evidence("btc-gjr-t@v1", ewma(), 0.3, 0.5);
    let err = registry.promote(&r("btc-gjr-t"), &weak, &rule, None).unwrap_err();
    assert!(matches!(err, RegistryError::Refused(_)) && err.to_string().contains("no significant win"), "{err}");
    let err = registry.promote(&r("btc-log-har"), &weak, &rule, None).unwrap_err();
    assert!(err.to_string().contains("the evidence is about btc-gjr-t@v1"), "{err}");
    let p = registry.promote(&r("btc-log-har"), &evidence("btc-log-har@v1", ewma(), 0.01, 0.5), &rule, None).unwrap();
    assert_eq!((p.model.clone(), p.previous.clone(), p.forced), (r("btc-log-har@v1"), None, false));
    // Evidence against the baseline no longer counts once there is a champion.
    let stale = evidence("btc-gjr-t@v1", ewma(), 0.01, 0.5);
    assert!(registry.promote(&r("btc-gjr-t"), &stale, &rule, None).unwrap_err().to_string().contains("compute it again"));
    // A forecast win whose margin fails coverage where the champion's passes: refused.
    let uncovered = evidence("btc-gjr-t@v1", Incumbent::Model(r("btc-log-har@v1")), 0.01, 0.001);
    let err = registry.promote(&r("btc-gjr-t"), &uncovered, &rule, None).unwrap_err();
    assert!(err.to_string().contains("fails coverage on the long side"), "{err}");
    assert!(matches!(registry.promote(&r("btc-gjr-t"), &uncovered, &rule, Some("  ")).unwrap_err(), RegistryError::Invalid(_)));
    let p = registry.promote(&r("btc-gjr-t"), &uncovered, &rule, Some("stress test of the GARCH arm")).unwrap();
    assert!(p.forced && p.objections.len() == 1, "{:?}", p.objections);
    assert_eq!(p.previous, Some(r("btc-log-har@v1")));

    // What is on disk is what the registry said, evidence included, and another reader sees it.
    let reread = Registry::open(dir.path()).unwrap();
    let slot = &reread.index().slots["BTC/volatility"];
    assert_eq!(slot.champion, Some(r("btc-gjr-t@v1")));
    assert!(slot.challengers.contains(&r("btc-log-har@v1")));
    let last = slot.log.last().unwrap();
    assert_eq!((last.action, last.forced, last.reason.as_deref()), (Action::Promote, true, Some("stress test of the GARCH arm")));
    assert_eq!(last.details.as_ref(), Some(&uncovered));
    assert!(last.objections[0].contains("long side"));

    // A review logs the champion's evidence and changes nothing else.
    let review = evidence("btc-gjr-t@v1", Incumbent::Model(r("btc-log-har@v1")), 0.4, 0.5);
    assert_eq!(registry.review("BTC", &review, &rule).unwrap().len(), 1);
    assert!(registry.review("BTC", &weak, &rule).is_ok(), "a review may be against the baseline");
    assert!(registry.review("BTC", &evidence("btc-log-har@v1", ewma(), 0.01, 0.5), &rule).is_err(), "only of the champion");
    assert_eq!(registry.champion("BTC/volatility"), Some(&r("btc-gjr-t@v1")));

    // Rollback restores the previous champion (reviews are not changes), then refuses when
    // there is nothing before it.
    let p = registry.rollback("BTC", "GJR-t margin too jumpy").unwrap();
    assert_eq!((p.model, p.previous), (r("btc-log-har@v1"), Some(r("btc-gjr-t@v1"))));
    let err = registry.rollback("BTC/volatility", "again").unwrap_err();
    assert!(err.to_string().contains("nothing to roll back to"), "{err}");
    assert!(matches!(registry.rollback("BTC", "").unwrap_err(), RegistryError::Invalid(_)));
    assert!(matches!(registry.rollback("ETH", "x").unwrap_err(), RegistryError::NotFound(_)));
}

#[test]
fn publishing_adds_a_new_version_as_challenger_and_never_overwrites() {
    let dir = scratch(true);
    let mut registry = Registry::open(dir.path()).unwrap();
    let card = registry.card(&r("spx-log-har@v1")).unwrap();
    let bytes = std::fs::read(dir.path().join(registry.model_folder(&r("spx-log-har@v1")).unwrap()).join("model.onnx")).unwrap();
    let stored = registry.publish(card.clone(), &bytes).unwrap();
    assert_eq!(stored.reference(), r("spx-log-har@v2"));
    assert_eq!(registry.resolve(&r("spx-log-har")).unwrap(), r("spx-log-har@v2"));
    assert!(registry.index().slots["SPX/volatility"].challengers.contains(&r("spx-log-har@v2")));
    // v1 is untouched and still checks out.
    registry.load(&r("spx-log-har@v1")).unwrap();

    // A card whose golden rows the bytes do not reproduce is never registered.
    let mut bad = card;
    for g in &mut bad.golden {
        for v in g.outputs.values_mut() {
            *v *= 2.0;
        }
    }
    assert!(matches!(registry.publish(bad, &bytes).unwrap_err(), RegistryError::GoldenMismatch { .. }));
    assert_eq!(registry.versions("spx-log-har").unwrap(), vec![1, 2]);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("spx-log-har"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn unknown_models_and_versions_are_named_in_the_error() {
    let registry = Registry::open(repo().join("models")).unwrap();
    let err = registry.card(&r("btc-log-har@v9")).unwrap_err();
    assert!(err.to_string().contains("btc-log-har@v9 is not registered (versions: v1"), "{err}");
    let err = registry.card(&r("eth-log-har")).unwrap_err();
    assert!(err.to_string().contains("no model `eth-log-har`"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(INDEX_FILE), "{\"format\": \"something-else\"}").unwrap();
    let err = Registry::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("expected `foresight-registry/1`"), "{err}");
}

#[test]
fn artifacts_round_trip_and_are_hash_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::open(dir.path()).unwrap();
    let value = serde_json::json!({ "assets": ["BTC", "SPX"], "matrix": [[1.0, 0.2], [0.2, 1.0]] });
    registry.put_artifact("correlation", &value, "test").unwrap();
    let reread = Registry::open(dir.path()).unwrap();
    assert_eq!(reread.artifact("correlation").unwrap(), value);
    std::fs::write(dir.path().join("artifacts/correlation.json"), "{}").unwrap();
    assert!(matches!(reread.artifact("correlation").unwrap_err(), RegistryError::HashMismatch { .. }));
}

#[test]
fn concurrent_writers_never_overwrite_each_other() {
    let dir = scratch(true);
    let card = Registry::open(dir.path()).unwrap().card(&r("spx-log-har@v1")).unwrap();
    let bytes = std::fs::read(dir.path().join("spx-log-har/v1/model.onnx")).unwrap();
    // Four training jobs publish the same model at once, each from its own stale view.
    let jobs: Vec<Registry> = (0..4).map(|_| Registry::open(dir.path()).unwrap()).collect();
    let (card, bytes) = (&card, &bytes);
    let stored: Vec<u32> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs.into_iter().map(|mut job| s.spawn(move || job.publish(card.clone(), bytes).unwrap().version)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut versions = stored.clone();
    versions.sort_unstable();
    assert_eq!(versions, [2, 3, 4, 5], "each job got its own version: {stored:?}");
    let registry = Registry::open(dir.path()).unwrap();
    let challengers = &registry.index().slots["SPX/volatility"].challengers;
    for v in 2..=5 {
        assert!(challengers.contains(&r(&format!("spx-log-har@v{v}"))), "v{v} was entered: {challengers:?}");
        registry.load(&r(&format!("spx-log-har@v{v}"))).unwrap();
    }

    // A writer whose view is stale re-applies its change to what is stored now; one whose change
    // no longer holds (the champion moved under it) is refused.
    let mut stale = Registry::open(dir.path()).unwrap();
    let mut first = Registry::open(dir.path()).unwrap();
    first.rollback("BTC", "first writer").unwrap_or_else(|e| panic!("{e}"));
    let err = stale.rollback("BTC", "second writer, same view").unwrap_err();
    assert!(err.to_string().contains("changed while rolling back") || err.to_string().contains("nothing to roll back to"), "{err}");
    let after = Registry::open(dir.path()).unwrap();
    let rollbacks = after.index().slots["BTC/volatility"].log.iter().filter(|e| e.reason.as_deref() == Some("first writer")).count();
    assert_eq!(rollbacks, 1);
    assert!(!after.index().slots["BTC/volatility"].log.iter().any(|e| e.reason.as_deref() == Some("second writer, same view")));
}

#[test]
fn copying_fills_an_empty_target_and_never_discards_what_a_target_recorded() {
    let source = Registry::open(repo().join("models")).unwrap();
    let versions: usize = source.model_names().unwrap().iter().map(|n| source.versions(n).unwrap().len()).sum();
    let empty = tempfile::tempdir().unwrap();
    let mut target = Registry::open(empty.path().join("copy")).unwrap();
    let report = source.copy_to(&mut target).unwrap();
    assert_eq!((report.versions_copied, report.versions_present), (versions, 0));
    assert_eq!(Registry::open(empty.path().join("copy")).unwrap().index(), source.index());
    assert_eq!(source.copy_to(&mut target).unwrap().versions_present, versions, "copying again stores nothing");

    // A target holding an artifact the source lacks: refused before anything is written.
    let other = tempfile::tempdir().unwrap();
    let mut target = Registry::open(other.path()).unwrap();
    target.put_artifact("only-here", &serde_json::json!({ "x": 1 }), "test").unwrap();
    let err = source.copy_to(&mut target).unwrap_err();
    assert!(matches!(err, RegistryError::Conflict(_)) && err.to_string().contains("artifact `only-here`"), "{err}");
    let mut names: Vec<String> = std::fs::read_dir(other.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, [".registry.lock", "artifacts", "registry.json"], "no model was copied");
    assert_eq!(Registry::open(other.path()).unwrap().artifact("only-here").unwrap(), serde_json::json!({ "x": 1 }));
}
