//! `foresight train` and `foresight models`: a data scientist's retrain → compare → promote loop
//! on bundled data, in a scratch registry.

use std::path::Path;

use crate::util::{data, foresight_err, foresight_ok, read_json, root};

/// Writes a recipe for the bundled BTC daily candles into `dir` and returns its path.
fn recipe(dir: &Path, extra: &str) -> String {
    let path = dir.join("recipe.toml");
    let text = format!(
        "asset = \"BTC\"\nname = \"t\"\ndata = \"{}\"\nmodels = [\"log-har\", \"garch\"]\nhorizons = [1, 5]\n\
         primary_horizon = 5\ntrain_end = \"2021-12-31\"\nregistry = \"{}\"\n{extra}",
        data("btc_usdt_1d.csv").display(),
        dir.join("models").display()
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn train_registers_checked_models_and_promotion_follows_the_scores() {
    let dir = tempfile::tempdir().unwrap();
    let config = recipe(dir.path(), "refit_every = 66\n");
    let out = foresight_ok(&["train", "--config", &config]);
    assert!(out.contains("trained on 2017-08-17..2021-12-31, scored out of sample on 2022-01-01..2025-08-26"), "{out}");
    assert!(out.contains("registered t-log-har@v1") && out.contains("registered t-garch@v1"), "{out}");
    let card = read_json(&dir.path().join("models/t-log-har/v1/card.json"));
    assert_eq!(card["evaluation"]["refit_every"], 66);
    assert_eq!(card["training"]["end"], "2021-12-31");
    assert_eq!(card["onnx"]["outputs"], serde_json::json!(["variance_h1", "variance_h5", "sigma_h1", "sigma_h5"]));
    assert!(card["golden"].as_array().unwrap().len() >= 5);
    assert!(card["details"]["onnx_parity"]["max_relative_error"].as_f64().unwrap() <= 1e-5);

    // The graph carries its metadata, evaluation included, for anything that loads it.
    let reg = foresight_registry::Registry::open(dir.path().join("models")).unwrap();
    let (_, loaded, _) = reg.load(&"t-garch@v1".parse().unwrap()).unwrap();
    assert_eq!(loaded.metadata("foresight.training_window").as_deref(), Some("2017-08-17..2021-12-31"));
    assert_eq!(loaded.metadata("foresight.evaluation_window").as_deref(), Some("2022-01-01..2025-08-26"));
    assert!(loaded.metadata("foresight.metrics").is_some_and(|m| m.contains("qlike") && m.contains("ewma")));
    assert_eq!(loaded.metadata("foresight.feature_spec_version").as_deref(), Some("foresight-features/1"));
    let registry = dir.path().join("models").display().to_string();
    let list = foresight_ok(&["models", "--registry", &registry, "list"]);
    assert!(list.contains("t-log-har@v1") && list.contains("challenger"), "{list}");
    let verify = foresight_ok(&["models", "--registry", &registry, "verify", "t-garch"]);
    assert!(verify.contains("t-garch@v1: ok"), "{verify}");

    // Promotion compares with EWMA first, on the same days: log-HAR's QLIKE is lower but not
    // significantly (one-sided p 0.056), so only a logged reason makes it champion; then GARCH
    // is compared with the champion.
    let refused = foresight_err(&["models", "--registry", &registry, "promote", "t-log-har"]);
    assert!(refused.contains("does not replace the ewma baseline: no significant win at h=5"), "{refused}");
    let promoted = foresight_ok(&["models", "--registry", &registry, "promote", "t-log-har", "--force", "test: a champion to compare with"]);
    assert!(promoted.contains("t-log-har@v1 is now champion") && promoted.contains("FORCED"), "{promoted}");
    let refused = foresight_err(&["models", "--registry", &registry, "promote", "t-garch"]);
    assert!(refused.contains("does not replace t-log-har@v1") && refused.contains("--force"), "{refused}");

    // Retrain (frozen this time): v2 appears beside v1, and diff shows what changed.
    let config = recipe(dir.path(), "");
    foresight_ok(&["train", "--config", &config]);
    let diff = foresight_ok(&["models", "--registry", &registry, "diff", "t-log-har@v1", "t-log-har@v2"]);
    assert!(diff.contains("evaluation.refit_every") && diff.contains("Some(66)"), "{diff}");
    let index = read_json(&dir.path().join("models/registry.json"));
    assert_eq!(index["slots"]["BTC/volatility"]["champion"], "t-log-har@v1");
}

#[test]
fn dry_run_registers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = recipe(dir.path(), "");
    let out = foresight_ok(&["train", "--config", &config, "--dry-run"]);
    assert!(out.contains("--dry-run: nothing registered"), "{out}");
    assert!(!dir.path().join("models").exists());
}

#[test]
fn bad_recipes_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = recipe(dir.path(), "refit_evry = 5\n");
    let err = foresight_err(&["train", "--config", &config]);
    assert!(err.contains("refit_evry"), "{err}");
    let config = recipe(dir.path(), "refit_every = 0\n");
    let err = foresight_err(&["train", "--config", &config]);
    assert!(err.contains("refit_every: must be ≥ 1"), "{err}");
    let text = std::fs::read_to_string(&config).unwrap().replace("2021-12-31", "2025-08-20").replace("refit_every = 0\n", "");
    std::fs::write(&config, text).unwrap();
    let err = foresight_err(&["train", "--config", &config]);
    assert!(err.contains("train_end 2025-08-20 leaves"), "{err}");
    let text = std::fs::read_to_string(&config).unwrap().replace("\"garch\"", "\"lstm\"");
    std::fs::write(&config, text).unwrap();
    let err = foresight_err(&["train", "--config", &config]);
    assert!(err.contains("unknown forecaster `lstm`"), "{err}");
}

#[test]
fn the_bundled_recipes_parse() {
    for entry in std::fs::read_dir(root().join("training")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("frontier_") {
            let config = foresight_train::frontier::FrontierConfig::read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            config.arms().unwrap_or_else(|e| panic!("{name}: {e}"));
        } else if name.ends_with(".toml") && !name.starts_with("reactive_") {
            foresight_train::recipe::Recipe::from_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

#[test]
fn correlation_artifact_uses_common_dates_only_and_is_shrunk() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("models");
    let btc = format!("BTC={}", data("btc_usdt_1d.csv").display());
    let spx = format!("SPX={}", data("spx_1d.csv").display());
    let out = foresight_ok(&["correlation", "--asset", &btc, "--asset", &spx, "--registry", registry.to_str().unwrap()]);
    // BTC trades every day, the S&P 500 on business days: 345 common dates, 344 returns.
    assert!(out.contains("344 aligned daily returns on common dates 2017-08-17..2018-12-31"), "{out}");
    let reg = foresight_registry::Registry::open(&registry).unwrap();
    let artifact = reg.artifact("correlation").unwrap();
    assert_eq!(artifact["assets"], serde_json::json!(["BTC", "SPX"]));
    let (sample, shrunk) = (artifact["sample"][0][1].as_f64().unwrap(), artifact["matrix"][0][1].as_f64().unwrap());
    assert!(sample > 0.0 && shrunk > 0.0 && shrunk < sample, "{sample} {shrunk}");
    let intensity = artifact["intensity"].as_f64().unwrap();
    assert!(intensity > 0.0 && intensity < 1.0);
    assert_eq!(artifact["matrix"][1][1], 1.0);
    let err = foresight_err(&["correlation", "--asset", &btc, "--asset", &spx, "--start", "2019-01-01", "--dry-run"]);
    assert!(err.contains("the assets share 0 dates"), "{err}");
    let err = foresight_err(&["correlation", "--asset", &btc, "--asset", "SPX"]);
    assert!(err.contains("expected NAME=FILE"), "{err}");
}
